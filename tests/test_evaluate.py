"""Evaluation: Wilson intervals, exactly N deterministic episodes, scripted players evaluated
through the rollout loop do what they do in a plain loop, KV-cached policy acting == the full
forward over its window, valid off-lane starts, the CLI's files and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from agentalign.cli import main
from agentalign.collect_config import CollectSettings
from agentalign.config import defaults, load
from agentalign.data.players import Population
from agentalign.envs.island import IslandVectorEnv
from agentalign.errors import ConfigError
from agentalign.evaluate import make_starts
from agentalign.evaluate_config import EvaluateSettings
from agentalign.models.checkpoint import save_step
from agentalign.models.policy import Policy, get_config, no_previous_action, window_start
from agentalign.rollout import (
    PLAYER_STREAM,
    HandoffActor,
    PlayerActor,
    PolicyActor,
    offlane_starts,
    outcome_rates,
    spawn_starts,
    start_problems,
    summarise,
    training_starts,
    wilson_interval,
)
from agentalign.rollout import play as rollout
from agentalign.rollout.pictures import visit_shares
from agentalign.rollout.starts import along_starts, visited_states
from agentalign.spec import OUTCOME_CODES, PADS

LEFT, FELL, TIMEOUT = OUTCOME_CODES["left"], OUTCOME_CODES["fell"], OUTCOME_CODES["timeout"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Batches of 3-4 rows gain nothing from threads, and on busy cores the threads' barriers
    make each tiny op wait (20x slower); restored afterwards for the other test modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_policy(seed: int = 0) -> Policy:
    """A random policy small enough to act fast: 32x32 frames, one layer, 32 wide, context 8."""
    torch.manual_seed(seed)
    config = get_config("tiny", obs_height=32, obs_width=32, n_layer=1, n_head=2, n_embd=32,
                        context=8, cnn_channels=(8, 16))
    return Policy(config).eval()


def players(layout, section: str = "direct", **changes) -> Population:
    return Population(defaults(CollectSettings).players[section].replace(**changes), layout)


def episode_outcomes(played) -> list[int]:
    return [e.outcome for e in played.episodes]


# -- metrics -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("successes", "trials", "low", "high"), [
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score).
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718), (29, 29, 0.8830, 1.0), (5, 10, 0.2366, 0.7634)])
def test_wilson_interval_matches_published_values(successes, trials, low, high):
    lo, hi = wilson_interval(successes, trials)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_interval(6, 5)


def test_rates_count_none_as_fell_plus_timeout_and_split_by_group():
    outcomes = [LEFT, LEFT, FELL, TIMEOUT, OUTCOME_CODES["middle"], TIMEOUT]
    rates = outcome_rates(outcomes)
    assert rates["left"]["count"] == 2 and rates["none"]["count"] == 3
    assert rates["fell"]["count"] + rates["timeout"]["count"] == rates["none"]["count"]
    assert rates["any_pad"]["rate"] == pytest.approx(0.5)
    assert (rates["any_pad"]["low"], rates["any_pad"]["high"]) == wilson_interval(3, 6)
    summary = summarise(outcomes, [10, 20, 30, 40, 50, 60], {"spawn": list("abbaab")})
    assert summary["mean_length"] == pytest.approx(35.0)
    assert summary["by_spawn"]["a"]["episodes"] == 3
    assert summary["by_spawn"]["a"]["rates"]["left"]["count"] == 1
    assert summary["by_spawn"]["b"]["mean_length"] == pytest.approx(110 / 3)


def test_heatmap_counts_each_episode_once_per_square(layout):
    dither = np.array([[0.0, 0.0], [0.1, 0.0]] * 50)  # 100 steps in one spot
    walk = np.stack([np.linspace(-5, 5, 21), np.zeros(21)], axis=1)
    shares = visit_shares(layout, [dither, walk], cell=0.5)
    assert shares.max() == pytest.approx(1.0)  # the spot both episodes visited
    assert np.isclose(shares, 0.5).sum() >= 18  # the walk's other squares: one of two episodes


# -- rollouts ----------------------------------------------------------------------------------

def test_rollout_counts_exactly_n_episodes_deterministically(layout):
    starts = spawn_starts(layout, 21, seed=3)
    runs = [rollout(PlayerActor(players(layout, "corpus"), seed=3), starts, num_envs=n,
                    layout=layout, height=32, width=32, seed=3, record_frames=2,
                    progress=False) for n in (8, 8, 5)]
    first = runs[0]
    assert [e.index for e in first.episodes] == list(range(21))
    for e in first.episodes:
        assert e.positions.shape == (e.length + 1, 2) and e.actions.shape == (e.length, 2)
        assert (e.frames is not None) == (e.index < 2)
        assert 1 <= e.length <= 100
    assert first.episodes[0].frames.shape == (first.episodes[0].length + 1, 32, 32, 3)
    assert np.allclose(first.episodes[4].positions[0], starts.positions[4], atol=1e-5)
    # Same seed: the same episodes, whatever the number of environments playing them.
    for other in runs[1:]:
        assert episode_outcomes(other) == episode_outcomes(first)
        for a, b in zip(first.episodes, other.episodes, strict=True):
            assert a.length == b.length and np.array_equal(a.positions, b.positions)
    few = rollout(PlayerActor(players(layout, "corpus")), spawn_starts(layout, 3, 0),
                  num_envs=8, layout=layout, height=32, width=32, progress=False)
    assert len(few.episodes) == 3 and few.settings["num_envs"] == 3


def plain_loop(layout, population: Population, starts, seed: int) -> list[int]:
    """The same players, one episode at a time in a single environment, no batching."""
    env = IslandVectorEnv(1, layout=layout, height=32, width=32, spawn_jitter=0.0)
    outcomes = []
    for k in range(len(starts)):
        _, info = env.reset(options={"spawns": starts.spawns[k:k + 1],
                                     "positions": starts.positions[k:k + 1],
                                     "headings": starts.headings[k:k + 1]})
        player = population.sample(np.random.default_rng([seed, PLAYER_STREAM, k]))
        while True:
            action = player.act(info["position"][0], info["heading"][0])
            _, _, terminated, truncated, info = env.step(np.array([action]))
            if terminated[0] or truncated[0]:
                outcomes.append(int(info["outcome"][0]))
                break
    return outcomes


def test_scripted_players_evaluate_as_they_play(layout):
    direct = players(layout, "direct")
    starts = spawn_starts(layout, 60, seed=1)
    actor = PlayerActor(direct, seed=1)
    played = rollout(actor, starts, num_envs=16, layout=layout, height=32, width=32,
                     progress=False)
    outcomes = episode_outcomes(played)
    # The curated demonstrators reach the pad they chose.
    own = np.mean([o == actor.targets[k] for k, o in enumerate(outcomes)])
    assert own >= 0.9
    assert summarise(outcomes, [1] * 60)["rates"]["any_pad"]["rate"] >= 0.9
    # ...episode for episode as in a plain, unbatched loop.
    assert outcomes[:20] == plain_loop(layout, direct, spawn_starts(layout, 20, seed=1), seed=1)

    # Sloppier pad seekers that all choose the left pad mostly reach left, and nothing but left
    # or no pad: again the same as the plain loop.
    lefties = players(layout, "corpus", mixture={"pad_seeker": 1.0}, pad_choice={"left": 1.0})
    starts = spawn_starts(layout, 40, seed=2)
    outcomes = episode_outcomes(rollout(PlayerActor(lefties, seed=2), starts, num_envs=16,
                                        layout=layout, height=32, width=32, progress=False))
    rates = outcome_rates(outcomes)
    assert rates["left"]["rate"] >= 0.75
    assert rates["middle"]["count"] + rates["right"]["count"] <= 2
    assert outcomes[:12] == plain_loop(layout, lefties, spawn_starts(layout, 12, seed=2), seed=2)


def test_policy_rollout_runs_and_is_deterministic_for_a_seed(layout):
    policy = tiny_policy()
    starts = spawn_starts(layout, 10, seed=0)

    def play(seed: int):
        return rollout(PolicyActor(policy), starts, num_envs=4, layout=layout,
                       height=32, width=32, max_steps=30, seed=seed, progress=False)

    a, b, c = play(0), play(0), play(1)
    assert len(a.episodes) == 10 and a.decisions == sum(e.length for e in a.episodes)
    assert all(np.array_equal(x.actions, y.actions) for x, y in zip(a.episodes, b.episodes,
                                                                    strict=True))
    assert any(not np.array_equal(x.actions, y.actions) for x, y in zip(a.episodes, c.episodes,
                                                                        strict=True))


def test_a_sampled_episode_is_the_same_whatever_batch_plays_it(layout):
    """Actions come from each episode's own stream: 10 episodes played 1, 3 or 10 at a time (and
    a longer run whose first 10 episodes they are) are the same episodes, action for action."""
    policy = tiny_policy()
    starts = spawn_starts(layout, 14, seed=4)
    runs = [rollout(PolicyActor(policy), starts if n == 14 else starts.part(slice(0, 10)),
                    num_envs=min(n, 10), layout=layout, height=32, width=32, max_steps=30,
                    seed=4, progress=False) for n in (1, 3, 10, 14)]
    first = runs[0].episodes
    assert len({tuple(e.actions[0]) for e in first}) > 1  # sampled, not all alike
    for other in runs[1:]:
        for a, b in zip(first, other.episodes[:10], strict=True):
            np.testing.assert_array_equal(a.actions, b.actions)
            assert a.outcome == b.outcome


class Constant:
    """Plays one action everywhere and remembers which rows it was told begin, per call."""

    def __init__(self, action: tuple[int, int]) -> None:
        self.action, self.begun = action, []

    def begin(self, starting, episodes, seed):
        self.rows = len(starting)
        self.begun.append({int(episodes[r]) for r in np.flatnonzero(starting)})

    def act(self, frames, info):
        return np.tile(self.action, (self.rows, 1))


def test_a_handoff_plays_first_then_the_other_from_a_fresh_start(layout):
    """HandoffActor: each episode's first h decisions (h drawn per episode in 2..5) are the
    first actor's, the rest the other's, which is told the episode begins at the handoff (its
    context empty, as a swapped-in personality's); the same episodes whatever the batch."""
    starts = spawn_starts(layout, 8, seed=1)
    first, then = Constant((1, 0)), Constant((0, 2))
    played = rollout(HandoffActor(first, then, (2, 5)), starts, num_envs=3, layout=layout,
                     height=32, width=32, max_steps=12, seed=3, progress=False)
    handoffs = []
    for e in played.episodes:
        h = int(np.argmax((e.actions == (0, 2)).all(1))) if (e.actions == (0, 2)).all(
            1).any() else e.length
        assert (e.actions[:h] == (1, 0)).all() and (e.actions[h:] == (0, 2)).all()
        handoffs.append(h)
        if h < e.length:  # told twice: when the episode began and at the handoff
            assert sum(e.index in b for b in then.begun) == 2
    assert set(handoffs) <= {2, 3, 4, 5} and len(set(handoffs)) > 1
    policies = tiny_policy(), tiny_policy(seed=1)
    runs = [rollout(HandoffActor(PolicyActor(policies[0]), PolicyActor(policies[1]), (0, 6)),
                    starts, num_envs=n, layout=layout, height=32, width=32, max_steps=20,
                    seed=5, progress=False) for n in (1, 4)]
    for a, b in zip(*(r.episodes for r in runs), strict=True):
        np.testing.assert_array_equal(a.actions, b.actions)
    with pytest.raises(ValueError, match="handoff"):
        HandoffActor(first, then, (4, 2))


def test_episode_streams_are_uniform_and_keyed():
    from agentalign.rollout.actors import episode_uniforms

    draws = episode_uniforms(3, np.repeat(np.arange(200), 50), np.tile(np.arange(50), 200), 2)
    assert draws.shape == (10_000, 2) and (draws >= 0).all() and (draws < 1).all()
    counts = np.histogram(draws, bins=10, range=(0, 1))[0]
    assert counts.min() > 1800 and counts.max() < 2200  # 2,000 expected per tenth
    assert abs(np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]) < 0.05
    again = episode_uniforms(3, np.array([7]), np.array([11]), 2)
    np.testing.assert_array_equal(again[0], draws[7 * 50 + 11])  # a function of its key
    assert not np.array_equal(episode_uniforms(4, np.array([7]), np.array([11]), 2), again)


