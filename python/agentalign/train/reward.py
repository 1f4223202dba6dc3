"""`agentalign reward`: the reward model from preference labels, and the label-scaling study.

Data. The labels of one target in a label store (`agentalign label`): the first N training
labels (oldest first), and every held-out label, whose pairs come from separate rollouts. Each
referenced trajectory is read once from its corpus and fitted to the context (`models.reward.
fit_trajectory`: its last K decisions, with their previous actions), then
kept in memory as uint8 tensors (800 episodes x 16 frames x 12 KB = 157 MB), so training never
decodes a frame twice. Outcomes are read only to split held-out accuracy into easy pairs
(different outcomes) and hard ones (same outcome); they never reach the model.

Loss. Bradley-Terry, written plainly: `-logsigmoid(r_chosen - r_rejected)`, mean over pairs.
The batch of step s is drawn with (seed, s), the learning rate is a function of s, so a resumed
run continues as if it never stopped (bc.py's argument). A non-finite loss stops the run before
the step is taken, with the last good checkpoint left as it was.

What trains. By default everything: the CNN, the previous-action embeddings, the transformer,
the final norm and the reward model's own parts (score head, decision-index embedding, length
weight). With `freeze_cnn` the CNN keeps its init and its per-frame features are computed once
per trajectory (the CNN is most of the FLOPs on 64x64 frames): ~3x cheaper steps, but lower
held-out accuracy (configs/reward.yaml has the figures).

Distributed. Under torchrun each rank scores its share of a step's pairs and backpropagates its
share of the batch mean; the gradients are summed over ranks by hand (`average_gradients`), as
DDP would, since cached features bypass `forward`. Only rank 0 writes.

A stage folder holds checkpoints/ (kind "reward"), logs/ (TensorBoard: losses/train,
charts/learning_rate, charts/pairs_per_s, eval/accuracy*) and metrics.json. The study folder
holds study.json (one entry per run, written as each finishes, so a rerun resumes), study.md
(the table) and study.png (accuracy vs labels, log x, one line per init with its min-max band).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from tqdm import tqdm

from agentalign.atomic import write_json_atomic
from agentalign.config import checked_values
from agentalign.data.shards import Corpus
from agentalign.errors import ConfigError, CorpusError, UserError
from agentalign.models.checkpoint import (
    config_from_info,
    latest_or_none,
    load_weights,
    restore_training,
    save_step,
)
from agentalign.models.policy import PolicyConfig
from agentalign.models.reward import (
    KIND,
    RewardModel,
    accuracy,
    encode_fitted,
    fit_trajectory,
    init_from_policy,
    score_fitted,
    stack_fitted,
)
from agentalign.spec import PADS
from agentalign.train.bc import (
    Ranks,
    all_sum,
    cpu_settings,
    init_distributed,
    resolve_policy_config,
    step_seed,
    summary_writer,
)
from agentalign.train.label import STORE
from agentalign.train.preferences import LabelStore, LabelStoreError

METRICS = "metrics.json"
INITS = ("agent", "random")


class TrainingError(UserError):
    """Training that cannot go on (a non-finite loss)."""


# --- config --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardConfig:
    """The hyper-parameters of the reward model; documented in configs/reward.yaml."""

    model: dict[str, Any]
    freeze_cnn: bool
    batch_size: int
    epochs: float
    min_steps: int
    max_steps: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    beta1: float
    beta2: float
    grad_clip: float
    log_interval: int
    checkpoint_interval: int
    keep_checkpoints: int
    seed: int
    num_threads: int
    device: str
    study: dict[str, Any]

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> RewardConfig:
        values = checked_values(
            cls, config, "reward", ("epochs", "lr", "min_lr", "weight_decay", "beta1", "beta2",
                                    "grad_clip"),
            {"batch_size": 1, "min_steps": 1, "max_steps": 1, "warmup_steps": 0,
             "log_interval": 1, "checkpoint_interval": 1, "keep_checkpoints": 0, "seed": 0,
             "num_threads": 0})
        if values["min_steps"] > values["max_steps"] or values["epochs"] <= 0:
            raise ConfigError("need epochs > 0 and min_steps <= max_steps")
        if values["lr"] <= 0 or not 0 <= values["min_lr"] <= values["lr"]:
            raise ConfigError("need lr > 0 and 0 <= min_lr <= lr")
        if not isinstance(values["freeze_cnn"], bool):
            raise ConfigError(f"freeze_cnn must be true or false, got {values['freeze_cnn']!r}")
        if values["device"] not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {values['device']!r}")
        study = values["study"]
        counts, seeds = study.get("label_counts"), study.get("seeds")
        if not (isinstance(counts, list) and counts and all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in counts)):
            raise ConfigError(f"study.label_counts must be positive integers, got {counts!r}")
        if not (isinstance(seeds, list) and seeds and all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
            raise ConfigError(f"study.seeds must be integers >= 0, got {seeds!r}")
        workers = study.get("workers", 1)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"study.workers must be an integer >= 1, got {workers!r}")
        if not set(study.get("inits") or ["?"]) <= set(INITS):
            raise ConfigError(f"study.inits must be a subset of {list(INITS)}")
        return cls(**values)

    def steps_for(self, labels: int) -> int:
        """Optimisation steps for `labels` labels: `epochs` passes, clamped."""
        batch = min(self.batch_size, labels)
        return int(min(self.max_steps, max(self.min_steps, math.ceil(self.epochs * labels
                                                                     / batch))))


def learning_rate(step: int, steps: int, cfg: RewardConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    progress = (step - cfg.warmup_steps) / max(1, steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


# --- data ----------------------------------------------------------------------------------------


@dataclass
class Pairs:
    """Labelled pairs as indices into a trajectory table: `chosen` was preferred."""

    chosen: np.ndarray
    rejected: np.ndarray

    def __len__(self) -> int:
        return len(self.chosen)

    def take(self, index: np.ndarray) -> Pairs:
        return Pairs(self.chosen[index], self.rejected[index])


@dataclass
class LabelData:
    """Every trajectory the labels of one target refer to, fitted once, and the pairs."""

    fitted: dict[str, Tensor]  # frames [N, K, H, W, 3], prev_actions [N, K, 2], mask [N, K]
    outcomes: np.ndarray  # [N] for the easy/hard split of the held-out accuracy only
    train: Pairs  # all training labels, oldest first
    heldout: Pairs
    fingerprint: str  # sha256 of the labels (pairs and choices), for resume checks


def load_labels(labels_dir: str | Path, target: str, config: PolicyConfig) -> LabelData:
    """Read a target's labels and fit their trajectories to `config`'s context."""
    if target not in PADS:
        raise UserError(f"unknown target {target!r}: choose one of {list(PADS)}")
    folder = Path(labels_dir)
    store = LabelStore(folder / STORE)
    try:
        rows = {split: store.labelled_pairs(target, split) for split in ("train", "heldout")}
        counts = store.counts()
    finally:
        store.close()
    if counts["labels"] == 0:
        raise LabelStoreError(f"label store {folder / STORE}: holds no labels; run "
                              "`agentalign label` first")
    for split, found in rows.items():
        if not found:
            raise LabelStoreError(f"label store {folder / STORE}: no {split} labels for target "
                                  f"{target!r}; label it with `agentalign label --target "
                                  f"{target}`")
    table: dict[tuple[str, int], int] = {}
    for found in rows.values():
        for corpus_a, ep_a, corpus_b, ep_b, _ in found:
            for key in ((corpus_a, ep_a), (corpus_b, ep_b)):
                table.setdefault(key, len(table))
    corpora: dict[str, Corpus] = {}
    fitted, outcomes = [], []
    frame_shape = (config.obs_height, config.obs_width, 3)
    for name, episode in table:
        if name not in corpora:
            try:
                corpora[name] = Corpus(folder / name)
            except CorpusError as e:
                raise LabelStoreError(f"label store {folder / STORE}: labels refer to the corpus "
                                      f"{name!r}, which cannot be read ({e})") from None
            if corpora[name].obs_shape != frame_shape:
                raise LabelStoreError(f"corpus {folder / name}: holds "
                                      f"{'x'.join(map(str, corpora[name].obs_shape))} frames, "
                                      f"the reward model takes {'x'.join(map(str, frame_shape))}")
        corpus = corpora[name]
        if not 0 <= episode < corpus.num_episodes:
            raise LabelStoreError(f"label store {folder / STORE}: labels refer to episode "
                                  f"{episode} of {name!r}, which holds {corpus.num_episodes}")
        steps = corpus.episode(episode)
        fitted.append(fit_trajectory(steps["frames"], steps["actions"], config))
        outcomes.append(int(corpus.episodes["outcomes"][episode]))

    def pairs(found: list[tuple[str, int, str, int, int]]) -> Pairs:
        a = np.array([table[(r[0], r[1])] for r in found], dtype=np.int64)
        b = np.array([table[(r[2], r[3])] for r in found], dtype=np.int64)
        choice = np.array([r[4] for r in found], dtype=np.int64)
        return Pairs(np.where(choice == 0, a, b), np.where(choice == 0, b, a))

    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    return LabelData(stack_fitted(fitted), np.array(outcomes), pairs(rows["train"]),
                     pairs(rows["heldout"]), digest)


def evaluate(model: RewardModel, data: LabelData, pairs: Pairs | None = None,
             features: Tensor | None = None) -> dict[str, float]:
    """Held-out accuracy, overall and on easy (different outcomes) and hard (same) pairs.
    `features`: the trajectories' cached CNN features, when the CNN is frozen."""
    pairs = data.heldout if pairs is None else pairs
    used = np.unique(np.concatenate([pairs.chosen, pairs.rejected]))
    scores = np.full(len(data.outcomes), np.nan, dtype=np.float64)
    if features is None:
        scores[used] = score_fitted(model, {k: v[used] for k, v in data.fitted.items()})
    else:
        scores[used] = score_features(model, features[used], data.fitted["prev_actions"][used],
                                      data.fitted["mask"][used], data.fitted["steps"][used])
    zeros = np.zeros(len(pairs), dtype=np.int64)
    easy = data.outcomes[pairs.chosen] != data.outcomes[pairs.rejected]
    out = {"accuracy": accuracy(scores, pairs.chosen, pairs.rejected, zeros),
           "pairs": len(pairs), "easy_pairs": int(easy.sum()), "hard_pairs": int((~easy).sum())}
    for name, keep in (("easy", easy), ("hard", ~easy)):
        out[f"accuracy_{name}"] = accuracy(scores, pairs.chosen[keep], pairs.rejected[keep],
                                           zeros[keep])
    return out


