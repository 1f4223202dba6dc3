"""Imitation learning (behaviour cloning) of the pixel policy: `pretrain` and `sft`.

Both stages are the same loop on different data:
- pretrain: the whole gameplay corpus (`agentalign collect`), from a random init;
- sft: a small, fixed set of curated direct demos (`agentalign collect --population direct`),
  from the pre-trained checkpoint, or from a random init for the paper's ablation.

Data. An example is a window of K consecutive steps of one episode (K = the policy's context
unless the config asks for less), drawn one of two ways (`windows`):
- `starts` (pre-training): a start drawn uniformly from [0, L-1] of an episode of L steps. Step
  0 then lies in one window for every K that hold step K-1 or later, but few slots are padding.
- `steps` (SFT, preference fine-tuning): a start s drawn uniformly from [-(K-1), L-1] (episodes
  weighted by L + K - 1), a window with s < 0 cut at the episode's start (its first K + s steps,
  at positions 0.., as the policy sees them when acting). Every step lies in exactly K draws,
  the first steps, where a demonstrator picks its pad, included. With `starts`, SFT agents
  leaned to one pad by seed (e.g. 51 / 30 / 15%); with `steps` they split evenly (measured:
  docs/results.md). Pre-training with `steps` gave worse SFT agents (any pad and recovery).
Steps past a window's real ones (the episode's end, or the cut) are masked out of the loss; the
causal mask keeps them from the real steps. The previous action of a window's first step is the
corpus action before it, or `no_previous_action` at the episode start: exactly what the policy
is fed when it acts. Held-out episodes for the eval loss are picked by a hash of their index in
the corpus (`is_eval_episode`), so the split is fixed for a corpus whatever the number of ranks.

Exact resume. Every random draw of step s (the windows of its batch, dropout) comes from
generators seeded by (seed, rank, s), and the learning rate is a function of s, so a batch is a
pure function of the step: the loader thread can work ahead, and a resumed run needs only the
weights, the AdamW state and the step to continue bit for bit as if it had never stopped (on the
same hardware, thread count and rank count; with other ones it continues the same run up to float
rounding). That is why the trainer state holds no RNG state: there is none to carry (and with
several ranks, rank 0 could not save the others' anyway). A rerun of a finished stage is skipped;
a stage folder holding a run with other settings (config, corpus, init) is refused.

Distributed. Under `torchrun --nproc_per_node N` each rank reads every N-th shard and computes
the loss of its share of the batch; DDP averages the gradients. Each rank backpropagates its sum
of per-step losses divided by the number of real steps in the whole batch (all ranks), times N,
so N ranks x B windows take the same step as 1 rank x N*B windows (tested). Only rank 0 writes
checkpoints, TensorBoard scalars, the progress bar and metrics.json.

A stage folder holds checkpoints/ (`models.checkpoint.save_step`), logs/ (TensorBoard:
losses/train, losses/eval, charts/learning_rate, charts/frames_per_s) and, once finished,
metrics.json (final losses, frames/s, wall time, FLOPs per frame, GFLOP/s).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from agentalign.atomic import write_json_atomic
from agentalign.config import checked_values
from agentalign.data.shards import Corpus
from agentalign.errors import ConfigError, CorpusError, UserError
from agentalign.models.checkpoint import (
    CheckpointError,
    latest_or_none,
    load_policy,
    load_weights,
    restore_training,
    save_step,
)
from agentalign.models.policy import Policy, PolicyConfig, get_config

STAGES = ("pretrain", "sft")
METRICS = "metrics.json"
Batch = dict[str, Tensor]

# --- config --------------------------------------------------------------------------------------

INTEGERS_AT_LEAST = {"episodes": 1, "context": 1, "batch_size": 1, "steps": 1, "warmup_steps": 0,
                     "eval_windows": 1, "eval_interval": 1, "log_interval": 1,
                     "checkpoint_interval": 1, "keep_checkpoints": 0, "seed": 0,
                     "num_threads": 0, "prefetch": 0}
# How training windows are drawn (WindowSampler): `starts` uniform over an episode's steps,
# `steps` so that every step, the first ones included, lies in as many windows as any other.
WINDOW_DRAWS = ("starts", "steps")
# Keys that change no weight, so a resumed run may change them.
RESUMABLE_CHANGES = ("eval_interval", "log_interval", "checkpoint_interval", "keep_checkpoints",
                     "num_threads", "prefetch", "device")


@dataclass(frozen=True)
class TrainConfig:
    """The hyper-parameters of one imitation stage. Each is documented where its default is
    declared, in configs/pretrain.yaml and configs/sft.yaml; this class only types and checks."""

    model: dict[str, Any]
    episodes: int | None
    context: int | None
    batch_size: int
    steps: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    beta1: float
    beta2: float
    grad_clip: float
    eval_fraction: float
    windows: str
    eval_windows: int
    eval_interval: int
    log_interval: int
    checkpoint_interval: int
    keep_checkpoints: int
    seed: int
    num_threads: int
    prefetch: int
    device: str

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrainConfig:
        values = checked_values(
            cls, config, "train", ("lr", "min_lr", "weight_decay", "beta1", "beta2", "grad_clip",
                                   "eval_fraction"),
            INTEGERS_AT_LEAST, nullable=("episodes", "context"))  # null: see the YAML
        if not 0.0 <= values["eval_fraction"] < 1.0:
            raise ConfigError(f"eval_fraction must be in [0, 1), got {values['eval_fraction']}")
        if values["lr"] <= 0 or not 0 <= values["min_lr"] <= values["lr"]:
            raise ConfigError("need lr > 0 and 0 <= min_lr <= lr")
        if values["device"] not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {values['device']!r}")
        if values["windows"] not in WINDOW_DRAWS:
            raise ConfigError(f"windows must be one of {', '.join(WINDOW_DRAWS)}, got "
                              f"{values['windows']!r}")
        if not isinstance(values["model"], dict) or "name" not in values["model"]:
            raise ConfigError("model must be a mapping with a name")
        return cls(**values)

    def identity(self) -> dict[str, Any]:
        """The keys that shape the weights: a resume must agree on all of them."""
        return {k: v for k, v in asdict(self).items() if k not in RESUMABLE_CHANGES}


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to `min_lr` at the last step (as nanoGPT)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / (config.warmup_steps + 1)
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - config.min_lr)


def resolve_policy_config(model: dict[str, Any], init: PolicyConfig | None) -> PolicyConfig:
    """The policy to train: the named config with the non-null fields of `model` changed, or,
    when fine-tuning, the init checkpoint's config (which the given fields must agree with)."""
    asked = {k: tuple(v) if isinstance(v, list) else v for k, v in model.items()
             if v is not None}
    if init is None:
        name = asked.pop("name", "tiny")
        try:
            return get_config(name, **asked)
        except ValueError as e:
            raise ConfigError(f"model: {e}") from None
    clash = {k: v for k, v in asked.items() if getattr(init, k, None) != v}
    if clash:
        theirs = ", ".join(f"{k}={getattr(init, k, None)!r}" for k in clash)
        ours = ", ".join(f"{k}={v!r}" for k, v in clash.items())
        raise CheckpointError(f"the --init checkpoint holds a policy with {theirs}, but the config "
                              f"asks for {ours}; set those model keys to null")
    return init


