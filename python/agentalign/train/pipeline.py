"""`agentalign pipeline`: every stage of the recipe in order, resumable, with a report.

The pipeline is a list of the same commands a user would type (`collect`, `pretrain`, `sft`,
`label`, `reward`, `align`, `evaluate`, `export`), so the pipeline can do nothing a user could not.
`pipeline.json` in the run folder records each finished stage with its wall time; a rerun skips
those and reruns the unfinished ones, which resume from their own checkpoints.

Stages that spread over every core themselves (collect, pretrain, sft, the study) run one at a
time in this process. The rest, labelling, each target's reward model and alignment, every
evaluation and export, mostly act on one thread, so `workers` of them run side by side in worker
processes, each pinned to its share of the cores: on 2 cores the left and right personalities
train at once (one after the other, one core sat idle through ~400 s of alignment). A stage
starts once the stages it needs are done; its output goes to `logs/<stage>.log` in the run folder.
A stage that would use every core (the reward model's default) uses its share: float rounding,
and so the numbers, can differ slightly from a run with `workers: 1`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentalign import __version__
from agentalign.atomic import write_json_atomic
from agentalign.errors import ConfigError, UserError
from agentalign.spec import PADS


class StageFailed(UserError):
    """A stage of the pipeline stopped; its own message was printed above."""


# Config keys that change how the run is scheduled, not what it computes: a resume may change them.
SCHEDULING_KEYS = ("workers", "quiet")


@dataclass(frozen=True)
class Stage:
    name: str
    argv: list[str]  # the agentalign command line of the stage
    needs: tuple[str, ...] = ()  # stages whose outputs it reads
    solo: bool = False  # uses every core itself: runs alone, in this process


def plan(run: Path, config: dict[str, Any]) -> list[Stage]:
    """The stages of a run, in order."""
    targets = config["targets"]
    if not targets or any(t not in PADS for t in targets) or len(set(targets)) != len(targets):
        raise ConfigError(f"pipeline: targets must be distinct pads from {list(PADS)}, "
                          f"got {targets!r}")
    seed = str(config["seed"])
    from agentalign.envs.factory import check_env_spec

    check_env_spec(config.get("env", "island"))

    def extra(stage: str) -> list[str]:
        out = []
        for item in config["stages"].get(stage) or []:
            out += ["--set", str(item)]
        return out

    def run_path(*parts: str) -> str:
        return str(run.joinpath(*parts))

    quiet = ["--no-progress"] if config.get("quiet") else []
    # stages in worker processes write to log files, where progress bars are noise
    quiet_worker = ["--no-progress"] if _workers(config) > 1 or config.get("quiet") else []
    # the run's seed also seeds every trainer (init, batches, rollouts), so seeds are replicates
    seeded = ["--set", f"seed={seed}"]
    seeded_align = ["--set", f"prefft.seed={seed}", "--set", f"rl.seed={seed}"]
    # --env for every stage that runs episodes (pretrain, sft, reward and export do not)
    env = ["--env", config["env"]] if config.get("env", "island") != "island" else []
    stages = [
        Stage("collect", ["collect", "--out", run_path("corpus"), "--seed", seed, *env, *quiet,
                          *extra("collect")], solo=True),
        Stage("demos", ["collect", "--population", "direct", "--episodes",
                        str(config["demo_episodes"]), "--seed", str(config["seed"] + 1000),
                        "--out", run_path("demos"), *env, *quiet, *extra("demos")], solo=True),
        Stage("pretrain", ["pretrain", "--corpus", run_path("corpus"), "--out",
                           run_path("pretrain"), *seeded, *quiet, *extra("pretrain")],
              ("collect",), solo=True),
        Stage("sft", ["sft", "--init", run_path("pretrain"), "--demos", run_path("demos"),
                      "--out", run_path("sft"), *seeded, *quiet, *extra("sft")],
              ("pretrain", "demos"), solo=True),
    ]
    if config["ablation"]:
        stages.append(Stage("sft-scratch", ["sft", "--from-scratch", "--demos",
                                            run_path("demos"), "--out",
                                            run_path("sft-scratch"), *seeded, *quiet,
                                            *extra("sft")], ("demos",), solo=True))
    sizes = config["label"]
    label = ["label", "--policy", run_path("sft"), "--out", run_path("label"), "--seed", seed,
             "--train-episodes", str(sizes["train_episodes"]),
             "--heldout-episodes", str(sizes["heldout_episodes"]),
             "--pairs", str(sizes["pairs"]), "--heldout-pairs", str(sizes["heldout_pairs"])]
    for t in targets:
        label += ["--target", t]
    stages.append(Stage("label", [*label, *env, *quiet_worker], ("sft",)))
    for t in targets:
        stages.append(Stage(f"reward-{t}", [
            "reward", "--labels", run_path("label"), "--target", t, "--init",
            run_path("pretrain"), "--labels-used", str(config["labels_used"]),
            "--out", run_path(f"reward-{t}"), *seeded, *quiet_worker, *extra("reward")],
            ("label", "pretrain")))
        stages.append(Stage(f"align-{t}", [
            "align", "--policy", run_path("sft"), "--reward", run_path(f"reward-{t}"),
            "--target", t, "--out", run_path(f"align-{t}"), *env, *seeded_align, *quiet_worker,
            *extra("align")], ("sft", f"reward-{t}")))

    agents = [("base", "pretrain"), ("sft", "sft")]
    if config["ablation"]:
        agents.append(("sft-scratch", "sft-scratch"))
    agents += [(f"{t}-aligned", f"align-{t}") for t in targets]
    evaluate = ["--episodes", str(config["eval_episodes"]), "--seed", seed, *env, *quiet_worker,
                *extra("evaluate")]
    for label_, folder in agents:
        stages.append(Stage(f"evaluate-{label_}", ["evaluate", run_path(folder), "--out",
                                                   run_path("eval", label_), *evaluate],
                            (folder,)))
    if config["offlane"]:
        for label_, folder in agents[:3 if config["ablation"] else 2]:
            stages.append(Stage(f"evaluate-{label_}-offlane", [
                "evaluate", run_path(folder), "--offlane", "--out",
                run_path("eval", f"{label_}-offlane"), *evaluate], (folder,)))
    if config["export"]:
        for t in targets:
            stages.append(Stage(f"export-{t}", [
                "export", run_path(f"align-{t}"), "--name", f"{t}-runner", "--target", t,
                "--out", run_path("personalities"), "--seed", seed,
                "--episodes", str(config["export_episodes"])], (f"align-{t}",)))
    if config["study"]:
        stages.append(Stage("reward-study", [
            "reward", "--study", "--labels", run_path("label"), "--target", targets[0],
            "--init", run_path("pretrain"), "--out", run_path("study"), *quiet,
            *extra("reward")], ("label", "pretrain"), solo=True))
    return stages


def _workers(config: dict[str, Any]) -> int:
    workers = config.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"pipeline: workers must be an integer >= 1, got {workers!r}")
    return workers


def _same_run(saved: dict[str, Any], config: dict[str, Any]) -> bool:
    def what(c: dict[str, Any]) -> dict[str, Any]:
        return {"env": "island", **{k: v for k, v in c.items() if k not in SCHEDULING_KEYS}}

    return what(saved) == what(config)  # runs from before the env key played on the island


def _state(run: Path, config: dict[str, Any]) -> dict[str, Any]:
    path = run / "pipeline.json"
    if path.exists():
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise ConfigError(f"pipeline: {path} is not valid JSON; delete it to rerun every "
                              "stage (finished stages' outputs are reused where they resume)") \
                from None
        saved = state.get("config")
        if not isinstance(saved, dict) or not _same_run(saved, config):
            raise ConfigError(f"pipeline: run {run} was started with another config; rerun "
                              "with the same options to resume, or choose another --out")
        state["config"] = config
        return state
    return {"name": run.name, "config": config, "agentalign": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "stages": []}


def _record(state: dict[str, Any], name: str) -> dict[str, Any]:
    record = {"name": name, "status": "running", "seconds": 0.0}
    state["stages"] = [s for s in state["stages"] if s["name"] != name] + [record]
    return record


@contextlib.contextmanager
def _timed(state: dict[str, Any], name: str) -> Iterator[dict[str, Any]]:
    record = _record(state, name)
    start = time.perf_counter()
    try:
        yield record
        record["status"] = "done"
    except BaseException:
        record["status"] = "failed"
        raise
    finally:
        record["seconds"] = round(time.perf_counter() - start, 2)


def run_pipeline(config: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Run (or resume) the whole pipeline into `out`; returns pipeline.json's content."""
    from agentalign.evaluate.report import build_report

    run = Path(out)
    workers = _workers(config)
    stages = plan(run, config)
    run.mkdir(parents=True, exist_ok=True)
    state = _state(run, config)
    clock, before = time.perf_counter(), state.get("wall_seconds", 0.0)

    def wall() -> None:  # summed over the invocations that made the run
        state["wall_seconds"] = round(before + time.perf_counter() - clock, 2)

    try:
        _Scheduler(run, state, config, workers).run(stages)
        with _timed(state, "report"):
            _index_outputs(run, state, config)
            wall()
            write_json_atomic(run / "pipeline.json", state)
            build_report(run)
    finally:
        wall()
        write_json_atomic(run / "pipeline.json", state)
    return state