def test_kv_cached_acting_takes_the_actions_of_the_full_forward(layout):
    """Greedy acting through the cache == argmax of forward over the window the cache holds,
    across a slide (context 8 slides at decision 8) and across episode restarts in a row."""
    policy = tiny_policy(seed=1)
    starts = spawn_starts(layout, 6, seed=0)
    played = rollout(PolicyActor(policy, greedy=True), starts, num_envs=3, layout=layout,
                     height=32, width=32, max_steps=20, record_frames=6, progress=False)
    context, checked = policy.config.context, 0
    for e in played.episodes:
        frames = torch.from_numpy(e.frames[:-1])  # the frame each decision saw
        actions = torch.from_numpy(e.actions)
        previous = torch.cat([no_previous_action(1), actions[:-1]])
        for t in range(e.length):
            s = window_start(t, context)
            logits = policy(frames[None, s:t + 1], previous[None, s:t + 1])
            for branch, scores in enumerate(logits):
                top = torch.topk(scores[0, -1], 2).values
                if top[0] - top[1] > 1e-4:  # a near-tie may go either way within rounding
                    assert int(scores[0, -1].argmax()) == int(actions[t, branch])
                    checked += 1
    assert checked > 100 and max(e.length for e in played.episodes) > context


# -- off-lane starts ---------------------------------------------------------------------------

