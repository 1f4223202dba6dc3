"""The whole pipeline at toy sizes: every artifact, a report that loads, and kill-and-rerun."""

import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agentalign.config import load
from agentalign.errors import ConfigError, UserError
from agentalign.pipeline import Stage, _index_outputs, _Scheduler, plan
from agentalign.pipeline_config import PipelineSettings
from agentalign.workers import pinned_pool

TINY = ["model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.context=8"]
TOY = {
    "targets": ["left"], "demo_episodes": 24, "eval_episodes": 6, "export_episodes": 6,
    "labels_used": 12,
    "label": {"train_episodes": 10, "heldout_episodes": 8, "pairs": 30, "heldout_pairs": 20,
              "anywhere_heldout_episodes": 6},
    "stages": {
        "collect": ["episodes=24", "shard_episodes=8", "num_envs=8"],
        "demos": ["shard_episodes=12", "num_envs=12"],
        "pretrain": [*TINY, "steps=4", "batch_size=4", "warmup_steps=1", "eval_interval=2",
                     "checkpoint_interval=2", "eval_windows=8", "num_threads=1"],
        "sft": ["episodes=24", "steps=3", "batch_size=4", "warmup_steps=1", "eval_interval=2",
                "checkpoint_interval=2", "eval_windows=8", "num_threads=1"],
        "reward": ["min_steps=2", "max_steps=3", "batch_size=4", "num_threads=1"],
        "align": ["prefft.rounds=1", "prefft.episodes=8", "prefft.num_envs=8",
                  "prefft.eval_episodes=4", "prefft.finetune.steps=2",
                  "prefft.finetune.batch_size=4", "prefft.finetune.eval_interval=2",
                  "prefft.finetune.checkpoint_interval=2", "rl.iterations=2",
                  "rl.starts_per_iteration=2", "rl.samples_per_start=2", "rl.num_envs=4",
                  "rl.eval_episodes=4", "rl.minibatch_episodes=4"],
        "evaluate": ["num_envs=6", "gif_episodes=1"],
    },
}


def toy_config_file(tmp_path: Path) -> Path:
    import yaml

    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(TOY))
    return path


def kill_when(cmd: list[str], env: dict, ready, timeout: float, poll: float = 0.05) -> None:
    """Start `cmd` in its own session and SIGKILL the whole session once `ready()` holds (or
    the command ended, or `timeout` seconds passed)."""
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(poll)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def test_the_recovery_recipe_reaches_every_stage_it_changes(tmp_path):
    """examples/recovery.yaml (docs/results.md, "Recovery") stays a valid pipeline config whose
    starts-anywhere settings reach the demos, label and align stages."""
    recipe = Path(__file__).parent.parent / "examples" / "recovery.yaml"
    stages = {s.name: s.call.args[0] for s in plan(tmp_path, load(PipelineSettings, recipe))}
    assert stages["demos"].anywhere == pytest.approx(0.34) and stages["demos"].episodes == 300
    assert stages["collect"].anywhere == 0.0  # the gameplay corpus is the default one
    assert stages["label"].anywhere == 0.5 and stages["label"].anywhere_heldout_episodes == 400
    for target in ("left", "middle", "right"):
        align = stages[f"align-{target}"]
        assert align.prefft.anywhere == align.rl.anywhere == 0.5 and align.rl.iterations == 150
    assert "evaluate-left-aligned-offlane" in stages


def test_the_future_recipe_reaches_pretraining_only(tmp_path):
    """examples/future.yaml (docs/results.md) stays a valid pipeline config whose objective
    reaches pre-training and no other imitation stage."""
    recipe = Path(__file__).parent.parent / "examples" / "future.yaml"
    stages = {s.name: s.call.args[0] for s in plan(tmp_path, load(PipelineSettings, recipe))}
    assert stages["pretrain"].future_weight == 1.0
    assert stages["sft"].future_weight == 0.0
    assert stages["align-left"].prefft.finetune.future_weight == 0.0
    assert "evaluate-left-aligned-offlane" in stages


def test_plan_orders_the_recipe(tmp_path):
    config = load(PipelineSettings)
    names = [s.name for s in plan(tmp_path, config)]
    assert names[:5] == ["collect", "demos", "pretrain", "sft", "label"]
    assert names.index("reward-left") < names.index("align-left") < names.index("export-left")
    assert "evaluate-base" in names and "evaluate-right-aligned" in names
    with pytest.raises(ConfigError, match="targets"):
        load(PipelineSettings, overrides=["targets=[north]"])


