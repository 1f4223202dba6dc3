"""Alignment: preference fine-tuning (prefft), RLOO against a reward (rl), and both (align).

A toy reward stands in for the reward model: the share of pixels in the left pad's colour, in
percent, computed from the frames alone, so the policy can raise it by looking at the left pad.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from agentalign.cli import main
from agentalign.config import load
from agentalign.data.shards import Corpus
from agentalign.envs.layout import load_layout
from agentalign.errors import ConfigError, UserError
from agentalign.models.checkpoint import load_policy, read_info, save_step
from agentalign.models.policy import Policy, get_config
from agentalign.models.reward import RewardFunction
from agentalign.rollout import spawn_starts
from agentalign.rollout.trajectories import Trajectory
from agentalign.rollout.trajectories import sample_trajectories as play
from agentalign.train import rl as rl_module
from agentalign.train.align import run as align
from agentalign.train.align_config import AlignSettings
from agentalign.train.prefft import run as prefft
from agentalign.train.prefft import select_top
from agentalign.train.prefft_config import PrefftSettings
from agentalign.train.rl import rloo_advantages, sequence_logprobs, update, window_groups
from agentalign.train.rl import run as rl
from agentalign.train.rl_config import RLSettings

TINY = {"n_layer": 1, "n_embd": 32, "context": 8}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def layout():
    return load_layout()


def left_pad_percent(frames: list[np.ndarray], actions: list[np.ndarray]) -> np.ndarray:
    colour = np.array(load_layout().palette["pad_left"])
    return np.array([100 * (np.abs(f.astype(int) - colour).max(-1) < 40).mean() for f in frames])


def tiny_policy() -> Policy:
    torch.manual_seed(0)
    return Policy(get_config("tiny", **TINY)).eval()


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory) -> Path:
    policy = tiny_policy()
    out = tmp_path_factory.mktemp("sft")
    save_step(out, policy, policy.config.to_dict(), kind="policy", stage="sft", step=0)
    return out


def small_rl(**changes) -> RLSettings:
    return load(RLSettings).replace(**{
        "iterations": 2, "starts_per_iteration": 2, "samples_per_start": 2, "max_steps": 12,
        "num_envs": 4, "eval_episodes": 4, "checkpoint_interval": 1, "num_threads": 1,
        **changes})


def small_prefft(**changes) -> PrefftSettings:
    config = load(PrefftSettings)
    finetune = config.finetune.replace(steps=2, batch_size=4, eval_windows=4, prefetch=0,
                                       num_threads=1)
    return config.replace(**{"rounds": 1, "episodes": 8, "top_fraction": 0.25, "max_steps": 12,
                             "num_envs": 8, "eval_episodes": 4, "num_threads": 1,
                             "finetune": finetune, **changes})


TOY = RewardFunction(left_pad_percent, "toy")


def spy_reward(seen: list) -> RewardFunction:
    """The toy reward, recording exactly what it was given."""
    def reward(frames: list[np.ndarray], actions: list[np.ndarray]) -> np.ndarray:
        seen.append((frames, actions))
        return left_pad_percent(frames, actions)
    return RewardFunction(reward, "toy")


# --- preference fine-tuning ----------------------------------------------------------------------


def test_select_top_keeps_the_best_fraction():
    scores = np.array([0.1, 0.9, 0.5, 0.9, -1.0, 0.3, 0.7, 0.2])
    assert select_top(scores, 0.25).tolist() == [1, 3]  # ties: the earlier first
    assert select_top(scores, 0.5).tolist() == [1, 3, 6, 2]
    assert select_top(scores, 0.01).tolist() == [1]  # at least one


def test_prefft_fine_tunes_on_the_top_scored_rollouts(policy_path, tmp_path):
    seen: list = []
    metrics = prefft(small_prefft(), policy_path, spy_reward(seen), "left", tmp_path / "p",
                     progress=False)
    (frames, actions), = seen
    scores = left_pad_percent(frames, actions)
    corpus = Corpus(tmp_path / "p" / "round-1" / "selected")
    assert corpus.num_episodes == 2  # 25% of 8
    kept = json.loads(corpus.shards[0].metadata["scores"])
    assert kept == sorted(scores, reverse=True)[:2]
    for i, k in enumerate(select_top(scores, 0.25)):
        episode = corpus.episode(i)
        np.testing.assert_array_equal(episode["frames"], frames[k])
        np.testing.assert_array_equal(episode["actions"], actions[k])
        assert not episode["positions"].any() and not episode["headings"].any()  # no truth
    assert metrics.rounds[0]["selected"] == 2 and metrics.evaluation["episodes"] == 4
    _, info = read_info(tmp_path / "p")
    assert info["stage"] == "prefft" and info["meta"]["target"] == "left"


def test_prefft_can_keep_runs_another_agent_finished(policy_path, tmp_path):
    """explore_episodes: more runs a round, taken over part way by explore_policy; the reward
    model sees them with the policy's own, and the kept ones may be either. Taken over at
    decision 0, such a run is the explorer's own run from that start."""
    from agentalign.rollout import training_starts
    from agentalign.rollout.trajectories import sample_trajectories
    from agentalign.train.prefft import EXPLORE_STREAM

    torch.manual_seed(1)
    other = Policy(get_config("tiny", **TINY)).eval()
    explorer = tmp_path / "explorer"
    save_step(explorer, other, other.config.to_dict(), kind="policy", stage="pretrain", step=0)
    seen: list = []
    config = small_prefft(explore_episodes=6, explore_policy=str(explorer), explore_within=0)
    prefft(config, policy_path, spy_reward(seen), "left", tmp_path / "p", progress=False)
    (frames, actions), = seen
    assert len(frames) == 8 + 6
    layout = load_layout()
    seed = config.seed * 1_000 + 1 + EXPLORE_STREAM
    own, _, _ = sample_trajectories(other, training_starts(layout, 6, seed, config.spawn_jitter,
                                                           0.0), layout, num_envs=8,
                                    max_steps=config.max_steps, seed=seed)
    for got, want in zip(actions[8:], own, strict=True):
        np.testing.assert_array_equal(got, want.actions)
    info = json.loads((tmp_path / "p" / "round-1" / "selection.json").read_text())
    keep = select_top(left_pad_percent(frames, actions), config.top_fraction)
    assert info["episodes"] == 14 and info["explored_selected"] == int((keep >= 8).sum())
    # the settings' identity: the explorer's checkpoint, not its path; none while unused
    assert "explore_episodes" not in small_prefft().to_dict()
    with pytest.raises(ValueError, match="explore_policy"):
        small_prefft(explore_episodes=6)
    small = Policy(get_config("tiny", **TINY, obs_height=32, obs_width=32)).eval()
    save_step(tmp_path / "small", small, small.config.to_dict(), kind="policy", stage="sft",
              step=0)
    with pytest.raises(UserError, match="same run"):
        prefft(small_prefft(explore_episodes=6, explore_policy=str(tmp_path / "small")),
               policy_path, TOY, "left", tmp_path / "q", progress=False)


