"""`agentalign align`: preference fine-tuning, then RL, against one target's reward model.

out/prefft (train.prefft) fine-tunes the SFT policy on its best-scored rollouts; out/rl (train.rl)
starts from that policy, which is also its KL reference. Each sub-stage resumes itself and skips
itself once finished, so rerunning the same command finishes an interrupted alignment. The
result is saved as out/checkpoints/step-N (stage "align", meta target: the ONNX export puts it
on the personality card) with out/metrics.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentalign.atomic import write_json_atomic
from agentalign.errors import ConfigError
from agentalign.models.checkpoint import load_policy, save_step
from agentalign.train.prefft import RewardFn, check_target, finished, prefft, rates_text
from agentalign.train.rl import rl

METRICS = "metrics.json"


def load_align_config(overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """configs/prefft.yaml and configs/rl.yaml as the sections prefft and rl, with overrides
    `prefft.key=value` / `rl.key=value`."""
    from agentalign.config import load_config

    parts: dict[str, list[str]] = {"prefft": [], "rl": []}
    for item in overrides:
        section, _, rest = item.partition(".")
        if section not in parts or not rest:
            raise ConfigError(f"override {item!r}: align keys start with prefft. or rl.")
        parts[section].append(rest)
    return {name: load_config(name, None, items) for name, items in parts.items()}


def align(config: dict[str, Any], policy_path: str | Path, reward_fn: RewardFn, target: str,
          out: str | Path, reward_id: str = "", progress: bool = True) -> dict[str, Any]:
    """`config` = {"prefft": prefft settings, "rl": rl settings}; returns metrics.json."""
    check_target(target)
    if set(config) != {"prefft", "rl"}:
        raise ConfigError(f"align config must have the sections prefft and rl, got "
                          f"{sorted(config)}")
    out = Path(out)
    first = prefft(config["prefft"], policy_path, reward_fn, target, out / "prefft", reward_id,
                   progress)
    second = rl(config["rl"], out / "prefft", reward_fn, target, out / "rl", reward_id, progress)
    run = json.loads(json.dumps({"prefft": first["run"], "rl": second["run"]}))
    if (done := finished(out, run)) is not None:
        return done
    policy, info = load_policy(out / "rl")
    path = save_step(out, policy, policy.config.to_dict(), kind="policy", stage="align",
                     step=int(info.get("step") or 0),
                     meta={"target": target, "stage": "align", "run": run,
                           "evaluation": second.get("evaluation")})
    metrics = {"stage": "align", "final": True, "target": target,
               "prefft": {k: first[k] for k in ("evaluation", "rounds", "wall_seconds")},
               "rl": {k: second[k] for k in ("evaluation", "iteration", "score", "kl",
                                             "wall_seconds")},
               "evaluation": second.get("evaluation") or first.get("evaluation"),
               "wall_seconds": first["wall_seconds"] + second["wall_seconds"],
               "checkpoint": str(path.relative_to(out)), "run": run}
    write_json_atomic(out / METRICS, metrics)
    return metrics


def format_metrics(metrics: dict[str, Any]) -> str:
    lines = [f"align -> {metrics['target']}: {metrics['wall_seconds']:.1f} s of training"]
    for stage in ("prefft", "rl"):
        if (ev := metrics[stage].get("evaluation")) is not None:
            lines.append(f"  after {stage:6s}: {rates_text(ev)}")
    return "\n".join(lines)