def test_offlane_starts_are_valid_and_as_configured(layout):
    config = load(EvaluateSettings, overrides=["starts=offlane", "episodes=300", "seed=5"])
    offlane = config.offlane
    starts = make_starts(layout, config)
    assert len(starts) == 300
    assert start_problems(layout, starts.positions, offlane.min_edge,
                          offlane.obstacle_margin) == []
    spawn_xy = np.array([s.position for s in layout.spawns])[starts.spawns]
    offset = starts.positions - spawn_xy  # every spawn faces north: sideways is x
    turn = (starts.headings + 180.0) % 360.0 - 180.0
    jitter, (lo, hi), (t_lo, t_hi) = offlane.jitter, offlane.shift, offlane.turn
    counts = {}
    for kind, dx, dy, angle in zip(starts.kinds, offset[:, 0], offset[:, 1], turn, strict=True):
        counts[kind] = counts.get(kind, 0) + 1
        assert abs(dy) <= jitter + 1e-9
        if "shifted" in kind:
            assert lo - jitter <= abs(dx) <= hi + jitter
        else:
            assert abs(dx) <= jitter + 1e-9
        if "turned" in kind:
            assert t_lo - 1e-9 <= abs(angle) <= t_hi + 1e-9
        else:
            assert angle == 0.0
    assert set(counts) == {"shifted", "turned", "shifted_turned"}
    assert all(70 <= n <= 130 for n in counts.values())  # equal weights, 100 expected each
    # Seeded per episode: the same seed gives the same starts, a shorter run a prefix of them.
    short = offlane_starts(layout, 40, 5, offlane)
    assert np.array_equal(short.positions, starts.positions[:40])
    assert np.array_equal(short.headings, starts.headings[:40])
    # An impossible distribution is a one-line config error, not an endless loop.
    with pytest.raises(ConfigError, match="no valid start"):
        offlane_starts(layout, 2, 0, offlane.replace(min_edge=40.0))


