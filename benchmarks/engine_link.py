"""Steps per second through the engine link (ML-Agents over gRPC, stand-in player) vs embedded.

The unity backend pays, per step and per agent, what a Unity build would make it pay besides
simulating: a PNG encode of the camera frame in the player, one gRPC round trip, protobuf
(de)serialisation, mlagents-envs decoding the PNG to floats, and our conversion back to uint8.
The stand-in player simulates and renders exactly as the embedded island does, so the difference
between the two rates is the protocol's overhead. Printed: rendered 64x64 steps/s of the
embedded island (1 and 2 environments, one process) and of the unity backend with 1 and 2
stand-in workers (one agent each, stepped in parallel), the overhead per step in ms, and the
parts of it measured in isolation (PNG encode and decode of one frame).

    python benchmarks/engine_link.py [--seconds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def stand_in_player(folder: Path) -> str:
    """The installed `agentalign-island-player`, or a launcher running the same module."""
    installed = Path(sys.executable).parent / "agentalign-island-player"
    if installed.exists():
        return str(installed)
    found = shutil.which("agentalign-island-player")
    if found:
        return found
    launcher = folder / "agentalign-island-player"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m agentalign.envs.player "$@"\n')
    launcher.chmod(0o755)
    return str(launcher)


def rate(env, seconds: float, seed: int = 0) -> float:
    """Environment steps per second (rows x calls) with random actions, autoreset included."""
    n = env.num_envs
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, [9, 3], size=(256, n, 2))
    env.reset(seed=seed)
    for i in range(20):  # warm-up: connections, caches
        env.step(actions[i])
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions[steps % 256])
        steps += 1
    return steps * n / (time.perf_counter() - start)


def png_costs(repeats: int = 300) -> dict[str, float]:
    """Microseconds to encode one island frame as the player does and decode it as mlagents."""
    from PIL import Image

    from agentalign.envs.island import IslandVectorEnv
    from agentalign.envs.player import encode_png

    env = IslandVectorEnv(1)
    frame = env.reset(seed=0)[0][0]
    start = time.perf_counter()
    for _ in range(repeats):
        data = encode_png(frame)
    encode = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        with Image.open(io.BytesIO(data)) as image:
            np.moveaxis(np.asarray(image, dtype=np.float32) / 255.0, -1, 0)
    decode = (time.perf_counter() - start) / repeats
    return {"png_bytes": len(data), "encode_us": encode * 1e6, "decode_us": decode * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per case")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from agentalign.envs.factory import make_env

    results: dict[str, object] = {
        "python": platform.python_version(), "cpus": os.cpu_count(), "seconds": args.seconds}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        player = stand_in_player(Path(tmp))
        for backend, n in (("island", 1), ("island", 2), ("unity", 1), ("unity", 2)):
            spec = "island" if backend == "island" else f"unity:{player}"
            env = make_env(spec, n)
            try:
                steps_per_s = rate(env, args.seconds)
            finally:
                env.close()
            rows.append({"backend": backend, "envs": n, "steps_per_s": steps_per_s})
            print(f"{backend:7s} envs={n}: {steps_per_s:9,.0f} steps/s", flush=True)
    results["rates"] = rows
    results["png"] = png_costs()

    by = {(r["backend"], r["envs"]): r["steps_per_s"] for r in rows}
    print()
    print("| backend | environments | rendered 64x64 steps/s | ms per step (per env) |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backend']} | {r['envs']} | {r['steps_per_s']:,.0f} | "
              f"{1e3 / r['steps_per_s']:.3f} |")
    for n in (1, 2):
        overhead = 1e3 / by[("unity", n)] - 1e3 / by[("island", n)]
        results[f"overhead_ms_{n}"] = overhead
        print(f"\nengine-link overhead with {n} worker(s): {overhead:.2f} ms per env step "
              f"(embedded is {by[('island', n)] / by[('unity', n)]:.1f}x faster)")
    png = results["png"]
    print(f"of which, per frame: PNG encode in the player {png['encode_us']:.0f} us, "
          f"decode in mlagents-envs {png['decode_us']:.0f} us ({png['png_bytes']} bytes)")
    print(f"2 workers vs 1: {by[('unity', 2)] / by[('unity', 1)]:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