# --- log-probs and the RL update -----------------------------------------------------------------


def test_window_groups_follow_the_kv_cache():
    # context 8 keeps 4 on a slide: steps 0-7 in window 0, 8-11 in window 4, 12-15 in window 8
    assert window_groups(14, 8) == [(0, 0, 8), (4, 8, 12), (8, 12, 14)]


def test_recomputed_logprobs_equal_the_acting_ones_across_slides(layout):
    policy = tiny_policy()
    starts = spawn_starts(layout, 3, seed=1)
    trajectories, _, lengths = play(policy, starts, layout, num_envs=3, max_steps=21, seed=1)
    assert lengths.max() > 2 * policy.config.context  # at least two slides
    acting = torch.from_numpy(np.concatenate([t.logprobs for t in trajectories]))
    recomputed = sequence_logprobs(policy, trajectories, minibatch=2)
    assert torch.allclose(recomputed, acting, atol=1e-5, rtol=0)


def test_recorded_frame_encodings_give_the_acting_logprobs(layout):
    policy = tiny_policy()
    starts = spawn_starts(layout, 3, seed=1)
    trajectories, _, _ = play(policy, starts, layout, num_envs=3, max_steps=21, seed=1,
                              features=True)
    for t in trajectories:  # each frame's CNN encoding, as encoding it alone gives
        with torch.no_grad():
            encoded = policy.encode_frames(torch.from_numpy(t.frames)[None])[0]
        assert torch.allclose(torch.from_numpy(t.features), encoded, atol=1e-5, rtol=0)
    acting = torch.from_numpy(np.concatenate([t.logprobs for t in trajectories]))
    recomputed = sequence_logprobs(policy, trajectories, minibatch=2, encoded=True)
    assert torch.allclose(recomputed, acting, atol=1e-5, rtol=0)


