"""`agentalign reward`: the reward model, trained on preference labels.

Data: the labels of one target and their trajectories, read once (`train.reward_data`).

Loss. Bradley-Terry, written plainly: `-logsigmoid(r_chosen - r_rejected)`, mean over pairs;
a tie ("equal") is a soft target of 0.5, the binary cross-entropy of the same sigmoid
(`models.reward.bradley_terry_losses`), which for decisive pairs is that loss bit for bit.
The batch of step s is drawn with (seed, s), the learning rate is a function of s, so a resumed
run continues as if it never stopped (bc.py's argument). A non-finite loss stops the run before
the step is taken, with the last good checkpoint left as it was.

What trains. By default everything: the CNN, the previous-action embeddings, the transformer,
the final norm and the reward model's own parts (score head, decision-index embedding, length
weight, and with `summary_stride` the episode summary's norm and heads). With `freeze_cnn` the
CNN keeps its init and its per-frame features are computed once per trajectory (the CNN is most
of the FLOPs on 64x64 frames): ~3x cheaper steps, but lower held-out accuracy
(configs/reward.yaml has the figures); the settings refuse it with an episode summary, whose
frames train through the CNN.

Distributed. Under torchrun each rank scores its share of a step's pairs and backpropagates its
share of the batch mean; the gradients are summed over ranks by hand (`average_gradients`), as
DDP would, since cached features bypass `forward`. Only rank 0 writes.

A stage folder holds checkpoints/ (kind "reward"), logs/ (TensorBoard: losses/train,
charts/learning_rate, charts/pairs_per_s, eval/accuracy*) and metrics.json. The label-scaling
study is `train.reward_study`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from agentalign import events
from agentalign.errors import UserError
from agentalign.lifecycle import StageRun, result_from
from agentalign.models.checkpoint import (
    config_from_info,
    latest_or_none,
    load_weights,
    remove_stale_temporaries,
    restore_training,
    save_step,
)
from agentalign.models.policy import PolicyConfig
from agentalign.models.reward import (
    KIND,
    SUMMARY_WIDTH,
    RewardModel,
    bradley_terry_losses,
    checkpoint_meta,
    encode_fitted,
    init_from_policy,
)
from agentalign.rollout.cluster import Cluster
from agentalign.train import on_ray
from agentalign.train.bc import resolve_policy_config
from agentalign.train.distributed import (
    Ranks,
    all_sum,
    cpu_settings,
    init_distributed,
    summary_writer,
    training_threads,
)
from agentalign.train.reward_config import RewardSettings
from agentalign.train.reward_data import LabelData, Pairs, evaluate, load_labels
from agentalign.train.schedule import warmup_cosine
from agentalign.train.windows import step_seed


class TrainingError(UserError):
    """Training that cannot go on (a non-finite loss)."""


@dataclass(frozen=True)
class RewardResult:
    """A trained reward model (its metrics.json)."""

    target: str
    init: str  # agent or random
    init_checkpoint: str | None
    labels_used: int
    train_accuracy: float
    heldout: dict[str, float]  # accuracy, accuracy_easy, accuracy_hard and pair counts
    steps: int
    batch_size: int
    train_loss: float | None
    train_seconds: float
    pairs_per_s: float | None
    wall_seconds: float
    checkpoint: str



def make_model(config: PolicyConfig, seed: int, init: Path | None, summary_stride: int = 0,
               summary_width: int = SUMMARY_WIDTH) -> RewardModel:
    """A reward model seeded by `seed`, its trunk copied from `init` if given."""
    torch.manual_seed(seed)
    model = RewardModel(config, summary_stride, summary_width)
    if init is not None:
        init_from_policy(model, init)
    return model


def frozen_features(model: RewardModel, data: LabelData, cfg: RewardSettings) -> Tensor | None:
    """With `freeze_cnn`, freeze the model's CNN and return every trajectory's CNN features
    (computed once: the CNN is most of the compute on 64x64 frames); else None."""
    if not cfg.freeze_cnn:
        return None
    model.cnn.requires_grad_(False)
    return encode_fitted(model, data.fitted["frames"])


def fit(model: RewardModel, data: LabelData, pairs: Pairs, cfg: RewardSettings, ranks: Ranks, *,
        seed: int, out: Path | None = None, life: StageRun | None = None,
        features: Tensor | None = None, progress: bool = False) -> dict[str, Any]:
    """Train on `pairs` for `cfg.steps_for(len(pairs))` steps; with `out`, log to TensorBoard,
    checkpoint and resume. `features`: the trajectories' CNN features from `frozen_features`
    (then the CNN stays as it is). Returns the step count, final train loss and timings."""
    steps, batch = cfg.steps_for(len(pairs)), min(cfg.batch_size, len(pairs))
    model.to(ranks.device).train()
    if features is not None:
        model.cnn.requires_grad_(False)
    optimizer = model.configure_optimizer(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2))
    state: dict[str, Any] = {"step": 0, "pairs": 0, "train_seconds": 0.0}
    train_loss, latest = None, None
    if out is not None and (latest := latest_or_none(out)) is not None:
        assert life is not None, "a fit that checkpoints has a StageRun"
        state, train_loss = _resume(latest, life, model, optimizer)
    if ranks.world > 1:
        dist.barrier()
    lead = ranks.rank == 0
    writer = summary_writer(out, state["step"]) if out is not None and lead else None
    bar = events.progress("reward", steps, initial=state["step"], unit="step",
                          show=progress and lead)
    interval_loss, interval_steps, interval_seconds = 0.0, 0, 0.0
    try:
        while state["step"] < steps:
            started, step = time.perf_counter(), state["step"]
            rng = np.random.default_rng(step_seed(seed, 0, step, 0))
            mine = rng.choice(len(pairs), size=batch, replace=False)[ranks.rank::ranks.world]
            chosen, rejected = pairs.chosen[mine], pairs.rejected[mine]
            target = None if pairs.target is None else torch.from_numpy(pairs.target[mine])
            both = np.concatenate([chosen, rejected])
            prev, mask, when = (data.fitted[k][both].to(ranks.device)
                                for k in ("prev_actions", "mask", "steps"))
            summary = [data.fitted[k][both].to(ranks.device) for k in
                       ("summary_frames", "summary_mask")] if model.summary_stride else []
            lr = warmup_cosine(step, steps, cfg.warmup_steps, cfg.lr, cfg.min_lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if features is None:
                scores = model(data.fitted["frames"][both].to(ranks.device), prev, mask, when,
                               *summary)
            else:  # the CNN is frozen: start from its cached features
                scores = model.forward_features(features[both].to(ranks.device), prev, mask,
                                                when)
            r_chosen, r_rejected = scores[:len(mine)], scores[len(mine):]
            loss_sum = bradley_terry_losses(r_chosen, r_rejected,
                                            None if target is None else
                                            target.to(ranks.device)).sum()
            loss = all_sum([loss_sum.item()], ranks)[0] / batch
            if not math.isfinite(loss):
                where = f"; the last good checkpoint is {latest}" if latest else ""
                raise TrainingError(f"reward: the loss became {loss} at step {step}; stopped "
                                    f"before taking that step{where}. Lower lr or check the "
                                    "labels")
            (loss_sum / batch).backward()
            average_gradients(model, ranks)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - started
            state["step"] = step = step + 1
            state["pairs"] += batch
            state["train_seconds"] += seconds
            interval_loss, interval_steps = interval_loss + loss, interval_steps + 1
            interval_seconds += seconds
            bar.update(1)
            if step % cfg.log_interval == 0 or step == steps:
                train_loss = interval_loss / interval_steps
                if writer is not None:
                    writer.add_scalar("losses/train", train_loss, step)
                    writer.add_scalar("charts/learning_rate", lr, step)
                    writer.add_scalar("charts/pairs_per_s",
                                      interval_steps * batch / interval_seconds, step)
                bar.set_postfix(loss=f"{train_loss:.4f}")
                interval_loss, interval_steps, interval_seconds = 0.0, 0, 0.0
            if out is not None and lead and (step % cfg.checkpoint_interval == 0
                                             or step == steps):
                latest = save_step(out, model, model.config.to_dict(), kind=KIND, stage="reward",
                                   step=step, meta={"run": life.identity if life else None,
                                                    "train_loss": train_loss,
                                                    **checkpoint_meta(model)},
                                   trainer_state={"optimizer": optimizer.state_dict(), **state},
                                   keep=cfg.keep_checkpoints)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return {"steps": state["step"], "batch_size": batch, "train_loss": train_loss,
            "train_seconds": state["train_seconds"],
            "pairs_per_s": state["pairs"] / state["train_seconds"]
            if state["train_seconds"] else None}


def average_gradients(model: torch.nn.Module, ranks: Ranks) -> None:
    """Sum the ranks' gradients (each rank's loss is its pairs' share of the batch mean), as
    DDP would; done by hand because a frozen CNN's cached features bypass `forward`."""
    if ranks.world == 1:
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)