def test_the_run_seed_seeds_every_stage(tmp_path):
    """Seeds are replicates: data, trainers, alignment and evaluation all take the run's seed,
    and a stage's own --set overrides still come last (they win)."""
    config = load(PipelineSettings, overrides=["seed=3", "stages.pretrain=[seed=9]"])
    stages = {s.name: s.call.args[0] for s in plan(tmp_path, config)}  # each stage's settings
    for name in ("sft", "reward-left", "reward-right", "collect", "label", "evaluate-sft",
                 "export-left"):
        assert stages[name].seed == 3, name
    assert stages["demos"].seed == 1003
    assert stages["align-left"].prefft.seed == stages["align-left"].rl.seed == 3
    assert stages["pretrain"].seed == 9  # the stage's own override wins


def test_the_default_aligns_three_personalities_reward_models_first(tmp_path):
    names = [s.name for s in plan(tmp_path, load(PipelineSettings))]
    rewards = [i for i, n in enumerate(names) if n.startswith("reward-")]
    aligns = [i for i, n in enumerate(names) if n.startswith("align-")]
    assert [names[i] for i in aligns] == ["align-left", "align-middle", "align-right"]
    assert len(rewards) == 3 and max(rewards) < min(aligns)  # the third model does not wait
    offlane = {s.name: s.needs for s in plan(tmp_path, load(PipelineSettings,
                                                              overrides=["offlane=true"]))}
    assert offlane["evaluate-middle-aligned-offlane"] == ("align-middle",)
    assert "evaluate-sft-offlane" in offlane and "evaluate-base-offlane" in offlane


def test_a_target_takes_its_own_overrides_before_the_stages(tmp_path):
    """`stages.align-<target>` / `reward-<target>` reach that target's stage only, before the
    stage's own overrides (a setting for every alignment reaches every target); a key that is
    no stage, or names no intent, is refused in one line (the latter as the run starts)."""
    from agentalign.pipeline import run as pipeline
    from agentalign.train.align_config import AlignSettings
    from agentalign.train.reward_config import RewardSettings

    rl_default, reward_default = load(AlignSettings).rl, load(RewardSettings)
    middle = load(PipelineSettings, overrides=["stages.align-middle=[rl.iterations=100]"])
    stages = {s.name: s.call.args[0] for s in plan(tmp_path, middle)}
    assert stages["align-middle"].rl == rl_default.replace(seed=0, iterations=100)
    assert stages["align-left"].rl == stages["align-right"].rl == rl_default.replace(seed=0)

    config = load(PipelineSettings, overrides=[
        "stages.align-left=[rl.lr=1e-3, rl.iterations=9]", "stages.reward-right=[lr=1e-4]",
        "stages.align=[rl.iterations=7]"])
    stages = {s.name: s.call.args[0] for s in plan(tmp_path, config)}
    assert (stages["align-left"].rl.lr, stages["align-right"].rl.lr) == (1e-3, rl_default.lr)
    for target in ("left", "middle", "right"):  # the stage's own setting comes last
        assert stages[f"align-{target}"].rl.iterations == 7, target
    assert stages["reward-right"].lr == 1e-4
    assert stages["reward-left"].lr == stages["reward-middle"].lr == reward_default.lr
    both = load(PipelineSettings, overrides=["stages.align-middle=[rl.iterations=100]",
                                             "stages.align=[rl.iterations=7]"])
    assert {s.name: s.call.args[0] for s in plan(tmp_path, both)}[
        "align-middle"].rl.iterations == 7

    with pytest.raises(ConfigError, match="stages.alig-left: no such stage; .* align-TARGET"):
        load(PipelineSettings, overrides=["stages.alig-left=[rl.iterations=1]"])
    north = load(PipelineSettings, overrides=["stages.align-north=[rl.iterations=1]"])
    with pytest.raises(ConfigError, match="no intent 'north' in the packaged"):
        pipeline(north, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_study_runs_for_every_target_each_alone(tmp_path):
    """The paper-findings issue compares the label-scaling study across the targets."""
    stages = {s.name: s for s in plan(tmp_path, load(PipelineSettings, overrides=["study=true"]))}
    studies = [n for n in stages if n.startswith("reward-study")]
    assert studies == ["reward-study-left", "reward-study-middle", "reward-study-right"]
    for target in ("left", "middle", "right"):
        study = stages[f"reward-study-{target}"]
        assert study.solo and study.needs == ("label", "pretrain")
        assert study.call.args[2] == target and study.call.args[4] == tmp_path / f"study-{target}"
    assert not any(n.startswith("reward-study") for n in
                   (s.name for s in plan(tmp_path, load(PipelineSettings))))


def test_the_layout_reaches_every_stage_that_plays_episodes(tmp_path):
    """`--layout` moves the whole run to another island: data, labels, alignment, evaluation and
    the cards' measurement; a stage's own override still wins; the default leaves the run's
    identity as it was."""
    alike = "jumppad_island_alike"
    config = load(PipelineSettings,
                  overrides=[f"layout={alike}", "stages.evaluate=[layout=x.json]"])
    stages = {s.name: s.call.args[0] for s in plan(tmp_path, config)}
    for name in ("collect", "demos", "label", "export-left"):
        assert stages[name].layout == alike, name
    assert stages["align-middle"].prefft.layout == stages["align-middle"].rl.layout == alike
    assert stages["evaluate-sft"].layout == "x.json"  # the stage's own override wins
    assert config.identity()["layout"] == alike
    default = load(PipelineSettings)
    assert "layout" not in default.identity()
    assert {s.call.args[0].layout for s in plan(tmp_path, default)
            if hasattr(s.call.args[0], "layout")} == {"jumppad_island"}


def test_the_report_finds_each_targets_study_and_a_run_from_befores(tmp_path):
    settings = load(PipelineSettings)
    for folder in ("study-middle", "study"):  # "study": the first target's, in runs from before
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "study.png").write_bytes(b"png")
    state: dict = {}
    _index_outputs(tmp_path, state, settings)
    assert state["study_plots"] == {"left": "study/study.png", "middle": "study-middle/study.png"}


