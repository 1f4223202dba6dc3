"""Imitation learning (behaviour cloning) of the pixel policy: `pretrain` and `sft`.

Both stages are the same loop on different data:
- pretrain: the whole gameplay corpus (`agentalign collect`), from a random init;
- sft: a small, fixed set of curated direct demos (`agentalign collect --population direct`),
  from the pre-trained checkpoint, or from a random init for the paper's ablation.

Data: windows of K consecutive steps (`train.windows`, which says how they are drawn).

Objective: the action loss (imitation), plus, when `future_weight` > 0, a self-supervised one
(`train.future`: guess the frame that ends each window's episode; not the paper's, off by
default), whose two heads are kept in the trainer state beside AdamW's.

Exact resume. Every random draw of step s (the windows of its batch, dropout) comes from
generators seeded by (seed, rank, s), and the learning rate is a function of s, so a batch is a
pure function of the step: the loader thread can work ahead, and a resumed run needs only the
weights, the AdamW state and the step to continue bit for bit as if it had never stopped (on the
same hardware, thread count and rank count; with other ones it continues the same run up to float
rounding). That is why the trainer state holds no RNG state: there is none to carry (and with
several ranks, rank 0 could not save the others' anyway). A rerun of a finished stage is skipped
and a folder holding a run with other settings (config, corpus, init) is refused (`lifecycle`).

Distributed. Under `torchrun --nproc_per_node N` each rank reads every N-th shard and computes
the loss of its share of the batch; DDP averages the gradients. Each rank backpropagates its sum
of per-step losses divided by the number of real steps in the whole batch (all ranks), times N,
so N ranks x B windows take the same step as 1 rank x N*B windows (tested). Only rank 0 writes
checkpoints, TensorBoard scalars, the progress bar and metrics.json.

A stage folder holds checkpoints/ (`models.checkpoint.save_step`), logs/ (TensorBoard:
losses/train, losses/eval, losses/future when on, charts/learning_rate, charts/frames_per_s) and,
once finished, metrics.json (final losses, frames/s, wall time, FLOPs per frame, GFLOP/s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from agentalign import events
from agentalign.data.shards import Corpus
from agentalign.errors import ConfigError, CorpusError
from agentalign.lifecycle import StageRun, result_from
from agentalign.models.checkpoint import (
    CheckpointError,
    latest_or_none,
    load_policy,
    load_weights,
    remove_stale_temporaries,
    restore_training,
    save_step,
)
from agentalign.models.policy import Policy, PolicyConfig, get_config
from agentalign.rollout.cluster import Cluster
from agentalign.train import on_ray
from agentalign.train.bc_config import ImitationSettings, ModelSettings
from agentalign.train.distributed import (
    Ranks,
    all_reduce_gradients,
    all_sum,
    cpu_settings,
    init_distributed,
    summary_writer,
    training_threads,
)
from agentalign.train.future import FuturePredictor
from agentalign.train.schedule import warmup_cosine
from agentalign.train.windows import (
    Batch,
    Prefetcher,
    WindowSampler,
    collate,
    corpus_fingerprint,
    eval_windows,
    open_corpus,
    split_episodes,
    step_seed,
)

STAGES = ("pretrain", "sft")


@dataclass(frozen=True)
class TrainResult:
    """A finished imitation stage (its metrics.json)."""

    stage: str
    step: int
    train_loss: float | None
    eval_loss: float | None
    frames: int
    frames_per_s: float | None
    train_seconds: float
    wall_seconds: float
    flops_per_frame: float
    gflops_per_s: float | None
    world_size: int
    policy: str
    checkpoint: str  # relative to the stage folder
    future_loss: float | None = None  # the self-supervised objective's, when on (train.future)


def resolve_policy_config(model: ModelSettings, init: PolicyConfig | None) -> PolicyConfig:
    """The policy to train: the named config with the non-null fields of `model` changed, or,
    when fine-tuning, the init checkpoint's config (which the given fields must agree with)."""
    asked = {k: v for k, v in model.to_dict().items() if v is not None}
    asked = {k: tuple(v) if isinstance(v, list) else v for k, v in asked.items()}
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