def _resume(latest: Path, life: StageRun, model: RewardModel,
            optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], float | None]:
    weights, info = load_weights(latest, kind=KIND)
    life.refuse_other((info.get("meta") or {}).get("run"), latest.parent.parent)
    counters = restore_training(latest, weights, model, optimizer,
                                ("step", "pairs", "train_seconds"))
    return counters, (info.get("meta") or {}).get("train_loss")


def _policy_config(cfg: RewardSettings, init: Path | None) -> tuple[PolicyConfig, str | None]:
    """The trunk's config (the init checkpoint's, or the YAML's for a random init) and the init
    checkpoint's sha256."""
    if init is None:
        return resolve_policy_config(cfg.model, None), None
    _, info = load_weights(init, kind="policy", verify=False)
    return config_from_info(info, init), info.get("sha256")


def run(settings: RewardSettings, labels: str | Path, target: str, out: str | Path,
        init: str | Path | None, labels_used: int | None = None, *, progress: bool = True,
        cluster: Cluster | None = None) -> RewardResult:
    """Train one reward model on the first `labels_used` training labels of `target` (all if
    None); `init` is a policy checkpoint (agent encoder) or None (random init). A finished run
    of the same settings is skipped; rank 0 writes metrics.json. With `cluster`, on its Ray
    Train workers (train.on_ray)."""
    if cluster is not None:
        return on_ray.fit(run, (settings, on_ray.absolute(labels), target,
                                on_ray.absolute(out), init and on_ray.absolute(init),
                                labels_used), {}, cluster, on_ray.absolute(out))
    ranks = init_distributed(settings.device)
    try:
        with cpu_settings(training_threads(settings.num_threads, ranks)):
            metrics = _run(settings, ranks, Path(labels), target, Path(out),
                           Path(init) if init is not None else None, labels_used, progress)
            return result_from(RewardResult, metrics)
    finally:
        if ranks.owns_group:
            dist.destroy_process_group()