# --- data ----------------------------------------------------------------------------------------


def rank_shards(num_shards: int, rank: int, world: int) -> list[int]:
    """The manifest positions of the shards rank `rank` reads: every `world`-th one."""
    if num_shards < world:
        raise CorpusError(f"the corpus has {num_shards} shard(s), fewer than the {world} ranks; "
                          "use fewer ranks or collect with a smaller shard_episodes")
    return list(range(rank, num_shards, world))


def open_corpus(folder: str | Path, rank: int = 0, world: int = 1) -> Corpus:
    """This rank's share of a corpus, checksummed."""
    everything = Corpus(folder, verify=False)  # opens lazily (memory maps): cheap
    return Corpus(folder, verify=True, shards=rank_shards(len(everything.entries), rank, world))


def corpus_fingerprint(corpus: Corpus) -> str:
    """sha256 of the whole manifest's shard checksums: which data a run trained on."""
    sums = [entry["sha256"] for entry in corpus.manifest["shards"]]
    return hashlib.sha256("\n".join(sums).encode()).hexdigest()


def global_episode_index(corpus: Corpus) -> np.ndarray:
    """Index in the whole corpus of each episode of this (possibly partial) Corpus."""
    entries = corpus.manifest["shards"]
    first = np.concatenate([[0], np.cumsum([e["episodes"] for e in entries])])
    position = {e["file"]: i for i, e in enumerate(entries)}
    offsets = [first[position[e["file"]]] for e in corpus.entries]
    return np.concatenate([offset + np.arange(shard.num_episodes)
                           for offset, shard in zip(offsets, corpus.shards, strict=True)])


