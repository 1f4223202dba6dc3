"""`agentalign reward --study`: the paper's label-scaling figure, held-out accuracy of the reward
model against the number of labels, for the agent-encoder init and a random one.

Each point trains a reward model (`train.reward.fit`) on a random subset of n training labels
drawn with its seed, and measures it on every held-out pair. Points run side by side in pinned
worker processes (`study.workers`). study.json gains each point as it finishes, so an interrupted
study resumes where it stopped; study.md holds the table and study.png the chart (matplotlib:
accuracy against labels on a log axis, one line per init with its min-max band over seeds).
"""

from __future__ import annotations

import time
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from agentalign import events
from agentalign.atomic import atomic_path, write_json_atomic
from agentalign.errors import UserError
from agentalign.lifecycle import StageRun, read_json, result_from
from agentalign.models.policy import PolicyConfig
from agentalign.train import reward
from agentalign.train.distributed import Ranks, cpu_settings, init_distributed, training_threads
from agentalign.train.reward import _policy_config, fit, frozen_features, make_model
from agentalign.train.reward_config import INITS, RewardSettings, without_summary
from agentalign.train.reward_data import LabelData, evaluate, load_labels
from agentalign.workers import pinned_pool


@dataclass(frozen=True)
class StudyResult:
    """The study's points and its table (study.json)."""

    target: str
    runs: list[dict[str, Any]]  # one per (labels, init, seed): accuracies, steps, seconds
    table: list[dict[str, Any]]  # per (labels, init): mean, min, max over seeds, easy, hard
    wall_seconds: float  # of every call that made it
    folder: str


def run(settings: RewardSettings, labels: str | Path, target: str, init: str | Path,
        out: str | Path, *, progress: bool = True) -> StudyResult:
    """Held-out accuracy vs number of labels, for each init and seed (`settings.study`).
    Resumable: finished points in study.json are kept. Writes study.json/.md/.png."""
    ranks = init_distributed(settings.device)
    if ranks.world > 1:
        raise UserError("reward --study runs in one process; start it without torchrun")
    threads = training_threads(settings.num_threads, ranks)
    with cpu_settings(threads):
        metrics = _study(settings, ranks, Path(labels), target, Path(init), Path(out),
                         progress, threads)
    return result_from(StudyResult, metrics)