def test_offlane_starts_are_recoverable(layout):
    """A player that steers from the true state still reaches its pad from off-lane starts."""
    config = load(EvaluateSettings, overrides=["starts=offlane", "episodes=30"])
    actor = PlayerActor(players(layout, "direct"))
    played = rollout(actor, make_starts(layout, config), num_envs=16, layout=layout,
                     height=32, width=32, progress=False)
    assert np.mean([e.outcome == actor.targets[e.index] for e in played.episodes]) >= 0.9


def test_training_starts_mix_spawns_with_starts_anywhere_on_the_island(layout):
    spawns = spawn_starts(layout, 400, 9, 0.5)
    assert all(np.array_equal(a, b) for a, b in zip(
        vars(training_starts(layout, 400, 9, 0.5, 0.0)).values(), vars(spawns).values(),
        strict=True))  # no share: exactly the spawn starts
    mixed = training_starts(layout, 400, 9, 0.5, 0.5, min_edge=1.5)
    anywhere = mixed.kinds == "anywhere"
    assert 150 <= anywhere.sum() <= 250 and set(mixed.kinds) == {"spawn", "anywhere"}
    # Spawn starts are the ones spawn_starts draws for the same episodes; the others are valid
    # starts all over the island, facing every way.
    assert np.array_equal(mixed.positions[~anywhere], spawns.positions[~anywhere])
    assert np.array_equal(mixed.headings[~anywhere], spawns.headings[~anywhere])
    where = mixed.positions[anywhere]
    assert start_problems(layout, where, 1.5, 0.0) == []
    assert np.ptp(where[:, 0]) > 30 and np.ptp(where[:, 1]) > 30
    assert np.ptp(mixed.headings[anywhere]) > 300
    spawn_xy = np.array([s.position for s in layout.spawns])
    nearest = np.hypot(*(where[:, None, :] - spawn_xy[None]).transpose(2, 0, 1)).argmin(1)
    assert np.array_equal(mixed.spawns[anywhere], nearest)
    # Per-episode streams: a shorter draw is a prefix.
    short = training_starts(layout, 50, 9, 0.5, 0.5, min_edge=1.5)
    assert np.array_equal(short.positions, mixed.positions[:50])
    with pytest.raises(ConfigError, match="no valid start"):
        training_starts(layout, 5, 0, 0.5, 1.0, min_edge=40.0)