def is_eval_episode(index: np.ndarray, fraction: float) -> np.ndarray:
    """The held-out episodes: Fibonacci hashing of the corpus episode index, whose top bits
    spread consecutive indices evenly over [0, 1), so about `fraction` of any stretch of
    episodes is held out, the same ones for any number of ranks or shards per rank."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        hashed = (index.astype(np.uint64) * golden) >> np.uint64(40)
    return hashed < np.uint64(round(fraction * 2**24))


def split_episodes(corpus: Corpus, cfg: TrainConfig, data: Path
                   ) -> tuple[np.ndarray, np.ndarray]:
    """This rank's training and held-out episodes (indices into `corpus`): the episodes whose
    corpus index is below `cfg.episodes` (all if None), split by `is_eval_episode`."""
    index = global_episode_index(corpus)
    keep = np.ones(len(index), dtype=bool)
    if cfg.episodes is not None:
        available = sum(entry["episodes"] for entry in corpus.manifest["shards"])
        if available < cfg.episodes:
            raise CorpusError(f"corpus {data} holds {available} episodes, the config asks for "
                              f"episodes={cfg.episodes}; collect more or lower it")
        keep = index < cfg.episodes
    held_out = is_eval_episode(index, cfg.eval_fraction)
    return np.flatnonzero(keep & ~held_out), np.flatnonzero(keep & held_out)


def read_window(corpus: Corpus, episode: int, start: int, length: int,
                no_previous: np.ndarray, real: int | None = None) -> dict[str, np.ndarray]:
    """Steps [start, start + length) of an episode (zero-padded past its end, `mask` = real,
    and only the first `real` steps if given: a window cut at the episode's start), with each
    step's previous action: the corpus action before it, or `no_previous` (the policy's "no
    previous action" index) at the episode's first step."""
    window = corpus.window(episode, start, length)
    if real is not None:
        window["mask"][real:] = False
    actions = window["actions"].astype(np.int64)
    prev_actions = np.empty_like(actions)
    prev_actions[1:] = actions[:-1]
    if start == 0:
        prev_actions[0] = no_previous
    else:
        shard = corpus.shards[int(corpus.episodes["shard"][episode])]
        prev_actions[0] = shard.arrays["actions"][int(corpus.episodes["starts"][episode])
                                                  + start - 1]
    return {"frames": window["frames"], "actions": actions, "prev_actions": prev_actions,
            "mask": window["mask"]}


def collate(corpus: Corpus, windows: list[tuple[int, int, int]], length: int,
            no_previous: np.ndarray) -> Batch:
    """Stack windows given as (episode, start, real steps <= length) into one batch of tensors;
    steps past the real ones are masked out."""
    parts = [read_window(corpus, e, s, length, no_previous, real) for e, s, real in windows]
    return {key: torch.from_numpy(np.stack([p[key] for p in parts])) for key in parts[0]}


def step_seed(seed: int, rank: int, step: int, stream: int) -> int:
    """A seed for one random stream (0 = windows, 1 = dropout) of one rank at one step."""
    return int(np.random.SeedSequence([seed, rank, step, stream]).generate_state(1, np.uint64)[0])


class WindowSampler:
    """The batches of one rank: windows (episode, start, real steps) drawn as `draw` says
    (`starts` or `steps`, module docstring) over the training episodes. The batch of step s
    depends only on (seed, rank, s)."""

    def __init__(self, corpus: Corpus, episodes: np.ndarray, length: int, batch_size: int,
                 seed: int, rank: int, no_previous: np.ndarray, draw: str = "starts") -> None:
        self.corpus, self.episodes, self.length = corpus, episodes, length
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        self.no_previous = no_previous
        if draw not in WINDOW_DRAWS:
            raise ValueError(f"draw must be one of {WINDOW_DRAWS}, got {draw!r}")
        self.before = length - 1 if draw == "steps" else 0  # draws before an episode's start
        draws = corpus.episodes["lengths"][episodes].astype(np.int64) + self.before
        self.ends = np.cumsum(draws)  # each episode's share of [0, total draws)

    def windows(self, step: int) -> list[tuple[int, int, int]]:
        rng = np.random.default_rng(step_seed(self.seed, self.rank, step, 0))
        flat = rng.integers(0, self.ends[-1], size=self.batch_size)
        k = np.searchsorted(self.ends, flat, side="right")
        starts = flat - np.concatenate([[0], self.ends[:-1]])[k] - self.before
        return [(int(self.episodes[i]), max(int(s), 0), self.length + min(int(s), 0))
                for i, s in zip(k, starts, strict=True)]

    def batch(self, step: int) -> Batch:
        return collate(self.corpus, self.windows(step), self.length, self.no_previous)


class Prefetcher:
    """Builds `make(step)` for steps [start, stop) in a background thread, `depth` ahead.

    Decoding a batch (zlib, numpy copies) releases the GIL, so it overlaps the training step
    instead of adding to it. `depth` 0 builds each batch in the caller's thread.
    """

    def __init__(self, make: Callable[[int], Batch], start: int, stop: int, depth: int) -> None:
        self.make, self.depth = make, depth
        self.queue: queue.Queue[Batch | BaseException] = queue.Queue(maxsize=max(depth, 1))
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(start, stop), daemon=True)
        if depth > 0:
            self.thread.start()

    def _put(self, item: Batch | BaseException) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, start: int, stop: int) -> None:
        try:
            for step in range(start, stop):
                if not self._put(self.make(step)):
                    return
        except BaseException as e:  # hand it to the training thread, which raises it
            self._put(e)

    def get(self, step: int) -> Batch:
        if self.depth == 0:
            return self.make(step)
        item = self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()


