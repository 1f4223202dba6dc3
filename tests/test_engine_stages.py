"""Real stages through the engine link, at toy size: the stand-in player over real gRPC with the
real mlagents_envs client (`--env unity:<stand-in>`), compared with the embedded island.

Both backends must play the same episodes for the same seed: the rollout's chosen starts reach
the build as the `start_*` environment parameters, frames travel as lossless PNG, and the
island's dynamics are deterministic, so a deterministic actor sees identical frames and takes
identical actions on both.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agentalign.cli import main
from agentalign.collect_config import CollectSettings
from agentalign.config import defaults
from agentalign.envs import mlagents_compat
from agentalign.evaluate_config import EvaluateSettings
from agentalign.models.checkpoint import load_policy, save_step
from agentalign.models.policy import Policy, get_config
from agentalign.models.reward import RewardFunction
from agentalign.rollout import PlayerActor, offlane_starts
from agentalign.rollout import play as rollout
from agentalign.train.rl import run as rl
from agentalign.train.rl_config import RLSettings

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not mlagents_compat.mlagents_available(),
                       reason="needs mlagents-envs (pip install agentalign[unity])"),
    pytest.mark.filterwarnings("ignore:distutils Version classes:DeprecationWarning"),
]
TINY = {"n_layer": 1, "n_embd": 32, "context": 8}


@pytest.fixture(scope="module")
def policy_path(tmp_path_factory):
    torch.manual_seed(0)
    policy = Policy(get_config("tiny", **TINY)).eval()
    out = tmp_path_factory.mktemp("sft")
    save_step(out, policy, policy.config.to_dict(), kind="policy", stage="sft", step=0)
    return out


def test_chosen_starts_play_the_same_episodes_on_both_backends(player, layout):
    """Scripted pad-seekers from off-lane starts (moved and turned, so the start parameters
    matter): same outcomes, positions and actions, step for step, in the island and in the
    engine (two builds, each row's build reset with the next start)."""
    from agentalign.data.players import Population

    population = Population(defaults(CollectSettings).players["direct"], layout)
    starts = offlane_starts(layout, 5, seed=3, config=defaults(EvaluateSettings).offlane)
    played = {env: rollout(PlayerActor(population, seed=3), starts, num_envs=2, layout=layout,
                           max_steps=60, seed=3, record_frames=1, progress=False, env=env)
              for env in ("island", f"unity:{player}")}
    island, unity = played["island"].episodes, played[f"unity:{player}"].episodes
    assert [e.index for e in unity] == list(range(5))
    assert {e.outcome for e in island} - {3, 4}, "no pad reached: the comparison is too weak"
    for a, b in zip(island, unity, strict=True):
        assert (a.outcome, a.length, a.spawn, a.kind) == (b.outcome, b.length, b.spawn, b.kind)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-4)
    np.testing.assert_array_equal(island[0].frames, unity[0].frames)  # PNG is lossless


def test_evaluate_through_the_engine_link_gives_the_island_outcomes(player, policy_path,
                                                                    tmp_path):
    """`agentalign evaluate --env unity:<stand-in> --num-envs 2` with greedy actions: the same
    per-episode outcomes and lengths (hence the same counts) as `--env island`."""
    results = {}
    for env in ("island", f"unity:{player}"):
        out = tmp_path / env.split(":")[0]
        assert main(["evaluate", str(policy_path), "--env", env, "--num-envs", "2",
                     "--episodes", "4", "--seed", "5", "--greedy", "--offlane", "--out",
                     str(out), "--no-progress", "--set", "max_steps=25",
                     "--set", "gif_episodes=0"]) == 0
        results[env] = json.loads((out / "results.json").read_text())
    island, unity = results["island"], results[f"unity:{player}"]
    assert unity["settings"]["env"] == f"unity:{player}" and unity["episodes"] == 4
    assert unity["per_episode"] == island["per_episode"]
    assert unity["rates"] == island["rates"]  # counts and rates


def test_one_rl_update_through_the_engine_link(player, policy_path, tmp_path):
    """One RLOO iteration whose rollouts run in two stand-in builds: it writes its checkpoint,
    and its batch (hence score and update) is the island's for the same seed."""
    def reward(frames, actions):  # frames only: the share of bright pixels, a toy score
        return np.array([float((f > 200).mean()) for f in frames])

    config = defaults(RLSettings).replace(
        iterations=1, starts_per_iteration=1, samples_per_start=2, max_steps=10, num_envs=2,
        eval_episodes=2, checkpoint_interval=1, num_threads=1)
    metrics = {}
    for env in ("island", f"unity:{player}"):
        out = tmp_path / env.split(":")[0]
        metrics[env] = rl(config.replace(env=env), policy_path, RewardFunction(reward, "toy"),
                          "left", out, progress=False)
        assert (out / "checkpoints" / "step-00000001").is_dir()
    island, unity = metrics["island"], metrics[f"unity:{player}"]
    assert unity.iteration == 1 and unity.evaluation["episodes"] == 2
    for key in ("score", "kl", "episode_length"):
        assert unity.history[0][key] == pytest.approx(island.history[0][key], abs=1e-6)
    a, _ = load_policy(tmp_path / "island")
    b, _ = load_policy(tmp_path / "unity")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(x, y, atol=1e-6), name


@pytest.mark.parametrize("argv", [
    ["evaluate", "missing-checkpoint"],
    ["label", "--policy", "missing", "--target", "left"],
    ["prefft", "--policy", "missing", "--reward", "missing", "--target", "left"],
    ["rl", "--policy", "missing", "--reward", "missing", "--target", "left"],
    ["align", "--policy", "missing", "--reward", "missing", "--target", "left"],
    ["collect"],
    ["pipeline"],
])
def test_every_episode_stage_checks_env_before_any_work(argv, tmp_path, capsys):
    assert main([*argv, "--env", "unreal", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown environment 'unreal'" in err and "unity:PATH" in err and "\n" not in err
    assert not (tmp_path / "o").exists()
