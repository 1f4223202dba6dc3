"""`agentalign pipeline`: every stage of the recipe in order, resumable, with a report.

The pipeline calls the same stage functions the commands call (`collect.run`, `train.bc.pretrain`,
..., `export.personality.run`), with settings built by the one loader, so it can do nothing a
user could not. `pipeline.json` in the run folder records each finished stage with its wall
time; a rerun skips those and reruns the unfinished ones, which resume from their own
checkpoints.

Stages that spread over every core themselves (collect, pretrain, sft, the study) run one at a
time in this process. The rest, labelling, each target's reward model and alignment, every
evaluation and export, mostly act on one thread, so `workers` of them run side by side in worker
processes, each pinned to its share of the cores (`agentalign.workers`). A stage starts once
the stages it needs are done; its output goes to `logs/<stage>.log` in the run folder. A stage
that would use every core (the reward model's default) uses its share: float rounding, and so
the numbers, can differ slightly from a run with `workers: 1`.

Each target is a designer intent by name (`envs.intents`, read from `intents`): its labels,
reward model, alignment, evaluation and personality `<target>-runner` all go by that name. A
pad's stages are called exactly as before intents existed; for any other intent the aligned
agent's evaluations (and its card) also count the share of episodes that satisfy it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from agentalign import __version__, events
from agentalign.atomic import write_json_atomic
from agentalign.collect_config import CollectSettings
from agentalign.config import Settings, load
from agentalign.errors import UserError
from agentalign.evaluate_config import EvaluateSettings
from agentalign.export.export_config import ExportSettings
from agentalign.lifecycle import StageRun, read_json
from agentalign.pipeline_config import PipelineSettings, check_targets, recipe
from agentalign.rollout.cluster import Cluster, connect, local_address
from agentalign.spec import PADS
from agentalign.train.align_config import AlignSettings
from agentalign.train.bc_config import ImitationSettings, SftSettings
from agentalign.train.reward_config import RewardSettings
from agentalign.workers import pinned_pool


class StageFailed(UserError):
    """A stage of the pipeline stopped; its own message was printed above."""


@dataclass(frozen=True)
class Stage:
    name: str
    call: Callable[..., Any]  # the stage function with its arguments (picklable: a partial)
    needs: tuple[str, ...] = ()  # stages whose outputs it reads
    solo: bool = False  # uses every core itself: runs alone, in this process


@dataclass(frozen=True)
class PipelineResult:
    """What pipeline.json holds: the stages' records and where their artifacts are."""

    name: str
    stages: list[dict[str, Any]]  # name, status, seconds
    wall_seconds: float
    evaluations: dict[str, str]
    reward: dict[str, str]
    rl: dict[str, str]
    personalities: dict[str, str]
    report: str


