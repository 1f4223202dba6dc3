"""The pool of rollouts the studio draws pairs from, and each rollout's features.

A pool corpus is a rollout corpus like `agentalign label`'s (frames, actions, positions, outcome
per episode), recorded into the studio's label folder: the SFT agent from the game's spawns, the
SFT agent from anywhere on the walkable island (so behaviour the SFT agent rarely shows from its
spawns still appears in pairs), the pre-trained agent, and each aligned personality after its
align, also handed over to the pre-trained agent part of the way (so runs that take the
personality's route and then do something else appear: "by the campfire, then the middle pad"
after a personality that learnt "by the campfire"). Features: what the ensemble that chooses
pairs reads of each episode (pixels only, never positions or outcomes), one of two kinds
(`pool.features`):
- `colour` (the default): per frame, the share of pixels in each of 4 x 4 x 4 colour bins, then
  max-pooled ("how close did the campfire's or a pad's colour ever come"), averaged and taken
  at the last frame. On this island landmarks, pads, sand and sea have distinct colours, and a
  linear ensemble on these 192 numbers orders pairs better than on the CNN's, most of all pairs
  that differ in a landmark passed (the intent below, seed 0's pool, 300 random labels: 90.4%
  against 86.2% of 500 held-out pairs, 9 against 36 errors among the 294 pairs whose runs differ
  in a part of the intent done; more in docs/results.md, "Colour features for the ensemble").
- `encoder`: the SFT agent's CNN encoding of every frame, averaged and max-pooled over the
  episode, beside the last frame's. The max ("was X ever in view") is there for intents about
  the way (an earlier measure, other draws, same intent, 500 pool runs, 300 random labels, 500
  common held-out pairs, seed 0: mean + last 83.0%, with the max 85.2%).
Each kind has its own file, so switching kinds computes the missing ones (the pool job) and
keeps the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentalign.atomic import write_atomic
from agentalign.data.shards import Corpus

FEATURES = "features"  # folder beside the corpora: <corpus>.<version>.npy, float32 [N, D]
VERSIONS = {"encoder": "v2",  # CNN: mean | max | last, D = 3 * n_embd
            "colour": "colour-v1"}  # colour-bin shares: max | mean | last, D = 3 * LEVELS ** 3
LEVELS = 4  # colour levels per channel


@dataclass(frozen=True)
class PoolPart:
    """One corpus to record: whose policy plays, from which starts."""

    kind: str  # sft, anywhere, base, along, aligned, handoff
    policy: Path
    episodes: int
    seed: int
    anywhere: float = 0.0
    along: float = 0.0  # share started along the runs of `reference` (rollout.starts)
    reference: Path | None = None  # whose runs' states: default `policy`
    personality: str | None = None
    tag: str | None = None  # the align job an aligned part comes from: each align its own corpus
    then: Path | None = None  # who takes over after a handoff (rollout.actors.HandoffActor)
    handoff_within: int = 0  # the handoff's decision: uniform in 0..handoff_within

    @property
    def corpus(self) -> str:
        who = f"-{self.personality}" if self.personality else ""
        job = f"-{self.tag}" if self.tag else ""
        return f"pool-{self.kind}{who}{job}-s{self.seed}"


def record(part: PoolPart, labels: Path, *, layout: str = "jumppad_island", num_envs: int = 16,
           progress: bool = False) -> Corpus:
    """Record `part` into labels/<corpus> (a finished corpus is reused: resumable)."""
    from agentalign.models.checkpoint import load_policy
    from agentalign.rollout import HandoffActor, PolicyActor
    from agentalign.train.label import record_rollouts

    model, info = load_policy(part.policy)
    source = {"policy": info.get("sha256"), "stage": info.get("stage"), "studio": part.kind,
              "anywhere": part.anywhere}
    reference = None
    if part.along:  # the key only then: the pools recorded before it stay valid
        source["along"] = part.along
        if part.reference is not None:
            ref, ref_info = load_policy(part.reference)
            reference = PolicyActor(ref)
            source["along_reference"] = ref_info.get("sha256")
    actor: Any = PolicyActor(model)
    if part.then is not None:
        then, then_info = load_policy(part.then)
        actor = HandoffActor(actor, PolicyActor(then), (0, part.handoff_within))
        source["handoff"] = {"then": then_info.get("sha256"), "within": part.handoff_within}
    return record_rollouts(actor, labels / part.corpus, part.episodes, part.seed,
                           layout=layout, num_envs=num_envs, source=source, progress=progress,
                           obs=(model.config.obs_height, model.config.obs_width),
                           anywhere=part.anywhere, along=part.along, reference=reference)


def write_features(corpus: Corpus, encoder: Path, labels: Path, kind: str) -> Path:
    """labels/features/<corpus>.<version>.npy for `kind` (module doc); reused when complete."""
    out = feature_path(labels, corpus.folder.name, kind)
    if out.exists():
        found = np.load(out, mmap_mode="r")
        if found.shape[0] == corpus.num_episodes:
            return out
    if kind == "colour":
        rows = [colour_features(corpus.episode(e)["frames"]) for e in range(corpus.num_episodes)]
    else:
        import torch

        from agentalign.models.checkpoint import load_policy

        model, _ = load_policy(encoder)
        with torch.no_grad():
            rows = [_episode_features(model, corpus, e) for e in range(corpus.num_episodes)]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda f: np.save(f, np.stack(rows).astype(np.float32)))
    return out


def colour_features(frames: np.ndarray) -> np.ndarray:
    """[max | mean | last] over frames [T, H, W, 3] uint8 of each frame's colour-bin shares."""
    bins = (frames.astype(np.int64) * LEVELS) >> 8  # 0..LEVELS-1 per channel
    index = (bins[..., 0] * LEVELS + bins[..., 1]) * LEVELS + bins[..., 2]
    steps, size = len(frames), LEVELS ** 3
    offsets = np.arange(steps)[:, None] * size
    shares = np.bincount((index.reshape(steps, -1) + offsets).ravel(), minlength=steps * size)
    shares = shares.reshape(steps, size) / index[0].size
    return np.concatenate([shares.max(0), shares.mean(0), shares[-1]]).astype(np.float32)


def _episode_features(model: Any, corpus: Corpus, e: int) -> np.ndarray:
    import torch

    frames = torch.from_numpy(np.ascontiguousarray(corpus.episode(e)["frames"]))
    encoded = torch.cat([model.encode_frames(frames[i:i + 256][None])[0]
                         for i in range(0, len(frames), 256)])
    return torch.cat([encoded.mean(0), encoded.max(0).values, encoded[-1]]).float().numpy()


def feature_kind(pool: dict[str, Any]) -> str:
    """A job spec's feature kind; a spec recorded before `pool.features` existed: the CNN's
    (what that code wrote)."""
    return pool.get("features", "encoder")


def feature_path(labels: Path, corpus: str, kind: str) -> Path:
    return labels / FEATURES / f"{corpus}.{VERSIONS[kind]}.npy"


def load_features(labels: Path, corpus: str, kind: str) -> np.ndarray | None:
    path = feature_path(labels, corpus, kind)
    return np.load(path) if path.exists() else None
