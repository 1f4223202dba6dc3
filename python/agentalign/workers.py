"""Worker processes for stages that run side by side (the pipeline's stages, the reward study's
runs): fresh interpreters, each pinned to its own share of this process's cores.

Fresh (spawned, not forked): forking a process that has run torch ops can hang. Pinned: a
stage's "every core" then means its share, and no two stages compete for a core.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def pinned_pool(workers: int, initializer: Callable[..., None] | None = None,
                initargs: tuple[Any, ...] = ()) -> ProcessPoolExecutor:
    """`workers` spawned processes, worker i pinned to cores i, i + workers, ... of ours; then
    `initializer(*initargs)` runs in each."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    context = multiprocessing.get_context("spawn")
    shares = context.Queue()
    for i in range(workers):
        shares.put(cores[i::workers] if len(cores) >= workers else cores)
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_start,
                               initargs=(shares, initializer, initargs))


def _start(shares: Any, initializer: Callable[..., None] | None,
           initargs: tuple[Any, ...]) -> None:
    cores = shares.get()
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    if initializer is not None:
        initializer(*initargs)