def plan(run: Path, settings: PipelineSettings, progress: bool = True,
         cluster: Cluster | None = None) -> list[Stage]:
    """The stages of a run, in order, each a stage function with its settings; with `cluster`,
    collect and demos, the trainers (pretrain, sft, reward), label, the alignments' rollouts
    and the evaluations run on it (rollout.cluster, train.on_ray), the same computations."""
    from agentalign import collect, evaluate
    from agentalign.export import personality
    from agentalign.train import align, bc, label, reward, reward_study

    seed, env = settings.seed, settings.env
    on_env = {"env": env} if env != "island" else {}  # stages that play episodes
    # The island, for every stage that plays episodes (only when not the default: a default run
    # calls its stages as before); a stage's own override comes after it and wins.
    layout = settings.island
    on_layout = [f"layout={layout}"] if layout else []

    def extra(stage: str) -> list[str]:
        return list(settings.stages.get(stage, ()))

    def extra_for(stage: str, target: str) -> list[str]:
        """A target's own overrides (`stages.align-middle`), then the stage's, which win: a
        setting for every alignment (a quick run's RL iterations) reaches every target."""
        return [*extra(f"{stage}-{target}"), *extra(stage)]

    def path(*parts: str) -> Path:
        return run.joinpath(*parts)

    def settings_of(cls: type[Settings], overrides: list[str], **options: Any) -> Any:
        return load(cls, None, overrides, options)

    worker = {"progress": False}  # stages in worker processes log to files: no bars
    here = {"progress": progress}
    on = {"cluster": cluster} if cluster is not None else {}  # where a stage runs
    stages = [
        Stage("collect", partial(collect.run, settings_of(
            CollectSettings, [*on_layout, *extra("collect")], seed=seed, **on_env),
            path("corpus"), **here, **on), solo=True),
        Stage("demos", partial(collect.run, settings_of(
            CollectSettings, [*on_layout, *extra("demos")], population="direct",
            episodes=settings.demo_episodes, seed=seed + 1000, **on_env), path("demos"),
            **here, **on), solo=True),
        Stage("pretrain", partial(bc.pretrain, settings_of(
            ImitationSettings, [f"seed={seed}", *extra("pretrain")]), path("corpus"),
            path("pretrain"), **here, **on), ("collect",), solo=True),
        Stage("sft", partial(bc.sft, settings_of(SftSettings, [f"seed={seed}", *extra("sft")]),
                             path("demos"), path("sft"), init=path("pretrain"), **here, **on),
              ("pretrain", "demos"), solo=True),
    ]
    if settings.ablation:
        stages.append(Stage("sft-scratch", partial(
            bc.sft, settings_of(SftSettings, [f"seed={seed}", *extra("sft")]), path("demos"),
            path("sft-scratch"), **here), ("demos",), solo=True))
    targets = list(settings.targets)
    labels = settings.label.replace(seed=seed, env=env, **({"layout": layout} if layout else {}))
    # The intents file only where one is given: a pad-only default run calls its stages as before.
    intents = {"intents": settings.intents} if settings.intents is not None else {}
    stages.append(Stage("label", partial(label.run, labels, path("sft"), path("label"),
                                         targets, **intents, **worker, **on), ("sft",)))
    env_align = [f"{stage}.env={env}" for stage in ("prefft", "rl")] if on_env else []
    layout_align = [f"{stage}.{kv}" for stage in ("prefft", "rl") for kv in on_layout]
    # Every reward model before any alignment: a worker that finishes a reward model starts the
    # next one, so the alignments (the longest stages) start as early as their inputs allow.
    for t in targets:
        rewarding = settings_of(RewardSettings, [f"seed={seed}", *extra_for("reward", t)])
        stages.append(Stage(f"reward-{t}", partial(
            reward.run, rewarding, path("label"), t, path(f"reward-{t}"),
            path("pretrain"), settings.labels_used, **worker, **on), ("label", "pretrain")))
    for t in targets:
        aligning = settings_of(AlignSettings, [f"prefft.seed={seed}", f"rl.seed={seed}",
                                               *layout_align, *extra_for("align", t), *env_align])
        stages.append(Stage(f"align-{t}", partial(
            align.run, aligning, path("sft"), path(f"reward-{t}"), t, path(f"align-{t}"),
            **intents, **worker, **on), ("sft", f"reward-{t}")))

    agents = [("base", "pretrain"), ("sft", "sft")]
    if settings.ablation:
        agents.append(("sft-scratch", "sft-scratch"))
    agents += [(f"{t}-aligned", f"align-{t}") for t in targets]
    evaluation = settings_of(EvaluateSettings, [*on_layout, *extra("evaluate")],
                             episodes=settings.eval_episodes, seed=seed, **on_env)
    # An aligned agent of an intent other than a pad is also counted against its intent.
    intent_of = {f"{t}-aligned": t for t in targets if t not in PADS}

    def evaluating(name: str, base: EvaluateSettings) -> EvaluateSettings:
        if name not in intent_of:
            return base
        return base.replace(intent=intent_of[name], intents=settings.intents)

    for name, folder in agents:
        stages.append(Stage(f"evaluate-{name}", partial(
            evaluate.run, evaluating(name, evaluation), path(folder), path("eval", name),
            **worker, **on), (folder,)))
    if settings.offlane:
        offlane = evaluation.replace(starts="offlane")
        for name, folder in agents:  # the aligned personalities too: do they recover?
            stages.append(Stage(f"evaluate-{name}-offlane", partial(
                evaluate.run, evaluating(name, offlane), path(folder),
                path("eval", f"{name}-offlane"), **worker, **on), (folder,)))
    if settings.export:
        exporting = settings_of(ExportSettings, on_layout, seed=seed,
                                episodes=settings.export_episodes)
        for t in targets:
            stages.append(Stage(f"export-{t}", partial(
                personality.run, exporting, path(f"align-{t}"), f"{t}-runner",
                path("personalities"), t, **intents), (f"align-{t}",)))
    if settings.study:  # each target's: the paper-findings issue compares them
        for t in targets:
            studying = settings_of(RewardSettings, extra_for("reward", t))
            stages.append(Stage(f"reward-study-{t}", partial(
                reward_study.run, studying, path("label"), t, path("pretrain"),
                path(f"study-{t}"), **here), ("label", "pretrain"), solo=True))
    return stages