def _run(cfg: RewardSettings, ranks: Ranks, labels: Path, target: str, out: Path,
         init: Path | None, labels_used: int | None, progress: bool) -> dict[str, Any]:
    clock = time.perf_counter()
    if labels_used is not None and labels_used < 1:
        raise UserError(f"--labels-used must be >= 1, got {labels_used}")
    policy_config, init_sha = _policy_config(cfg, init)
    data = load_labels(labels, target, policy_config, cfg.summary_stride)
    if labels_used is not None and labels_used > len(data.train):
        raise UserError(f"--labels-used {labels_used}: the store has only {len(data.train)} "
                        f"training labels for {target!r}; label more pairs")
    used = len(data.train) if labels_used is None else labels_used
    pairs = data.train.take(np.arange(used))
    lead = ranks.rank == 0
    life = StageRun(out, "reward", {
        "target": target, "labels": data.fingerprint, "labels_used": used,
        "init": init_sha, "policy": policy_config.to_dict(), "config": cfg.identity()}, say=lead)
    if (finished := life.begin(mark=lead)) is not None:
        return finished
    if lead:
        remove_stale_temporaries(out)
    model = make_model(policy_config, cfg.seed, init, cfg.summary_stride, cfg.summary_width)
    if lead:
        print(f"reward: {model.num_params() / 1e6:.2f}M parameters, "
              f"{'agent-encoder init from ' + str(init) if init else 'random init'}; "
              f"{used:,} of {len(data.train):,} train labels for {target!r}, "
              f"{cfg.steps_for(used)} steps; {len(data.heldout):,} held-out pairs; "
              f"{ranks.world} rank(s) x {torch.get_num_threads()} thread(s) on {ranks.device}"
              + (f"; episode summary every {cfg.summary_stride} steps, "
                 f"{cfg.summary_width or 'one per CNN channel'} detectors"
                 if cfg.summary_stride else ""))
    features = frozen_features(model, data, cfg)
    result = fit(model, data, pairs, cfg, ranks, seed=cfg.seed, out=out, life=life,
                 features=features, progress=progress)
    heldout = evaluate(model, data, features=features)
    train_acc = evaluate(model, data, pairs, features=features)["accuracy"]
    metrics = {"target": target, "init": "agent" if init else "random",
               "init_checkpoint": str(init) if init else None, "labels_used": used,
               "train_accuracy": train_acc, "heldout": heldout, **result,
               "wall_seconds": time.perf_counter() - clock,
               "checkpoint": f"checkpoints/step-{result['steps']:08d}"}
    if lead:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(out / "logs")) as writer:
            for key in ("accuracy", "accuracy_easy", "accuracy_hard", "anywhere_accuracy",
                        "anywhere_accuracy_easy", "anywhere_accuracy_hard"):
                if key in heldout:
                    writer.add_scalar(f"eval/{key}", heldout[key], result["steps"])
    return life.finish(metrics, write=lead)


def summary(result: RewardResult) -> str:
    h = result.heldout
    return (f"reward ({result.target}, {result.init} init, {result.labels_used:,} labels, "
            f"{result.steps} steps): held-out accuracy {h['accuracy']:.1%} on "
            f"{h['pairs']:,} pairs (easy {h['accuracy_easy']:.1%} on {h['easy_pairs']:,}, hard "
            f"{h['accuracy_hard']:.1%} on {h['hard_pairs']:,}); train accuracy "
            f"{result.train_accuracy:.1%}; {result.wall_seconds:.1f} s wall\n"
            + (f"from starts anywhere: {h['anywhere_accuracy']:.1%} on {h['anywhere_pairs']:,} "
               f"pairs (easy {h['anywhere_accuracy_easy']:.1%}, hard "
               f"{h['anywhere_accuracy_hard']:.1%})\n" if "anywhere_accuracy" in h else "")
            + f"checkpoint: {result.checkpoint}")