@torch.no_grad()
def score_features(model: RewardModel, features: Tensor, prev_actions: Tensor, mask: Tensor,
                   steps: Tensor, batch_size: int = 256) -> np.ndarray:
    device, was_training = model.rope_cos.device, model.training
    model.eval()
    scores = [model.forward_features(features[i:i + batch_size].to(device),
                                     prev_actions[i:i + batch_size].to(device),
                                     mask[i:i + batch_size].to(device),
                                     steps[i:i + batch_size].to(device)).float().cpu()
              for i in range(0, len(mask), batch_size)]
    model.train(was_training)
    return torch.cat(scores).numpy()


# --- training ------------------------------------------------------------------------------------


def make_model(config: PolicyConfig, seed: int, init: Path | None) -> RewardModel:
    """A reward model seeded by `seed`, its trunk copied from `init` if given."""
    torch.manual_seed(seed)
    model = RewardModel(config)
    if init is not None:
        init_from_policy(model, init)
    return model


def frozen_features(model: RewardModel, data: LabelData, cfg: RewardConfig) -> Tensor | None:
    """With `freeze_cnn`, freeze the model's CNN and return every trajectory's CNN features
    (computed once: the CNN is most of the compute on 64x64 frames); else None."""
    if not cfg.freeze_cnn:
        return None
    model.cnn.requires_grad_(False)
    return encode_fitted(model, data.fitted["frames"])


