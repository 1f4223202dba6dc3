"""The reward model's episode summary (`summary_stride`): off it is today's model, on it starts
as today's model and learns what the last K decisions cannot show, and its checkpoints rebuild
the same architecture.

Models are tiny (1 layer, 32 wide, context 8), as in test_reward.py, whose toy label store this
module reuses.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from agentalign.config import ConfigError
from agentalign.models import reward as reward_model
from agentalign.models.checkpoint import CheckpointError, load_weights, save_checkpoint
from agentalign.models.policy import get_config
from agentalign.models.reward import (
    RewardModel,
    bradley_terry_loss,
    fit_trajectory,
    load_reward_function,
    load_reward_model,
    score_episodes,
    stack_fitted,
    summary_size,
    summary_steps,
)
from agentalign.train import reward_config
from agentalign.train.reward import make_model
from agentalign.train.reward import run as train_reward
from agentalign.train.reward_data import evaluate, load_labels
from test_reward import TINY_MODEL, agent_init, tiny_config, toy_labels  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CONFIG = get_config("tiny", **TINY_MODEL)


def episodes(n: int, rng: np.random.Generator, lengths=(3, 8, 30, 100)):
    frames = [rng.integers(0, 255, (lengths[i % len(lengths)], 64, 64, 3), dtype=np.uint8)
              for i in range(n)]
    actions = [np.stack([rng.integers(0, 9, len(f)), rng.integers(0, 3, len(f))], 1)
               for f in frames]
    return frames, actions


def test_summary_frames_are_every_nth_step_and_the_last():
    assert summary_steps(30, 4).tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 29]
    assert summary_steps(29, 4).tolist() == [0, 4, 8, 12, 16, 20, 24, 28]  # last on the grid
    assert summary_steps(1, 4).tolist() == [0]
    assert summary_size(4) == 26 and summary_size(10) == 11 and summary_size(1) == 100
    frames = np.arange(30, dtype=np.uint8)[:, None, None, None] * np.ones((1, 64, 64, 3),
                                                                         np.uint8)
    actions = np.zeros((30, 2), dtype=np.int64)
    plain, summed = fit_trajectory(frames, actions, CONFIG), fit_trajectory(frames, actions,
                                                                           CONFIG, 4)
    assert set(plain) == {"frames", "prev_actions", "mask", "steps"}  # stride 0: as before
    for key, value in plain.items():
        assert np.array_equal(summed[key], value)
    assert summed["summary_frames"].shape == (26, 64, 64, 3)
    assert summed["summary_frames"][:9, 0, 0, 0].tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 29]
    assert summed["summary_mask"].tolist() == [True] * 9 + [False] * 17
    assert not summed["summary_frames"][9:].any()


def test_stride_zero_is_the_model_without_a_summary_and_the_zero_head_starts_as_it():
    rng = np.random.default_rng(0)
    frames, actions = episodes(4, rng)
    torch.manual_seed(0)
    plain = RewardModel(CONFIG).eval()
    assert not any(name.startswith("summary_") for name in plain.state_dict())
    torch.manual_seed(0)
    summed = RewardModel(CONFIG, 4).eval()
    for name, value in plain.state_dict().items():  # the same draws for every other weight
        assert torch.equal(summed.state_dict()[name], value), name
    assert not summed.summary_out.weight.any() and not summed.summary_out.bias.any()
    with torch.no_grad():
        for model in (plain, summed):
            torch.nn.init.normal_(model.time_emb.weight, generator=torch.Generator().manual_seed(1))
            model.length_weight.fill_(0.01)
    assert np.array_equal(score_episodes(plain, frames, actions),
                          score_episodes(summed, frames, actions))
    with torch.no_grad():
        summed.summary_out.weight.fill_(1.0)  # once learnt, the summary moves the score
    assert not np.allclose(score_episodes(plain, frames, actions),
                           score_episodes(summed, frames, actions))
    with pytest.raises(ValueError, match="also reads the episode summary"):
        fitted = stack_fitted([fit_trajectory(frames[0], actions[0], CONFIG)])
        summed(fitted["frames"], fitted["prev_actions"], fitted["mask"], fitted["steps"])


def test_padding_of_the_summary_is_never_read():
    rng = np.random.default_rng(2)
    frames, actions = episodes(2, rng, lengths=(9, 100))
    torch.manual_seed(0)
    model = RewardModel(CONFIG, 4).eval()
    torch.nn.init.normal_(model.summary_out.weight)
    fitted = stack_fitted([fit_trajectory(f, a, CONFIG, 4)
                           for f, a in zip(frames, actions, strict=True)])
    with torch.no_grad():
        before = model(*fitted.values())
        fitted["summary_frames"][0, 3:] = 255  # the 9-step episode's padding (3 real frames)
        after = model(*fitted.values())
    assert torch.allclose(before, after, atol=1e-6)


def test_init_from_a_policy_leaves_the_summary_fresh(agent_init):  # noqa: F811
    model = make_model(CONFIG, 0, agent_init, summary_stride=4)
    plain = make_model(CONFIG, 0, agent_init)
    for name, value in plain.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert not model.summary_out.weight.any()


def toy_pairs(n: int, rng: np.random.Generator, length: int = 16) -> dict[str, torch.Tensor]:
    """n pairs of episodes whose last 8 frames and every action are the same; only the first
    of each pair shows an orange square (steps 4-7, somewhere in the frame): the preferred one."""
    fitted = []
    for _ in range(n):
        end = rng.integers(0, 120, (8, 64, 64, 3), dtype=np.uint8)
        actions = np.stack([rng.integers(0, 9, length), rng.integers(0, 3, length)], 1)
        for orange in (True, False):
            frames = np.concatenate([rng.integers(0, 120, (length - 8, 64, 64, 3),
                                                  dtype=np.uint8), end])
            if orange:
                y, x = rng.integers(0, 48, 2)
                frames[4:8, y:y + 16, x:x + 16] = (235, 135, 35)
            fitted.append(fit_trajectory(frames, actions, CONFIG, 4))
    return stack_fitted(fitted)  # preferred at even rows, rejected at odd ones


def test_the_summary_learns_what_the_last_k_decisions_cannot_show():
    rng = np.random.default_rng(0)
    train, heldout = toy_pairs(32, rng), toy_pairs(16, rng)

    def held_out_accuracy(stride: int) -> float:
        torch.manual_seed(0)
        model = RewardModel(CONFIG, stride)
        optimizer = model.configure_optimizer(lr=3e-3)
        keys = ["frames", "prev_actions", "mask", "steps"] + (
            ["summary_frames", "summary_mask"] if stride else [])
        batch_rng = np.random.default_rng(1)
        for _ in range(60):  # the summary is right on every held-out pair after ~20
            pairs = batch_rng.choice(32, 8, replace=False)
            rows = torch.from_numpy(np.concatenate([2 * pairs, 2 * pairs + 1]))
            scores = model(*(train[k][rows] for k in keys))
            loss = bradley_terry_loss(scores[:8], scores[8:])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            scores = model(*(heldout[k] for k in keys)).numpy()
        margin = scores[0::2] - scores[1::2]
        return float(np.mean((margin > 0) + 0.5 * (margin == 0)))

    assert held_out_accuracy(0) == 0.5  # the window is the same in both: every pair a tie
    assert held_out_accuracy(4) >= 0.9


def test_the_stage_saves_the_summary_and_every_reader_rebuilds_it(toy_labels, agent_init,  # noqa: F811
                                                                   tmp_path):
    out = tmp_path / "reward"
    metrics = train_reward(tiny_config("summary_stride=4"), toy_labels, "left", out, agent_init,
                           labels_used=20, progress=False)
    model, info = load_reward_model(out)
    assert model.summary_stride == 4 and info["meta"]["summary_stride"] == 4
    assert model.summary_out.weight.any()  # trained
    data = load_labels(toy_labels, "left", CONFIG, 4)
    assert evaluate(model, data)["accuracy"] == metrics.heldout["accuracy"]
    assert json.loads((out / "run.json").read_text())["config"]["summary_stride"] == 4
    # The alignment stages score whole episodes through load_reward_function: with the summary.
    frames, actions = episodes(3, np.random.default_rng(3))
    reward = load_reward_function(out, CONFIG, "left")
    np.testing.assert_array_equal(reward(frames, actions),
                                  score_episodes(model, frames, actions).astype(np.float64))
    # It pickles (align hands it to the worker processes of its RL draws) and scores the same.
    again = pickle.loads(pickle.dumps(reward))
    assert again.identity == reward.identity
    np.testing.assert_array_equal(again(frames, actions), reward(frames, actions))
    # Weights with a summary under a checkpoint.json without its stride do not load silently.
    weights, _ = load_weights(out, kind="reward")
    bare = tmp_path / "bare"
    save_checkpoint(bare, model, CONFIG.to_dict(), kind="reward", stage="reward", step=1)
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_reward_model(bare)


def test_a_checkpoint_from_before_the_summary_loads_as_today(tmp_path):
    torch.manual_seed(0)
    old = RewardModel(CONFIG)
    save_checkpoint(tmp_path / "old", old, CONFIG.to_dict(), kind="reward", stage="reward",
                    step=1, meta={"run": None, "train_loss": 0.5})  # no summary_stride key
    model, _ = load_reward_model(tmp_path / "old")
    assert model.summary_stride == 0
    frames, actions = episodes(3, np.random.default_rng(4))
    assert np.array_equal(score_episodes(model, frames, actions),
                          score_episodes(old.eval(), frames, actions))


def test_the_setting_is_checked_and_off_keeps_earlier_identities():
    assert "summary_stride" not in tiny_config().identity()  # earlier folders stay valid
    assert tiny_config("summary_stride=4").identity()["summary_stride"] == 4
    assert "summary_width" not in tiny_config().identity()  # only a summary reads it
    # 16 learned detectors is the model of before the key: those folders stay valid too
    assert "summary_width" not in tiny_config("summary_stride=4").identity()
    assert tiny_config("summary_stride=4", "summary_width=0").identity()["summary_width"] == 0
    # ... and the recipe digest (export.recipe): the default width is left out of to_dict
    assert reward_config.SUMMARY_WIDTH == reward_model.SUMMARY_WIDTH
    assert "summary_width" not in tiny_config("summary_stride=4").to_dict()
    assert tiny_config("summary_width=0").to_dict()["summary_width"] == 0
    with pytest.raises(ConfigError, match="freeze_cnn"):
        tiny_config("summary_stride=4", "freeze_cnn=true")
    with pytest.raises(ConfigError, match="summary_stride"):
        tiny_config("summary_stride=-1")


def test_a_summary_checkpoint_from_before_its_width_loads_its_16_detectors(tmp_path):
    torch.manual_seed(0)
    old = RewardModel(CONFIG, 4)
    torch.nn.init.normal_(old.summary_out.weight)
    assert old.summary_in.weight.shape == (16, CONFIG.n_embd)
    save_checkpoint(tmp_path / "old", old, CONFIG.to_dict(), kind="reward", stage="reward",
                    step=1, meta={"summary_stride": 4})  # no summary_width key
    model, _ = load_reward_model(tmp_path / "old")
    assert (model.summary_stride, model.summary_width) == (4, 16)
    frames, actions = episodes(3, np.random.default_rng(5))
    assert np.array_equal(score_episodes(model, frames, actions),
                          score_episodes(old.eval(), frames, actions))


def test_width_zero_reads_every_cnn_channel_and_is_saved(toy_labels, agent_init,  # noqa: F811
                                                        tmp_path):
    model = RewardModel(CONFIG, 4, 0)
    assert model.summary_width == 0 and model.summary_out.weight.shape == (1, CONFIG.n_embd)
    assert not any(n.startswith("summary_in.") for n in model.state_dict())
    assert RewardModel(CONFIG, 0, 16).summary_width == 0  # no summary: no detectors
    with pytest.raises(ValueError, match="summary_width"):
        RewardModel(CONFIG, 4, -1)
    out = tmp_path / "reward"
    train_reward(tiny_config("summary_stride=4", "summary_width=8"), toy_labels, "left", out,
                 agent_init, labels_used=20, progress=False)
    loaded, info = load_reward_model(out)
    assert info["meta"]["summary_width"] == 8 and loaded.summary_width == 8
