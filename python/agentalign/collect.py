"""`agentalign collect`: record the gameplay corpus (or the curated demos) into shards.

Shard i is played from the seed pair (seed, i) by the one rollout loop (`rollout.loop.play`) on the
environment's own spawns, so the corpus does not depend on how many workers made it or how often
it was interrupted: a rerun collects only the shards the manifest does not list yet, and a
half-written shard never becomes visible (atomic rename).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentalign import __version__, events
from agentalign.atomic import remove_stale_temporaries, write_atomic, write_json_atomic
from agentalign.collect_config import CollectSettings
from agentalign.data.players import PLAYER_TYPES, Population
from agentalign.data.shards import FORMAT_VERSION, MANIFEST, Episode, write_shard
from agentalign.envs.layout import load_layout
from agentalign.errors import CorpusError
from agentalign.lifecycle import StageRun, read_json
from agentalign.rollout import (
    PlayerActor,
    play,
    rollout_env,
    training_starts,
    without_anywhere,
)
from agentalign.rollout.cluster import RESTARTS, Cluster, check_resources, connect
from agentalign.spec import OUTCOMES

# Keys that change what is recorded: the corpus's identity; a resume must agree on them.
CONTENT_KEYS = ("population", "episodes", "shard_episodes", "seed", "layout", "height", "width",
                "spawn_jitter", "players", "num_envs", "frames_codec", "compression_level")


@dataclass(frozen=True)
class CollectResult:
    """What a corpus holds: counts and outcome rates, overall and per player type."""

    episodes: int
    steps: int
    bytes: int
    bytes_per_frame: float
    outcomes: dict[str, float]
    any_pad: float
    by_player: dict[str, dict[str, float]]
    seconds: float  # of this call
    new_steps: int  # frames this call recorded


def collect_shard(index: int, settings: CollectSettings, out: Path) -> dict[str, Any]:
    """Play `shard_episodes` episodes (fewer for the last shard) and write shard `index`."""
    layout = load_layout(settings.layout)
    population = Population(settings.players[settings.population], layout)
    rng = np.random.default_rng([settings.seed, index])
    wanted = min(settings.shard_episodes, settings.episodes - index * settings.shard_episodes)
    rows = min(settings.num_envs, wanted)
    env = rollout_env(settings.env, rows, layout, settings.height, settings.width,
                      spawn_jitter=settings.spawn_jitter)
    env_seed = int(rng.integers(2**31))  # before the players: the shard's stream, in order
    actor = PlayerActor(population, rng=rng)
    # Without `anywhere` the environment draws its own spawn starts (as collect always did).
    starts = training_starts(layout, wanted, env_seed, settings.spawn_jitter, settings.anywhere,
                             settings.anywhere_edge) if settings.anywhere else None
    try:
        played = play(actor, starts, episodes=wanted, env=env, num_envs=rows, layout=layout,
                      height=settings.height, width=settings.width, seed=env_seed,
                      record_frames=wanted, stage="collect")
    finally:
        env.close()  # the unity backend's builds quit here
    episodes = []
    for e in sorted(played.episodes, key=lambda e: e.order):  # in the order they ended
        assert e.frames is not None
        player = actor.by_episode[e.index]
        episodes.append(Episode(frames=e.frames[:e.length], actions=e.actions,
                                positions=e.positions[:e.length], headings=e.headings[:e.length],
                                outcome=e.outcome, player=player.kind_index, spawn=e.spawn,
                                target=player.target))
    metadata = {"player_types": list(PLAYER_TYPES), "layout": layout.digest,
                "population": settings.population, "shard_index": index,
                "agentalign": __version__,
                **({"env": settings.env} if settings.env != "island" else {})}
    entry = write_shard(out / f"shard-{index:05d}.safetensors", episodes, metadata,
                        codec=settings.frames_codec, level=settings.compression_level)
    by_player = np.zeros((len(PLAYER_TYPES), len(OUTCOMES)), dtype=np.int64)
    for e in episodes:
        by_player[e.player, e.outcome] += 1
    entry["index"] = index
    entry["outcomes_by_player"] = {k: row.tolist() for k, row in zip(PLAYER_TYPES, by_player,
                                                                       strict=True) if row.sum()}
    return entry


def run(settings: CollectSettings, out: str | Path, *, progress: bool = True,
        cluster: Cluster | None = None) -> CollectResult:
    """Collect (or finish collecting) the corpus `settings` describe into `out`; with
    `cluster`, Ray workers make the shards (the same shards) and send them here."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    plain = settings.to_dict()
    content = without_anywhere({k: plain[k] for k in (*CONTENT_KEYS, "anywhere",
                                                      "anywhere_edge")})
    stage = StageRun(out, "collect", content, say=False)
    manifest = read_json(out / MANIFEST)
    if (out / MANIFEST).exists() and not isinstance(manifest, dict):
        raise CorpusError(f"corpus {out}: {MANIFEST} is not valid JSON; delete the folder or "
                          "choose another --out")
    if manifest is not None:  # the corpus records what it holds: resume only the same one
        stage.refuse_other(manifest.get("config"), out)
    started = time.perf_counter()
    stage.claim()  # finished or not, the shards are checked below: a damaged one is redone
    if manifest is None:
        manifest = {"format_version": FORMAT_VERSION, "agentalign": __version__,
                    "config": content, "shards": []}
    num_shards = math.ceil(settings.episodes / settings.shard_episodes)
    # A listed shard counts as done only if its file is there at its recorded size; anything
    # else (deleted, truncated) is collected again, identically, from its seed.
    done_shards = {e["index"] for e in manifest["shards"] if (out / e["file"]).exists()
                   and (out / e["file"]).stat().st_size == e["bytes"]}
    manifest["shards"] = [e for e in manifest["shards"] if e["index"] in done_shards]
    todo = [i for i in range(num_shards) if i not in done_shards]
    new_steps = 0
    bar = events.progress("collect", settings.episodes, unit="ep", show=progress,
                          initial=sum(e["episodes"] for e in manifest["shards"]))
    shards = _on_cluster(cluster, todo, settings, out) if cluster is not None else \
        _here(todo, settings, out)
    with bar, contextlib.closing(shards):
        for entry in shards:
            manifest["shards"].append(entry)
            manifest["shards"].sort(key=lambda e: e["index"])
            write_json_atomic(out / MANIFEST, manifest)
            new_steps += entry["steps"]
            bar.update(entry["episodes"])
            rate = new_steps / (time.perf_counter() - started)
            bar.set_postfix(frames_per_s=f"{rate:.0f}")
    summary = summarise(manifest)
    manifest["summary"] = summary
    write_json_atomic(out / MANIFEST, manifest)
    return _result(stage.finish(summary), time.perf_counter() - started, new_steps)