def test_minibatches_take_one_optimizer_step_each(layout):
    cfg = load(RLSettings, None, ["starts_per_iteration=2", "samples_per_start=2",
                                  "minibatches=2", "update_epochs=2", "freeze_cnn=false"])
    policy = tiny_policy()
    optimizer = policy.configure_optimizer(0.0, cfg.lr, (cfg.beta1, cfg.beta2))
    starts = spawn_starts(layout, 2, seed=3).repeated(2)
    trajectories, _, _ = play(policy, starts, layout, num_envs=4, max_steps=12, seed=3)
    stats = update(policy, tiny_policy(), optimizer, trajectories,
                   np.array([1.0, 0.0, 0.5, 2.0]), cfg)
    steps = {int(state["step"]) for state in optimizer.state.values()}
    assert steps == {4}  # 2 passes x 2 minibatches
    assert stats["logprob_mismatch"] < 1e-5  # measured before the first step only


def test_rloo_baseline_is_the_mean_of_the_others():
    advantages = rloo_advantages(np.array([1.0, 2.0, 3.0, 5.0, 5.0, 5.0]), 3)
    np.testing.assert_allclose(advantages, [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0])


def test_spawn_priority_draws_more_starts_where_runs_of_a_start_disagree(layout):
    from agentalign.train.rl import spawn_spread, spawn_weights

    # 4 starts x k=2: spawn 1's runs disagree (scores 0 and 4), the others' agree
    spawns = np.repeat([0, 1, 2, 3], 2)
    spread = spawn_spread(None, spawns, np.array([1, 1, 0, 4, 2, 2, 3, 3.0]), 2, 4)
    assert spread == [0.0, 2.0, 0.0, 0.0]
    assert spawn_weights(spread, 0.0) is None  # off: uniform draws, as before the setting
    weights = spawn_weights(spread, 0.5)
    np.testing.assert_allclose(weights, [0.125, 0.625, 0.125, 0.125])  # none ever dropped
    # a running mean: a later batch where spawn 1 agrees lowers it, spawn 3's spread rises
    later = spawn_spread(spread, spawns, np.array([1, 1, 2, 2, 0, 0, 0, 2.0]), 2, 4)
    np.testing.assert_allclose(later, [0.0, 1.6, 0.0, 0.2])
    assert spawn_weights([float("nan")] * 4, 0.5) is None  # nothing known yet
    drawn = spawn_starts(layout, 4000, 3, 0.5, weights).spawns
    np.testing.assert_allclose(np.bincount(drawn, minlength=4) / 4000, weights, atol=0.02)
    uniform = spawn_starts(layout, 50, 3, 0.5)
    assert np.array_equal(uniform.spawns, spawn_starts(layout, 50, 3, 0.5, None).spawns)


def test_rl_with_start_priority_resumes_its_spread(policy_path, tmp_path):
    """The spread is part of the training state: a resumed run draws as an unbroken one."""
    from agentalign.models.checkpoint import load_trainer_state

    cfg = small_rl(iterations=3, start_priority=0.5)
    whole = rl(cfg, policy_path, TOY, "left", tmp_path / "whole", progress=False)
    calls = {"n": 0}

    def stopping(frames: list[np.ndarray], actions: list[np.ndarray]) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # stopped during iteration 3
        return left_pad_percent(frames, actions)

    with pytest.raises(KeyboardInterrupt):
        rl(cfg, policy_path, RewardFunction(stopping, "toy"), "left", tmp_path / "cut",
           progress=False)
    resumed = rl(cfg, policy_path, TOY, "left", tmp_path / "cut", progress=False)
    assert [h["score"] for h in resumed.history] == [h["score"] for h in whole.history]
    state = load_trainer_state(tmp_path / "whole" / "checkpoints" / "step-00000003")
    assert len(state["spawn_spread"]) == 4
    assert "start_priority" not in small_rl(start_priority=0.0).identity()  # off: as before


