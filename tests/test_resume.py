"""Every resumable stage survives SIGKILL: killed at a random point of its work and rerun with the
same command, it finishes with the same result as a run that was never interrupted.

Each stage runs at toy size as `python -m agentalign ...` (one thread). The reference run is
timed from the moment the stage marks its folder (run.json, or pipeline.json) to its end; the
killed run gets SIGKILL at a random share of that time after the same mark (the share is drawn
from a seed named in the failure message), then the same command runs to the end. "The same
result" is each stage's output compared exactly: shard checksums, weights' sha256, labels,
outcome counts.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from agentalign.collect import run as collect
from agentalign.config import load
from agentalign.data.shards import MANIFEST
from agentalign.models.checkpoint import read_info
from agentalign.train.bc import pretrain, sft
from agentalign.train.bc_config import ImitationSettings, SftSettings
from agentalign.train.label import run as label
from agentalign.train.label_config import LabelSettings
from agentalign.train.preferences import STORE, LabelStore
from agentalign.train.reward import run as reward
from agentalign.train.reward_config import RewardSettings
from conftest import small_collect_config
from test_pipeline import toy_config_file

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

MODEL = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.context=8"]
TRAIN = ["batch_size=8", "num_threads=1", "warmup_steps=1", "eval_windows=8", "prefetch=0",
         "checkpoint_interval=5", "eval_interval=10", "log_interval=5"]
REWARD = [*MODEL, "num_threads=1", "batch_size=8", "min_steps=40", "max_steps=40",
          "checkpoint_interval=4", "log_interval=4"]
ALIGN = ["prefft.rounds=2", "prefft.episodes=16", "prefft.num_envs=16",
         "prefft.eval_episodes=8", "prefft.finetune.steps=12",
         "prefft.finetune.checkpoint_interval=3", "prefft.finetune.batch_size=4",
         "prefft.finetune.eval_windows=4", "prefft.finetune.prefetch=0", "rl.iterations=6",
         "rl.starts_per_iteration=2", "rl.samples_per_start=4", "rl.num_envs=8",
         "rl.eval_episodes=8", "rl.checkpoint_interval=1", "rl.max_steps=40"]
LABEL = ["--train-episodes", "40", "--heldout-episodes", "30", "--pairs", "60",
         "--heldout-pairs", "40", "--num-envs", "10", "--anywhere-heldout-episodes", "10"]


def sets(items: list[str], prefix: str = "") -> list[str]:
    return [arg for item in items for arg in ("--set", prefix + item)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A toy corpus, demos, pre-trained and fine-tuned policies, labels and a reward model."""
    root = tmp_path_factory.mktemp("inputs")
    collect(small_collect_config(), root / "corpus", progress=False)
    collect(small_collect_config(population="direct", episodes=20, shard_episodes=10),
            root / "demos", progress=False)
    pretrain(load(ImitationSettings, None, [*MODEL, *TRAIN, "steps=10"]), root / "corpus",
             root / "pretrain", progress=False)
    sft(load(SftSettings, None, [*TRAIN, "steps=6", "episodes=20"]), root / "demos",
        root / "sft", init=root / "pretrain", progress=False)
    label(load(LabelSettings, None, ["train_episodes=20", "heldout_episodes=16", "pairs=60",
                                     "anywhere_heldout_episodes=8",
                                     "heldout_pairs=40", "num_envs=10"]),
          root / "sft", root / "label", ["left"], progress=False)
    reward(load(RewardSettings, None, [*REWARD, "max_steps=4", "min_steps=4"]), root / "label",
           "left", root / "reward", root / "pretrain", progress=False)
    return {name: root / name for name in ("corpus", "demos", "pretrain", "sft", "label",
                                           "reward")}


def command(stage: str, inputs: dict[str, Path], out: Path) -> list[str]:
    """The stage's command line at toy size, writing to `out`."""
    i = {k: str(v) for k, v in inputs.items()}
    return {
        "collect": ["collect", "--out", str(out), "--workers", "1", *sets([
            "episodes=60", "shard_episodes=10", "num_envs=10"])],
        "pretrain": ["pretrain", "--corpus", i["corpus"], "--out", str(out),
                     *sets([*MODEL, *TRAIN, "steps=60"])],
        "sft": ["sft", "--init", i["pretrain"], "--demos", i["demos"], "--out", str(out),
                *sets([*TRAIN, "steps=60", "episodes=20"])],
        "label": ["label", "--policy", i["sft"], "--out", str(out), "--target", "left",
                  "--target", "right", *LABEL],
        "reward": ["reward", "--labels", i["label"], "--target", "left", "--init",
                   i["pretrain"], "--out", str(out), *sets(REWARD)],
        "prefft": ["prefft", "--policy", i["sft"], "--reward", i["reward"], "--target", "left",
                   "--out", str(out), *sets([a.removeprefix("prefft.") for a in ALIGN
                                             if a.startswith("prefft.")])],
        "rl": ["rl", "--policy", i["sft"], "--reward", i["reward"], "--target", "left",
               "--out", str(out), *sets([a.removeprefix("rl.") for a in ALIGN
                                         if a.startswith("rl.")])],
        "align": ["align", "--policy", i["sft"], "--reward", i["reward"], "--target", "left",
                  "--out", str(out), *sets(ALIGN)],
        "pipeline": ["pipeline", "--out", str(out), "--config",
                     str(toy_config_file(out.parent))],
    }[stage]