def fit(model: RewardModel, data: LabelData, pairs: Pairs, cfg: RewardConfig, ranks: Ranks, *,
        seed: int, out: Path | None = None, run: dict[str, Any] | None = None,
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
        state, train_loss = _resume(latest, run or {}, model, optimizer)
    if ranks.world > 1:
        dist.barrier()
    lead = ranks.rank == 0
    writer = summary_writer(out, state["step"]) if out is not None and lead else None
    bar = tqdm(total=steps, initial=state["step"], unit="step", desc="reward",
               disable=not (progress and lead), dynamic_ncols=True)
    interval_loss, interval_steps, interval_seconds = 0.0, 0, 0.0
    try:
        while state["step"] < steps:
            started, step = time.perf_counter(), state["step"]
            rng = np.random.default_rng(step_seed(seed, 0, step, 0))
            mine = rng.choice(len(pairs), size=batch, replace=False)[ranks.rank::ranks.world]
            chosen, rejected = pairs.chosen[mine], pairs.rejected[mine]
            both = np.concatenate([chosen, rejected])
            prev, mask, when = (data.fitted[k][both].to(ranks.device)
                                for k in ("prev_actions", "mask", "steps"))
            lr = learning_rate(step, steps, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if features is None:
                scores = model(data.fitted["frames"][both].to(ranks.device), prev, mask, when)
            else:  # the CNN is frozen: start from its cached features
                scores = model.forward_features(features[both].to(ranks.device), prev, mask,
                                                when)
            r_chosen, r_rejected = scores[:len(mine)], scores[len(mine):]
            loss_sum = -torch.nn.functional.logsigmoid(r_chosen - r_rejected).sum()
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
                                   step=step, meta={"run": run, "train_loss": train_loss},
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


def _resume(latest: Path, run: dict[str, Any], model: RewardModel,
            optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], float | None]:
    weights, info = load_weights(latest, kind=KIND)
    saved = (info.get("meta") or {}).get("run")
    if saved != run:
        raise UserError(f"{latest.parent.parent} holds a reward run with other settings (labels, "
                        "target, init or config); use another --out, or the same settings to "
                        "resume")
    counters = restore_training(latest, weights, model, optimizer,
                                ("step", "pairs", "train_seconds"))
    return counters, (info.get("meta") or {}).get("train_loss")


def _policy_config(cfg: RewardConfig, init: Path | None) -> tuple[PolicyConfig, str | None]:
    """The trunk's config (the init checkpoint's, or the YAML's for a random init) and the init
    checkpoint's sha256."""
    if init is None:
        return resolve_policy_config(cfg.model, None), None
    _, info = load_weights(init, kind="policy", verify=False)
    return config_from_info(info, init), info.get("sha256")


def _setup(config: dict[str, Any]) -> tuple[RewardConfig, Ranks, int]:
    cfg = RewardConfig.from_dict(config)
    ranks = init_distributed(cfg.device)
    threads = cfg.num_threads or max(1, len(os.sched_getaffinity(0)) // ranks.local_world)
    return cfg, ranks, threads


# --- the stage -----------------------------------------------------------------------------------


def train_reward(config: dict[str, Any], labels: str | Path, target: str, out: str | Path,
                 init: str | Path | None, labels_used: int | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Train one reward model on the first `labels_used` training labels of `target` (all if
    None); `init` is a policy checkpoint (agent encoder) or None (random init). Returns (and
    rank 0 writes) metrics.json; a finished run of the same settings is skipped."""
    cfg, ranks, threads = _setup(config)
    try:
        with cpu_settings(threads):
            return _train_reward(cfg, ranks, Path(labels), target, Path(out),
                                 Path(init) if init is not None else None, labels_used, progress)
    finally:
        if ranks.owns_group:
            dist.destroy_process_group()


def _train_reward(cfg: RewardConfig, ranks: Ranks, labels: Path, target: str, out: Path,
                  init: Path | None, labels_used: int | None, progress: bool) -> dict[str, Any]:
    clock = time.perf_counter()
    if labels_used is not None and labels_used < 1:
        raise UserError(f"--labels-used must be >= 1, got {labels_used}")
    policy_config, init_sha = _policy_config(cfg, init)
    data = load_labels(labels, target, policy_config)
    if labels_used is not None and labels_used > len(data.train):
        raise UserError(f"--labels-used {labels_used}: the store has only {len(data.train)} "
                        f"training labels for {target!r}; label more pairs")
    used = len(data.train) if labels_used is None else labels_used
    pairs = data.train.take(np.arange(used))
    run = json.loads(json.dumps({
        "target": target, "labels": data.fingerprint, "labels_used": used,
        "init": init_sha, "policy": policy_config.to_dict(),
        "config": {k: v for k, v in asdict(cfg).items()
                   if k not in ("log_interval", "checkpoint_interval", "keep_checkpoints",
                                "num_threads", "device", "study")}}))
    metrics_path = out / METRICS
    if metrics_path.exists():
        try:
            finished = json.loads(metrics_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            finished = {}
        if finished.get("final") and finished.get("run") == run:
            if ranks.rank == 0:
                print(f"reward: {out} already finished; skipping")
            return finished
    model = make_model(policy_config, cfg.seed, init)
    if ranks.rank == 0:
        print(f"reward: {model.num_params() / 1e6:.2f}M parameters, "
              f"{'agent-encoder init from ' + str(init) if init else 'random init'}; "
              f"{used:,} of {len(data.train):,} train labels for {target!r}, "
              f"{cfg.steps_for(used)} steps; {len(data.heldout):,} held-out pairs; "
              f"{ranks.world} rank(s) x {torch.get_num_threads()} thread(s) on {ranks.device}")
    features = frozen_features(model, data, cfg)
    result = fit(model, data, pairs, cfg, ranks, seed=cfg.seed, out=out, run=run,
                 features=features, progress=progress)
    heldout = evaluate(model, data, features=features)
    train_acc = evaluate(model, data, pairs, features=features)["accuracy"]
    metrics = {"stage": "reward", "final": True, "target": target,
               "init": "agent" if init else "random", "init_checkpoint": str(init) if init else
               None, "labels_used": used, "train_accuracy": train_acc,
               "heldout": heldout, **result, "wall_seconds": time.perf_counter() - clock,
               "checkpoint": f"checkpoints/step-{result['steps']:08d}", "run": run}
    if ranks.rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(out / "logs")) as writer:
            for key in ("accuracy", "accuracy_easy", "accuracy_hard"):
                writer.add_scalar(f"eval/{key}", heldout[key], result["steps"])
        write_json_atomic(metrics_path, metrics)
    return metrics


def format_metrics(metrics: dict[str, Any]) -> str:
    h = metrics["heldout"]
    return (f"reward ({metrics['target']}, {metrics['init']} init, {metrics['labels_used']:,} "
            f"labels, {metrics['steps']} steps): held-out accuracy {h['accuracy']:.1%} on "
            f"{h['pairs']:,} pairs (easy {h['accuracy_easy']:.1%} on {h['easy_pairs']:,}, hard "
            f"{h['accuracy_hard']:.1%} on {h['hard_pairs']:,}); train accuracy "
            f"{metrics['train_accuracy']:.1%}; {metrics['wall_seconds']:.1f} s wall")


# --- the label-scaling study ---------------------------------------------------------------------


def study(config: dict[str, Any], labels: str | Path, target: str, init: str | Path,
          out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Held-out accuracy vs number of labels, for each init and seed (configs/reward.yaml
    `study`). Resumable: finished runs in study.json are kept. Writes study.json/.md/.png."""
    cfg, ranks, threads = _setup(config)
    if ranks.world > 1:
        raise UserError("reward --study runs in one process; start it without torchrun")
    with cpu_settings(threads):
        return _study(cfg, ranks, Path(labels), target, Path(init), Path(out), progress,
                      threads)


def _study(cfg: RewardConfig, ranks: Ranks, labels: Path, target: str, init: Path, out: Path,
           progress: bool, threads: int) -> dict[str, Any]:
    clock = time.perf_counter()
    policy_config, init_sha = _policy_config(cfg, init)
    data = load_labels(labels, target, policy_config)
    counts = [n for n in cfg.study["label_counts"] if n <= len(data.train)]
    if skipped := [n for n in cfg.study["label_counts"] if n > len(data.train)]:
        print(f"study: skipping label counts {skipped}: the store has {len(data.train)} "
              f"training labels for {target!r}")
    config = {k: v for k, v in asdict(cfg).items() if k not in ("num_threads", "device")}
    config["study"] = {k: v for k, v in cfg.study.items() if k != "workers"}
    setup = json.loads(json.dumps({"target": target, "labels": data.fingerprint,
                                   "init": init_sha, "policy": policy_config.to_dict(),
                                   "config": config}))
    path = out / "study.json"
    results: dict[str, Any] = {"setup": setup, "runs": []}
    if path.exists():
        previous = json.loads(path.read_text())
        if previous.get("setup") == setup:
            results["runs"] = previous["runs"]
            results["wall_seconds"] = previous.get("wall_seconds", 0.0)
    earlier = results.get("wall_seconds", 0.0)
    done = {(r["labels"], r["init"], r["seed"]) for r in results["runs"]}
    todo = [(n, kind, seed) for seed in cfg.study["seeds"] for kind in cfg.study["inits"]
            for n in counts if (n, kind, seed) not in done]  # a whole curve per seed first
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(cfg.study.get("workers", 1), len(todo)))
    print(f"study: {len(data.train):,} train labels, {len(data.heldout):,} held-out pairs for "
          f"{target!r}; {len(todo)} runs to go of "
          f"{len(counts) * len(cfg.study['inits']) * len(cfg.study['seeds'])}"
          + (f", {workers} side by side" if workers > 1 else ""))
    bar = tqdm(total=len(todo), unit="run", desc="study", disable=not progress,
               dynamic_ncols=True)

    def finished(run: dict[str, Any]) -> None:
        results["runs"].append(run)
        results["wall_seconds"] = earlier + time.perf_counter() - clock
        write_json_atomic(path, results)  # after every run: an interrupted study resumes
        bar.update(1)
        bar.set_postfix(labels=run["labels"], init=run["init"], acc=f"{run['accuracy']:.3f}")

    try:
        if workers == 1:
            state = _StudyState(cfg, ranks, data, policy_config, init, {})
            for task in todo:
                finished(_study_run(state, task))
        else:  # fresh interpreters: forking a process that has run torch ops can hang
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_study_worker,
                                     initargs=(cfg, labels, target, init,
                                               max(1, threads // workers))) as pool:
                for future in as_completed([pool.submit(_study_task, t) for t in todo]):
                    finished(future.result())
    finally:
        bar.close()
    results["runs"].sort(key=lambda r: (r["seed"], INITS.index(r["init"]), r["labels"]))
    results["table"] = study_table(results["runs"])
    results["wall_seconds_this_call"] = time.perf_counter() - clock
    write_json_atomic(path, results)
    (out / "study.md").write_text(format_study(results) + "\n")
    draw_study(results["runs"], out / "study.png", target)
    return results


@dataclass
class _StudyState:
    """What every run of a study needs, loaded once per process."""

    cfg: RewardConfig
    ranks: Ranks
    data: LabelData
    policy_config: PolicyConfig
    init: Path
    cache: dict[str, Tensor | None]  # frozen CNN features per init (with freeze_cnn)


def _study_run(state: _StudyState, task: tuple[int, str, int]) -> dict[str, Any]:
    """One point of the study: `n` labels drawn with `seed`, one init; held-out accuracy."""
    n, kind, seed = task
    cfg, data, started = state.cfg, state.data, time.perf_counter()
    subset = np.sort(np.random.default_rng([seed, n]).choice(len(data.train), n, replace=False))
    model = make_model(state.policy_config, seed, state.init if kind == "agent" else None)
    key = kind if kind == "agent" else f"{kind}-{seed}"  # the CNN is a function of this
    if cfg.freeze_cnn and key not in state.cache:  # 6.5 MB per CNN for 800 trajectories
        state.cache[key] = frozen_features(model, data, cfg)
    features = state.cache.get(key)
    result = fit(model, data, data.train.take(subset), cfg, state.ranks, seed=seed,
                 features=features)
    heldout = evaluate(model, data, features=features)
    return {"labels": n, "init": kind, "seed": seed, **heldout, "steps": result["steps"],
            "train_loss": result["train_loss"], "seconds": time.perf_counter() - started}


_WORKER: _StudyState | None = None
_WORKER_THREADS = 1


def _study_worker(cfg: RewardConfig, labels: Path, target: str, init: Path, threads: int
                  ) -> None:
    """Set up a study worker process: its device, the labels and its thread count."""
    global _WORKER, _WORKER_THREADS
    policy_config, _ = _policy_config(cfg, init)
    _WORKER = _StudyState(cfg, init_distributed(cfg.device),
                          load_labels(labels, target, policy_config), policy_config, init, {})
    _WORKER_THREADS = threads


def _study_task(task: tuple[int, str, int]) -> dict[str, Any]:
    assert _WORKER is not None, "a study worker runs _study_worker first"
    with cpu_settings(_WORKER_THREADS):  # as the main process runs its own runs
        return _study_run(_WORKER, task)


def study_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (labels, init): mean, min and max held-out accuracy over seeds, and easy/hard means."""
    rows = []
    for n in sorted({r["labels"] for r in runs}):
        for kind in INITS:
            group = [r for r in runs if r["labels"] == n and r["init"] == kind]
            if not group:
                continue
            acc = [r["accuracy"] for r in group]
            rows.append({"labels": n, "init": kind, "seeds": len(group),
                         "mean": float(np.mean(acc)), "min": float(np.min(acc)),
                         "max": float(np.max(acc)),
                         "easy": float(np.nanmean([r["accuracy_easy"] for r in group])),
                         "hard": float(np.nanmean([r["accuracy_hard"] for r in group]))})
    return rows


def format_study(results: dict[str, Any]) -> str:
    """The study as a markdown table: accuracy (mean, min-max over seeds) per labels and init."""
    table = results["table"]
    lines = ["| labels | agent-encoder init: mean (min-max) | easy / hard | random init: mean "
             "(min-max) | easy / hard | gap |", "|---:|---|---|---|---|---:|"]
    for n in sorted({r["labels"] for r in table}):
        cells, means = [], {}
        for kind in INITS:
            row = next((r for r in table if r["labels"] == n and r["init"] == kind), None)
            if row is None:
                cells += ["-", "-"]
                continue
            means[kind] = row["mean"]
            cells += [f"{row['mean']:.1%} ({row['min']:.1%}-{row['max']:.1%})",
                      f"{row['easy']:.1%} / {row['hard']:.1%}"]
        gap = f"{100 * (means['agent'] - means['random']):+.1f} pts" if len(means) == 2 else "-"
        lines.append(f"| {n:,} | " + " | ".join(cells) + f" | {gap} |")
    return "\n".join(lines)


def draw_study(runs: list[dict[str, Any]], path: Path, target: str) -> None:
    """Accuracy vs labels on a log x axis, one line per init (mean over seeds) with its min-max
    band, drawn with PIL in the style of the paper's figure."""
    from PIL import Image, ImageDraw

    width, height, left, right, top, bottom = 720, 460, 70, 170, 40, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    table = study_table(runs)
    counts = sorted({r["labels"] for r in table})
    if not counts:
        image.save(path)
        return
    lo_x, hi_x = math.log10(min(counts)) - 0.1, math.log10(max(counts)) + 0.1
    lo_y = min(0.4, math.floor(10 * min(r["min"] for r in table)) / 10)

    def xy(n: float, acc: float) -> tuple[float, float]:
        x = left + (math.log10(n) - lo_x) / (hi_x - lo_x) * (width - left - right)
        y = top + (1.0 - acc) / (1.0 - lo_y) * (height - top - bottom)
        return x, y

    x0, y0 = xy(10 ** lo_x, lo_y)
    x1, y1 = xy(10 ** hi_x, 1.0)
    for k in range(round(lo_y * 10), 11):  # horizontal grid and y labels
        _, y = xy(10 ** lo_x, k / 10)
        draw.line([(x0, y), (x1, y)], fill=(225, 225, 225))
        draw.text((x0 - 40, y - 6), f"{k * 10}%", fill="black")
    for p in range(math.ceil(lo_x), math.floor(hi_x) + 1):  # decades on the log axis
        x, _ = xy(10 ** p, lo_y)
        draw.line([(x, y0), (x, y1)], fill=(225, 225, 225))
        draw.text((x - 10, y0 + 8), f"1e{p}", fill="black")
    for n in counts:
        x, _ = xy(n, lo_y)
        draw.line([(x, y0), (x, y0 + 4)], fill="black")
        draw.text((x - 10, y0 + 22), f"{n:,}", fill=(90, 90, 90))
    draw.rectangle([x0, y1, x1, y0], outline="black")
    draw.text((left + (width - left - right) // 2 - 60, height - 22),
              "number of labels (log scale)", fill="black")
    draw.text((10, 12), f"reward model held-out accuracy, target {target!r}", fill="black")
    colours = {"agent": (31, 119, 180), "random": (214, 39, 40)}
    names = {"agent": "agent encoder", "random": "random encoder"}
    for i, kind in enumerate(INITS):
        rows = [r for r in table if r["init"] == kind]
        if not rows:
            continue
        c = colours[kind]
        band = [xy(r["labels"], r["max"]) for r in rows] + \
            [xy(r["labels"], r["min"]) for r in reversed(rows)]
        if len(rows) > 1:
            draw.polygon(band, fill=(*c, 60))
        line = [xy(r["labels"], r["mean"]) for r in rows]
        if len(line) > 1:
            draw.line(line, fill=c, width=3)
        for x, y in line:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=c)
        ly = top + 10 + 22 * i
        draw.line([(x1 + 12, ly), (x1 + 40, ly)], fill=c, width=3)
        draw.text((x1 + 46, ly - 6), names[kind], fill="black")
    draw.text((x1 + 12, top + 60), "line: mean of seeds", fill=(90, 90, 90))
    draw.text((x1 + 12, top + 76), "band: min-max", fill=(90, 90, 90))
    image.save(path)