def test_stages_start_when_their_needs_are_done_and_solo_stages_run_alone(tmp_path):
    config = load(PipelineSettings, overrides=["workers=2"])
    stages = {s.name: s for s in plan(tmp_path, config)}
    assert stages["pretrain"].solo and not stages["align-left"].solo
    scheduler = _Scheduler(tmp_path, {"stages": []}, config, progress=False)
    scheduler.done = {"collect", "demos", "pretrain", "sft", "label"}
    pending = [stages[n] for n in ("reward-left", "align-left", "reward-right", "align-right",
                                   "evaluate-base", "evaluate-left-aligned")]
    picked = []
    for _ in range(2):  # two workers: both reward models start; nothing else may
        stage = scheduler._next(pending)
        pending.remove(stage)
        scheduler.running[object()] = (stage, 0.0, {})
        picked.append(stage.name)
    assert picked == ["reward-left", "reward-right"]
    assert scheduler._next(pending) is None
    scheduler.running.clear()
    scheduler.done.add("reward-right")  # the right model finished first: its alignment is next
    assert scheduler._next(pending).name == "align-right"
    # a solo stage waits until no worker runs, and nothing after it starts before it
    study = Stage("reward-study", print, ("label",), solo=True)
    scheduler.running[object()] = (stages["reward-left"], 0.0, {})
    assert scheduler._next([study, stages["evaluate-base"]]) is None
    scheduler.running.clear()
    assert scheduler._next([study, stages["evaluate-base"]]) is study
    # workers = 1: every stage in this process, in plan order
    serial = _Scheduler(tmp_path, {"stages": []}, config.replace(workers=1), progress=False)
    serial.done = {"collect", "demos", "pretrain", "sft", "label"}
    assert serial._next([stages["align-left"], stages["evaluate-base"]]) is None


