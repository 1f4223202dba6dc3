"""The learning-rate schedule of the trainers: linear warm-up, then cosine decay (as nanoGPT)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, steps: int, warmup: int, lr: float, min_lr: float) -> float:
    """Linear warm-up to `lr` over `warmup` steps, then cosine decay to `min_lr` at `steps`."""
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, steps - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
