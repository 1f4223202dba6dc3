"""`agentalign label`: roll out the SFT agent, store the runs as corpora, pair them and label
the pairs with the synthetic labeller, in a label store (`preferences.LabelStore`).

A target is a designer intent by name (`envs.intents`: the packaged configs/intents.yaml, or
`intents`, a file of one's own). The pads, `left`, `middle` and `right`, are labelled by
`SyntheticLabeller` from each episode's summary, exactly as before intents existed; any other
intent by `IntentLabeller` from each episode's track (every stored position, then the final
one), with the same temperature and a seed of its own. The metrics record each such intent's
definition, and a rerun that defines a labelled name otherwise is refused: its labels would
mix two intents under one name.

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

import dataclasses
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentalign.atomic import write_json_atomic
from agentalign.data.shards import FORMAT_VERSION, MANIFEST, Corpus, Episode, write_shard
from agentalign.envs.intents import (
    Intent,
    IntentLabeller,
    Track,
    intent_by_name,
    track_from_episode,
)
from agentalign.envs.layout import load_layout
from agentalign.errors import UserError
from agentalign.lifecycle import StageRun, result_from
from agentalign.rollout import Actor, PolicyActor, training_starts, without_anywhere
from agentalign.rollout.cluster import Cluster, play_on, pool_for
from agentalign.rollout.starts import along_starts
from agentalign.rollout.trajectories import reference_states
from agentalign.spec import MAX_DECISIONS, PADS
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
    intents: dict[str, dict[str, str]] | None = None  # targets other than pads: description,
    # definition (absent when every target is a pad, so a pad run's metrics are as before)


def split_plan(settings: LabelSettings) -> dict[str, tuple[int, int, float, float]]:
    """Per split: rollouts, pairs and the shares of them started anywhere on the island and
    along the policy's own runs."""
    plan = {"train": (settings.train_episodes, settings.pairs, settings.anywhere,
                      settings.along),
            "heldout": (settings.heldout_episodes, settings.heldout_pairs, 0.0, 0.0)}
    if settings.anywhere_heldout_episodes:
        plan["heldout_anywhere"] = (settings.anywhere_heldout_episodes, settings.heldout_pairs,
                                    1.0, 0.0)
    return plan


def record_rollouts(actor: Actor, out: Path, episodes: int, seed: int, *, layout: str,
                    num_envs: int, source: dict[str, Any], progress: bool = True,
                    env: str = "island", obs: tuple[int, int] = (64, 64),
                    anywhere: float = 0.0, anywhere_edge: float = 1.5, along: float = 0.0,
                    along_episodes: int = 256, reference: Actor | None = None,
                    cluster: Cluster | None = None) -> Corpus:
    """Play `episodes` episodes with `actor` from the game's spawns (a share `anywhere` of them
    from anywhere on the island, a share `along` from states that `along_episodes` runs of
    `reference`, default `actor`, pass through: rollout.starts.along_starts) and write them
    as a corpus at `out`, one shard per
    SHARD_EPISODES episodes (so frames never pile up in memory), each shard's start kinds in its
    metadata. A finished corpus with the same source is reused. With `cluster`, Ray actors
    play each shard's episodes (the same episodes: rollout.cluster)."""
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("source") != source:
            raise UserError(f"label: {out} holds rollouts of other settings; use another --out")
        if manifest.get("complete"):
            return Corpus(out)
    out.mkdir(parents=True, exist_ok=True)
    island = load_layout(layout)
    starts = training_starts(island, episodes, seed, 0.5, anywhere, anywhere_edge)
    manifest = {"format_version": FORMAT_VERSION, "source": source, "shards": []}
    with pool_for(cluster) as where:  # one set of actors for every shard
        if along:
            visited = reference_states(
                reference or actor, island, along_episodes, seed, num_envs=num_envs, obs=obs,
                max_steps=MAX_DECISIONS, spawn_jitter=0.5, min_edge=anywhere_edge, env=env,
                where=where)
            starts = along_starts(starts, visited, along, seed)
        for index, first in enumerate(range(0, episodes, SHARD_EPISODES)):
            part = slice(first, min(first + SHARD_EPISODES, episodes))
            chunk = starts.part(part)
            options = dict(num_envs=num_envs, layout=layout, height=obs[0], width=obs[1],
                           seed=seed * 1009 + index, record_frames=len(chunk), progress=progress,
                           env=env, stage="label")
            played = play_on(where, actor, chunk, **options)
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


