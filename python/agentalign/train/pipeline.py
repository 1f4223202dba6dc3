"""`agentalign pipeline`: every stage of the recipe in order, resumable, with a report.

The pipeline is a list of the same commands a user would type (`collect`, `pretrain`, `sft`,
`label`, `reward`, `align`, `evaluate`, `export`), run in-process, so the pipeline can do nothing a
user could not. `pipeline.json` in the run folder records each finished stage with its wall time;
a rerun skips those and reruns the first unfinished one, which resumes from its own checkpoints.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentalign import __version__
from agentalign.atomic import write_json_atomic
from agentalign.errors import ConfigError, UserError
from agentalign.spec import PADS


class StageFailed(UserError):
    """A stage of the pipeline stopped; its own message was printed above."""


@dataclass(frozen=True)
class Stage:
    name: str
    argv: list[str]  # the agentalign command line of the stage


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
    # the run's seed also seeds every trainer (init, batches, rollouts), so seeds are replicates
    seeded = ["--set", f"seed={seed}"]
    seeded_align = ["--set", f"prefft.seed={seed}", "--set", f"rl.seed={seed}"]
    # --env for every stage that runs episodes (pretrain, sft, reward and export do not)
    env = ["--env", config["env"]] if config.get("env", "island") != "island" else []
    stages = [
        Stage("collect", ["collect", "--out", run_path("corpus"), "--seed", seed, *env, *quiet,
                          *extra("collect")]),
        Stage("demos", ["collect", "--population", "direct", "--episodes",
                        str(config["demo_episodes"]), "--seed", str(config["seed"] + 1000),
                        "--out", run_path("demos"), *env, *quiet, *extra("demos")]),
        Stage("pretrain", ["pretrain", "--corpus", run_path("corpus"), "--out",
                           run_path("pretrain"), *seeded, *quiet, *extra("pretrain")]),
        Stage("sft", ["sft", "--init", run_path("pretrain"), "--demos", run_path("demos"),
                      "--out", run_path("sft"), *seeded, *quiet, *extra("sft")]),
    ]
    if config["ablation"]:
        stages.append(Stage("sft-scratch", ["sft", "--from-scratch", "--demos",
                                            run_path("demos"), "--out",
                                            run_path("sft-scratch"), *seeded, *quiet,
                                            *extra("sft")]))
    sizes = config["label"]
    label = ["label", "--policy", run_path("sft"), "--out", run_path("label"), "--seed", seed,
             "--train-episodes", str(sizes["train_episodes"]),
             "--heldout-episodes", str(sizes["heldout_episodes"]),
             "--pairs", str(sizes["pairs"]), "--heldout-pairs", str(sizes["heldout_pairs"])]
    for t in targets:
        label += ["--target", t]
    stages.append(Stage("label", [*label, *env, *quiet]))
    for t in targets:
        stages.append(Stage(f"reward-{t}", [
            "reward", "--labels", run_path("label"), "--target", t, "--init",
            run_path("pretrain"), "--labels-used", str(config["labels_used"]),
            "--out", run_path(f"reward-{t}"), *seeded, *quiet, *extra("reward")]))
        stages.append(Stage(f"align-{t}", [
            "align", "--policy", run_path("sft"), "--reward", run_path(f"reward-{t}"),
            "--target", t, "--out", run_path(f"align-{t}"), *env, *seeded_align, *quiet,
            *extra("align")]))

    agents = [("base", "pretrain"), ("sft", "sft")]
    if config["ablation"]:
        agents.append(("sft-scratch", "sft-scratch"))
    agents += [(f"{t}-aligned", f"align-{t}") for t in targets]
    evaluate = ["--episodes", str(config["eval_episodes"]), "--seed", seed, *env, *quiet,
                *extra("evaluate")]
    for label_, folder in agents:
        stages.append(Stage(f"evaluate-{label_}", ["evaluate", run_path(folder), "--out",
                                                   run_path("eval", label_), *evaluate]))
    if config["offlane"]:
        for label_, folder in agents[:3 if config["ablation"] else 2]:
            stages.append(Stage(f"evaluate-{label_}-offlane", [
                "evaluate", run_path(folder), "--offlane", "--out",
                run_path("eval", f"{label_}-offlane"), *evaluate]))
    if config["export"]:
        for t in targets:
            stages.append(Stage(f"export-{t}", [
                "export", run_path(f"align-{t}"), "--name", f"{t}-runner", "--target", t,
                "--out", run_path("personalities"), "--seed", seed,
                "--episodes", str(config["export_episodes"])]))
    if config["study"]:
        stages.append(Stage("reward-study", [
            "reward", "--study", "--labels", run_path("label"), "--target", targets[0],
            "--init", run_path("pretrain"), "--out", run_path("study"), *quiet,
            *extra("reward")]))
    return stages


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
        if isinstance(saved, dict):  # runs from before the env key played on the island
            saved.setdefault("env", "island")
        if saved != config:
            raise ConfigError(f"pipeline: run {run} was started with another config; rerun "
                              "with the same options to resume, or choose another --out")
        return state
    return {"name": run.name, "config": config, "agentalign": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "stages": []}


@contextlib.contextmanager
def _timed(state: dict[str, Any], name: str) -> Iterator[dict[str, Any]]:
    record = {"name": name, "status": "running", "seconds": 0.0}
    state["stages"] = [s for s in state["stages"] if s["name"] != name] + [record]
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
    from agentalign.cli import main as cli
    from agentalign.evaluate.report import build_report

    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    state = _state(run, config)
    done = {s["name"] for s in state["stages"] if s["status"] == "done"}
    for stage in plan(run, config):
        if stage.name in done:
            print(f"[pipeline] {stage.name}: done, skipped")
            continue
        print(f"[pipeline] {stage.name}: agentalign {' '.join(stage.argv)}", flush=True)
        with _timed(state, stage.name) as record:
            try:
                code = cli(stage.argv)
            finally:
                write_json_atomic(run / "pipeline.json", state)
            if code != 0:
                record["status"] = "failed"
                write_json_atomic(run / "pipeline.json", state)
                raise StageFailed(f"stage {stage.name} failed (exit {code}); fix the cause and "
                                  "rerun the same command to resume from it")
        _index_outputs(run, state, config)
        write_json_atomic(run / "pipeline.json", state)
    with _timed(state, "report"):
        _index_outputs(run, state, config)
        build_report(run)
    write_json_atomic(run / "pipeline.json", state)
    return state


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
    rows.append(f"{'total':28s}{'':>10s}{sum(s['seconds'] for s in state['stages']):>10.1f}")
    return "\n".join(rows)