def train_toy(layout, kl_coef: float, iterations: int) -> tuple[Policy, list[dict]]:
    cfg = load(RLSettings, None, [
        "lr=1e-2", f"kl_coef={kl_coef}", "starts_per_iteration=4", "samples_per_start=4",
        "max_steps=30", "normalize_advantages=true",  # toy scores are tiny: rescale them
        "freeze_cnn=false"])  # the toy reward is a pixel count: let the CNN learn it too
    reference = tiny_policy()
    policy = tiny_policy()
    optimizer = policy.configure_optimizer(0.0, cfg.lr, (cfg.beta1, cfg.beta2))
    history = []
    for i in range(iterations):
        starts = spawn_starts(layout, 4, seed=i).repeated(4)
        trajectories, _, _ = play(policy, starts, layout, num_envs=16, max_steps=30, seed=i)
        scores = left_pad_percent([t.frames for t in trajectories], [])
        history.append(update(policy, reference, optimizer, trajectories, scores, cfg))
    return policy, history


def mean_toy_reward(policy: Policy, layout) -> float:
    starts = spawn_starts(layout, 32, seed=99)
    trajectories, _, _ = play(policy, starts, layout, num_envs=32, max_steps=30, seed=5)
    return float(left_pad_percent([t.frames for t in trajectories], []).mean())


def test_rl_raises_the_reward_and_kl_coef_holds_the_policy_back(layout):
    before = mean_toy_reward(tiny_policy(), layout)
    free, history = train_toy(layout, kl_coef=0.0, iterations=8)
    assert mean_toy_reward(free, layout) > 1.1 * before
    assert all(h["logprob_mismatch"] < 1e-5 for h in history)  # on-policy: ratio exactly 1
    _, held = train_toy(layout, kl_coef=1.0, iterations=6)
    assert np.mean([h["kl"] for h in held[-2:]]) < 0.5 * np.mean([h["kl"] for h in history[4:6]])


# --- the stages ----------------------------------------------------------------------------------


def test_align_sees_no_ground_truth_and_saves_the_target(policy_path, tmp_path, monkeypatch):
    seen: list = []
    learned: list = []
    real_update = rl_module.update

    def spy_update(policy, reference, optimizer, trajectories, scores, cfg, *ranks):
        learned.append(trajectories)
        return real_update(policy, reference, optimizer, trajectories, scores, cfg, *ranks)

    monkeypatch.setattr(rl_module, "update", spy_update)
    config = AlignSettings(prefft=small_prefft(), rl=small_rl(iterations=1))
    metrics = align(config, policy_path, spy_reward(seen), "right", tmp_path / "a",
                    progress=False)
    for frames, actions in seen:  # the reward sees pixels and actions, nothing else
        assert all(f.dtype == np.uint8 and f.ndim == 4 for f in frames)
        assert all(a.shape == (len(f), 2) for f, a in zip(frames, actions, strict=True))
    for t in (t for batch in learned for t in batch):  # so does the learner
        assert set(vars(t)) == {"frames", "actions", "logprobs", "features"}
        assert isinstance(t, Trajectory) and t.features.shape == (len(t.frames), 32)
    _, info = read_info(tmp_path / "a")
    assert info["meta"]["target"] == "right" and info["meta"]["stage"] == "align"
    assert metrics.evaluation["episodes"] == 4
    assert "intent" not in metrics.evaluation and "intent" not in info["meta"]  # a pad: as before
    calls = len(seen)
    align(config, policy_path, spy_reward(seen), "right", tmp_path / "a", progress=False)
    assert len(seen) == calls  # finished sub-stages are skipped