def _here(todo: list[int], settings: CollectSettings, out: Path) -> Iterator[dict[str, Any]]:
    """Collect the shards `todo` in `settings.workers` processes; entries as shards finish."""
    with ProcessPoolExecutor(max_workers=min(settings.workers, max(len(todo), 1))) as pool:
        pending = {pool.submit(collect_shard, i, settings, out) for i in todo}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        finally:
            for future in pending:
                future.cancel()


def _remote_shard(index: int, settings: CollectSettings) -> tuple[dict[str, Any], bytes]:
    """Shard `index` made on a Ray worker: its entry and the shard file's bytes (the frames
    travel compressed, as stored), so no node needs to see the corpus folder."""
    with tempfile.TemporaryDirectory(prefix="agentalign-shard-") as folder:
        entry = collect_shard(index, settings, Path(folder))
        return entry, (Path(folder) / entry["file"]).read_bytes()


def _on_cluster(cluster: Cluster, todo: list[int], settings: CollectSettings, out: Path
                ) -> Iterator[dict[str, Any]]:
    """Collect the shards `todo` as Ray tasks, at most `cluster.workers` at a time; each shard
    is the one `collect_shard` makes here (its streams are the shard's own), written here
    atomically as it arrives. A task lost with its worker or node is run again by Ray."""
    ray = connect(cluster)
    check_resources(ray, cluster)
    task = ray.remote(max_retries=RESTARTS)(_remote_shard).options(
        num_cpus=cluster.cpus, resources=cluster.resources, scheduling_strategy="SPREAD")
    queue, running = list(todo), {}
    try:
        while queue or running:
            while queue and len(running) < cluster.workers:
                index = queue.pop(0)
                running[task.remote(index, settings)] = index
            (ready,), _ = ray.wait(list(running), num_returns=1)
            running.pop(ready)
            entry, data = ray.get(ready)
            write_atomic(out / entry["file"], lambda f, data=data: f.write(data))
            yield entry
    finally:
        for ref in running:
            ray.cancel(ref, force=True)


def _result(summary: dict[str, Any], seconds: float, new_steps: int) -> CollectResult:
    keys = ("episodes", "steps", "bytes", "bytes_per_frame", "outcomes", "any_pad", "by_player")
    return CollectResult(**{k: summary[k] for k in keys}, seconds=seconds, new_steps=new_steps)


def summarise(manifest: dict[str, Any]) -> dict[str, Any]:
    """Totals and outcome rates, overall and per player type."""
    shards = manifest["shards"]
    by_player: dict[str, np.ndarray] = {}
    for e in shards:
        for kind, counts in e["outcomes_by_player"].items():
            by_player[kind] = by_player.get(kind, 0) + np.array(counts)
    total = sum(by_player.values())
    steps = sum(e["steps"] for e in shards)
    nbytes = sum(e["bytes"] for e in shards)
    return {
        "episodes": int(total.sum()), "steps": int(steps), "bytes": int(nbytes),
        "bytes_per_frame": nbytes / max(steps, 1),
        "outcomes": {o: float(c / total.sum()) for o, c in zip(OUTCOMES, total, strict=True)},
        "any_pad": float(total[:3].sum() / total.sum()),
        "by_player": {k: {"episodes": int(v.sum()),
                          **{o: float(c / v.sum()) for o, c in zip(OUTCOMES, v, strict=True)}}
                      for k, v in sorted(by_player.items(), key=lambda kv: -kv[1].sum())},
    }


def summary(result: CollectResult) -> str:
    """A table of outcome rates per player type, for the terminal."""
    cols = ["episodes", *OUTCOMES]
    lines = [f"{'player':18s}" + "".join(f"{c:>10s}" for c in cols)]
    for kind, row in result.by_player.items():
        lines.append(f"{kind:18s}{row['episodes']:>10d}"
                     + "".join(f"{100 * row[o]:>9.1f}%" for o in OUTCOMES))
    lines.append(f"{'all':18s}{result.episodes:>10d}"
                 + "".join(f"{100 * result.outcomes[o]:>9.1f}%" for o in OUTCOMES))
    lines.append(f"reached a pad: {100 * result.any_pad:.1f}%  frames: {result.steps:,}  disk: "
                 f"{result.bytes / 1e6:.0f} MB ({result.bytes_per_frame:.0f} B/frame)")
    lines.append(f"collected {result.new_steps:,} new frames in {result.seconds:.1f} s")
    return "\n".join(lines)