def _final_positions(corpus: Corpus) -> list[list[float]]:
    """Each episode's position after its last decision, kept in the shard metadata."""
    finals = [p for shard in corpus.shards
              for p in json.loads(shard.metadata.get("final_positions", "null")) or []]
    if len(finals) != corpus.num_episodes:
        raise UserError(f"label: corpus {corpus.folder} lacks final positions; it was not "
                        "written by `agentalign label`")
    return finals


def summaries(corpus: Corpus) -> list[TrajectorySummary]:
    """What the labeller may know of each episode of a rollout corpus."""
    finals = _final_positions(corpus)
    return [TrajectorySummary(int(o), (float(p[0]), float(p[1])), int(n))
            for o, p, n in zip(corpus.episodes["outcomes"], finals, corpus.episodes["lengths"],
                               strict=True)]


def tracks(corpus: Corpus) -> list[Track]:
    """What an intent reads of each episode of a rollout corpus: the position before each
    decision (stored per step; no frame is decoded), then the final one (shard metadata)."""
    finals = iter(_final_positions(corpus))
    outcomes = iter(corpus.episodes["outcomes"])
    found = []
    for shard in corpus.shards:
        positions = shard.arrays["positions"]
        for i in range(shard.num_episodes):
            steps = {"positions": positions[shard.episode_slice(i)]}
            found.append(track_from_episode(steps, int(next(outcomes)), next(finals)))
    return found


def intent_seed(seed: int, target: str) -> int:
    """The labeller's seed for a target: a pad's as before (seed + its index), any other
    intent's from its name, so it does not move when a file gains or loses intents."""
    return seed + PADS.index(target) if target in PADS else seed + zlib.crc32(target.encode())


def target_intents(targets: list[str], intents: str | Path | None, layout: str
                   ) -> dict[str, Intent]:
    """Each target's intent, by name from the intents file (default: the packaged one); an
    unknown name is a one-line error naming the file and the intents it holds."""
    return {t: intent_by_name(t, intents, layout) for t in targets}


def make_labels(actor: Actor, out: str | Path, targets: list[str], settings: LabelSettings,
                *, source: dict[str, Any], progress: bool = True,
                obs: tuple[int, int] = (64, 64), intents: str | Path | None = None,
                cluster: Cluster | None = None) -> dict[str, Any]:
    """Roll out with `actor` (or reuse the rollouts), pair and label for `targets` (intent
    names of `intents`, default: the packaged file); returns the summary (metrics.json).
    Targets add up: a rerun labels only those the store lacks."""
    from agentalign.train.distributed import cpu_settings

    targets = list(dict.fromkeys(targets))
    if not targets:
        raise UserError("label: give at least one --target")
    wanted = target_intents(targets, intents, settings.layout)
    defined = {t: {"description": i.description, "definition": _definition(i)}
               for t, i in wanted.items() if t not in PADS}
    out = Path(out)
    clock = time.perf_counter()
    life = StageRun(out, "label", {"settings": settings.identity(), "source": source})
    done = life.finished()
    before = dict((done or {}).get("intents") or {})
    for t, d in defined.items():
        if t in before and before[t]["definition"] != d["definition"]:
            raise UserError(f"label: {out} holds labels for intent {t!r} as "
                            f"{before[t]['definition']}, not {d['definition']}; give the "
                            "changed intent another name, or use another --out")
    if done is not None and set(targets) <= set(done["targets"]):
        return life.skip(done)
    life.claim()
    layout = load_layout(settings.layout)
    pads = [p.position for p in layout.pads]
    store = LabelStore(out / STORE, create=True)
    result: dict[str, Any] = {"splits": {}, "targets": dict(done["targets"]) if done else {}}
    if before or defined:  # only then: a run of pads keeps the metrics of before
        result["intents"] = {**before, **defined}
    try:
        trajectories: dict[str, tuple[list[int], list[TrajectorySummary]]] = {}
        intent_tracks: dict[str, list[Track]] = {}
        plan = split_plan(settings)
        for split, (n, _, anywhere, along) in plan.items():
            folder, seed = SPLITS[split].folder, settings.seed + SPLITS[split].seed_offset
            with cpu_settings(settings.num_threads or torch.get_num_threads()):
                corpus = record_rollouts(
                    actor, out / folder, n, seed, layout=settings.layout,
                    num_envs=settings.num_envs,
                    source=without_anywhere({
                        **source, "split": split, "episodes": n, "seed": seed,
                        "greedy": settings.greedy, "anywhere": anywhere,
                        "anywhere_edge": settings.anywhere_edge, "along": along,
                        "along_episodes": settings.along_episodes}),
                    progress=progress, env=settings.env, obs=obs, anywhere=anywhere,
                    anywhere_edge=settings.anywhere_edge, along=along,
                    along_episodes=settings.along_episodes, cluster=cluster)
            ids = store.add_trajectories(folder, range(corpus.num_episodes),
                                         SPLITS[split].store_split)
            trajectories[split] = (ids, summaries(corpus))
            if defined:
                intent_tracks[split] = tracks(corpus)
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
            labelled = _label_target(store, target, wanted[target], settings, pads,
                                     trajectories, intent_tracks, pair_ids)
            if not (target in result["targets"] and all(v.get("reused")
                                                        for v in labelled.values())):
                result["targets"][target] = labelled
        result["counts"] = store.counts()
    finally:
        store.close()
    result["seconds"] = time.perf_counter() - clock
    return life.finish(result)