def test_align_picks_the_rl_draw_the_reward_model_scores_best(policy_path, tmp_path):
    """draws=K: RL with seeds rl.seed + i, the aligned policy the draw whose runs from the spawns
    the reward scores highest (re-scored here on the same starts); second_iterations: a second
    RL from the picked draw, which is its start and reference. Off, the keys stay out of
    to_dict (the recipe digest) and the folders are those of before."""
    from agentalign.models.checkpoint import load_weights
    from agentalign.train.align import PICK, PICK_STREAM, summary
    from agentalign.train.prefft import policy_identity

    assert not {"draws", "pick_episodes", "second_iterations"} & set(load(AlignSettings).to_dict())
    config = AlignSettings(prefft=small_prefft(), rl=small_rl(iterations=1, seed=5), draws=2,
                           pick_episodes=6, second_iterations=1)
    assert {"draws": 2, "pick_episodes": 6, "second_iterations": 1}.items() <= \
        config.to_dict().items()
    seen: list = []
    out = tmp_path / "a"
    metrics = align(config, policy_path, spy_reward(seen), "left", out, progress=False)
    pick = json.loads((out / PICK).read_text())
    assert [d["folder"] for d in pick["draws"]] == ["rl", "rl-1"] and pick["episodes"] == 6
    for folder, seed in (("rl", 5), ("rl-1", 6)):
        assert json.loads((out / folder / "run.json").read_text())["config"]["seed"] == seed
    layout = load_layout()
    starts = spawn_starts(layout, 6, 5 + PICK_STREAM, 0.5)
    means = []
    for draw in pick["draws"]:
        policy, _ = load_policy(out / draw["folder"])
        runs, _, _ = play(policy, starts, layout, num_envs=4, max_steps=12, seed=5 + PICK_STREAM)
        means.append(left_pad_percent([t.frames for t in runs], []).mean())
        assert means[-1] == pytest.approx(draw["mean_score"])
    assert pick["picked"] == int(np.argmax(means)) == metrics.pick["picked"]
    picked = out / pick["draws"][pick["picked"]]["folder"]
    second = json.loads((out / f"{picked.name}-second" / "run.json").read_text())
    assert second["init"] == policy_identity(picked) and second["config"]["iterations"] == 1
    final, _ = load_weights(out, kind="policy")
    for key, value in load_weights(out / f"{picked.name}-second", kind="policy")[0].items():
        assert torch.equal(final[key], value), key
    assert "picked rl" in summary(metrics)
    calls = len(seen)
    again = align(config, policy_path, spy_reward(seen), "left", out, progress=False)
    assert len(seen) == calls and again.pick == metrics.pick  # finished: nothing replayed
    plain = AlignSettings(prefft=small_prefft(), rl=small_rl(iterations=1))
    align(plain, policy_path, TOY, "left", tmp_path / "b", progress=False)
    assert sorted(p.name for p in (tmp_path / "b").iterdir() if p.is_dir()) == \
        ["checkpoints", "prefft", "rl"] and not (tmp_path / "b" / PICK).exists()


def nan_reward(frames: list[np.ndarray], actions: list[np.ndarray]) -> np.ndarray:
    return np.full(len(frames), np.nan)


def test_rl_draws_side_by_side_are_the_draws_one_after_another(policy_path, tmp_path):
    """draw_workers: the draws run in pinned worker processes, each draw's weights and the pick
    as in this process, the progress one bar over every draw's iterations; a draw that fails
    there is a one-line UserError naming its log."""
    import shutil

    from agentalign import events
    from agentalign.models.checkpoint import load_weights

    config = AlignSettings(prefft=small_prefft(), rl=small_rl(seed=5), draws=2, pick_episodes=4,
                           draw_workers=1)
    here = align(config, policy_path, TOY, "left", tmp_path / "here", progress=False)
    for name in ("side", "bad"):  # the same start: only the draws run again
        shutil.copytree(tmp_path / "here" / "prefft", tmp_path / name / "prefft")
    seen: list[dict] = []
    events.set_sink(seen.append)
    try:
        side = align(config.replace(draw_workers=2), policy_path, TOY, "left", tmp_path / "side",
                     progress=False)
    finally:
        events.set_sink(None)
    for folder in ("rl", "rl-1"):
        ours = load_weights(tmp_path / "here" / folder, kind="policy")[0]
        for key, value in load_weights(tmp_path / "side" / folder, kind="policy")[0].items():
            assert torch.equal(ours[key], value), (folder, key)
        assert "rl -> left" in (tmp_path / "side" / f"{folder}.log").read_text()
    assert side.pick == here.pick
    bar = [e for e in seen if e["kind"] == "progress" and e["stage"] == "rl draws"]
    assert bar[0]["total"] == 4 and bar[-1]["done"] == 4
    assert not any(e["stage"] == "rl" and e["kind"] == "progress" for e in seen)  # workers' own
    with pytest.raises(UserError, match=r"RL draw rl failed: .*loss is nan.*log: .*bad/rl\.log"):
        align(config.replace(draw_workers=2), policy_path, RewardFunction(nan_reward, "toy"),
              "left", tmp_path / "bad", progress=False)


