"""Which pair to ask next: random at first, then the pairs an ensemble disagrees on most.

The ensemble: K Bradley-Terry models, each linear in a rollout's features (studio.pool), fitted
on a bootstrap resample of the decisive training labels (ties as 0.5 targets) with an L2 penalty.
P(first better) = sigmoid(w . (f_first - f_second)). Disagreement on a pair is the standard
deviation of the members' P (Christiano et al. 2017 chose by ensemble variance; B-Pref offers it
beside uniform and entropy). Whether it beats random here is measured (benchmarks/studio_e2e.py),
not assumed. Held-out accuracy: the members' mean P on held-out pairs, decisive answers only.
Linear members refit in well under a second on 2 cores, so the studio refits every few labels.

Which uncertainty: simulated on the studio's pools (intent "pass by the campfire, then end on the
middle pad", 500 runs, 500 common held-out pairs, 2 repeats, pools of seeds 0 and 1;
benchmarks/studio_selection.py, docs/benchmarks.md), held-out accuracy at 300 labels: random
82.2 / 85.9%, disagreement 83.6 / 85.6%, entropy of the mean 85.2 / 87.5% (at 50-100 labels
all within ~2 points). So "entropy" is the default and "disagreement" a setting; neither is far
from random here. With the pool's colour features (studio.pool, the default since) on the pools
of seeds 0 / 1 / 2, four draws each, entropy at 300 labels 93.0 / 90.5 / 89.0% against random
90.6 / 89.2 / 86.7%, and it reaches random's final accuracy in 0.34 / 0.71 / 0.65 of random's
labels on average (docs/results.md, "Colour features for the ensemble").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass
class Ensemble:
    weights: np.ndarray  # [K, D]
    mean: np.ndarray  # [D] feature standardisation
    scale: np.ndarray  # [D]

    def prob(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """P(a better than b) per member: [K, N] for features [N, D]."""
        diff = ((a - self.mean) / self.scale) - ((b - self.mean) / self.scale)
        return 1.0 / (1.0 + np.exp(-np.clip(diff @ self.weights.T, -30, 30))).T

    def score(self, f: np.ndarray) -> np.ndarray:
        """Mean member utility of each row of f [N, D] (for ranking rollouts)."""
        return (((f - self.mean) / self.scale) @ self.weights.T).mean(1)


def fit(features: np.ndarray, first: np.ndarray, second: np.ndarray, target: np.ndarray, *,
        members: int = 5, l2: float = 1.0, steps: int = 200, seed: int = 0) -> Ensemble:
    """Fit `members` linear BT models; target[i] is P(first[i] better): 1, 0 or 0.5."""
    rng = np.random.default_rng(seed)
    mean = features.mean(0)
    scale = features.std(0) + 1e-6
    x = ((features[first] - mean) / scale) - ((features[second] - mean) / scale)
    n, d = x.shape
    weights = np.zeros((members, d))
    for k in range(members):
        pick = rng.integers(n, size=n) if members > 1 else np.arange(n)
        xk, yk = x[pick], target[pick]
        w = np.zeros(d)
        lr = 1.0 / (0.25 * (np.linalg.norm(xk, ord=2) ** 2) / max(n, 1) + l2 / max(n, 1))
        for _ in range(steps):  # gradient descent on the mean log-loss + L2 (convex)
            p = 1.0 / (1.0 + np.exp(-np.clip(xk @ w, -30, 30)))
            grad = xk.T @ (p - yk) / n + l2 * w / n
            w -= lr * grad
        weights[k] = w
    return Ensemble(weights, mean, scale)


def accuracy(ensemble: Ensemble, features: np.ndarray, first: np.ndarray, second: np.ndarray,
             target: np.ndarray) -> float | None:
    """Share of decisive pairs the ensemble's mean P orders as labelled (None without any)."""
    keep = target != 0.5
    if not keep.any():
        return None
    p = ensemble.prob(features[first[keep]], features[second[keep]]).mean(0)
    return float(((p > 0.5) == (target[keep] > 0.5)).mean())


def candidate_pairs(ensemble: Ensemble, features: np.ndarray, count: int,
                    rng: np.random.Generator, rule: str = "entropy") -> np.ndarray:
    """`count` random candidate pairs [count, 2] (rows of `features`; a pair may repeat a run):
    from every run, or for rule "top" from the quarter the ensemble rates highest. Why "top": a
    rubric about the way ("by the campfire, then the middle pad") is learnt from pairs of runs
    that both nearly do it, which random candidates seldom hold (docs/benchmarks.md); through
    the studio's aligns it measured worse than "entropy" (docs/results.md, "The studio")."""
    among = np.arange(len(features))
    if rule == "top":
        among = np.argsort(-ensemble.score(features), kind="stable")[:max(2, len(among) // 4)]
    return among[rng.integers(len(among), size=(count, 2))]


def most_uncertain(ensemble: Ensemble, features: np.ndarray, candidates: np.ndarray,
                   rule: str = "entropy") -> int:
    """Index into `candidates` [M, 2] (rows of `features`) of the most uncertain pair: by
    "disagreement" (the members' P spread most) or "entropy" (the members' mean P nearest 0.5;
    also rule "top", whose candidates come from the best-rated runs)."""
    p = ensemble.prob(features[candidates[:, 0]], features[candidates[:, 1]])
    score = p.std(0) if rule == "disagreement" else -np.abs(p.mean(0) - 0.5)
    return int(np.argmax(score))


def labels_needed(curve: Iterable[tuple[int, float | None]], level: float) -> int | None:
    """The first label count of an accuracy curve [(count, accuracy)] at or above `level`:
    how active and random pair choice are compared (benchmarks/studio_*.py)."""
    return next((n for n, acc in sorted(curve) if acc is not None and acc >= level - 1e-9),
                None)