class _Scheduler:
    """Runs the stages in plan order, each once the stages it needs are done: `solo` stages
    alone in this process, the others on `workers` pinned worker processes (workers = 1: all in
    this process, one after the other)."""

    def __init__(self, run: Path, state: dict[str, Any], config: dict[str, Any],
                 workers: int) -> None:
        self.run_dir, self.state, self.config, self.workers = run, state, config, workers
        self.done = {s["name"] for s in state["stages"] if s["status"] == "done"}
        self.running: dict[Future[int], tuple[Stage, float, dict[str, Any]]] = {}
        self.failed: list[str] = []
        self.pool: ProcessPoolExecutor | None = None
        self.bar: Any = None  # a progress bar over the stages in workers, while any run
        self.in_workers = 0  # stages left to run in workers

    def run(self, stages: list[Stage]) -> None:
        for stage in stages:
            if stage.name in self.done:
                print(f"[pipeline] {stage.name}: done, skipped")
        pending = [s for s in stages if s.name not in self.done]
        self.in_workers = 0 if self.workers == 1 else sum(not s.solo for s in pending)
        try:
            while pending or self.running:
                stage = None if self.failed else self._next(pending)
                if stage is not None:
                    pending.remove(stage)
                    if stage.solo or self.workers == 1:
                        self._close_bar()
                        self._run_here(stage)
                    else:
                        self._submit(stage)
                elif self.running:
                    self._collect()
                elif self.failed:
                    break
                else:
                    raise RuntimeError(f"pipeline: stages {[s.name for s in pending]} need "
                                       "stages that are not in the plan")
        finally:
            self._close_bar()
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)
        if self.failed:
            logs = ", ".join(str(self._log(name)) for name in self.failed)
            raise StageFailed(f"stage {', '.join(self.failed)} failed (log: {logs}); fix the "
                              "cause and rerun the same command to resume from it")

    def _next(self, pending: list[Stage]) -> Stage | None:
        """The first pending stage that may start now; a solo stage waits for the workers."""
        for stage in pending:
            if stage.solo or self.workers == 1:
                ready = not self.running and set(stage.needs) <= self.done
                return stage if ready else None
            if set(stage.needs) <= self.done and len(self.running) < self.workers:
                return stage
        return None

    def _say(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _save(self) -> None:
        write_json_atomic(self.run_dir / "pipeline.json", self.state)

    def _run_here(self, stage: Stage) -> None:
        from agentalign.cli import main as cli

        print(f"[pipeline] {stage.name}: agentalign {' '.join(stage.argv)}", flush=True)
        with _timed(self.state, stage.name) as record:
            try:
                code = cli(stage.argv)
            finally:
                self._save()
            if code != 0:
                record["status"] = "failed"
                self._save()
                raise StageFailed(f"stage {stage.name} failed (exit {code}); fix the cause and "
                                  "rerun the same command to resume from it")
        self.done.add(stage.name)
        _index_outputs(self.run_dir, self.state, self.config)
        self._save()

    def _log(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def _submit(self, stage: Stage) -> None:
        from tqdm import tqdm

        if self.pool is None:
            self.pool = _worker_pool(self.workers)
        if self.bar is None:
            self.bar = tqdm(total=self.in_workers, desc="pipeline stages", unit="stage",
                            disable=bool(self.config.get("quiet")), dynamic_ncols=True)
        log = self._log(stage.name)
        log.parent.mkdir(exist_ok=True)
        self._say(f"[pipeline] {stage.name}: agentalign {' '.join(stage.argv)} (in a worker; "
                  f"log: {log})")
        record = _record(self.state, stage.name)
        self._save()
        future = self.pool.submit(_run_in_worker, stage.argv, str(log))
        self.running[future] = (stage, time.perf_counter(), record)

    def _collect(self) -> None:
        """Wait for a worker stage to end and record it."""
        finished, _ = wait(self.running, return_when=FIRST_COMPLETED)
        for future in finished:
            stage, start, record = self.running.pop(future)
            try:
                code = future.result()
            except Exception as e:  # the worker process died (killed, out of memory)
                self._say(f"[pipeline] {stage.name}: worker lost: {e}")
                code = 1
            self.in_workers -= 1
            record["seconds"] = round(time.perf_counter() - start, 2)
            record["status"] = "done" if code == 0 else "failed"
            if code == 0:
                self.done.add(stage.name)
                self._say(f"[pipeline] {stage.name}: done in {record['seconds']:.1f} s")
            else:
                self.failed.append(stage.name)
                self._say(f"[pipeline] {stage.name}: failed (exit {code}); the stages already "
                          "running finish first")
            if self.bar is not None:
                self.bar.update(1)
            _index_outputs(self.run_dir, self.state, self.config)
            self._save()


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` fresh processes, each pinned to its own share of this process's cores, so a
    stage's "every core" means its share and no two stages compete for a core."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    context = multiprocessing.get_context("spawn")
    shares = context.Queue()
    for i in range(workers):
        shares.put(cores[i::workers] if len(cores) >= workers else cores)
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_pin,
                               initargs=(shares,))


def _pin(shares: Any) -> None:
    cores = shares.get()
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)


def _run_in_worker(argv: list[str], log: str) -> int:
    """One stage's command in a worker process, its output into `log`; returns the exit code."""
    from agentalign.cli import main as cli

    with open(log, "a", buffering=1) as out, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(out):
        print(f"agentalign {' '.join(argv)}", flush=True)
        try:
            return cli(argv)
        except (Exception, SystemExit):
            traceback.print_exc()
            return 1


def _index_outputs(run: Path, state: dict[str, Any], config: dict[str, Any]) -> None:
    """Point pipeline.json at the artifacts the report shows (paths relative to the run)."""
    evaluations = {}
    for folder in sorted((run / "eval").glob("*/results.json")) if (run / "eval").exists() \
            else []:
        evaluations[folder.parent.name] = str(folder.relative_to(run))
    order = ["base", "sft", "sft-scratch"] + [f"{t}-aligned" for t in config["targets"]]
    state["evaluations"] = {k: evaluations[k] for k in sorted(
        evaluations, key=lambda k: (order.index(k.removesuffix("-offlane"))
                                    if k.removesuffix("-offlane") in order else 99, k))}
    state["reward"] = {t: str(p.relative_to(run)) for t in config["targets"]
                       if (p := run / f"reward-{t}" / "metrics.json").exists()}
    state["rl"] = {t: str(p.relative_to(run)) for t in config["targets"]
                   if (p := run / f"align-{t}" / "rl" / "metrics.json").exists()}
    if (run / "study" / "study.png").exists():
        state["study_plot"] = "study/study.png"
    state["personalities"] = {p.stem: str(p.relative_to(run))
                              for p in sorted((run / "personalities").glob("*.onnx"))} \
        if (run / "personalities").exists() else {}


def format_timings(state: dict[str, Any]) -> str:
    rows = [f"{'stage':28s}{'status':>10s}{'seconds':>10s}"]
    for s in state["stages"]:
        rows.append(f"{s['name']:28s}{s['status']:>10s}{s['seconds']:>10.1f}")
    rows.append(f"{'total (stages summed)':28s}{'':>10s}"
                f"{sum(s['seconds'] for s in state['stages']):>10.1f}")
    if "wall_seconds" in state:  # less than the sum when stages ran side by side
        rows.append(f"{'wall clock':28s}{'':>10s}{state['wall_seconds']:>10.1f}")
    return "\n".join(rows)