def test_workers_are_pinned_to_shares_of_the_cores():
    import os

    cores = os.sched_getaffinity(0)
    pool = pinned_pool(2)
    try:
        shares = [f.result(timeout=120) for f in
                  [pool.submit(os.sched_getaffinity, 0) for _ in range(4)]]
    finally:
        pool.shutdown()
    for share in shares:
        assert share <= cores and len(share) == max(1, len(cores) // 2)


def test_a_rerun_may_change_the_worker_count_but_not_the_recipe(tmp_path):
    from agentalign.pipeline import _state

    config = load(PipelineSettings, overrides=["workers=2"])
    (tmp_path / "pipeline.json").write_text(json.dumps({"config": config.to_dict(),
                                                        "stages": []}))
    assert _state(tmp_path, config.replace(workers=1))["config"]["workers"] == 1
    with pytest.raises(UserError, match=r"other settings \(seed: 0 -> 1\)"):
        _state(tmp_path, config.replace(seed=1))
    # A run recorded before the label stage's starts-anywhere keys existed resumes as is.
    before = config.to_dict()
    before["label"] = {k: v for k, v in before["label"].items() if not k.startswith("anywhere")}
    (tmp_path / "pipeline.json").write_text(json.dumps({"config": before, "stages": []}))
    assert _state(tmp_path, config)["config"]["label"]["anywhere"] == 0.0
    with pytest.raises(ConfigError, match="workers: must be >= 1"):
        load(PipelineSettings, overrides=["workers=0"])


def test_pad_targets_keep_the_identities_of_before(tmp_path):
    """The default recipe (pads only) is the same run as before intents became targets: its
    identity, and each pad's stages with the same arguments, so earlier run folders resume."""
    import hashlib

    from agentalign.pipeline import _state

    config = load(PipelineSettings)
    digest = hashlib.sha256(json.dumps(config.identity(), sort_keys=True).encode()).hexdigest()
    assert digest[:16] == "4061c62803d7c26c"  # recorded before intents became targets
    calls = {s.name: s.call for s in plan(tmp_path, config)}
    assert calls["label"].args[3] == ["left", "middle", "right"]
    for pad in ("left", "middle", "right"):
        assert calls[f"align-{pad}"].args[1:] == (tmp_path / "sft", tmp_path / f"reward-{pad}",
                                                  pad, tmp_path / f"align-{pad}")
        assert calls[f"reward-{pad}"].args[2] == pad
        evaluation = calls[f"evaluate-{pad}-aligned"].args[0]
        assert evaluation.intent is None and evaluation.intents is None
        assert calls[f"export-{pad}"].args[1:] == (tmp_path / f"align-{pad}", f"{pad}-runner",
                                                   tmp_path / "personalities", pad)
    # pipeline.json of a run from before the `intents` key existed resumes as is
    before = {k: v for k, v in config.to_dict().items() if k != "intents"}
    (tmp_path / "pipeline.json").write_text(json.dumps({"config": before, "stages": []}))
    assert _state(tmp_path, config)["config"]["targets"] == ["left", "middle", "right"]


def test_targets_are_intents_by_name_from_a_file(tmp_path):
    """A target of one's own intents file reaches every stage by name; an unknown name or an
    unsafe one is refused in one line, a file's own names only as the run starts."""
    from agentalign.pipeline import run as pipeline

    mine = tmp_path / "mine.yaml"
    mine.write_text("inland:\n  description: keep 2 m from the edge\n  edge: 2.0\n")
    config = load(PipelineSettings, overrides=["targets=[left, inland]", f"intents={mine}",
                                               "offlane=true"])
    calls = {s.name: s.call for s in plan(tmp_path, config)}
    assert calls["label"].args[3] == ["left", "inland"]
    assert calls["label"].keywords["intents"] == str(mine)
    assert calls["align-inland"].args[3] == "inland"
    assert calls["align-inland"].keywords["intents"] == str(mine)
    for name in ("evaluate-inland-aligned", "evaluate-inland-aligned-offlane"):
        evaluation = calls[name].args[0]
        assert (evaluation.intent, evaluation.intents) == ("inland", str(mine))
    assert calls["evaluate-left-aligned"].args[0].intent is None  # a pad: as before
    assert calls["export-inland"].args[2:4] == ("inland-runner", tmp_path / "personalities")
    assert config.identity()["intents"] == str(mine)  # a file of one's own is the recipe's
    with pytest.raises(ConfigError, match="targets: no intent 'north' in the packaged"):
        load(PipelineSettings, overrides=["targets=[north]"])
    with pytest.raises(ConfigError, match="names folders and the personality"):
        load(PipelineSettings, overrides=["targets=['a b']"])
    other = config.replace(targets=("inland", "outland"))  # checked when the run starts
    with pytest.raises(ConfigError, match=r"no intent 'outland' in .*mine.yaml: choose from "
                                          "left, middle, right, inland"):
        pipeline(other, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_toy_pipeline_end_to_end_and_resume(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "agentalign.cli", "pipeline", "--out", str(run), "--config",
           str(toy_config_file(tmp_path)), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Kill it mid-way (once pre-training has a checkpoint), then rerun to completion.
    kill_when(cmd, env, lambda: any((run / "pretrain" / "checkpoints").glob("step-*")), 120)
    state = json.loads((run / "pipeline.json").read_text())
    assert [s["name"] for s in state["stages"] if s["status"] == "done"][:2] == \
        ["collect", "demos"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "collect: done, skipped" in result.stdout
    state = json.loads((run / "pipeline.json").read_text())
    assert all(s["status"] == "done" for s in state["stages"])
    for path in ("corpus/corpus.json", "demos/corpus.json", "pretrain/metrics.json",
                 "sft/metrics.json", "label/labels.sqlite", "reward-left/metrics.json",
                 "align-left/metrics.json", "eval/base/results.json", "eval/sft/results.json",
                 "eval/left-aligned/results.json", "eval/left-aligned/heatmap.png",
                 "personalities/left-runner.onnx", "personalities/left-runner.json",
                 "report.html"):
        assert (run / path).exists(), path
    card = json.loads((run / "personalities" / "left-runner.json").read_text())
    assert card["target"] == "left"
    parser = _Tags()
    parser.feed((run / "report.html").read_text())
    assert parser.tags.count("svg") >= 2 and parser.tags.count("img") >= 3
    assert set(state["evaluations"]) == {"base", "sft", "left-aligned"}
    # the default 2 workers ran the per-target stages in worker processes, logging to files
    assert "align-left.log" in {p.name for p in (run / "logs").iterdir()}
    assert state["wall_seconds"] > 0 and "wall clock" in (run / "report.html").read_text()
    # A third run has nothing left to do.
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0 and again.stdout.count("done, skipped") == len(state["stages"]) - 1


@pytest.mark.slow
def test_toy_pipeline_aligns_a_designer_intent(tmp_path, capsys):
    """`--targets campfire-middle`: labels, reward model, alignment, evaluation, personality and
    report all go by the intent, and say how often its episodes satisfy it."""
    from agentalign.cli import main

    run = tmp_path / "run"
    assert main(["pipeline", "--out", str(run), "--config", str(toy_config_file(tmp_path)),
                 "--targets", "campfire-middle", "--set", "workers=1", "--no-progress"]) == 0
    capsys.readouterr()
    label = json.loads((run / "label" / "metrics.json").read_text())
    assert list(label["targets"]) == ["campfire-middle"]
    assert label["intents"]["campfire-middle"]["description"] == \
        "pass by the campfire, then end on the middle pad"
    reward = json.loads((run / "reward-campfire-middle" / "metrics.json").read_text())
    assert reward["target"] == "campfire-middle"
    evaluated = json.loads((run / "eval" / "campfire-middle-aligned" / "results.json")
                           .read_text())["intent"]
    assert evaluated["intent"] == "campfire-middle" and evaluated["episodes"] == 6
    assert 0.0 <= evaluated["low"] <= evaluated["rate"] <= evaluated["high"] <= 1.0
    for plain in ("base", "sft"):  # the others are counted as before
        assert "intent" not in json.loads((run / "eval" / plain / "results.json").read_text())
    card = json.loads((run / "personalities" / "campfire-middle-runner.json").read_text())
    assert card["target"] == "campfire-middle" and card["intent"] == {
        "name": "campfire-middle",
        "description": "pass by the campfire, then end on the middle pad"}
    assert card["measured"]["intent"]["episodes"] == 6
    report = (run / "report.html").read_text()
    assert "Designer intents" in report and "campfire-middle-aligned" in report
    assert "pass by the campfire, then end on the middle pad" in report
    # An intent the file lacks is refused before anything runs, in one line.
    assert main(["pipeline", "--out", str(tmp_path / "other"), "--targets", "bonfire"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no intent 'bonfire'" in err and "campfire-middle" in err and "\n" not in err
    assert not (tmp_path / "other").exists()