def eval_windows(corpus: Corpus, episodes: np.ndarray, length: int, limit: int
                 ) -> list[tuple[int, int, int]]:
    """Held-out windows: each eval episode cut into consecutive windows from its start (every
    step scored once), then at most `limit` of them, evenly spread, so evaluation stays cheap."""
    windows = [(int(e), s, length) for e in episodes
               for s in range(0, int(corpus.episodes["lengths"][e]), length)]
    if len(windows) > limit:
        windows = [windows[i] for i in np.linspace(0, len(windows) - 1, limit).round().astype(int)]
    return windows


# --- distributed ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a (possibly one-process) job."""

    rank: int
    world: int
    local_world: int
    device: torch.device
    owns_group: bool  # we started the process group, so we end it


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


# --- the step ------------------------------------------------------------------------------------


def masked_action_loss(logits: list[Tensor], actions: Tensor, mask: Tensor) -> Tensor:
    """Sum over real (unpadded) steps of the per-branch cross-entropies summed over branches:
    `policy.action_loss` restricted to `mask`, times the number of real steps."""
    return sum((F.cross_entropy(branch[mask], actions[..., i][mask], reduction="sum")
                for i, branch in enumerate(logits)), torch.zeros((), device=actions.device))


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch,
               grad_clip: float, ranks: Ranks) -> float:
    """One optimisation step on this rank's share of a batch; returns the batch's mean loss per
    real step over all ranks. The loss is normalised by the real steps of the whole batch, so
    the step does not depend on how the batch is split over ranks."""
    batch = {k: v.to(ranks.device, non_blocking=True) for k, v in batch.items()}
    logits = model(batch["frames"], batch["prev_actions"])
    loss_sum = masked_action_loss(logits, batch["actions"], batch["mask"])
    total, count = all_sum([loss_sum.item(), float(batch["mask"].sum())], ranks)
    (loss_sum * (ranks.world / count)).backward()  # DDP then averages over the ranks
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / count


@torch.no_grad()
def evaluate(policy: Policy, corpus: Corpus, windows: list[tuple[int, int, int]], length: int,
             batch_size: int, no_previous: np.ndarray, ranks: Ranks) -> float | None:
    """Mean loss per real step on the held-out windows of all ranks (None if there are none).
    Runs the bare model, not the DDP wrapper: ranks may hold different numbers of windows."""
    policy.eval()
    total, count = 0.0, 0.0
    for i in range(0, len(windows), batch_size):
        batch = collate(corpus, windows[i:i + batch_size], length, no_previous)
        batch = {k: v.to(ranks.device) for k, v in batch.items()}
        logits = policy(batch["frames"], batch["prev_actions"])
        total += masked_action_loss(logits, batch["actions"], batch["mask"]).item()
        count += float(batch["mask"].sum())
    policy.train()
    total, count = all_sum([total, count], ranks)
    return total / count if count else None