def run(settings: PipelineSettings, out: str | Path, *, progress: bool = True,
        cluster: Cluster | None = None) -> PipelineResult:
    """Run (or resume) the whole pipeline into `out`; `cluster` as in `plan` (where the stages
    run: a resume may change it)."""
    from agentalign.report import build_report

    check_targets(settings.targets + settings.target_keys(), settings.intents,
                  settings.island or settings.label.layout)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    state = _state(folder, settings)
    if cluster is not None and cluster.address is None:
        # One local Ray for the whole run, which every stage's process joins.
        cluster = replace(cluster, address=local_address(connect(cluster)))
    stages = plan(folder, settings, progress, cluster)
    clock, before = time.perf_counter(), state.get("wall_seconds", 0.0)

    def wall() -> None:  # summed over the invocations that made the run
        state["wall_seconds"] = round(before + time.perf_counter() - clock, 2)

    try:
        _Scheduler(folder, state, settings, progress).run(stages)
        with _timed(state, "report"):
            _index_outputs(folder, state, settings)
            wall()
            write_json_atomic(folder / "pipeline.json", state)
            build_report(folder)
    finally:
        wall()
        write_json_atomic(folder / "pipeline.json", state)
    events.state("pipeline", "done")
    return PipelineResult(state["name"], state["stages"], state["wall_seconds"],
                          state["evaluations"], state["reward"], state["rl"],
                          state["personalities"], str(folder / "report.html"))


