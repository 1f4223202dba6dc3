"""Preferences and the reward model: the label flow, the Bradley-Terry trainer, what the model
may see, agent-encoder init, checkpoints, bad input, the study and the CLI.

Every model is tiny (1 layer, 32 wide, context 8) and runs on one thread; the toy label store
holds 24 + 24 episodes of the scripted `direct` players (straight to a random pad), so "reached
the left pad" is a clear signal for a few training steps.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from agentalign.cli import main
from agentalign.collect_config import CollectSettings
from agentalign.config import defaults, load
from agentalign.data.players import Population
from agentalign.data.shards import MANIFEST, Corpus, Episode, write_shard
from agentalign.errors import UserError
from agentalign.models.checkpoint import CheckpointError, save_checkpoint
from agentalign.models.policy import Policy, get_config
from agentalign.models.reward import (
    LENGTH_UNIT,
    RewardModel,
    fit_trajectory,
    init_from_policy,
    load_reward_model,
    score_episodes,
    subsample_steps,
)
from agentalign.rollout import PlayerActor
from agentalign.spec import OUTCOME_CODES
from agentalign.train import reward_study
from agentalign.train.distributed import Ranks
from agentalign.train.label import make_labels, summaries
from agentalign.train.label_config import LabelSettings
from agentalign.train.preferences import STORE, LabelStore, LabelStoreError, SyntheticLabeller
from agentalign.train.reward import TrainingError, fit
from agentalign.train.reward import run as train_reward
from agentalign.train.reward_config import RewardSettings
from agentalign.train.reward_data import evaluate, load_labels

TINY_MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 32, "context": 8, "cnn_channels": (8, 8, 8)}
TINY = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.context=8",
        "model.cnn_channels=[8,8,8]", "num_threads=1", "batch_size=8", "min_steps=4",
        "max_steps=6", "warmup_steps=1", "log_interval=2", "checkpoint_interval=3"]
CPU = Ranks(rank=0, world=1, local_world=1, device=torch.device("cpu"), owns_group=False)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(*overrides: str) -> RewardSettings:
    return load(RewardSettings, None, [*TINY, *overrides])


def tiny_policy_checkpoint(folder: Path, seed: int = 0, **changes) -> Path:
    torch.manual_seed(seed)
    config = get_config("tiny", **{**TINY_MODEL, **changes})
    return save_checkpoint(folder, Policy(config), config.to_dict(), kind="policy",
                           stage="pretrain", step=1)


@pytest.fixture(scope="module")
def toy_labels(tmp_path_factory, layout) -> Path:
    """A label store of scripted direct players, labelled for left and right."""
    out = tmp_path_factory.mktemp("labels")
    population = Population(defaults(CollectSettings).players["direct"], layout)
    settings = defaults(LabelSettings).replace(train_episodes=24, heldout_episodes=24, pairs=120,
                                               heldout_pairs=120, num_envs=24, anywhere=0.5,
                                               anywhere_heldout_episodes=16)
    make_labels(PlayerActor(population, seed=3), out, ["left", "right"], settings,
                source={"players": "direct"}, progress=False)
    return out


@pytest.fixture(scope="module")
def agent_init(tmp_path_factory) -> Path:
    return tiny_policy_checkpoint(tmp_path_factory.mktemp("policy") / "ckpt")


# --- labels ----------------------------------------------------------------------------------


def test_label_cli_rolls_out_a_policy_and_adds_targets_to_one_store(tmp_path, capsys):
    policy = tiny_policy_checkpoint(tmp_path / "sft")
    out = tmp_path / "labels"
    args = ["label", "--policy", str(policy), "--out", str(out), "--train-episodes", "3",
            "--heldout-episodes", "3", "--pairs", "3", "--heldout-pairs", "3", "--num-envs", "3",
            "--anywhere-heldout-episodes", "3", "--no-progress"]
    assert main([*args, "--target", "left"]) == 0
    for folder in ("rollouts-train", "rollouts-heldout", "rollouts-heldout-anywhere"):
        corpus = Corpus(out / folder)
        assert corpus.num_episodes == 3 and (corpus.episodes["targets"] == -1).all()
    store = LabelStore(out / STORE)
    assert store.counts()["trajectories"] == 9 and store.counts()["pairs"] == 9
    left = len(store.labelled_pairs("left", "train")) + len(store.labelled_pairs("left",
                                                                                 "heldout"))
    store.close()
    assert main([*args, "--target", "right"]) == 0  # reuses the rollouts, adds right's labels
    assert "target right" in capsys.readouterr().out
    store = LabelStore(out / STORE)
    assert store.counts()["trajectories"] == 9 and store.counts()["pairs"] == 9
    assert store.counts()["labels"] == left + len(store.labelled_pairs("right", "train")) + len(
        store.labelled_pairs("right", "heldout"))
    store.close()
    assert main([*args[:-1], "--seed", "5", "--target", "left"]) == 2  # other settings
    assert "other settings" in capsys.readouterr().err


def test_label_pools_can_start_along_the_policys_own_runs(tmp_path):
    """label's `along`: a share of the train runs starts where the policy's own runs from the
    spawns went (recorded as such); the held-out runs stay at the spawns."""
    policy = tiny_policy_checkpoint(tmp_path / "sft")
    out = tmp_path / "labels"
    assert main(["label", "--policy", str(policy), "--out", str(out), "--train-episodes", "12",
                 "--heldout-episodes", "3", "--pairs", "3", "--heldout-pairs", "3",
                 "--num-envs", "6", "--along", "0.5", "--set", "along_episodes=3",
                 "--target", "left", "--no-progress"]) == 0
    kinds = {f: [k for shard in Corpus(out / f).shards
                 for k in json.loads(shard.metadata["start_kinds"])]
             for f in ("rollouts-train", "rollouts-heldout")}
    assert 2 <= kinds["rollouts-train"].count("along") <= 10
    assert set(kinds["rollouts-train"]) == {"spawn", "along"}
    assert set(kinds["rollouts-heldout"]) == {"spawn"}
    source = json.loads((out / "rollouts-train" / MANIFEST).read_text())["source"]
    assert source["along"] == 0.5 and source["along_episodes"] == 3


def test_stored_labels_follow_the_labeller_and_keep_the_splits_apart(toy_labels, layout):
    store = LabelStore(toy_labels / STORE)
    pads = [p.position for p in layout.pads]
    folders = {"train": ["rollouts-train"],
               "heldout": ["rollouts-heldout", "rollouts-heldout-anywhere"]}
    facts = {f: summaries(Corpus(toy_labels / f)) for fs in folders.values() for f in fs}
    for split, split_folders in folders.items():
        for target in ("left", "right"):
            rows = store.labelled_pairs(target, split)
            labeller = SyntheticLabeller(target, pads)
            for corpus_a, a, corpus_b, b, choice in rows:
                assert corpus_a == corpus_b and corpus_a in split_folders  # pairs within one
                assert labeller.prefer(facts[corpus_a][a], facts[corpus_a][b]) == choice
            for folder in split_folders:
                assert sum(r[0] == folder for r in rows) > (60 if split == "train" else 30)
    store.close()
    record = json.loads((toy_labels / "metrics.json").read_text())
    assert record["targets"]["left"]["heldout"]["easy"] > 0
    assert record["targets"]["left"]["heldout_anywhere"]["labels"] > 30
    # Which runs started anywhere is recorded with them: about half the train runs, every one
    # of the third corpus, none of the spawn held-out runs.
    kinds = {f: [k for shard in Corpus(toy_labels / f).shards
                 for k in json.loads(shard.metadata["start_kinds"])] for f in facts}
    assert 4 <= kinds["rollouts-train"].count("anywhere") <= 20
    assert set(kinds["rollouts-heldout-anywhere"]) == {"anywhere"}
    assert set(kinds["rollouts-heldout"]) == {"spawn"}
    # The reward data keeps the held-out pairs from spawns and from anywhere apart.
    data = load_labels(toy_labels, "left", get_config("tiny", **TINY_MODEL))
    assert data.heldout_anywhere is not None
    assert len(data.heldout) + len(data.heldout_anywhere) == len(
        LabelStore(toy_labels / STORE).labelled_pairs("left", "heldout"))


# --- the model -------------------------------------------------------------------------------


def test_a_trajectory_is_its_last_k_steps_with_their_previous_actions():
    assert subsample_steps(5, 8).tolist() == [0, 1, 2, 3, 4]
    assert subsample_steps(100, 8).tolist() == list(range(92, 100))
    config = get_config("tiny", **TINY_MODEL)
    frames = np.arange(20, dtype=np.uint8)[:, None, None, None] * np.ones((1, 64, 64, 3),
                                                                         np.uint8)
    actions = np.stack([np.arange(20) % 9, np.arange(20) % 3], axis=1)
    fitted = fit_trajectory(frames, actions, config)
    assert (fitted["frames"][:, 0, 0, 0] == np.arange(12, 20)).all() and fitted["mask"].all()
    assert fitted["prev_actions"].tolist() == actions[11:19].tolist()
    assert fitted["steps"].tolist() == list(range(12, 20))  # decision indices: the run's length
    short = fit_trajectory(frames[:3], actions[:3], config)
    assert short["mask"].tolist() == [True] * 3 + [False] * 5
    assert short["prev_actions"][0].tolist() == [9, 3]  # "no previous action"
    assert short["prev_actions"][1:3].tolist() == actions[:2].tolist()
    assert short["steps"].tolist() == [0, 1, 2, 0, 0, 0, 0, 0]


def test_score_episodes_takes_variable_lengths_and_matches_forward():
    torch.manual_seed(0)
    model = RewardModel(get_config("tiny", **TINY_MODEL)).eval()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8) for n in (3, 8, 30)]
    actions = [np.stack([rng.integers(0, 9, len(f)), rng.integers(0, 3, len(f))], 1)
               for f in frames]
    scores = score_episodes(model, frames, actions, batch_size=2)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    one = fit_trajectory(frames[0], actions[0], model.config)
    with torch.no_grad():
        alone = model(torch.from_numpy(one["frames"][None]),
                      torch.from_numpy(one["prev_actions"][None]),
                      torch.from_numpy(one["mask"][None]),
                      torch.from_numpy(one["steps"][None]))
    assert alone.item() == pytest.approx(scores[0], abs=1e-5)


def test_the_run_length_reaches_the_score_through_one_weight():
    torch.manual_seed(0)
    model = RewardModel(get_config("tiny", **TINY_MODEL)).eval()
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (1, 8, 64, 64, 3), dtype=np.uint8)
    inputs = (torch.from_numpy(frames), torch.zeros(1, 8, 2, dtype=torch.long),
              torch.ones(1, 8, dtype=torch.bool))
    short, long = torch.arange(8)[None], torch.arange(40, 48)[None]  # runs of 8 and 48 steps
    with torch.no_grad():
        assert model(*inputs, short).item() == pytest.approx(model(*inputs, long).item())
        model.length_weight.fill_(-0.01)  # learnt from labels; zero at init
        gap = model(*inputs, short).item() - model(*inputs, long).item()
    assert gap == pytest.approx(0.01 * 40 / LENGTH_UNIT, rel=1e-4)


def test_the_model_sees_pixels_and_actions_only(toy_labels, tmp_path):
    """The forward takes no positions or outcomes, and rewriting them in the corpora changes
    nothing the model is given."""
    assert list(inspect.signature(RewardModel.forward).parameters) == [
        "self", "frames", "prev_actions", "mask", "steps", "summary_frames", "summary_mask"]
    changed = tmp_path / "labels"
    shutil.copytree(toy_labels, changed)
    for folder in ("rollouts-train", "rollouts-heldout", "rollouts-heldout-anywhere"):
        corpus = Corpus(changed / folder)
        episodes = []
        for k in range(corpus.num_episodes):
            steps = corpus.episode(k)
            episodes.append(Episode(
                frames=steps["frames"], actions=steps["actions"],
                positions=steps["positions"] + 7.0, headings=steps["headings"] + 90.0,
                outcome=OUTCOME_CODES["fell"], player=0, spawn=0, target=-1))
        for shard in (changed / folder).glob("shard-*"):
            shard.unlink()
        entry = write_shard(changed / folder / "shard-00000.safetensors", episodes,
                            {"player_types": ["policy"], "final_positions":
                             [[0.0, 0.0]] * len(episodes)})
        (changed / folder / MANIFEST).write_text(json.dumps({"shards": [entry]}))
    config = get_config("tiny", **TINY_MODEL)
    original, rewritten = load_labels(toy_labels, "left", config), load_labels(changed, "left",
                                                                               config)
    assert (rewritten.outcomes == OUTCOME_CODES["fell"]).all()
    for key, value in original.fitted.items():
        assert torch.equal(value, rewritten.fitted[key])
    torch.manual_seed(0)
    model = RewardModel(config)
    a, b = evaluate(model, original), evaluate(model, rewritten)
    assert a["accuracy"] == b["accuracy"]


def test_agent_encoder_init_copies_the_trunk(agent_init, tmp_path):
    torch.manual_seed(1)
    model = RewardModel(get_config("tiny", **TINY_MODEL))
    head = model.score.weight.clone()
    init_from_policy(model, agent_init)
    policy = Policy(get_config("tiny", **TINY_MODEL))
    policy.load_state_dict(_policy_weights(agent_init))
    ours = model.state_dict()
    for name, value in policy.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(ours[name], value), name
    assert torch.equal(model.score.weight, head)
    other = tiny_policy_checkpoint(tmp_path / "wide", n_embd=64)
    with pytest.raises(CheckpointError, match="another config"):
        init_from_policy(model, other)


def _policy_weights(path: Path) -> dict:
    from agentalign.models.checkpoint import load_weights

    return load_weights(path, kind="policy")[0]


# --- training --------------------------------------------------------------------------------


def test_brief_training_lowers_the_loss_and_ranks_reaching_the_target_first(toy_labels):
    config = get_config("tiny", **TINY_MODEL)
    data = load_labels(toy_labels, "left", config)
    cfg = tiny_config("min_steps=60", "max_steps=60", "lr=1e-3", "batch_size=16")
    torch.manual_seed(0)
    model = RewardModel(config)
    chosen, rejected = data.train.chosen, data.train.rejected

    def loss() -> float:
        from agentalign.models.reward import bradley_terry_loss, score_fitted

        scores = torch.from_numpy(score_fitted(model, data.fitted))
        return bradley_terry_loss(scores[chosen], scores[rejected]).item()

    before = loss()
    fit(model, data, data.train, cfg, CPU, seed=0)
    assert loss() < before - 0.1
    left = OUTCOME_CODES["left"]
    easy = (data.outcomes[data.heldout.chosen] == left) != (
        data.outcomes[data.heldout.rejected] == left)
    assert evaluate(model, data, data.heldout.take(np.flatnonzero(easy)))["accuracy"] > 0.8


def test_reward_stage_writes_metrics_resumes_and_loads(toy_labels, agent_init, tmp_path):
    out = tmp_path / "reward"
    metrics = train_reward(tiny_config(), toy_labels, "left", out, agent_init, labels_used=20,
                           progress=False)
    assert metrics.labels_used == 20 and metrics.steps == 6
    assert set(metrics.heldout) >= {"accuracy", "accuracy_easy", "accuracy_hard",
                                    "anywhere_accuracy", "anywhere_pairs"}
    assert json.loads((out / "metrics.json").read_text())["final"]
    assert (out / "logs").is_dir()
    model, info = load_reward_model(out)
    assert not model.training and info["kind"] == "reward"
    again = train_reward(tiny_config(), toy_labels, "left", out, agent_init, labels_used=20,
                         progress=False)
    assert again.wall_seconds == metrics.wall_seconds  # finished: skipped
    with pytest.raises(UserError, match="other settings"):  # a checkpoint of another run
        (out / "metrics.json").unlink()
        (out / "run.json").unlink()
        train_reward(tiny_config(), toy_labels, "left", out, agent_init, labels_used=10,
                     progress=False)
    with pytest.raises(CheckpointError, match="expected a 'reward' one"):
        load_reward_model(agent_init)
    with pytest.raises(CheckpointError, match="another policy config|policy config"):
        load_reward_model(out, config=get_config("tiny"))


def test_a_nan_loss_stops_with_a_clear_message(toy_labels, monkeypatch):
    config = get_config("tiny", **TINY_MODEL)
    data = load_labels(toy_labels, "left", config)
    monkeypatch.setattr(RewardModel, "forward",
                        lambda self, frames, prev, mask, steps:
                        self.score.weight.sum() * float("nan") * torch.ones(len(mask)))
    with pytest.raises(TrainingError, match="loss became nan at step 0"):
        fit(RewardModel(config), data, data.train, tiny_config(), CPU, seed=0)


def test_bad_input_is_one_line_each(toy_labels, agent_init, tmp_path, capsys):
    config = get_config("tiny", **TINY_MODEL)
    with pytest.raises(UserError, match="unknown target 'up'"):
        load_labels(toy_labels, "up", config)
    with pytest.raises(LabelStoreError, match="does not exist"):
        load_labels(tmp_path / "nowhere", "left", config)
    LabelStore(tmp_path / "empty" / STORE, create=True).close()
    with pytest.raises(LabelStoreError, match="holds no labels"):
        load_labels(tmp_path / "empty", "left", config)
    with pytest.raises(LabelStoreError, match="no train labels for target 'middle'"):
        load_labels(toy_labels, "middle", config)
    broken = tmp_path / "broken"
    shutil.copytree(toy_labels, broken)
    shutil.rmtree(broken / "rollouts-heldout")
    with pytest.raises(LabelStoreError, match="corpus 'rollouts-heldout'"):
        load_labels(broken, "left", config)
    shutil.copytree(toy_labels / "rollouts-heldout", broken / "rollouts-heldout")
    db = sqlite3.connect(broken / STORE)
    with db:
        db.execute("UPDATE trajectories SET episode = 999 WHERE id = (SELECT MIN(id) FROM "
                   "trajectories)")
    db.close()
    with pytest.raises(LabelStoreError, match="episode 999"):
        load_labels(broken, "left", config)
    args = ["reward", "--labels", str(toy_labels), "--target", "left", "--init",
            str(agent_init), "--out", str(tmp_path / "r"), "--no-progress"]
    tiny = [arg for item in TINY for arg in ("--set", item)]
    assert main([*args, "--labels-used", "100000", *tiny]) == 2
    assert "has only" in capsys.readouterr().err
    assert main(["reward", "--labels", str(tmp_path / "nowhere"), "--target", "left",
                 "--random-init", "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_study_writes_json_table_and_plot(toy_labels, agent_init, tmp_path):
    config = tiny_config("study.label_counts=[5,10]", "study.seeds=[0,1]", "max_steps=4")
    results = reward_study.run(config, toy_labels, "left", agent_init, tmp_path / "study",
                               progress=False)
    assert len(results.runs) == 2 * 2 * 2
    assert {(r["labels"], r["init"]) for r in results.table} == {
        (5, "agent"), (5, "random"), (10, "agent"), (10, "random")}
    assert "| 5 |" in (tmp_path / "study" / "study.md").read_text()
    from PIL import Image

    assert Image.open(tmp_path / "study" / "study.png").size == (720, 460)
    again = reward_study.run(config, toy_labels, "left", agent_init, tmp_path / "study",
                             progress=False)
    assert again.runs == results.runs  # resumed: nothing rerun
    # Runs side by side in worker processes give the same numbers as one after another.
    serial = reward_study.run(config.replace(study=config.study.replace(workers=1)), toy_labels,
                              "left", agent_init, tmp_path / "serial", progress=False)
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in serial.runs] == \
        [{k: v for k, v in r.items() if k not in drop} for r in results.runs]
    assert config.study.workers == 2  # the default config: the first study used workers


@pytest.mark.parametrize("command", ["label", "reward"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: agentalign {command}" in capsys.readouterr().out


def test_cached_cnn_features_score_like_the_whole_model(toy_labels):
    from agentalign.models.reward import encode_fitted, score_fitted
    from agentalign.train.reward_data import score_features

    config = get_config("tiny", **TINY_MODEL)
    data = load_labels(toy_labels, "left", config)
    torch.manual_seed(0)
    model = RewardModel(config)
    features = encode_fitted(model, data.fitted["frames"])
    torch.nn.init.normal_(model.time_emb.weight, std=0.02)  # zero at init: make it matter
    cached = score_features(model, features, data.fitted["prev_actions"], data.fitted["mask"],
                            data.fitted["steps"])
    np.testing.assert_allclose(cached, score_fitted(model, data.fitted), atol=1e-5)
