"""Pre-training's optional self-supervised objective: guess how the episode ends, from pixels.

Why: the reward model starts from the pre-trained agent and reads its last block, but imitation
alone leaves that block carrying next-action information, not where a run is going (the linear
probes of benchmarks/reward_probe.py: the pre-trained transformer's features know less about a
run's outcome than a random transformer's). This objective asks each real step's last-block
output to pick, among the episodes of the batch, the last frame of its own episode: InfoNCE in
the manner of contrastive predictive coding (van den Oord et al., 2018), with the episode's end
as the predicted future. Its inputs are pixels only: the frame that ends the episode, encoded by
the policy's own CNN (gradients flow through both sides). No outcome, position or label is read.

This departs from the paper, whose pre-training is imitation alone; it is off by default
(`future_weight: 0`) and changes nothing then. The predictor's two small heads live beside the
policy (in the trainer's state, for an exact resume), not in the policy checkpoint: the policy,
the reward model initialised from it and the exported ONNX are the same shapes either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FuturePredictor(nn.Module):
    """A query head on a step's last-block output and a key head on an end frame's CNN
    embedding, compared by cosine over a temperature."""

    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.query = nn.Sequential(nn.LayerNorm(n_embd), nn.Linear(n_embd, n_embd))
        self.key = nn.Linear(n_embd, n_embd)

    def loss_sum(self, hidden: Tensor, mask: Tensor, ends: Tensor, episodes: Tensor,
                 temperature: float) -> Tensor:
        """Sum over real steps of -log p(own episode's end | step).

        hidden [B, T, n_embd] (last block), mask [B, T] (real steps), ends [B, n_embd] (CNN
        embedding of each window's episode-ending frame), episodes [B] (corpus index: two
        windows of one episode share an end, so another window's copy is not a negative).
        """
        owner = torch.arange(len(ends), device=hidden.device)[:, None].expand_as(mask)[mask]
        query = F.normalize(self.query(hidden[mask]), dim=-1)  # [N, d]
        key = F.normalize(self.key(ends), dim=-1)  # [B, d]
        logits = query @ key.T / temperature  # [N, B]
        same = episodes[owner][:, None] == episodes[None, :]
        same[torch.arange(len(owner)), owner] = False  # the own column stays the positive
        return F.cross_entropy(logits.masked_fill(same, float("-inf")), owner, reduction="sum")