def _state(run: Path, settings: PipelineSettings) -> dict[str, Any]:
    """pipeline.json of a run to resume (refused if it was started with another config), or a
    new one."""
    life = StageRun(run, "pipeline", settings.identity())
    state = read_json(run / "pipeline.json")
    if (run / "pipeline.json").exists() and not isinstance(state, dict):
        raise UserError(f"pipeline: {run / 'pipeline.json'} is not valid JSON; delete it to "
                        "rerun every stage (finished stages' outputs are reused where they "
                        "resume)")
    if state is not None:
        life.refuse_other(recipe(state.get("config") or {}), run)
        state["config"] = settings.to_dict()
        return state
    return {"name": run.name, "config": settings.to_dict(), "agentalign": __version__,
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


class _Scheduler:
    """Runs the stages in plan order, each once the stages it needs are done: `solo` stages
    alone in this process, the others on `workers` pinned worker processes (workers = 1: all in
    this process, one after the other)."""

    def __init__(self, run: Path, state: dict[str, Any], settings: PipelineSettings,
                 progress: bool) -> None:
        self.run_dir, self.state, self.settings = run, state, settings
        self.workers, self.progress = settings.workers, progress
        self.done = {s["name"] for s in state["stages"] if s["status"] == "done"}
        self.running: dict[Future[int], tuple[Stage, float, dict[str, Any]]] = {}
        self.failed: list[str] = []
        self.pool: ProcessPoolExecutor | None = None
        self.bar: events.Progress | None = None  # over the stages in workers, while any run
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
        print(f"[pipeline] {stage.name}: {_describe(stage.call)}", flush=True)
        with _timed(self.state, stage.name):
            try:
                print(_summary(stage.call, stage.call()), flush=True)
            except UserError as e:
                print(f"[pipeline] {stage.name}: error: {e}", flush=True)
                events.state(stage.name, "failed")
                self.state["stages"][-1]["status"] = "failed"
                raise StageFailed(f"stage {stage.name} failed; fix the cause and rerun the "
                                  "same command to resume from it") from None
            finally:
                self._save()
        self.done.add(stage.name)
        _index_outputs(self.run_dir, self.state, self.settings)
        self._save()

    def _log(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def _submit(self, stage: Stage) -> None:
        if self.pool is None:
            self.pool = pinned_pool(self.workers)
        if self.bar is None:
            self.bar = events.progress("pipeline stages", self.in_workers, unit="stage",
                                       show=self.progress)
        log = self._log(stage.name)
        log.parent.mkdir(exist_ok=True)
        self._say(f"[pipeline] {stage.name}: {_describe(stage.call)} (in a worker; log: {log})")
        record = _record(self.state, stage.name)
        self._save()
        events.state(stage.name, "started")  # a worker's own events stay in the worker
        future = self.pool.submit(_run_in_worker, stage.call, str(log))
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
            events.state(stage.name, record["status"])
            if code == 0:
                self.done.add(stage.name)
                self._say(f"[pipeline] {stage.name}: done in {record['seconds']:.1f} s")
            else:
                self.failed.append(stage.name)
                self._say(f"[pipeline] {stage.name}: failed; the stages already running finish "
                          "first")
            if self.bar is not None:
                self.bar.update(1)
            _index_outputs(self.run_dir, self.state, self.settings)
            self._save()


def _describe(call: Any) -> str:
    """'agentalign.train.bc.pretrain(corpus, pretrain)': the function and its path arguments."""
    func = getattr(call, "func", call)
    paths = [a.name for a in getattr(call, "args", ()) if isinstance(a, Path)]
    return f"{func.__module__}.{func.__name__}({', '.join(paths)})"


def _summary(call: Any, result: Any) -> str:
    """The stage's result as its command prints it (each stage module has `summary`)."""
    func = getattr(call, "func", call)
    return sys.modules[func.__module__].summary(result)


def _run_in_worker(call: Callable[..., Any], log: str) -> int:
    """One stage in a worker process, its output into `log`; returns 0 if it succeeded."""
    with open(log, "a", buffering=1) as out, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(out):
        print(_describe(call), flush=True)
        try:
            print(_summary(call, call()), flush=True)
            return 0
        except (Exception, SystemExit):
            traceback.print_exc()
            return 1


def _index_outputs(run: Path, state: dict[str, Any], settings: PipelineSettings) -> None:
    """Point pipeline.json at the artifacts the report shows (paths relative to the run)."""
    evaluations = {}
    for found in sorted((run / "eval").glob("*/results.json")) if (run / "eval").exists() \
            else []:
        evaluations[found.parent.name] = str(found.relative_to(run))
    targets = list(settings.targets)
    order = ["base", "sft", "sft-scratch"] + [f"{t}-aligned" for t in targets]
    state["evaluations"] = {k: evaluations[k] for k in sorted(
        evaluations, key=lambda k: (order.index(k.removesuffix("-offlane"))
                                    if k.removesuffix("-offlane") in order else 99, k))}
    state["reward"] = {t: str(p.relative_to(run)) for t in targets
                       if (p := run / f"reward-{t}" / "metrics.json").exists()}
    state["rl"] = {t: str(p.relative_to(run)) for t in targets
                   if (p := run / f"align-{t}" / "rl" / "metrics.json").exists()}
    plots = {t: str(p.relative_to(run)) for t in targets
             if (p := run / f"study-{t}" / "study.png").exists()}
    if (run / "study" / "study.png").exists():  # a run from before: its first target's study
        plots.setdefault(targets[0], "study/study.png")
    state["study_plots"] = plots
    state["personalities"] = {p.stem: str(p.relative_to(run))
                              for p in sorted((run / "personalities").glob("*.onnx"))} \
        if (run / "personalities").exists() else {}


def summary(result: PipelineResult) -> str:
    width = max([28, *(len(s["name"]) + 2 for s in result.stages)])  # off-lane names are long
    rows = [f"{'stage':{width}s}{'status':>10s}{'seconds':>10s}"]
    for s in result.stages:
        rows.append(f"{s['name']:{width}s}{s['status']:>10s}{s['seconds']:>10.1f}")
    rows.append(f"{'total (stages summed)':{width}s}{'':>10s}"
                f"{sum(s['seconds'] for s in result.stages):>10.1f}")
    rows.append(f"{'wall clock':{width}s}{'':>10s}{result.wall_seconds:>10.1f}")
    rows.append(f"report: {result.report}")
    return "\n".join(rows)
