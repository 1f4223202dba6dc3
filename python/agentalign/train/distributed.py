"""Where a training process stands in a (possibly one-process) torchrun job, and the CPU settings
every trainer uses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a (possibly one-process) job."""

    rank: int
    world: int
    local_world: int
    device: torch.device
    owns_group: bool  # we started the process group, so we end it


ONE_PROCESS = Ranks(0, 1, 1, torch.device("cpu"), False)  # a single process on the CPU


def init_distributed(device: str) -> Ranks:
    """Join the torchrun job described by the environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT), or use a process group the caller already started; a single process
    otherwise. gloo on CPU, nccl on GPU."""
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    where = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    owns = False
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if cuda:
            torch.cuda.set_device(where)
        dist.init_process_group("nccl" if cuda else "gloo")
        owns = True
    if not dist.is_initialized():
        return Ranks(0, 1, 1, where, False)
    world = dist.get_world_size()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return Ranks(dist.get_rank(), world, local_world, where, owns)


def all_sum(values: list[float], ranks: Ranks) -> list[float]:
    """Element-wise sum over ranks (identity on one rank)."""
    if ranks.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ranks.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_gather(values: Any, ranks: Ranks) -> list[Any]:
    """Every rank's `values` (any picklable object), in rank order ([values] on one rank)."""
    if ranks.world == 1:
        return [values]
    gathered: list[Any] = [None] * ranks.world
    dist.all_gather_object(gathered, values)
    return gathered


def all_reduce_gradients(model: torch.nn.Module, ranks: Ranks) -> None:
    """Sum every parameter's gradient over the ranks (each rank's loss is already divided by the
    whole batch's size, so the sum is the whole batch's gradient): DDP's reduction, for a model
    whose loss comes from methods other than forward()."""
    if ranks.world == 1:
        return
    for p in model.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)


@contextmanager
def cpu_settings(threads: int) -> Iterator[None]:
    """Use `threads` intra-op threads and flush denormals to zero inside the block; restore the
    caller's settings after.

    Flushing matters: a few dozen steps into training, some AdamW moments and activations drift
    into the denormal range, where x86 arithmetic is ~100x slower, and the tiny policy's
    throughput fell from ~8k to ~250 frames/s until they left it again (measured). Treating
    them as zero changes no result that matters and keeps every run deterministic.
    """
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    flushed = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads_before)
        if flushed:
            torch.set_flush_denormal(False)


def training_threads(num_threads: int, ranks: Ranks) -> int:
    """`num_threads`, or with 0 the cores this process may use shared among this host's ranks."""
    return num_threads or max(1, len(os.sched_getaffinity(0)) // ranks.local_world)


def summary_writer(out: Any, step: int) -> Any:
    """TensorBoard writer in `out/logs`; on resume it drops what a killed run logged after the
    checkpoint, so the curves do not fold back on themselves."""
    from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only on rank 0

    return SummaryWriter(str(out / "logs"), purge_step=step or None)