def masked_action_loss(logits: list[Tensor], actions: Tensor, mask: Tensor) -> Tensor:
    """Sum over real (unpadded) steps of the per-branch cross-entropies summed over branches:
    `policy.action_loss` restricted to `mask`, times the number of real steps."""
    return sum((F.cross_entropy(branch[mask], actions[..., i][mask], reduction="sum")
                for i, branch in enumerate(logits)), torch.zeros((), device=actions.device))


@dataclass
class Future:
    """The optional self-supervised objective (train.future) and its settings."""

    predictor: FuturePredictor
    weight: float
    temperature: float

    def loss_sum(self, policy: Policy, hidden: Tensor, batch: Batch) -> Tensor:
        """The batch's summed InfoNCE loss, each window's episode end through `policy`'s CNN."""
        ends = policy.encode_frames(batch["ends"][:, None])[:, 0]
        return self.predictor.loss_sum(hidden, batch["mask"], ends, batch["episodes"],
                                       self.temperature)

    def add_to(self, optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
        """The predictor's parameters as two more groups of `optimizer`, decayed as the
        policy's are (`Policy.configure_optimizer`: matrices, not biases or norms)."""
        params = list(self.predictor.parameters())
        optimizer.add_param_group({"params": [p for p in params if p.dim() >= 2],
                                   "weight_decay": weight_decay})
        optimizer.add_param_group({"params": [p for p in params if p.dim() < 2],
                                   "weight_decay": 0.0})


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Batch,
               grad_clip: float, ranks: Ranks, future: Future | None = None
               ) -> tuple[float, float | None]:
    """One optimisation step on this rank's share of a batch; returns the batch's mean action
    loss per real step over all ranks (and the future objective's, when on). Losses are
    normalised by the real steps of the whole batch, so the step does not depend on how the
    batch is split over ranks."""
    batch = {k: v.to(ranks.device, non_blocking=True) for k, v in batch.items()}
    if future is None:
        logits = model(batch["frames"], batch["prev_actions"])
    else:
        logits, hidden = model(batch["frames"], batch["prev_actions"], hidden=True)
    loss_sum = masked_action_loss(logits, batch["actions"], batch["mask"])
    sums = [loss_sum.item(), float(batch["mask"].sum())]
    if future is not None:
        policy = model.module if isinstance(model, DistributedDataParallel) else model
        future_sum = future.loss_sum(policy, hidden, batch)
        sums.append(future_sum.item())
        loss_sum = loss_sum + future.weight * future_sum
    total, count, *future_total = all_sum(sums, ranks)
    (loss_sum * (ranks.world / count)).backward()  # DDP then averages over the ranks
    if future is not None and ranks.world > 1:  # the predictor is outside DDP: average it too
        all_reduce_gradients(future.predictor, ranks)
        for p in future.predictor.parameters():
            p.grad /= ranks.world
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(
            [*model.parameters(), *(future.predictor.parameters() if future else ())], grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / count, (future_total[0] / count if future_total else None)


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




def pretrain(settings: ImitationSettings, corpus: str | Path, out: str | Path, *,
             progress: bool = True, cluster: Cluster | None = None) -> TrainResult:
    """`agentalign pretrain`: a policy from a random init, on a gameplay corpus; with
    `cluster`, on its Ray Train workers (train.on_ray)."""
    if cluster is not None:
        return on_ray.fit(pretrain, (settings, on_ray.absolute(corpus), on_ray.absolute(out)),
                          {}, cluster, on_ray.absolute(out))
    return train("pretrain", settings, corpus, out, progress=progress)


def sft(settings: ImitationSettings, demos: str | Path, out: str | Path, *,
        init: str | Path | None = None, progress: bool = True,
        cluster: Cluster | None = None) -> TrainResult:
    """`agentalign sft`: fine-tune the policy at `init` (a checkpoint or stage folder) on curated
    demos; with `init=None`, train the same architecture from a random init (the ablation).
    `cluster`: as pretrain's."""
    if cluster is not None:
        return on_ray.fit(sft, (settings, on_ray.absolute(demos), on_ray.absolute(out)),
                          {"init": init and on_ray.absolute(init)}, cluster,
                          on_ray.absolute(out))
    return train("sft", settings, demos, out, init=init, progress=progress)


def train(stage: str, settings: ImitationSettings, data: str | Path, out: str | Path,
          init: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Run (or resume, or skip if finished) one imitation stage into the folder `out`; returns
    its result (on every rank; rank 0 writes it to `out/metrics.json`)."""
    if stage not in STAGES:
        raise ValueError(f"unknown imitation stage {stage!r}; valid: {STAGES}")
    ranks = init_distributed(settings.device)
    threads = training_threads(settings.num_threads, ranks)
    try:
        with cpu_settings(threads):
            metrics = _train(stage, settings, Path(data), Path(out), init, progress, ranks,
                             threads)
            return result_from(TrainResult, metrics)
    finally:
        if ranks.owns_group:
            dist.destroy_process_group()


def _train(stage: str, cfg: ImitationSettings, data: Path, out: Path, init: str | Path | None,
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

    train_episodes, eval_episodes = split_episodes(corpus, cfg.episodes, cfg.eval_fraction, data)
    if all_sum([float(len(train_episodes) == 0)], ranks)[0]:  # every rank stops, none hangs
        raise CorpusError(f"corpus {data}: a rank has no training episodes; use fewer ranks, "
                          "more episodes or a smaller eval_fraction")
    if cfg.batch_size % ranks.world:
        raise ConfigError(f"batch_size {cfg.batch_size} does not split over {ranks.world} ranks")

    lead = ranks.rank == 0
    life = StageRun(out, stage, {
        "stage": stage, "config": cfg.identity(), "data": corpus_fingerprint(corpus),
        "policy": policy_config.to_dict(), "init": init_info["sha256"] if init_info else None},
        say=lead)
    run = life.identity
    if (finished := life.begin(mark=lead)) is not None:
        return finished

    torch.manual_seed(cfg.seed)  # the same init on every rank (DDP also broadcasts rank 0's)
    policy = Policy(policy_config)
    if init_policy is not None:
        policy.load_state_dict(init_policy.state_dict())
    policy.to(ranks.device).train()
    optimizer = policy.configure_optimizer(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
    future = None
    if cfg.future_weight:
        future = Future(FuturePredictor(policy_config.n_embd).to(ranks.device),
                        cfg.future_weight, cfg.future_temperature)
        future.add_to(optimizer, cfg.weight_decay)
    state = {"step": 0, "frames": 0, "train_seconds": 0.0, "wall_seconds": 0.0}
    train_loss = eval_loss = future_loss = None
    if (latest := latest_or_none(out)) is not None:
        state, train_loss, eval_loss, future_loss = _resume(latest, life, policy, optimizer,
                                                            future)
    if ranks.world > 1:
        dist.barrier()  # everyone has read the checkpoint before rank 0 may write a new one

    model: torch.nn.Module = policy
    if ranks.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            policy, device_ids=[ranks.device.index] if ranks.device.type == "cuda" else None)
    no_previous = np.array(policy_config.action_branches, dtype=np.int64)
    sampler = WindowSampler(corpus, train_episodes, length, cfg.batch_size // ranks.world,
                            cfg.seed, ranks.rank, no_previous, cfg.windows,
                            ends=future is not None)
    held_out_windows = eval_windows(corpus, eval_episodes, length,
                                    -(-cfg.eval_windows // ranks.world))
    # Throughput counts window slots, the frames the model runs on: padding included (with
    # K = 16, ~11% of slots with `windows: starts` on the default corpus; with `steps` a share
    # (K - 1) / (L + K - 1), ~18% on the corpus, ~21% on the demos), as flops_per_frame assumes
    # full windows.
    frames_per_step = cfg.batch_size * length
    n_train, n_eval = (int(x) for x in all_sum([len(train_episodes), len(eval_episodes)], ranks))
    if lead:
        remove_stale_temporaries(out)
        print(f"{stage}: {policy.summary()}")
        print(f"{stage}: {n_train:,} training + {n_eval:,} held-out episodes from {data}; "
              f"{cfg.steps:,} steps x {cfg.batch_size} windows x {length} steps; "
              f"{ranks.world} rank(s) x {threads} thread(s) on {ranks.device}"
              + (f"; resuming at step {state['step']:,} from {latest}" if latest else ""))
    writer = summary_writer(out, state["step"]) if lead else None
    bar = events.progress(stage, cfg.steps * frames_per_step,
                          initial=state["step"] * frames_per_step, unit="frame",
                          unit_scale=True, show=progress and lead)
    loader = Prefetcher(sampler.batch, state["step"], cfg.steps, cfg.prefetch)
    interval_loss, interval_future, interval_steps, interval_seconds = 0.0, 0.0, 0, 0.0
    try:
        while state["step"] < cfg.steps:
            started = time.perf_counter()
            step = state["step"]
            batch = loader.get(step)
            lr = warmup_cosine(step, cfg.steps, cfg.warmup_steps, cfg.lr, cfg.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(step_seed(cfg.seed, ranks.rank, step, 1))  # dropout of this step
            loss, future_step = train_step(model, optimizer, batch, cfg.grad_clip, ranks,
                                           future)
            seconds = time.perf_counter() - started
            state["step"] = step = step + 1
            state["frames"] += frames_per_step
            state["train_seconds"] += seconds
            interval_loss, interval_steps = interval_loss + loss, interval_steps + 1
            interval_future += future_step or 0.0
            interval_seconds += seconds
            bar.update(frames_per_step)
            if step % cfg.log_interval == 0 or step == cfg.steps:
                train_loss = interval_loss / interval_steps
                if future is not None:
                    future_loss = interval_future / interval_steps
                if writer is not None:
                    writer.add_scalar("losses/train", train_loss, step)
                    if future_loss is not None:
                        writer.add_scalar("losses/future", future_loss, step)
                    writer.add_scalar("charts/learning_rate", lr, step)
                    writer.add_scalar("charts/frames_per_s",
                                      interval_steps * frames_per_step / interval_seconds, step)
                bar.set_postfix(step=step, loss=f"{train_loss:.3f}")
                interval_loss, interval_future, interval_steps = 0.0, 0.0, 0
                interval_seconds = 0.0
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
                                           "eval_loss": eval_loss,
                                           **({"future_loss": future_loss} if future else {})},
                          trainer_state={"optimizer": optimizer.state_dict(), **state, **(
                              {"future": future.predictor.state_dict()} if future else {})},
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
        "step": state["step"],
        "train_loss": train_loss, "eval_loss": eval_loss,
        **({"future_loss": future_loss} if future is not None else {}),
        "frames": state["frames"], "frames_per_s": frames_per_s,
        "train_seconds": state["train_seconds"], "wall_seconds": state["wall_seconds"],
        "flops_per_frame": flops,
        "gflops_per_s": frames_per_s * flops / 1e9 if frames_per_s else None,
        "world_size": ranks.world, "policy": policy.summary(),
        "checkpoint": f"checkpoints/step-{state['step']:08d}",
    }
    record = life.finish(metrics, write=lead)
    if ranks.world > 1:
        dist.barrier()
    return record


def _resume(latest: Path, life: StageRun, policy: Policy, optimizer: torch.optim.Optimizer,
            future: Future | None) -> tuple[dict[str, Any], float | None, float | None,
                                             float | None]:
    """Load weights, AdamW state, counters (and the future predictor) from `latest` after
    checking it is this run's; returns the counters and the checkpoint's losses."""
    weights, info = load_weights(latest, kind="policy")
    meta = info.get("meta") or {}
    saved = meta.get("run") or {}
    if saved.get("policy") != life.identity["policy"]:
        raise CheckpointError(f"checkpoint {latest}: holds a policy of another config; use "
                              "another --out or the config it was trained with")
    life.refuse_other(saved, latest.parent.parent)
    counters = restore_training(latest, weights, policy, optimizer,
                                ("step", "frames", "train_seconds", "wall_seconds"),
                                optional=("future",))
    if future is not None:
        if counters["future"] is None:
            raise CheckpointError(f"checkpoint {latest}: has no future predictor; resume it "
                                  "with the settings it was trained with")
        future.predictor.load_state_dict(counters["future"])
    counters.pop("future")
    return counters, meta.get("train_loss"), meta.get("eval_loss"), meta.get("future_loss")


def summary(result: TrainResult) -> str:
    """The end-of-stage summary the CLI prints."""
    def number(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    return (f"{result.stage}: step {result.step:,}: train loss "
            f"{number(result.train_loss, '.4f')}, eval loss "
            f"{number(result.eval_loss, '.4f')}; {number(result.frames_per_s, ',.0f')} "
            f"frames/s ({number(result.gflops_per_s, '.1f')} GFLOP/s) on "
            f"{result.world_size} rank(s); {result.wall_seconds:.1f} s wall\n"
            f"checkpoint: {result.checkpoint}")