def weights(folder: Path) -> str:
    return read_info(folder)[1]["sha256"]


def result(stage: str, out: Path) -> Any:
    """What the stage made, to compare exactly."""
    def metrics(folder: Path, *keys: str) -> dict[str, Any]:
        data = json.loads((folder / "metrics.json").read_text())
        return {k: data[k] for k in keys}

    if stage == "collect":
        return [e["sha256"] for e in json.loads((out / MANIFEST).read_text())["shards"]]
    if stage in ("pretrain", "sft"):
        return weights(out), metrics(out, "step", "train_loss", "eval_loss")
    if stage == "label":
        store = LabelStore(out / STORE)
        try:
            labels = {(t, s): store.labelled_pairs(t, s) for t in ("left", "right")
                      for s in ("train", "heldout")}
        finally:
            store.close()
        corpora = [[e["sha256"] for e in json.loads((out / f / MANIFEST).read_text())["shards"]]
                   for f in ("rollouts-train", "rollouts-heldout")]
        return labels, corpora
    if stage == "reward":
        return weights(out), metrics(out, "heldout", "train_accuracy", "train_loss")
    if stage in ("prefft", "rl"):
        return weights(out), metrics(out, "evaluation")
    if stage == "align":
        return weights(out), metrics(out, "evaluation")
    state = json.loads((out / "pipeline.json").read_text())
    evaluations = {name: json.loads((out / path).read_text())["per_episode"]
                   for name, path in state["evaluations"].items()}
    card = json.loads((out / "personalities" / "left-runner.json").read_text())
    return (weights(out / "align-left"), weights(out / "reward-left"), evaluations,
            card["measured"]["rates"], card["onnx_sha256"])


def marker(stage: str, out: Path) -> Path:
    return out / ("pipeline.json" if stage == "pipeline" else "run.json")


def launch(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "agentalign", *argv, "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, env=env)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> float:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"ended before marking {path}: {process.stderr.read().decode()}")
        assert time.monotonic() < deadline, f"no {path} within {timeout} s"
        time.sleep(0.01)
    return time.monotonic()


def finish(process: subprocess.Popen, timeout: float = 600.0) -> None:
    try:
        code = process.wait(timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert code == 0, process.stderr.read().decode()[-3000:]
    process.stderr.close()


@pytest.mark.parametrize("stage", ["collect", "pretrain", "sft", "label", "reward", "prefft",
                                   "rl", "align", "pipeline"])
def test_a_killed_stage_reruns_to_the_uninterrupted_result(stage, inputs, tmp_path):
    reference = tmp_path / "reference" / "out"
    reference.parent.mkdir()
    process = launch(command(stage, inputs, reference))
    marked = wait_for(marker(stage, reference), process)
    finish(process)
    work = time.monotonic() - marked  # the stage's own work, after its start-up

    seed = random.SystemRandom().randrange(2**31)
    rng = random.Random(seed)
    killed_at, share = None, rng.uniform(0.15, 0.85)
    for attempt in range(4):  # a run quicker than the reference is killed earlier next time
        out = tmp_path / f"killed-{attempt}" / "out"
        out.parent.mkdir()
        process = launch(command(stage, inputs, out))
        start = wait_for(marker(stage, out), process)
        while time.monotonic() < start + share * work and process.poll() is None:
            time.sleep(0.005)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            process.stderr.close()
            killed_at = share
            break
        process.stderr.close()
        share /= 3
    assert killed_at is not None, f"{stage} always ended before the kill (seed {seed})"
    finish(launch(command(stage, inputs, out)))
    assert result(stage, out) == result(stage, reference), \
        f"{stage} killed at {killed_at:.0%} of its work (random seed {seed}) and rerun differs"
    assert torch.get_num_threads() == 1  # the fixture's setting held: nothing leaked here
