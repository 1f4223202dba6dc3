"""Outcome rates with 95% Wilson score intervals, overall and per group (spawn point, start kind).

The interval itself (and why Wilson) lives in the base layer, `agentalign.stats`, so that intent
satisfaction (envs.intents) reports the same interval; its names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agentalign.spec import OUTCOME_CODES, OUTCOMES, PADS
from agentalign.stats import Z95, rate, wilson_interval

__all__ = ["RATE_CODES", "TABLE_COLUMNS", "Z95", "format_table", "intent_line", "outcome_rates",
           "rate", "rates_line", "summarise", "wilson_interval"]

# Reported rates: each pad, "none" (= fell + timeout, as the paper counts), fell and timeout
# separately, and "any_pad" (the agent reached some pad).
RATE_CODES: dict[str, tuple[int, ...]] = {
    **{pad: (OUTCOME_CODES[pad],) for pad in PADS},
    "none": (OUTCOME_CODES["fell"], OUTCOME_CODES["timeout"]),
    "fell": (OUTCOME_CODES["fell"],),
    "timeout": (OUTCOME_CODES["timeout"],),
    "any_pad": tuple(OUTCOME_CODES[pad] for pad in PADS),
}


def outcome_rates(outcomes: Sequence[int] | np.ndarray) -> dict[str, dict[str, float | int]]:
    """Every rate of RATE_CODES over a list of outcome codes."""
    outcomes = np.asarray(outcomes, dtype=np.int64)
    if ((outcomes < 0) | (outcomes >= len(OUTCOMES))).any():
        raise ValueError("outcomes must be codes of finished episodes (0..4)")
    return {name: rate(int(np.isin(outcomes, codes).sum()), len(outcomes))
            for name, codes in RATE_CODES.items()}


def summarise(outcomes: Sequence[int] | np.ndarray, lengths: Sequence[int] | np.ndarray,
              groups: dict[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Rates and mean length overall, then the same per label of each grouping.

    `groups` maps a grouping name to one label per episode, e.g. {"spawn": ["spawn_1", ...]};
    the result then has `by_spawn` = {label: {"episodes", "rates", "mean_length"}}.
    """
    outcomes, lengths = np.asarray(outcomes), np.asarray(lengths, dtype=np.float64)
    summary: dict[str, Any] = _block(outcomes, lengths)
    for name, labels in (groups or {}).items():
        labels = np.asarray(labels)
        if len(labels) != len(outcomes):
            raise ValueError(f"group {name!r} has {len(labels)} labels for {len(outcomes)} "
                             "episodes")
        summary[f"by_{name}"] = {str(label): _block(outcomes[labels == label],
                                                    lengths[labels == label])
                                 for label in sorted(set(labels.tolist()))}
    return summary


def _block(outcomes: np.ndarray, lengths: np.ndarray) -> dict[str, Any]:
    return {"episodes": len(outcomes), "rates": outcome_rates(outcomes),
            "mean_length": float(lengths.mean()) if len(lengths) else 0.0}


TABLE_COLUMNS = ("left", "middle", "right", "none", "fell", "timeout", "any_pad")


def format_table(summary: dict[str, Any]) -> str:
    """Rates in % per row (all, then each group), and the overall 95% intervals underneath."""
    head = f"{'':16s}{'episodes':>9s}" + "".join(f"{c:>9s}" for c in TABLE_COLUMNS) \
        + f"{'length':>9s}"
    lines = [head, _row("all", summary)]
    for key, blocks in summary.items():
        if key.startswith("by_") and len(blocks) > 1:
            lines += [_row(label, block) for label, block in blocks.items()]
    rates = summary["rates"]
    lines.append("95% intervals: " + ", ".join(
        f"{c} [{100 * rates[c]['low']:.1f}, {100 * rates[c]['high']:.1f}]"
        for c in ("left", "middle", "right", "none", "any_pad")))
    return "\n".join(lines)


def rates_line(rates: dict[str, dict[str, Any]]) -> str:
    """'left 12.0%  middle 40.5%  right 9.5%  none 38.0% (fell 4.0%, timeout 34.0%)'."""
    r = {k: 100 * v["rate"] for k, v in rates.items()}
    return (f"left {r['left']:.1f}%  middle {r['middle']:.1f}%  right {r['right']:.1f}%  "
            f"none {r['none']:.1f}% (fell {r['fell']:.1f}%, timeout {r['timeout']:.1f}%)")


def intent_line(intent: dict[str, Any]) -> str:
    """'intent campfire-middle (pass by the campfire, then end on the middle pad): 41.0% of 200
    episodes satisfy it, 95% interval [34.4, 47.9]', from `envs.intents.satisfaction`'s dict:
    one wording wherever a stage reports an intent (evaluate, align, export)."""
    return (f"intent {intent['intent']} ({intent['description']}): "
            f"{100 * intent['rate']:.1f}% of {intent['episodes']} episodes satisfy it, "
            f"95% interval [{100 * intent['low']:.1f}, {100 * intent['high']:.1f}]")


def _row(label: str, block: dict[str, Any]) -> str:
    cells = "".join(f"{100 * block['rates'][c]['rate']:>8.1f}%" for c in TABLE_COLUMNS)
    return f"{label:16s}{block['episodes']:>9d}{cells}{block['mean_length']:>9.1f}"
