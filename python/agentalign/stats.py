"""Proportions with 95% Wilson score intervals, shared by every layer that reports a rate.

It sits in the base layer so that the environments' intent satisfaction (envs.intents) and the
rollout's outcome rates (rollout.outcomes) report the same interval from the same code.

Wilson rather than the normal approximation because the rates we care about sit near 0 and 1
(an aligned agent reaches its pad in ~90% of episodes, the others in a few %), where the normal
interval collapses to zero width or leaves [0, 1]; Wilson stays inside and keeps its coverage
at the 100-500 episodes an evaluation plays.
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} must be within 0..{trials}")
    p, z2 = successes / trials, z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    # Exact at the ends (rounding would otherwise give e.g. -1e-17 for 0 successes).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def rate(successes: int, trials: int) -> dict[str, float | int]:
    """{"rate", "low", "high", "count", "n"}: a proportion with its 95% interval."""
    low, high = wilson_interval(successes, trials)
    return {"rate": successes / trials if trials else 0.0, "low": low, "high": high,
            "count": int(successes), "n": int(trials)}
