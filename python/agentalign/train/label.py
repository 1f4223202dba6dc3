"""`agentalign label`: roll out the SFT agent, store the runs as corpora, pair them and label
the pairs with the synthetic labeller, in a label store (`preferences.LabelStore`).

Layout of the output folder:
  rollouts-train/     corpus (shard format) of the episodes whose pairs are training labels
  rollouts-heldout/   corpus of separate rollouts (another seed): held-out pairs only
  rollouts-heldout-anywhere/  held-out rollouts from starts anywhere on the island (another
                      seed; `anywhere_heldout_episodes`): the held-out accuracy from other starts
  labels.sqlite       trajectories (corpus, episode, split), pairs and labels per target

Episodes are stored as collect stores them: one frame per decision (the observation the action
was chosen on), its action, position and heading (headings are not known to the rollout loop and
are stored as 0), outcome, spawn; player 0 ("policy"), target -1. The final position (after the
last decision), which the labeller needs and the per-step arrays do not hold, is kept in each
shard's metadata (`final_positions`), so a later run can label the same pairs for another target.

Rerunning with the same folder reuses finished corpora and pairs and labels only the targets the
store lacks; a folder made with other settings is refused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentalign.atomic import write_json_atomic
from agentalign.data.shards import FORMAT_VERSION, MANIFEST, Corpus, Episode, write_shard
from agentalign.envs.layout import load_layout
from agentalign.errors import UserError
from agentalign.lifecycle import StageRun, result_from
from agentalign.rollout import Actor, PolicyActor, play, training_starts, without_anywhere
from agentalign.spec import PADS, check_pad
from agentalign.train.label_config import LabelSettings
from agentalign.train.preferences import (
    ANYWHERE_CORPUS,
    STORE,
    LabelStore,
    SyntheticLabeller,
    TrajectorySummary,
    add_labels,
    sample_pairs,
)


@dataclass(frozen=True)
class Split:
    """One corpus of rollouts and its pairs: where it lives and what seeds it."""

    folder: str
    seed_offset: int  # its rollouts use seed + seed_offset
    pair_seed: int  # its pairs are drawn with seed + pair_seed
    store_split: str  # the store's split: held-out pairs from anywhere are told apart by corpus


SPLITS = {"train": Split("rollouts-train", 0, 1, "train"),
          "heldout": Split("rollouts-heldout", 1_000_003, 2, "heldout"),
          "heldout_anywhere": Split(ANYWHERE_CORPUS, 2_000_003, 3, "heldout")}
SHARD_EPISODES = 100


@dataclass(frozen=True)
class LabelResult:
    """What a label folder holds (its metrics.json)."""

    splits: dict[str, dict[str, Any]]  # per split: corpus, episodes, outcome counts, pairs
    targets: dict[str, dict[str, Any]]  # per target and split: labels, ties, easy, hard
    counts: dict[str, int]  # the store's trajectories, pairs and labels
    seconds: float


def split_plan(settings: LabelSettings) -> dict[str, tuple[int, int, float]]:
    """Per split: rollouts, pairs and the share of them started anywhere on the island."""
    plan = {"train": (settings.train_episodes, settings.pairs, settings.anywhere),
            "heldout": (settings.heldout_episodes, settings.heldout_pairs, 0.0)}
    if settings.anywhere_heldout_episodes:
        plan["heldout_anywhere"] = (settings.anywhere_heldout_episodes, settings.heldout_pairs,
                                    1.0)
    return plan


def record_rollouts(actor: Actor, out: Path, episodes: int, seed: int, *, layout: str,
                    num_envs: int, source: dict[str, Any], progress: bool = True,
                    env: str = "island", obs: tuple[int, int] = (64, 64),
                    anywhere: float = 0.0, anywhere_edge: float = 1.5) -> Corpus:
    """Play `episodes` episodes with `actor` from the game's spawns (a share `anywhere` of them
    from anywhere on the island) and write them as a corpus at `out`, one shard per
    SHARD_EPISODES episodes (so frames never pile up in memory), each shard's start kinds in its
    metadata. A finished corpus with the same source is reused."""
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("source") != source:
            raise UserError(f"label: {out} holds rollouts of other settings; use another --out")
        if manifest.get("complete"):
            return Corpus(out)
    out.mkdir(parents=True, exist_ok=True)
    starts = training_starts(load_layout(layout), episodes, seed, 0.5, anywhere, anywhere_edge)
    manifest = {"format_version": FORMAT_VERSION, "source": source, "shards": []}
    for index, first in enumerate(range(0, episodes, SHARD_EPISODES)):
        part = slice(first, min(first + SHARD_EPISODES, episodes))
        chunk = starts.part(part)
        played = play(actor, chunk, num_envs=num_envs, layout=layout, height=obs[0],
                      width=obs[1], seed=seed * 1009 + index, record_frames=len(chunk),
                      progress=progress, env=env, stage="label")
        recorded = [Episode(frames=e.frames[:e.length], actions=e.actions,
                            positions=e.positions[:e.length],
                            headings=np.zeros(e.length, dtype=np.float32), outcome=e.outcome,
                            player=0, spawn=e.spawn, target=-1) for e in played.episodes]
        final = [[float(v) for v in e.positions[-1]] for e in played.episodes]
        entry = write_shard(out / f"shard-{index:05d}.safetensors", recorded,
                            {"player_types": ["policy"], "final_positions": final,
                             "start_kinds": chunk.kinds.tolist(), "source": source})
        manifest["shards"].append({**entry, "index": index})
        write_json_atomic(manifest_path, manifest)
    manifest["complete"] = True
    write_json_atomic(manifest_path, manifest)
    return Corpus(out)


def summaries(corpus: Corpus) -> list[TrajectorySummary]:
    """What the labeller may know of each episode of a rollout corpus."""
    finals = [p for shard in corpus.shards
              for p in json.loads(shard.metadata.get("final_positions", "null")) or []]
    if len(finals) != corpus.num_episodes:
        raise UserError(f"label: corpus {corpus.folder} lacks final positions; it was not "
                        "written by `agentalign label`")
    return [TrajectorySummary(int(o), (float(p[0]), float(p[1])), int(n))
            for o, p, n in zip(corpus.episodes["outcomes"], finals, corpus.episodes["lengths"],
                               strict=True)]


def make_labels(actor: Actor, out: str | Path, targets: list[str], settings: LabelSettings,
                *, source: dict[str, Any], progress: bool = True,
                obs: tuple[int, int] = (64, 64)) -> dict[str, Any]:
    """Roll out with `actor` (or reuse the rollouts), pair and label for `targets`; returns the
    summary (metrics.json). Targets add up: a rerun labels only those the store lacks."""
    from agentalign.train.distributed import cpu_settings

    targets = list(dict.fromkeys(targets))
    if not targets:
        raise UserError("label: give at least one --target")
    for target in targets:
        check_pad(target)
    out = Path(out)
    clock = time.perf_counter()
    life = StageRun(out, "label", {"settings": settings.identity(), "source": source})
    done = life.finished()
    if done is not None and set(targets) <= set(done["targets"]):
        return life.skip(done)
    life.claim()
    layout = load_layout(settings.layout)
    pads = [p.position for p in layout.pads]
    store = LabelStore(out / STORE, create=True)
    result: dict[str, Any] = {"splits": {}, "targets": dict(done["targets"]) if done else {}}
    try:
        trajectories: dict[str, tuple[list[int], list[TrajectorySummary]]] = {}
        plan = split_plan(settings)
        for split, (n, _, anywhere) in plan.items():
            folder, seed = SPLITS[split].folder, settings.seed + SPLITS[split].seed_offset
            with cpu_settings(settings.num_threads or torch.get_num_threads()):
                corpus = record_rollouts(
                    actor, out / folder, n, seed, layout=settings.layout,
                    num_envs=settings.num_envs,
                    source=without_anywhere({
                        **source, "split": split, "episodes": n, "seed": seed,
                        "greedy": settings.greedy, "anywhere": anywhere,
                        "anywhere_edge": settings.anywhere_edge}),
                    progress=progress, env=settings.env, obs=obs, anywhere=anywhere,
                    anywhere_edge=settings.anywhere_edge)
            ids = store.add_trajectories(folder, range(corpus.num_episodes),
                                         SPLITS[split].store_split)
            trajectories[split] = (ids, summaries(corpus))
            result["splits"][split] = {
                "corpus": folder, "episodes": corpus.num_episodes,
                "outcomes": np.bincount(corpus.episodes["outcomes"], minlength=5).tolist()}
        pair_ids: dict[str, list[tuple[int, int, int]]] = {}
        for split, (ids, _) in trajectories.items():
            drawn = sample_pairs(len(ids), plan[split][1], settings.seed + SPLITS[split].pair_seed)
            rows = store.add_pairs([(ids[a], ids[b]) for a, b in drawn],
                                   SPLITS[split].store_split)
            pair_ids[split] = [(row, int(a), int(b)) for row, (a, b) in zip(rows, drawn,
                                                                            strict=True)]
            result["splits"][split]["pairs"] = len(rows)
        for target in targets:
            labelled = _label_target(store, target, settings, pads, trajectories, pair_ids)
            if not (target in result["targets"] and all(v.get("reused")
                                                        for v in labelled.values())):
                result["targets"][target] = labelled
        result["counts"] = store.counts()
    finally:
        store.close()
    result["seconds"] = time.perf_counter() - clock
    return life.finish(result)


def _label_target(store: LabelStore, target: str, settings: LabelSettings,
                  pads: list[tuple[float, float]],
                  trajectories: dict[str, tuple[list[int], list[TrajectorySummary]]],
                  pair_ids: dict[str, list[tuple[int, int, int]]]) -> dict[str, Any]:
    """Label every pair of every split for one target, unless the store already has them."""
    done: dict[str, Any] = {}
    labeller = SyntheticLabeller(target, pads, settings.temperature,
                                 seed=settings.seed + PADS.index(target))
    for split, pairs in pair_ids.items():
        have = store.db.execute(
            "SELECT COUNT(*) FROM labels l JOIN pairs p ON p.id = l.pair JOIN trajectories t ON "
            "t.id = p.first WHERE l.target = ? AND t.corpus = ? AND l.source = 'synthetic'",
            (target, SPLITS[split].folder)).fetchone()[0]
        if have:
            done[split] = {"labels": int(have), "ties": None, "reused": True}
            continue
        summary = trajectories[split][1]
        labels, ties, easy = [], 0, 0
        for row, a, b in pairs:
            choice = labeller.prefer(summary[a], summary[b])
            if choice is None:
                ties += 1
                continue
            labels.append((row, choice))
            easy += summary[a].outcome != summary[b].outcome
        add_labels(store, labels, source="synthetic", labeller=labeller.labeller_id,
                   target=target)
        done[split] = {"labels": len(labels), "ties": ties, "easy": easy,
                       "hard": len(labels) - easy}
    return done


def run(settings: LabelSettings, policy: str | Path, out: str | Path, targets: list[str], *,
        progress: bool = True) -> LabelResult:
    """`agentalign label`: the SFT policy at `policy` acts, sampling its actions."""
    from agentalign.models.checkpoint import load_policy

    model, info = load_policy(policy)
    actor = PolicyActor(model, greedy=settings.greedy)
    source = {"policy": info.get("sha256"), "stage": info.get("stage")}
    result = make_labels(actor, out, targets, settings, source=source, progress=progress,
                         obs=(model.config.obs_height, model.config.obs_width))
    return result_from(LabelResult, result)


def summary(result: LabelResult) -> str:
    lines = []
    for split, s in result.splits.items():
        lines.append(f"{split}: {s['episodes']} episodes in {s['corpus']} (outcomes left/middle/"
                     f"right/fell/timeout {s['outcomes']}), {s['pairs']} pairs")
    for target, splits in result.targets.items():
        parts = [f"{split} {v['labels']} labels"
                 + (" (already there)" if v.get("reused") else
                    f" ({v['ties']} ties dropped, {v['easy']} easy / {v['hard']} hard)")
                 for split, v in splits.items()]
        lines.append(f"target {target}: " + ", ".join(parts))
    lines.append(f"({result.seconds:.1f} s)")
    return "\n".join(lines)
