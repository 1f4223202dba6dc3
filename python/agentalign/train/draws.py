"""RL draws side by side (`align`'s `draws` with `draw_workers`): each draw a whole `rl.run` in
a worker process pinned to its share of the cores (`agentalign.workers`), its output in
out/<draw>.log, the draws' progress sent back and shown as one bar.

Why: a draw is a whole RL, and RL acts and learns on one thread by default (`rl.num_threads`
1), so K draws one after another leave every core but one idle for K RLs' time. On one thread a
draw's weights are the same in a worker as in this process (tests/test_alignment.py); with
`rl.num_threads` 0 ("every core") a worker's every core is its share, and float rounding can
differ from a draw run alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import pickle
import queue
import signal
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from agentalign import events
from agentalign.errors import UserError
from agentalign.models.reward import RewardFunction
from agentalign.train import rl
from agentalign.train.rl_config import RLSettings
from agentalign.workers import pinned_pool

_sent: Any = None  # in a worker: the queue its events go back on
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def worker_count(asked: int, draws: int) -> int:
    """`asked` workers (0: one per core of this process's share), never more than the draws."""
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
    return max(1, min(asked or cores, draws))


def portable(reward: RewardFunction) -> bool:
    """Whether a worker can be handed `reward`: a reward model's does (`ModelScore`), a closure
    does not (its draws then run here, one after another)."""
    try:
        pickle.dumps(reward)
    except Exception:
        return False
    return True


def run_side_by_side(draws: list[tuple[RLSettings, Path]], policy: Path,
                     reward: RewardFunction, target: str, *, intents: str | Path | None,
                     workers: int, progress: bool) -> None:
    """Run each (settings, out) draw's RL from `policy` to its end (a finished one is skipped,
    an interrupted one resumes) in `workers` processes. The results are read back by the
    caller's own `rl.run`, which skips finished draws. If a draw fails, the others still run to
    their end, then one UserError names every failed draw (a rerun resumes them)."""
    channel = multiprocessing.get_context("spawn").Queue()
    pool = pinned_pool(workers, initializer=_listen, initargs=(channel,))
    done = {str(out): 0.0 for _, out in draws}
    failures: list[str] = []
    with events.progress("rl draws", sum(s.iterations for s, _ in draws), unit="it",
                         show=progress) as bar:
        try:
            running: dict[Future[None], Path] = {
                pool.submit(_draw, settings, str(policy), reward, target, str(out),
                            None if intents is None else str(intents)): out
                for settings, out in draws}
            bar.write(f"align: {len(draws)} RL draws in {workers} worker processes (logs: "
                      f"{draws[0][1].parent}/<draw>.log)")
            while running:
                _forward(channel, done, bar)
                finished, _ = wait(running, timeout=0, return_when=FIRST_COMPLETED)
                for future in finished:
                    out = running.pop(future)
                    failures += _failure(future, out)
            _forward(channel, done, bar, timeout=0)
        finally:
            pool.shutdown(cancel_futures=True)
    if failures:
        raise UserError("; ".join(failures) + ". Fix the cause and rerun the same command: "
                        "finished draws are kept, the others resume from their checkpoints")


def _failure(future: Future[None], out: Path) -> list[str]:
    try:
        future.result()
    except BrokenProcessPool as e:
        return [f"RL draw {out.name}'s worker process died ({e}; log: {out}.log)"]
    except Exception as e:
        why = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        return [f"RL draw {out.name} failed: {why} (log: {out}.log)"]
    return []


def _forward(channel: Any, done: dict[str, float], bar: events.Progress,
             timeout: float = 0.5) -> None:
    """Move the workers' RL iteration counts onto `bar` (waiting up to `timeout` for the first
    event)."""
    while True:
        try:
            event = channel.get(timeout=timeout) if timeout else channel.get_nowait()
        except queue.Empty:
            return
        timeout = 0
        if event.get("kind") == "progress" and event.get("stage") == "rl" \
                and event.get("unit") == "it" and event.get("draw") in done:
            step = float(event["done"]) - done[event["draw"]]
            done[event["draw"]] = float(event["done"])
            bar.update(step)


def _listen(channel: Any) -> None:
    global _sent
    _sent = channel
    _end_with_parent()


def _end_with_parent() -> None:
    """On Linux, a worker gets SIGTERM when the align process dies (killed, out of memory), so
    no orphaned draw goes on writing into a folder that a rerun resumes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the draw runs to its end
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _draw(settings: RLSettings, policy: str, reward: RewardFunction, target: str, out: str,
          intents: str | None) -> None:
    """One draw in a worker: its events go back tagged with its folder, its output to a log."""
    channel = _sent
    events.set_sink(None if channel is None else lambda e: channel.put({**e, "draw": out}))
    with open(f"{out}.log", "a", buffering=1) as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        rl.run(settings, policy, reward, target, out, intents=intents, progress=False)