def _study(cfg: RewardSettings, ranks: Ranks, labels: Path, target: str, init: Path, out: Path,
           progress: bool, threads: int) -> dict[str, Any]:
    clock = time.perf_counter()
    policy_config, init_sha = _policy_config(cfg, init)
    data = load_labels(labels, target, policy_config, cfg.summary_stride)
    study = cfg.study
    counts = [n for n in study.label_counts if n <= len(data.train)]
    if skipped := [n for n in study.label_counts if n > len(data.train)]:
        print(f"study: skipping label counts {skipped}: the store has {len(data.train)} "
              f"training labels for {target!r}")
    config = without_summary({k: v for k, v in asdict(cfg).items()
                              if k not in ("num_threads", "device")})
    config["study"] = {k: v for k, v in asdict(study).items() if k != "workers"}
    life = StageRun(out, "reward-study", {"target": target, "labels": data.fingerprint,
                                          "init": init_sha, "policy": policy_config.to_dict(),
                                          "config": config})
    if (finished := life.begin()) is not None:
        return finished
    path = out / "study.json"
    previous = read_json(path) or {}
    results: dict[str, Any] = {"setup": life.identity, "runs": previous.get("runs", []),
                               "wall_seconds": previous.get("wall_seconds", 0.0)}
    earlier = results["wall_seconds"]
    done = {(r["labels"], r["init"], r["seed"]) for r in results["runs"]}
    todo = [(n, kind, seed) for seed in study.seeds for kind in study.inits
            for n in counts if (n, kind, seed) not in done]  # a whole curve per seed first
    workers = max(1, min(study.workers, len(todo)))
    print(f"study: {len(data.train):,} train labels, {len(data.heldout):,} held-out pairs for "
          f"{target!r}; {len(todo)} runs to go of "
          f"{len(counts) * len(study.inits) * len(study.seeds)}"
          + (f", {workers} side by side" if workers > 1 else ""))
    bar = events.progress("reward-study", len(todo), unit="run", show=progress)

    def finished_point(point: dict[str, Any]) -> None:
        results["runs"].append(point)
        results["wall_seconds"] = earlier + time.perf_counter() - clock
        write_json_atomic(path, results)  # after every point: an interrupted study resumes
        bar.update(1)
        bar.set_postfix(labels=point["labels"], init=point["init"],
                        acc=f"{point['accuracy']:.3f}")

    with bar:
        if workers == 1:
            state = _StudyState(cfg, ranks, data, policy_config, init, {})
            for task in todo:
                finished_point(_study_run(state, task))
        else:
            with pinned_pool(workers, _study_worker, (cfg, labels, target, init,
                                                      max(1, threads // workers))) as pool:
                for future in as_completed([pool.submit(_study_task, t) for t in todo]):
                    finished_point(future.result())
    results["runs"].sort(key=lambda r: (r["seed"], INITS.index(r["init"]), r["labels"]))
    results["table"] = study_table(results["runs"])
    write_json_atomic(path, results)
    (out / "study.md").write_text(format_study(results["table"]) + "\n")
    draw_study(results["table"], out / "study.png", target)
    return life.finish({"target": target, "runs": results["runs"], "table": results["table"],
                        "wall_seconds": results["wall_seconds"], "folder": str(out)})


@dataclass
class _StudyState:
    """What every point of a study needs, loaded once per process."""

    cfg: RewardSettings
    ranks: Ranks
    data: LabelData
    policy_config: PolicyConfig
    init: Path
    cache: dict[str, Tensor | None]  # frozen CNN features per init (with freeze_cnn)


def _study_run(state: _StudyState, task: tuple[int, str, int]) -> dict[str, Any]:
    """One point: `n` labels drawn with `seed`, one init; held-out accuracy."""
    n, kind, seed = task
    cfg, data, started = state.cfg, state.data, time.perf_counter()
    subset = np.sort(np.random.default_rng([seed, n]).choice(len(data.train), n, replace=False))
    model = make_model(state.policy_config, seed, state.init if kind == "agent" else None,
                       cfg.summary_stride, cfg.summary_width)
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


def _study_worker(cfg: RewardSettings, labels: Path, target: str, init: Path, threads: int
                  ) -> None:
    """Set up a study worker process: its device, the labels and its thread count."""
    global _WORKER, _WORKER_THREADS
    policy_config, _ = _policy_config(cfg, init)
    _WORKER = _StudyState(cfg, init_distributed(cfg.device),
                          load_labels(labels, target, policy_config, cfg.summary_stride),
                          policy_config, init, {})
    _WORKER_THREADS = threads


def _study_task(task: tuple[int, str, int]) -> dict[str, Any]:
    assert _WORKER is not None, "a study worker runs _study_worker first"
    with cpu_settings(_WORKER_THREADS):  # as the main process runs its own points
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


def format_study(table: list[dict[str, Any]]) -> str:
    """The study as a markdown table: accuracy (mean, min-max over seeds) per labels and init."""
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


def draw_study(table: list[dict[str, Any]], path: Path, target: str) -> None:
    """Accuracy vs labels on a log x axis, one line per init (mean over seeds) with its min-max
    band, in the style of the paper's figure (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.6), dpi=100)
    names = {"agent": "agent encoder", "random": "random encoder"}
    colours = {"agent": "#1f77b4", "random": "#d62728"}
    for kind in INITS:
        rows = [r for r in table if r["init"] == kind]
        if not rows:
            continue
        x = [r["labels"] for r in rows]
        ax.fill_between(x, [r["min"] for r in rows], [r["max"] for r in rows],
                        color=colours[kind], alpha=0.25, linewidth=0)
        ax.plot(x, [r["mean"] for r in rows], "o-", color=colours[kind], label=names[kind])
    ax.set_xscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("number of labels (log scale)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"reward model held-out accuracy, target {target!r} "
                 "(line: mean of seeds, band: min-max)", fontsize=10)
    ax.grid(True, color="#e1e1e1")
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def command(settings: RewardSettings, *, labels: Path, target: str, out: Path,
            init: Path | None, labels_used: int | None, study: bool, progress: bool = True,
            **cluster: Any) -> reward.RewardResult | StudyResult:
    """`agentalign reward`: one reward model (with `cluster`: on Ray Train workers), or with
    --study the label-scaling study."""
    if not study:
        return reward.run(settings, labels, target, out, init, labels_used, progress=progress,
                          **cluster)
    if cluster:
        raise UserError("reward --study runs here only: drop --cluster")
    if init is None:
        raise UserError("reward --study compares inits: give the pre-trained --init")
    return run(settings, labels, target, init, out, progress=progress)


def command_summary(result: reward.RewardResult | StudyResult) -> str:
    return summary(result) if isinstance(result, StudyResult) else reward.summary(result)


def summary(result: StudyResult) -> str:
    return (format_study(result.table) + f"\nwrote study.json, study.md and study.png to "
            f"{result.folder} ({result.wall_seconds:.0f} s of training and evaluation)")