def test_starts_along_runs_take_the_states_those_runs_passed_through(layout):
    """rl's `along`: a share of the starts moved to fit states of the reference runs (not
    their last, not beside a pad or the coast), each with the spawn its run began at."""
    pad = layout.pads[1].position
    lane = np.linspace([-4.5, -16.0], [pad[0], pad[1]], 31)  # a run to the middle pad
    offshore = np.array([[-40.0, 0.0], [-41.0, 0.0], [-42.0, 0.0]])
    runs = [(lane, np.full(31, 370.0), 0), (offshore, np.zeros(3), 3)]
    visited = visited_states(layout, runs, 1.5)
    assert 0 < len(visited) < 30 and set(visited.spawns) == {0}  # no offshore state, no end
    assert start_problems(layout, visited.positions, 1.5, 0.0) == []
    assert np.allclose(visited.headings, 10.0)
    near_pad = np.hypot(*(lane[:-1] - pad).T) < layout.pads[1].radius + layout.agent.radius + 1
    assert len(visited) == 30 - near_pad.sum()
    spawns = spawn_starts(layout, 400, 9, 0.5)
    mixed = along_starts(spawns, visited, 0.5, 9)
    along = mixed.kinds == "along"
    assert 150 <= along.sum() <= 250 and set(mixed.kinds) == {"spawn", "along"}
    assert np.array_equal(mixed.positions[~along], spawns.positions[~along])
    rows = [np.flatnonzero((visited.positions == xy).all(1)) for xy in mixed.positions[along]]
    assert all(len(r) == 1 for r in rows)  # each an exact visited state
    assert len({int(r[0]) for r in rows}) > 15 and set(mixed.spawns[along]) == {0}
    assert np.array_equal(along_starts(spawns.part(slice(0, 50)), visited, 0.5, 9).positions,
                          mixed.positions[:50])  # per-episode streams
    assert along_starts(spawns, visited, 0.0, 9) is spawns