def _definition(intent: Intent) -> str:
    """What an intent's labels depend on: its parameters, not the wording of its description."""
    return repr(dataclasses.replace(intent, description="-"))


def _label_target(store: LabelStore, target: str, intent: Intent, settings: LabelSettings,
                  pads: list[tuple[float, float]],
                  trajectories: dict[str, tuple[list[int], list[TrajectorySummary]]],
                  intent_tracks: dict[str, list[Track]],
                  pair_ids: dict[str, list[tuple[int, int, int]]]) -> dict[str, Any]:
    """Label every pair of every split for one target, unless the store already has them: a
    pad by SyntheticLabeller on summaries (as always), another intent by IntentLabeller on
    tracks."""
    done: dict[str, Any] = {}
    seed = intent_seed(settings.seed, target)
    labeller: SyntheticLabeller | IntentLabeller
    if target in PADS:
        labeller = SyntheticLabeller(target, pads, settings.temperature, seed=seed)
    else:
        labeller = IntentLabeller(intent, settings.temperature, seed=seed)
    for split, pairs in pair_ids.items():
        have = store.db.execute(
            "SELECT COUNT(*) FROM labels l JOIN pairs p ON p.id = l.pair JOIN trajectories t ON "
            "t.id = p.first WHERE l.target = ? AND t.corpus = ? AND l.source = 'synthetic'",
            (target, SPLITS[split].folder)).fetchone()[0]
        if have:
            done[split] = {"labels": int(have), "ties": None, "reused": True}
            continue
        episodes: list[Any] = (trajectories[split][1] if target in PADS
                               else intent_tracks[split])
        labels, ties, easy = [], 0, 0
        for row, a, b in pairs:
            choice = labeller.prefer(episodes[a], episodes[b])
            if choice is None:
                ties += 1
                continue
            labels.append((row, choice))
            easy += episodes[a].outcome != episodes[b].outcome
        add_labels(store, labels, source="synthetic", labeller=labeller.labeller_id,
                   target=target)
        done[split] = {"labels": len(labels), "ties": ties, "easy": easy,
                       "hard": len(labels) - easy}
    return done


def run(settings: LabelSettings, policy: str | Path, out: str | Path, targets: list[str], *,
        intents: str | Path | None = None, progress: bool = True,
        cluster: Cluster | None = None) -> LabelResult:
    """`agentalign label`: the SFT policy at `policy` acts, sampling its actions; `targets`
    are intent names of `intents` (default: the packaged configs/intents.yaml); with `cluster`,
    on Ray actors (the same rollouts)."""
    from agentalign.models.checkpoint import load_policy

    target_intents(targets, intents, settings.layout)  # an unknown name fails before loading
    model, info = load_policy(policy)
    actor = PolicyActor(model, greedy=settings.greedy)
    source = {"policy": info.get("sha256"), "stage": info.get("stage")}
    result = make_labels(actor, out, targets, settings, source=source, progress=progress,
                         obs=(model.config.obs_height, model.config.obs_width), intents=intents,
                         cluster=cluster)
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
        about = (result.intents or {}).get(target)
        name = f"{target} ({about['description']})" if about else target
        lines.append(f"target {name}: " + ", ".join(parts))
    lines.append(f"({result.seconds:.1f} s)")
    return "\n".join(lines)
