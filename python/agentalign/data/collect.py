"""`agentalign collect`: record the gameplay corpus (or the curated demos) into shards.

Shard i is played from the seed pair (seed, i), so the corpus does not depend on how many
workers made it or how often it was interrupted: a rerun collects only the shards the manifest
does not list yet, and a half-written shard never becomes visible (atomic rename).
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode
from tqdm import tqdm

from agentalign import __version__
from agentalign.atomic import remove_stale_temporaries, write_json_atomic
from agentalign.data.players import PLAYER_TYPES, Population
from agentalign.data.shards import CODECS, FORMAT_VERSION, MANIFEST, Episode, write_shard
from agentalign.envs.factory import check_env_spec, make_env
from agentalign.envs.layout import load_layout
from agentalign.errors import ConfigError, CorpusError
from agentalign.spec import OUTCOMES, RUNNING

# Keys that change what is recorded; a resumed corpus must agree on them.
CONTENT_KEYS = ("population", "episodes", "shard_episodes", "seed", "layout", "height", "width",
                "spawn_jitter", "players", "num_envs", "frames_codec", "compression_level")


def check_config(config: dict[str, Any]) -> None:
    for key in ("episodes", "shard_episodes", "num_envs", "workers", "height", "width"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"collect: {key} must be a positive integer, got {value!r}")
    if config["frames_codec"] not in CODECS:
        raise ConfigError(f"collect: frames_codec must be one of {list(CODECS)}, "
                          f"got {config['frames_codec']!r}")
    if config["compression_level"] not in range(10):
        raise ConfigError("collect: compression_level must be an integer 0..9")
    check_env_spec(config.get("env", "island"))
    if config.get("env") == "unity" and config["workers"] != 1:
        raise ConfigError("collect: the Unity editor serves one connection; use --workers 1 "
                          "(or headless builds: --env unity:PATH)")
    if config["population"] not in config["players"]:
        raise ConfigError(f"collect: population {config['population']!r} is not a section of "
                          f"the players config ({sorted(config['players'])})")
    layout = load_layout(config["layout"])
    Population(config["players"][config["population"]], layout,
               f"players.{config['population']}")


def collect_shard(index: int, config: dict[str, Any], out: Path) -> dict[str, Any]:
    """Play `shard_episodes` episodes (fewer for the last shard) and write shard `index`."""
    layout = load_layout(config["layout"])
    population = Population(config["players"][config["population"]], layout)
    rng = np.random.default_rng([config["seed"], index])
    wanted = min(config["shard_episodes"], config["episodes"] - index * config["shard_episodes"])
    n = min(config["num_envs"], wanted)
    env = make_env(config.get("env", "island"), n, layout=layout, height=config["height"],
                   width=config["width"], autoreset_mode=AutoresetMode.SAME_STEP,
                   spawn_jitter=config["spawn_jitter"])
    obs, info = env.reset(seed=int(rng.integers(2**31)))
    players = [population.sample(rng) for _ in range(n)]
    active = np.ones(n, dtype=bool)
    started = n
    buffers: list[dict[str, list]] = [_empty_buffer() for _ in range(n)]
    episodes: list[Episode] = []
    while len(episodes) < wanted:
        actions = np.zeros((n, 2), dtype=np.int64)
        for i in np.flatnonzero(active):
            actions[i] = players[i].act(info["position"][i], info["heading"][i])
            buf = buffers[i]
            buf["frames"].append(obs[i])
            buf["actions"].append(actions[i])
            buf["positions"].append(info["position"][i])
            buf["headings"].append(info["heading"][i])
        obs, _, terminated, truncated, info = env.step(actions)
        for i in np.flatnonzero((terminated | truncated) & active):
            final = info["final_info"]
            if final["outcome"][i] == RUNNING:  # cut short by an engine restart: play again
                buffers[i], players[i] = _empty_buffer(), population.sample(rng)
                continue
            buf, player = buffers[i], players[i]
            episodes.append(Episode(
                frames=np.stack(buf["frames"]), actions=np.stack(buf["actions"]),
                positions=np.stack(buf["positions"]), headings=np.array(buf["headings"]),
                outcome=int(final["outcome"][i]), player=player.kind_index,
                spawn=int(final["spawn"][i]), target=player.target))
            buffers[i] = _empty_buffer()
            if started < wanted:
                players[i] = population.sample(rng)
                started += 1
            else:
                active[i] = False
    env.close()  # the unity backend's builds quit here
    metadata = {"player_types": list(PLAYER_TYPES), "layout": layout.digest,
                "population": config["population"], "shard_index": index,
                "agentalign": __version__,
                **({"env": config["env"]} if config.get("env", "island") != "island" else {})}
    entry = write_shard(out / f"shard-{index:05d}.safetensors", episodes, metadata,
                        codec=config["frames_codec"], level=config["compression_level"])
    by_player = np.zeros((len(PLAYER_TYPES), len(OUTCOMES)), dtype=np.int64)
    for e in episodes:
        by_player[e.player, e.outcome] += 1
    entry["index"] = index
    entry["outcomes_by_player"] = {k: row.tolist() for k, row in zip(PLAYER_TYPES, by_player,
                                                                       strict=True) if row.sum()}
    return entry


def _empty_buffer() -> dict[str, list]:
    return {"frames": [], "actions": [], "positions": [], "headings": []}


def collect(config: dict[str, Any], out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Collect (or finish collecting) the corpus described by `config` into `out`."""
    check_config(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    content = {k: config[k] for k in CONTENT_KEYS}
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            raise CorpusError(f"corpus {out}: {MANIFEST} is not valid JSON; delete the folder "
                              "or choose another --out") from None
        if manifest.get("config") != content:
            changed = sorted(k for k in CONTENT_KEYS if manifest.get("config", {}).get(k)
                             != content[k])
            raise CorpusError(f"corpus {out} was collected with different settings ({changed});"
                              " rerun with the same options to resume, or choose another --out")
    else:
        manifest = {"format_version": FORMAT_VERSION, "agentalign": __version__,
                    "config": content, "shards": []}
    num_shards = math.ceil(config["episodes"] / config["shard_episodes"])
    # A listed shard counts as done only if its file is there at its recorded size; anything
    # else (deleted, truncated) is collected again, identically, from its seed.
    done = {e["index"] for e in manifest["shards"] if (out / e["file"]).exists()
            and (out / e["file"]).stat().st_size == e["bytes"]}
    manifest["shards"] = [e for e in manifest["shards"] if e["index"] in done]
    todo = [i for i in range(num_shards) if i not in done]
    started = time.perf_counter()
    bar = tqdm(total=config["episodes"], unit="ep", desc="collect", disable=not progress,
               initial=sum(e["episodes"] for e in manifest["shards"]))
    new_steps = 0
    with ProcessPoolExecutor(max_workers=min(config["workers"], max(len(todo), 1))) as pool:
        pending = {pool.submit(collect_shard, i, config, out) for i in todo}
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    entry = future.result()
                    manifest["shards"].append(entry)
                    manifest["shards"].sort(key=lambda e: e["index"])
                    write_json_atomic(manifest_path, manifest)
                    new_steps += entry["steps"]
                    bar.update(entry["episodes"])
                    rate = new_steps / (time.perf_counter() - started)
                    bar.set_postfix(frames_per_s=f"{rate:.0f}")
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        finally:
            bar.close()
    summary = summarise(manifest)
    summary["seconds"] = time.perf_counter() - started
    summary["new_steps"] = new_steps
    manifest["summary"] = {k: v for k, v in summary.items() if k not in ("seconds", "new_steps")}
    write_json_atomic(manifest_path, manifest)
    return summary


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


def format_summary(summary: dict[str, Any]) -> str:
    """A table of outcome rates per player type, for the terminal."""
    cols = ["episodes", *OUTCOMES]
    lines = [f"{'player':18s}" + "".join(f"{c:>10s}" for c in cols)]
    for kind, row in summary["by_player"].items():
        lines.append(f"{kind:18s}{row['episodes']:>10d}"
                     + "".join(f"{100 * row[o]:>9.1f}%" for o in OUTCOMES))
    lines.append(f"{'all':18s}{summary['episodes']:>10d}"
                 + "".join(f"{100 * summary['outcomes'][o]:>9.1f}%" for o in OUTCOMES))
    lines.append(f"reached a pad: {100 * summary['any_pad']:.1f}%  "
                 f"frames: {summary['steps']:,}  disk: {summary['bytes'] / 1e6:.0f} MB "
                 f"({summary['bytes_per_frame']:.0f} B/frame)")
    return "\n".join(lines)