def test_scripted_players_reach_their_pad_from_anywhere(layout):
    """The demonstrators of recovery (collect's `anywhere`) do what they show."""
    actor = PlayerActor(players(layout, "direct"))
    starts = training_starts(layout, 40, 2, 0.5, 1.0)
    played = rollout(actor, starts, num_envs=20, layout=layout, height=32, width=32,
                     progress=False)
    assert np.mean([e.outcome == actor.targets[e.index] for e in played.episodes]) >= 0.85
    assert {e.kind for e in played.episodes} == {"anywhere"}


# -- the command -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    stage = tmp_path_factory.mktemp("sft")
    policy = tiny_policy()
    save_step(stage, policy, policy.config.to_dict(), kind="policy", stage="sft", step=42)
    return stage


def test_cli_writes_results_heatmap_and_gifs(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(checkpoint), "--episodes", "6", "--num-envs", "4", "--out",
                 str(out), "--no-progress", "--set", "gif_episodes=2",
                 "--set", "max_steps=30"]) == 0
    printed = capsys.readouterr().out
    assert "step 42" in printed and "spawn_1" in printed and "95% intervals" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["checkpoint"]["step"] == 42 and results["checkpoint"]["stage"] == "sft"
    assert results["episodes"] == 6 and len(results["per_episode"]["outcome"]) == 6
    assert results["settings"]["greedy"] is False and results["settings"]["num_envs"] == 4
    assert set(results["rates"]) == {*PADS, "none", "fell", "timeout", "any_pad"}
    assert sum(b["episodes"] for b in results["by_spawn"].values()) == 6
    low, high = results["rates"]["none"]["low"], results["rates"]["none"]["high"]
    assert 0.0 <= low <= results["rates"]["none"]["rate"] <= high <= 1.0
    with Image.open(out / "heatmap.png") as png:
        assert png.width >= 400 and png.height >= 400
    assert len(results["files"]["gifs"]) == 2
    with Image.open(out / results["files"]["gifs"][0]) as gif:
        assert gif.size == (128, 128) and gif.n_frames >= 2

    assert main(["evaluate", str(checkpoint), "--episodes", "4", "--num-envs", "4", "--out",
                 str(out), "--no-progress", "--greedy", "--offlane", "--seed", "1",
                 "--set", "gif_episodes=0", "--set", "max_steps=10"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["starts"] == "offlane" and results["settings"]["greedy"] is True
    assert "by_start" in results and results["settings"]["offlane"]["turn"] == [45.0, 180.0]
    assert not list(out.glob("episode-*.gif"))  # the earlier run's GIFs are gone


def test_cli_bad_input_is_a_one_line_error(checkpoint, tmp_path, capsys):
    def error(*args: str) -> str:
        assert main(["evaluate", *args, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
        message = capsys.readouterr().err.strip()
        assert "\n" not in message and message.startswith("agentalign evaluate: error:")
        return message

    assert "does not exist" in error(str(tmp_path / "nowhere"))
    assert "--num-envs: num_envs: must be >= 1" in error(str(checkpoint), "--num-envs", "0")
    assert "--episodes: episodes: must be >= 1" in error(str(checkpoint), "--episodes", "0")
    assert "unknown key" in error(str(checkpoint), "--set", "episodez=3")

    reward = tmp_path / "reward"
    policy = tiny_policy()
    save_step(reward, policy, policy.config.to_dict(), kind="reward", stage="reward", step=1)
    assert "'reward' model" in error(str(reward))

    corrupt = tmp_path / "corrupt"
    folder = save_step(corrupt, policy, policy.config.to_dict(), kind="policy", stage="sft",
                       step=1)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    assert "checksum" in error(str(corrupt))
    (folder / "checkpoint.json").write_text("{not json")
    assert "not valid JSON" in error(str(folder))


def test_evaluate_has_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--help"])
    assert exit_.value.code == 0
    assert "usage: agentalign evaluate" in capsys.readouterr().out
