"""The pool of rollouts the studio draws pairs from, and each rollout's features.

A pool corpus is a rollout corpus like `agentalign label`'s (frames, actions, positions, outcome
per episode), recorded into the studio's label folder: the SFT agent from the game's spawns, the
SFT agent from anywhere on the walkable island (so behaviour the SFT agent rarely shows from its
spawns still appears in pairs), the pre-trained agent, and each aligned personality after its
align. Features: per episode, the SFT agent's CNN encoding of every frame, averaged over the
episode, beside the last frame's: what the ensemble that chooses pairs reads (pixels only, never
positions or outcomes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agentalign.atomic import write_atomic
from agentalign.data.shards import Corpus
from agentalign.rollout import PolicyActor
from agentalign.train.label import record_rollouts

FEATURES = "features"  # folder beside the corpora: <corpus>.npy, float32 [episodes, 2 * n_embd]


@dataclass(frozen=True)
class PoolPart:
    """One corpus to record: whose policy plays, from which starts."""

    kind: str  # sft, anywhere, base, aligned
    policy: Path
    episodes: int
    seed: int
    anywhere: float = 0.0
    personality: str | None = None

    @property
    def corpus(self) -> str:
        who = f"-{self.personality}" if self.personality else ""
        return f"pool-{self.kind}{who}-s{self.seed}"


def record(part: PoolPart, labels: Path, *, layout: str = "jumppad_island", num_envs: int = 16,
           progress: bool = False) -> Corpus:
    """Record `part` into labels/<corpus> (a finished corpus is reused: resumable)."""
    from agentalign.models.checkpoint import load_policy

    model, info = load_policy(part.policy)
    source = {"policy": info.get("sha256"), "stage": info.get("stage"), "studio": part.kind,
              "anywhere": part.anywhere}
    return record_rollouts(PolicyActor(model), labels / part.corpus, part.episodes, part.seed,
                           layout=layout, num_envs=num_envs, source=source, progress=progress,
                           obs=(model.config.obs_height, model.config.obs_width),
                           anywhere=part.anywhere)


@torch.no_grad()
def write_features(corpus: Corpus, encoder: Path, labels: Path) -> Path:
    """labels/features/<corpus>.npy: [mean over the episode | last frame] CNN features."""
    from agentalign.models.checkpoint import load_policy

    out = labels / FEATURES / f"{corpus.folder.name}.npy"
    if out.exists():
        found = np.load(out, mmap_mode="r")
        if found.shape[0] == corpus.num_episodes:
            return out
    model, _ = load_policy(encoder)
    rows = []
    for e in range(corpus.num_episodes):
        frames = torch.from_numpy(np.ascontiguousarray(corpus.episode(e)["frames"]))
        encoded = torch.cat([model.encode_frames(frames[i:i + 256][None])[0]
                             for i in range(0, len(frames), 256)])
        rows.append(torch.cat([encoded.mean(0), encoded[-1]]).float().numpy())
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda f: np.save(f, np.stack(rows).astype(np.float32)))
    return out


def load_features(labels: Path, corpus: str) -> np.ndarray | None:
    path = labels / FEATURES / f"{corpus}.npy"
    return np.load(path) if path.exists() else None
