"""Throughput of the embedded island, against MiniWorld measured in the same run.

Prints rendered 64x64 environment steps per second for batches of 1, 16 and 64 environments in
one and two processes (random actions, autoreset included), the same figure for MiniWorld's
MiniWorld-OneRoom-v0 at 64x64 when it can run here (it needs OpenGL: under Xvfb with Mesa;
`pip install -e ".[bench]"` and Debian's xvfb), the ratio, and, unless --skip-collect, the time
and disk bytes per frame of collecting the default corpus with both frame codecs' read speed.

    python benchmarks/env_throughput.py [--seconds 5] [--skip-collect] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MINIWORLD_SNIPPET = """
import time, gymnasium as gym, miniworld
env = gym.make("MiniWorld-OneRoom-v0", obs_width=64, obs_height=64)
env.reset(seed=0)
env.action_space.seed(0)
for _ in range(50):
    env.step(env.action_space.sample())
n, t = 0, time.perf_counter()
while time.perf_counter() - t < {seconds}:
    _, _, te, tr, _ = env.step(env.action_space.sample())
    n += 1
    if te or tr:
        env.reset()
print(n / (time.perf_counter() - t))
"""


def island_worker(batch: int, seconds: float, seed: int, queue: mp.Queue) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from agentalign.envs.island import IslandVectorEnv

    env = IslandVectorEnv(batch)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, [9, 3], size=(256, batch, 2))
    for i in range(20):  # warm-up
        env.step(actions[i])
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions[steps % 256])
        steps += 1
    queue.put(steps * batch / (time.perf_counter() - start))


def island_steps_per_s(batch: int, processes: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=island_worker, args=(batch, seconds, i, queue))
             for i in range(processes)]
    for p in procs:
        p.start()
    total = sum(queue.get() for _ in procs)
    for p in procs:
        p.join()
    return total


def miniworld_steps_per_s(seconds: float) -> tuple[float | None, str]:
    import importlib.util

    if importlib.util.find_spec("miniworld") is None:  # importing it opens a display
        return None, "miniworld is not installed (pip install -e '.[bench]')"
    cmd = [sys.executable, "-c", MINIWORLD_SNIPPET.format(seconds=seconds)]
    if not os.environ.get("DISPLAY"):
        if not shutil.which("xvfb-run"):
            return None, "no display and no xvfb-run (apt-get install xvfb)"
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1024x768x24", *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        return None, f"MiniWorld failed: {result.stderr.strip().splitlines()[-1:]}"
    return float(result.stdout.strip().splitlines()[-1]), "MiniWorld-OneRoom-v0, 64x64, 1 process"


def codec_figures(corpus: Path, seconds: float) -> dict[str, dict[str, float]]:
    """Bytes per frame and random-window read speed of one shard written with each codec."""
    from agentalign.data.shards import MANIFEST, Corpus, Episode, write_shard

    source = Corpus(corpus, verify=False, shards=[0])
    episodes = []
    for i in range(source.num_episodes):
        ep = source.episode(i)
        episodes.append(Episode(np.asarray(ep["frames"]), ep["actions"], ep["positions"],
                                ep["headings"], int(source.episodes["outcomes"][i]), 0, 0, -1))
    out = {}
    for codec in ("zlib", "raw"):
        folder = Path(tempfile.mkdtemp())
        entry = write_shard(folder / "shard-00000.safetensors", episodes, {}, codec=codec)
        (folder / MANIFEST).write_text(json.dumps({"shards": [{**entry, "index": 0}]}))
        corpus_k = Corpus(folder)
        rng = np.random.default_rng(0)
        lengths = corpus_k.episodes["lengths"]
        frames, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            e = int(rng.integers(corpus_k.num_episodes))
            corpus_k.window(e, int(rng.integers(lengths[e])), 16)
            frames += 16
        out[codec] = {"bytes_per_frame": entry["bytes"] / entry["steps"],
                      "window_frames_per_s": frames / (time.perf_counter() - start)}
        shutil.rmtree(folder)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--skip-collect", action="store_true", help="skip the corpus figures")
    parser.add_argument("--skip-miniworld", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    figures: dict = {"cores": os.cpu_count(), "island": {}}

    print(f"machine: {os.cpu_count()} cores; island = agentalign IslandVectorEnv, 64x64 RGB, "
          "random actions, autoreset")
    print(f"{'batch':>6} {'procs':>6} {'steps/s':>10} {'per core':>10}")
    for processes in (1, 2):
        for batch in (1, 16, 64):
            total = island_steps_per_s(batch, processes, args.seconds)
            figures["island"][f"b{batch}_p{processes}"] = total
            print(f"{batch:>6} {processes:>6} {total:>10,.0f} {total / processes:>10,.0f}")
    best_per_core = max(v / int(k.split("_p")[1]) for k, v in figures["island"].items())

    if not args.skip_miniworld:
        mw, note = miniworld_steps_per_s(args.seconds)
        figures["miniworld"] = mw
        if mw is None:
            print(f"MiniWorld: not measured ({note})")
        else:
            print(f"MiniWorld: {mw:,.0f} steps/s ({note}); island best per core / MiniWorld = "
                  f"{best_per_core / mw:.1f}x")

    if not args.skip_collect:
        from agentalign.collect import run as collect
        from agentalign.collect_config import CollectSettings
        from agentalign.config import load

        folder = Path(tempfile.mkdtemp())
        config = load(CollectSettings)
        summary = collect(config, folder / "corpus", progress=False)
        figures["collect"] = {k: getattr(summary, k) for k in (
            "seconds", "steps", "bytes", "bytes_per_frame", "any_pad")}
        print(f"collect (default config, {config.workers} workers): {summary.steps:,} "
              f"frames in {summary.seconds:.1f} s = "
              f"{summary.steps / summary.seconds:,.0f} frames/s; disk "
              f"{summary.bytes / 1e6:.0f} MB = {summary.bytes_per_frame:.0f} B/frame; "
              f"reached a pad {100 * summary.any_pad:.1f}%")
        codecs = codec_figures(folder / "corpus", args.seconds)
        figures["codecs"] = codecs
        for codec, row in codecs.items():
            print(f"  codec {codec:4s}: {row['bytes_per_frame']:>8,.0f} B/frame, random 16-step "
                  f"windows {row['window_frames_per_s']:>9,.0f} frames/s (one core)")
        shutil.rmtree(folder)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