def test_align_to_an_intent_without_a_pad(policy_path, tmp_path):
    """An intent that names no pad logs no reach rate; the evaluations count its satisfaction
    and the aligned checkpoint records it."""
    from agentalign.train.align import summary

    mine = tmp_path / "mine.yaml"
    mine.write_text("inland:\n  description: never within 2 m of the edge\n  edge: 2.0\n")
    config = AlignSettings(prefft=small_prefft(), rl=small_rl(iterations=1))
    metrics = align(config, policy_path, TOY, "inland", tmp_path / "a", intents=mine,
                    progress=False)
    selection = json.loads((tmp_path / "a" / "prefft" / "round-1" / "selection.json").read_text())
    assert selection["selected"] == 2 and "target_rate_all" not in selection
    for evaluation in (metrics.prefft["evaluation"], metrics.rl["evaluation"]):
        assert evaluation["intent"]["intent"] == "inland"
        assert evaluation["intent"]["episodes"] == 4 and evaluation["intent"]["low"] >= 0
    _, info = read_info(tmp_path / "a")
    assert info["meta"]["target"] == "inland"
    assert info["meta"]["intent"] == {"name": "inland", "file": str(mine.resolve()),
                                      "description": "never within 2 m of the edge"}
    assert "intent inland (never within 2 m of the edge): " in summary(metrics)

def test_alignment_can_start_anywhere_on_the_island(policy_path, tmp_path, monkeypatch):
    """prefft's and RL's `anywhere`: that share of their rollouts starts off the spawns (the
    end-of-stage evaluations stay at the spawns); 0 keeps the spawn starts of before."""
    import agentalign.train.prefft as prefft_module

    played: dict[str, list] = {"prefft": [], "rl": []}
    for name, module in (("prefft", prefft_module), ("rl", rl_module)):
        real = module.sample_trajectories

        def spy(policy, starts, *args, _real=real, _name=name, **kwargs):
            played[_name].append(starts)
            return _real(policy, starts, *args, **kwargs)

        monkeypatch.setattr(module, "sample_trajectories", spy)
    config = AlignSettings(prefft=small_prefft(episodes=16, anywhere=0.5),
                           rl=small_rl(iterations=2, starts_per_iteration=8, anywhere=0.5))
    align(config, policy_path, TOY, "left", tmp_path / "a", progress=False)
    for name, batches in played.items():
        kinds = np.concatenate([b.kinds for b in batches])
        assert {"spawn", "anywhere"} <= set(kinds), name
    spawn_only = AlignSettings(prefft=small_prefft(), rl=small_rl(iterations=1))
    played = {"prefft": [], "rl": []}
    align(spawn_only, policy_path, TOY, "left", tmp_path / "b", progress=False)
    assert {k for batches in played.values() for b in batches for k in b.kinds} == {"spawn"}


def test_rl_can_start_along_the_starting_policys_own_runs(policy_path, tmp_path, monkeypatch):
    """RL's `along`: that share of its starts are states the starting policy's runs from the
    spawns passed through, the same ones after a resume; while 0 the key leaves the identity
    of older runs as it was."""
    played: list = []
    real = rl_module.sample_trajectories
    killed = {"at": None}

    def spy(policy, starts, *args, **kwargs):
        if len(played) == killed["at"]:
            killed["at"] = None
            raise KeyboardInterrupt  # the process dies in iteration 2
        played.append(starts)
        return real(policy, starts, *args, **kwargs)

    monkeypatch.setattr(rl_module, "sample_trajectories", spy)
    config = small_rl(iterations=2, starts_per_iteration=8, along=0.5, along_episodes=4)
    rl(config, policy_path, TOY, "left", tmp_path / "a", progress=False)
    whole = [b.positions[b.kinds == "along"] for b in played]
    assert {"spawn", "along"} <= set(np.concatenate([b.kinds for b in played]))
    assert sum(len(w) for w in whole) > 0
    played.clear()
    killed["at"] = 1
    with pytest.raises(KeyboardInterrupt):
        rl(config, policy_path, TOY, "left", tmp_path / "b", progress=False)
    rl(config, policy_path, TOY, "left", tmp_path / "b", progress=False)  # resumes at 2
    assert len(played) == 2 and all(np.array_equal(b.positions[b.kinds == "along"], w)
                                    for b, w in zip(played, whole, strict=True))
    assert "along" not in small_rl().identity() and "along" in config.identity()


