"""Agent server throughput and latency: actions/s and p50/p99 decision latency with 1, 16 and
64 concurrent sessions, batched (the server's dynamic batching) against unbatched (max batch 1),
and the raw batched forward pass of the same personality (the ceiling). Prints a table, asserts
nothing.

The server runs in this process on loopback; the load generator runs in its own process (one
Act stream per session on one asyncio loop, each sending its next frame as soon as it has its
action: a closed loop), and reports its CPU use, since on a small machine the client competes
with the server for the cores. The personality is a random `--config` policy exported with
`agentalign.export` (the weights do not change the work done).

    python benchmarks/server.py --config tiny --sessions 1,16,64 --seconds 4
    python benchmarks/server.py --rate 10   # sessions paced at the game's 10 decisions/s
    python benchmarks/server.py --rate 10 --sessions 500 --agents-per-stream 50  # 10 games

Closed loop measures throughput; there the mean latency is sessions / throughput by
construction (Little's law). Paced at the game's rate it measures the latency an agent sees.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import resource
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import torch

from agentalign.config import defaults
from agentalign.export.export_config import ExportSettings
from agentalign.export.personality import run as export_personality
from agentalign.models.checkpoint import save_step
from agentalign.models.policy import Policy, get_config
from agentalign.server.app import Server, ServerConfig, forward_threads
from agentalign.server.policy import load_personality


def make_personality(config: str, folder: Path) -> Path:
    torch.manual_seed(0)
    policy = Policy(get_config(config)).eval()
    stage = folder / "stage"
    save_step(stage, policy, policy.config.to_dict(), kind="policy", stage="sft", step=1)
    export_personality(defaults(ExportSettings).replace(episodes=2, num_envs=2), stage, "bench",
                       folder / "personalities")
    return folder / "personalities"


def load(target: str, sessions: int, seconds: float, shape: tuple[int, int, int],
         rate: float, per_stream: int, results: mp.Queue) -> None:
    """The load generator (own process): `sessions` closed-loop or paced agents on one grpc.aio
    event loop (threads would spend the client's CPU on switching, not on gRPC), each on its
    own Act stream, or `per_stream` of them together on each ActBatch stream."""
    results.put(asyncio.run(_load(target, sessions, seconds, shape, rate, per_stream)))


async def _load(target: str, sessions: int, seconds: float, shape: tuple[int, int, int],
                rate: float, per_stream: int) -> dict[str, float]:
    from agentalign.client import observation
    from agentalign.server.v1 import policy_pb2 as pb
    from agentalign.server.v1 import policy_pb2_grpc

    obs = observation(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
    async with grpc.aio.insecure_channel(target) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        ids = [(await stub.OpenSession(pb.OpenSessionRequest(
            personality="bench", options=pb.SessionOptions(seed=i)))).session_id
            for i in range(sessions)]
        go = asyncio.Event()
        timing: dict[str, float] = {}

        async def play(session_id: str) -> list[float]:
            call = stub.Act()
            await call.write(pb.ActRequest(session_id=session_id, observation=obs,
                                           episode_start=True))
            await call.read()  # the stream is open before the clock starts
            await go.wait()
            if rate:  # spread the sessions over one period, as agents in a game are
                await asyncio.sleep(random.random() / rate)
            latencies = []
            while (t0 := time.perf_counter()) < timing["end"]:
                await call.write(pb.ActRequest(observation=obs))
                await call.read()
                latencies.append(time.perf_counter() - t0)
                if rate:  # paced like the game: the next decision is due 1/rate s later
                    await asyncio.sleep(max(0.0, t0 + 1 / rate - time.perf_counter()))
            await call.done_writing()
            return latencies

        async def play_together(group: list[str]) -> list[float]:
            """A game with len(group) agents: one ActBatchRequest per tick for all of them; each
            agent's latency is the request's round trip."""
            call = stub.ActBatch()
            await call.write(pb.ActBatchRequest(requests=[
                pb.ActRequest(session_id=i, observation=obs, episode_start=True)
                for i in group]))
            await call.read()
            tick = pb.ActBatchRequest(requests=[pb.ActRequest(session_id=i, observation=obs)
                                                for i in group])
            await go.wait()
            if rate:
                await asyncio.sleep(random.random() / rate)
            latencies = []
            while (t0 := time.perf_counter()) < timing["end"]:
                await call.write(tick)
                await call.read()
                latencies += [time.perf_counter() - t0] * len(group)
                if rate:
                    await asyncio.sleep(max(0.0, t0 + 1 / rate - time.perf_counter()))
            await call.done_writing()
            return latencies

        if per_stream > 1:
            tasks = [asyncio.create_task(play_together(ids[k:k + per_stream]))
                     for k in range(0, len(ids), per_stream)]
        else:
            tasks = [asyncio.create_task(play(i)) for i in ids]
        await asyncio.sleep(0.5)
        start_cpu = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        timing["end"] = start + seconds
        go.set()
        latencies = np.concatenate(await asyncio.gather(*tasks))
        wall = time.perf_counter() - start
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        for session_id in ids:
            await stub.CloseSession(pb.CloseSessionRequest(session_id=session_id))
    used = (cpu.ru_utime - start_cpu.ru_utime) + (cpu.ru_stime - start_cpu.ru_stime)
    return {"actions": len(latencies), "wall": wall,
            "p50": float(np.percentile(latencies, 50)),
            "p99": float(np.percentile(latencies, 99)), "client_cpu": used / wall}


def ceiling(onnx: Path, batch: int, seconds: float, threads: int | None) -> float:
    """Decisions/s of the bare batched forward pass (Personality.run) at `batch` rows."""
    personality = load_personality(onnx, threads)
    h, w, c = personality.frame_shape
    frames = np.random.default_rng(0).random((batch, h, w, c), dtype=np.float32)
    memory = np.zeros((batch, 1, personality.memory_size), np.float32)
    for _ in range(3):
        _, memory = personality.run(frames, memory)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, memory = personality.run(frames, memory)
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--sessions", default="1,16,64")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--window-ms", type=float, default=2.0)
    parser.add_argument("--max-batch", type=int, default=64, help="the batched server's cap")
    parser.add_argument("--max-sessions", type=int, default=1024,
                        help="sessions the server holds (its own default is 256)")
    parser.add_argument("--rate", type=float, default=0.0, help="decisions/s per session "
                        "(10 = the game's pace); 0 = closed loop, as fast as answered")
    parser.add_argument("--threads", type=int, default=None,
                        help="the server's onnxruntime intra-op threads (default: one per core)")
    parser.add_argument("--workers", type=int, default=2,
                        help="the server's forward passes that may run at once")
    parser.add_argument("--agents-per-stream", type=int, default=1,
                        help="sessions sent together on one ActBatch stream, as a game with "
                        "that many agents sends them (1 = one Act stream per session)")
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_personality(args.config, Path(tmp))
        shape = load_personality(folder / "bench.onnx").frame_shape
        pace = f"{args.rate:g} decisions/s per session" if args.rate else "closed loop"
        streams = (f"{args.agents_per_stream} sessions per ActBatch stream"
                   if args.agents_per_stream > 1 else "one Act stream per session")
        threads = forward_threads(args.threads, args.workers)
        print(f"{args.config}: server {args.workers} forward workers x {threads} onnxruntime "
              f"threads, {args.seconds:g} s per row, batch window {args.window_ms:g} ms, max "
              f"batch {args.max_batch}, {pace}, {streams}; ceiling: one pass, onnxruntime's "
              "default threads")
        print("| sessions | server | actions/s | p50 ms | p99 ms | mean batch | "
              "client CPU | ceiling actions/s | % of ceiling |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n in counts:
            top = ceiling(folder / "bench.onnx", n, min(args.seconds, 2.0), args.threads)
            for batched in (False, True):
                server = Server(ServerConfig(personalities=folder, runs=Path(tmp) / "runs",
                                             port=0,
                                             max_batch=args.max_batch if batched else 1,
                                             batch_window_s=args.window_ms / 1000,
                                             max_sessions=max(args.max_sessions, n),
                                             threads=args.threads, workers=args.workers))
                queue: mp.Queue = ctx.Queue()
                worker = ctx.Process(target=load, args=(f"127.0.0.1:{server.port}", n,
                                                        args.seconds, shape, args.rate,
                                                        args.agents_per_stream, queue))
                worker.start()
                before = server.batcher.batches
                r = queue.get()
                worker.join()
                batches = server.batcher.batches - before
                server.stop(grace_s=1.0)
                rate = r["actions"] / r["wall"]
                print(f"| {n} | {'batched' if batched else 'unbatched'} | {rate:,.0f} | "
                      f"{1000 * r['p50']:.2f} | {1000 * r['p99']:.2f} | "
                      f"{r['actions'] / max(1, batches):.1f} | "
                      f"{100 * r['client_cpu']:.0f}% | {top:,.0f} | {100 * rate / top:.0f}% |",
                      flush=True)


if __name__ == "__main__":
    main()