# --- the stage -----------------------------------------------------------------------------------


def pretrain(config: dict[str, Any], corpus: str | Path, out: str | Path,
             progress: bool = True) -> dict[str, Any]:
    """Pre-train a policy on a gameplay corpus from a random init; returns metrics.json."""
    return train("pretrain", config, corpus, out, progress=progress)


def sft(config: dict[str, Any], demos: str | Path, out: str | Path,
        init: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Fine-tune the policy at `init` (a checkpoint or stage folder) on curated demos; with
    `init=None`, train the same architecture from a random init (the ablation)."""
    return train("sft", config, demos, out, init=init, progress=progress)


def train(stage: str, config: dict[str, Any], data: str | Path, out: str | Path,
          init: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume, or skip if finished) one imitation stage into the folder `out`.

    Returns the final metrics (also written to `out/metrics.json` by rank 0) on every rank.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown imitation stage {stage!r}; valid: {STAGES}")
    cfg = TrainConfig.from_dict(config)
    ranks = init_distributed(cfg.device)
    threads = cfg.num_threads or max(1, len(os.sched_getaffinity(0)) // ranks.local_world)
    try:
        with cpu_settings(threads):
            return _train(stage, cfg, Path(data), Path(out), init, progress, ranks, threads)
    finally:
        if ranks.owns_group:
            dist.destroy_process_group()


def _train(stage: str, cfg: TrainConfig, data: Path, out: Path, init: str | Path | None,
           progress: bool, ranks: Ranks, threads: int) -> dict[str, Any]:
    clock = time.perf_counter()
    corpus = open_corpus(data, ranks.rank, ranks.world)
    init_policy, init_info = load_policy(init) if init is not None else (None, None)
    policy_config = resolve_policy_config(cfg.model, init_policy.config if init_policy else None)
    frame_shape = (policy_config.obs_height, policy_config.obs_width, 3)
    if corpus.obs_shape != frame_shape:
        raise CorpusError(f"corpus {data} holds {'x'.join(map(str, corpus.obs_shape))} frames, "
                          f"the {policy_config.name!r} policy takes "
                          f"{'x'.join(map(str, frame_shape))}; collect with --set height=.. "
                          "--set width=.., or set model.obs_height/obs_width")
    length = cfg.context or policy_config.context
    if length > policy_config.context:
        raise ConfigError(f"context {length} is longer than the {policy_config.name!r} policy's "
                          f"context of {policy_config.context} steps")

    train_episodes, eval_episodes = split_episodes(corpus, cfg, data)
    if all_sum([float(len(train_episodes) == 0)], ranks)[0]:  # every rank stops, none hangs
        raise CorpusError(f"corpus {data}: a rank has no training episodes; use fewer ranks, "
                          "more episodes or a smaller eval_fraction")
    if cfg.batch_size % ranks.world:
        raise ConfigError(f"batch_size {cfg.batch_size} does not split over {ranks.world} ranks")

    run = {"stage": stage, "config": cfg.identity(), "data": corpus_fingerprint(corpus),
           "policy": policy_config.to_dict(), "init": init_info["sha256"] if init_info else None}
    run = json.loads(json.dumps(run))  # as checkpoint.json will hold it (tuples become lists)
    if (finished := _finished(out, run)) is not None:
        if ranks.rank == 0:
            print(f"{stage}: {out} already finished at step {finished['step']}; skipping")
        return finished

    torch.manual_seed(cfg.seed)  # the same init on every rank (DDP also broadcasts rank 0's)
    policy = Policy(policy_config)
    if init_policy is not None:
        policy.load_state_dict(init_policy.state_dict())
    policy.to(ranks.device).train()
    optimizer = policy.configure_optimizer(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
    state = {"step": 0, "frames": 0, "train_seconds": 0.0, "wall_seconds": 0.0}
    train_loss = eval_loss = None
    if (latest := latest_or_none(out)) is not None:
        state, train_loss, eval_loss = _resume(latest, run, policy, optimizer)
    if ranks.world > 1:
        dist.barrier()  # everyone has read the checkpoint before rank 0 may write a new one

    model: torch.nn.Module = policy
    if ranks.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            policy, device_ids=[ranks.device.index] if ranks.device.type == "cuda" else None)
    no_previous = np.array(policy_config.action_branches, dtype=np.int64)
    sampler = WindowSampler(corpus, train_episodes, length, cfg.batch_size // ranks.world,
                            cfg.seed, ranks.rank, no_previous, cfg.windows)
    held_out_windows = eval_windows(corpus, eval_episodes, length,
                                    -(-cfg.eval_windows // ranks.world))
    # Throughput counts window slots, the frames the model runs on: padding included (with
    # K = 16, ~11% of slots with `windows: starts` on the default corpus; with `steps` a share
    # (K - 1) / (L + K - 1), ~18% on the corpus, ~21% on the demos), as flops_per_frame assumes
    # full windows.
    frames_per_step = cfg.batch_size * length
    lead = ranks.rank == 0
    n_train, n_eval = (int(x) for x in all_sum([len(train_episodes), len(eval_episodes)], ranks))
    if lead:
        _remove_stale_checkpoint_temporaries(out)
        print(f"{stage}: {policy.summary()}")
        print(f"{stage}: {n_train:,} training + {n_eval:,} held-out episodes from {data}; "
              f"{cfg.steps:,} steps x {cfg.batch_size} windows x {length} steps; "
              f"{ranks.world} rank(s) x {threads} thread(s) on {ranks.device}"
              + (f"; resuming at step {state['step']:,} from {latest}" if latest else ""))
    writer = summary_writer(out, state["step"]) if lead else None
    bar = tqdm(total=cfg.steps * frames_per_step, initial=state["step"] * frames_per_step,
               unit="frame", unit_scale=True, disable=not (progress and lead), desc=stage,
               dynamic_ncols=True)
    loader = Prefetcher(sampler.batch, state["step"], cfg.steps, cfg.prefetch)
    interval_loss, interval_steps, interval_seconds = 0.0, 0, 0.0
    try:
        while state["step"] < cfg.steps:
            started = time.perf_counter()
            step = state["step"]
            batch = loader.get(step)
            lr = learning_rate(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(step_seed(cfg.seed, ranks.rank, step, 1))  # dropout of this step
            loss = train_step(model, optimizer, batch, cfg.grad_clip, ranks)
            seconds = time.perf_counter() - started
            state["step"] = step = step + 1
            state["frames"] += frames_per_step
            state["train_seconds"] += seconds
            interval_loss, interval_steps = interval_loss + loss, interval_steps + 1
            interval_seconds += seconds
            bar.update(frames_per_step)
            if step % cfg.log_interval == 0 or step == cfg.steps:
                train_loss = interval_loss / interval_steps
                if writer is not None:
                    writer.add_scalar("losses/train", train_loss, step)
                    writer.add_scalar("charts/learning_rate", lr, step)
                    writer.add_scalar("charts/frames_per_s",
                                      interval_steps * frames_per_step / interval_seconds, step)
                bar.set_postfix(step=step, loss=f"{train_loss:.3f}")
                interval_loss, interval_steps, interval_seconds = 0.0, 0, 0.0
            if step % cfg.eval_interval == 0 or step == cfg.steps:
                eval_loss = evaluate(policy, corpus, held_out_windows, length,
                                     cfg.batch_size // ranks.world, no_previous, ranks)
                if writer is not None and eval_loss is not None:
                    writer.add_scalar("losses/eval", eval_loss, step)
            if (step % cfg.checkpoint_interval == 0 or step == cfg.steps) and lead:
                state["wall_seconds"] += time.perf_counter() - clock
                clock = time.perf_counter()
                save_step(out, policy, policy_config.to_dict(), kind="policy", stage=stage,
                          step=step, meta={"run": run, "train_loss": train_loss,
                                           "eval_loss": eval_loss},
                          trainer_state={"optimizer": optimizer.state_dict(), **state},
                          keep=cfg.keep_checkpoints)
    finally:
        loader.close()
        bar.close()
        if writer is not None:
            writer.close()

    state["wall_seconds"] += time.perf_counter() - clock
    frames_per_s = state["frames"] / state["train_seconds"] if state["train_seconds"] else None
    flops = policy.flops_per_frame()
    metrics = {
        "stage": stage, "final": True, "step": state["step"],
        "train_loss": train_loss, "eval_loss": eval_loss,
        "frames": state["frames"], "frames_per_s": frames_per_s,
        "train_seconds": state["train_seconds"], "wall_seconds": state["wall_seconds"],
        "flops_per_frame": flops,
        "gflops_per_s": frames_per_s * flops / 1e9 if frames_per_s else None,
        "world_size": ranks.world, "policy": policy.summary(),
        "checkpoint": f"checkpoints/step-{state['step']:08d}", "run": run,
    }
    if lead:
        write_json_atomic(out / METRICS, metrics)
    if ranks.world > 1:
        dist.barrier()
    return metrics


def _finished(out: Path, run: dict[str, Any]) -> dict[str, Any] | None:
    """The metrics of a finished run of the same identity in `out`, if there is one."""
    path = out / METRICS
    if not path.exists():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a damaged marker: finish (or re-score) from the checkpoints instead
    if metrics.get("final") and metrics.get("run") == run:
        return metrics
    return None


def _resume(latest: Path, run: dict[str, Any], policy: Policy, optimizer: torch.optim.Optimizer
            ) -> tuple[dict[str, Any], float | None, float | None]:
    """Load weights, AdamW state and counters from `latest` after checking it is this run's;
    returns the counters and the checkpoint's train and eval losses."""
    weights, info = load_weights(latest, kind="policy")
    meta = info.get("meta") or {}
    saved = meta.get("run") or {}
    if saved.get("policy") != run["policy"]:
        raise CheckpointError(f"checkpoint {latest}: holds a policy of another config "
                              f"({_differences(saved.get('policy'), run['policy'])}); "
                              "use another --out or the config it was trained with")
    if saved != run:
        raise UserError(f"{latest.parent.parent} holds a run with other settings "
                        f"({_differences(saved, run)}); use another --out, or the same settings "
                        "to resume")
    counters = restore_training(latest, weights, policy, optimizer,
                                ("step", "frames", "train_seconds", "wall_seconds"))
    return counters, meta.get("train_loss"), meta.get("eval_loss")


def _differences(saved: Any, now: Any, prefix: str = "") -> str:
    """'key: saved -> now' for the leaves that differ, e.g. 'config.lr: 0.001 -> 0.002'."""
    if isinstance(saved, dict) and isinstance(now, dict):
        parts = [_differences(saved.get(k), now.get(k), f"{prefix}{k}.")
                 for k in sorted(set(saved) | set(now), key=str) if saved.get(k) != now.get(k)]
        return ", ".join(p for p in parts if p)
    names = {"data": "corpus (manifest sha256)", "init": "--init weights (sha256)"}
    key = prefix.rstrip(".") or "value"
    return f"{names.get(key, key)}: {_short(saved)} -> {_short(now)}"


def _short(value: Any) -> str:
    """A value for a one-line message; sha256 digests cut to their first 12 digits."""
    if isinstance(value, str) and len(value) == 64:
        return value[:12]
    return repr(value)


def _remove_stale_checkpoint_temporaries(out: Path) -> None:
    """A job killed while saving leaves a hidden temporary folder; it is never read, drop it."""
    for tmp in (out / "checkpoints").glob(".step-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def summary_writer(out: Path, step: int) -> Any:
    """TensorBoard writer in `out/logs`; on resume it drops what a killed run logged after the
    checkpoint, so the curves do not fold back on themselves."""
    from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only on rank 0

    return SummaryWriter(str(out / "logs"), purge_step=step or None)


def format_metrics(metrics: dict[str, Any]) -> str:
    """The end-of-stage summary the CLI prints."""
    def number(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    return (f"{metrics['stage']}: step {metrics['step']:,}: train loss "
            f"{number(metrics['train_loss'], '.4f')}, eval loss "
            f"{number(metrics['eval_loss'], '.4f')}; {number(metrics['frames_per_s'], ',.0f')} "
            f"frames/s ({number(metrics['gflops_per_s'], '.1f')} GFLOP/s) on "
            f"{metrics['world_size']} rank(s); {metrics['wall_seconds']:.1f} s wall")