def test_the_oracle_benchmark_scores_each_episode_by_its_true_utility(policy_path, tmp_path,
                                                                     monkeypatch):
    """benchmarks/oracle_reward.py: RL's score of every episode is the intent's utility of
    that episode's true track / scale (the diagnostic that tells a reward model's fault from
    exploration's)."""
    import importlib.util

    import agentalign.rollout.trajectories as trajectories
    from agentalign.envs.intents import intent_by_name

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "oracle_reward.py"
    spec = importlib.util.spec_from_file_location("oracle_reward", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(trajectories, "play_on", trajectories.play_on)  # restored after
    score = module.oracle("campfire-middle", "jumppad_island", 10.0)
    seen: list = []
    real = trajectories.play_on

    def spy(*args, **kwargs):
        played = real(*args, **kwargs)
        seen.extend(e.track() for e in played.episodes if e.frames is not None)
        return played

    monkeypatch.setattr(trajectories, "play_on", spy)
    intent = intent_by_name("campfire-middle")
    config = small_rl(iterations=1, starts_per_iteration=4, eval_episodes=0)
    rl(config, policy_path, score, "campfire-middle", tmp_path / "o", progress=False)
    history = json.loads((tmp_path / "o" / "metrics.json").read_text())["history"]
    assert len(seen) == 8
    assert history[0]["score"] == pytest.approx(np.mean([intent.utility(t) / 10 for t in seen]))


def test_the_handover_benchmark_plays_one_agent_then_the_other(layout):
    """benchmarks/handover.py: decisions before `at` are the first agent's own (its episode
    alone), the rest the second's from an empty context; at 0 the episode is the second's
    alone, past the episode's end the first's."""
    import importlib.util

    from agentalign.rollout.actors import PolicyActor
    from agentalign.rollout.loop import play as play_episodes

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "handover.py"
    spec = importlib.util.spec_from_file_location("handover", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first = tiny_policy()
    torch.manual_seed(1)
    then = Policy(get_config("tiny", **TINY)).eval()
    starts = spawn_starts(layout, 6, 3, 0.5)

    def actions(actor) -> list[np.ndarray]:
        played = play_episodes(actor, starts, layout=layout, num_envs=3, max_steps=12, seed=5,
                               record_frames=0)
        return [e.actions for e in played.episodes]

    alone_first, alone_then = actions(PolicyActor(first)), actions(PolicyActor(then))
    assert any(not np.array_equal(a, b) for a, b in zip(alone_first, alone_then, strict=True))

    def handed(at: int) -> list[np.ndarray]:
        return actions(module.HandoverActor(PolicyActor(first), PolicyActor(then), at))

    for a, b in zip(handed(0), alone_then, strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(handed(99), alone_first, strict=True):
        assert np.array_equal(a, b)
    mixed = handed(4)
    for a, b in zip(mixed, alone_first, strict=True):
        assert np.array_equal(a[:4], b[:4])
    assert any(not np.array_equal(a, b) for a, b in zip(mixed, alone_first, strict=True))


def test_rl_with_the_cnn_frozen_trains_the_transformer_only(policy_path, tmp_path):
    start, _ = load_policy(policy_path)
    rl(small_rl(lr=1e-2), policy_path, TOY, "left", tmp_path / "rl", progress=False)
    trained, _ = load_policy(tmp_path / "rl")
    for (name, before), after in zip(start.state_dict().items(),
                                     trained.state_dict().values(), strict=True):
        assert torch.equal(before, after) == name.startswith("cnn."), name
    rl(small_rl(lr=1e-2, freeze_cnn=False), policy_path, TOY, "left", tmp_path / "rl2",
       progress=False)
    unfrozen, _ = load_policy(tmp_path / "rl2")
    assert not torch.equal(unfrozen.cnn[0].weight, start.cnn[0].weight)


def test_rl_resumes_and_a_nan_loss_keeps_the_last_good_checkpoint(policy_path, tmp_path):
    calls = {"n": 0}

    def failing_reward(frames: list[np.ndarray], actions: list[np.ndarray]) -> np.ndarray:
        calls["n"] += 1
        scores = left_pad_percent(frames, actions)
        return scores * np.nan if calls["n"] == 2 else scores

    out = tmp_path / "rl"
    with pytest.raises(UserError, match="Last good checkpoint.*step-00000001"):
        rl(small_rl(), policy_path, RewardFunction(failing_reward, "toy"), "left", out,
           progress=False)
    policy, info = load_policy(out)
    assert info["step"] == 1 and all(torch.isfinite(p).all() for p in policy.parameters())
    metrics = rl(small_rl(), policy_path, TOY, "left", out, progress=False)  # resumes at 1
    assert metrics.iteration == 2 and len(metrics.history) == 2
    with pytest.raises(UserError, match=r"other settings \(config.kl_coef: 0.05 -> 0.5\)"):
        rl(small_rl(kl_coef=0.5), policy_path, TOY, "left", out, progress=False)


def rl_rank(rank: int, port: int, policy: str, out: str) -> None:
    """One of two gloo ranks of an RL run, joined through torchrun's environment variables."""
    import os

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    result = rl(small_rl(starts_per_iteration=3, start_priority=0.5), policy, TOY, "left", out,
                progress=False)
    torch.save({"history": result.history}, Path(out).parent / f"rank{rank}.pt")


def test_two_ranks_play_the_batch_and_take_the_step_one_process_takes(policy_path, tmp_path):
    """RL over two ranks (torchrun's way; Ray Train starts the same): each plays whole starts
    of every batch, with their indices in the batch, and the summed gradients give the one
    process's run: the same episodes, statistics and weights up to float rounding."""
    import torch.multiprocessing as mp

    from test_bc import free_port

    single = rl(small_rl(starts_per_iteration=3, start_priority=0.5), policy_path, TOY, "left",
                tmp_path / "one", progress=False)
    mp.spawn(rl_rank, args=(free_port(), str(policy_path), str(tmp_path / "two")), nprocs=2,
             join=True)
    histories = [[{k: v for k, v in h.items() if k != "decisions_per_s"} for h in
                  torch.load(tmp_path / f"rank{r}.pt", weights_only=False)["history"]]
                 for r in range(2)]
    assert histories[0] == histories[1]  # every rank holds the whole batch's statistics
    for mine, theirs in zip(histories[0], single.history, strict=True):
        for key in ("score", "episode_length", "rate_left", "rate_none"):
            assert mine[key] == theirs[key], key  # the same episodes
        for key in ("kl", "reward", "loss", "entropy", "grad_norm"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key
    saved = json.loads((tmp_path / "two" / "metrics.json").read_text())  # rank 0 wrote it
    assert saved["iteration"] == 2 and saved["evaluation"]["episodes"] == 4
    one, _ = load_policy(tmp_path / "one")
    two, _ = load_policy(tmp_path / "two")
    for (name, a), b in zip(one.state_dict().items(), two.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


# --- command line and bad input ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["prefft", "rl", "align"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "--reward" in capsys.readouterr().out


def test_bad_input_gives_one_line_errors(policy_path, tmp_path, capsys):
    from agentalign.models.reward import RewardModel

    assert main(["rl", "--policy", str(policy_path), "--reward", str(tmp_path), "--target",
                 "up", "--out", str(tmp_path / "o")]) == 2  # no intent of that name
    err = capsys.readouterr().err.strip()
    assert "no intent 'up': choose one of left, middle, right, campfire, campfire-middle" in err
    assert "<agentalign>/configs/intents.yaml" in err and "\n" not in err
    other = get_config("tiny", n_layer=1, n_embd=32, context=16)  # not the policy's context
    save_step(tmp_path / "rm", RewardModel(other), other.to_dict(), kind="reward",
              stage="reward", step=1)
    assert main(["align", "--policy", str(policy_path), "--reward", str(tmp_path / "rm"),
                 "--target", "left", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "another policy config" in err or "policy config" in err
    assert "\n" not in err
    with pytest.raises(ConfigError, match="--set iterations=3: unknown key 'iterations'"):
        load(AlignSettings, overrides=["iterations=3"])
    with pytest.raises(ConfigError, match="samples_per_start: must be >= 2, got 1"):
        small_rl(samples_per_start=1)
    with pytest.raises(UserError, match="no intent 'centre'"):
        rl(small_rl(), policy_path, TOY, "centre", tmp_path / "x")
