import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from agentalign.data.players import Population
from agentalign.envs import IslandVectorEnv
from agentalign.spec import MOVE_NAMES, OUTCOME_CODES, RUNNING, TURN_NAMES

FORWARD, BACK, RIGHT = (MOVE_NAMES.index(m) for m in ("forward", "back", "right"))
TURN_RIGHT, TURN_LEFT = TURN_NAMES.index("right"), TURN_NAMES.index("left")


@pytest.fixture(scope="module")
def env(layout):
    return IslandVectorEnv(4, layout=layout)


def place(env, positions, headings):
    n = env.num_envs
    return env.reset(seed=0, options={"positions": np.resize(positions, (n, 2)),
                                      "headings": np.resize(headings, n)})


def test_spaces_and_shapes(env):
    obs, info = env.reset(seed=1)
    assert obs.shape == (4, 64, 64, 3) and obs.dtype == np.uint8
    assert env.single_action_space.nvec.tolist() == [9, 3]
    assert env.observation_space.shape == (4, 64, 64, 3)
    assert set(info) >= {"position", "heading", "outcome", "step", "spawn"}
    assert (info["outcome"] == RUNNING).all()


def test_deterministic_for_a_seed(layout):
    rng = np.random.default_rng(0)
    actions = rng.integers(0, [9, 3], size=(150, 3, 2))

    def run(seed):
        env = IslandVectorEnv(3, layout=layout)
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for a in actions:
            out.append(env.step(a)[0])
        return np.stack(out)

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


def test_geometry_conventions(env):
    """Heading 90 faces east: forward moves +x; heading is clockwise, so turning right adds."""
    place(env, [[0.0, -10.0]], [90.0])
    step = env.step_length
    _, _, _, _, info = env.step(np.array([[FORWARD, 0]] * 4))
    np.testing.assert_allclose(info["position"][0], [step, -10.0], atol=1e-5)
    place(env, [[0.0, -10.0]], [0.0])
    _, _, _, _, info = env.step(np.array([[RIGHT, 0]] * 4))  # strafe right at heading 0: east
    np.testing.assert_allclose(info["position"][0], [step, -10.0], atol=1e-5)
    _, _, _, _, info = env.step(np.array([[0, TURN_RIGHT]] * 4))
    assert info["heading"][0] == pytest.approx(env.turn_step)
    _, _, _, _, info = env.step(np.array([[0, TURN_LEFT]] * 4))
    _, _, _, _, info = env.step(np.array([[0, TURN_LEFT]] * 4))
    assert info["heading"][0] == pytest.approx(360.0 - env.turn_step)


def test_obstacles_block_and_slide(env, layout):
    rock = next(b for b in layout.obstacles if b.name == "rock_centre")
    start = [rock.center[0], rock.lo[1] - 1.0]
    place(env, [start], [0.0])
    for _ in range(10):
        _, _, _, _, info = env.step(np.array([[FORWARD, 0]] * 4))
    y = info["position"][0][1]
    assert y <= rock.lo[1] - layout.agent.radius + 1e-6  # stopped at the rock's face
    place(env, [start], [20.0])  # at an angle it slides along the face instead
    for _ in range(12):
        _, _, _, _, info = env.step(np.array([[FORWARD, 0]] * 4))
    assert info["position"][0][0] > rock.hi[0]


def run_player(layout, kind, target="middle", seed=0, episodes=8):
    env = IslandVectorEnv(episodes, layout=layout, autoreset_mode=AutoresetMode.SAME_STEP)
    obs, info = env.reset(seed=seed)
    from agentalign.collect_config import CollectSettings
    from agentalign.config import defaults

    section = defaults(CollectSettings).players["corpus"].replace(
        mixture={kind: 1.0}, pad_choice={target: 1.0})
    rng = np.random.default_rng(seed)
    population = Population(section, layout)
    players = [population.sample(rng) for _ in range(episodes)]
    outcomes = np.full(episodes, RUNNING)
    for _ in range(101):
        actions = np.array([p.act(info["position"][i], info["heading"][i])
                            for i, p in enumerate(players)])
        _, _, term, trunc, info = env.step(actions)
        done = (term | trunc) & (outcomes == RUNNING)
        if done.any():
            outcomes[done] = info["final_info"]["outcome"][done]
    return outcomes


@pytest.mark.parametrize("kind, target, outcome", [
    ("pad_seeker", "left", "left"), ("pad_seeker", "right", "right"),
    ("idler", "middle", "timeout"),
])
def test_each_outcome_is_reachable(layout, kind, target, outcome):
    outcomes = run_player(layout, kind, target)
    assert (outcomes == OUTCOME_CODES[outcome]).mean() >= 0.75


def test_edge_walkers_fall(layout):
    outcomes = run_player(layout, "edge_walker", episodes=12)
    assert (outcomes == OUTCOME_CODES["fell"]).mean() >= 0.5


def test_walking_off_the_south_coast_falls_and_a_pad_ends_the_episode(env, layout):
    place(env, [[0.0, -19.0], [0.0, 11.0]], [180.0, 0.0])
    ended = {}
    for t in range(10):
        _, _, term, trunc, info = env.step(np.array([[FORWARD, 0]] * 4))
        assert not trunc[:2].any()
        for i in np.flatnonzero(term[:2]):
            ended.setdefault(int(i), (int(info["outcome"][i]), t))
    assert ended[0] == (OUTCOME_CODES["fell"], 5)  # 3 m to the coast: the 6th 0.5 m step
    assert ended[1] == (OUTCOME_CODES["middle"], 2)


def test_timeout_truncates_at_max_steps(layout):
    env = IslandVectorEnv(2, layout=layout, max_steps=5)
    env.reset(seed=0)
    for _ in range(5):
        _, _, term, trunc, info = env.step(np.zeros((2, 2), dtype=int))
    assert trunc.all() and not term.any() and (info["step"] == 5).all()
    assert (info["outcome"] == OUTCOME_CODES["timeout"]).all()


def test_next_step_autoreset(layout):
    env = IslandVectorEnv(2, layout=layout, max_steps=3)
    obs0, _ = env.reset(seed=0)
    for _ in range(3):
        obs, rew, term, trunc, info = env.step(np.zeros((2, 2), dtype=int))
    assert trunc.all()
    # The next step starts new episodes: its action is ignored, nothing ends, step counts are 0.
    obs, rew, term, trunc, info = env.step(np.full((2, 2), [1, 2]))
    assert not (term | trunc).any() and (info["step"] == 0).all()
    assert (info["outcome"] == RUNNING).all()
    obs, *_ , info = env.step(np.zeros((2, 2), dtype=int))
    assert (info["step"] == 1).all()


def test_same_step_autoreset(layout):
    env = IslandVectorEnv(2, layout=layout, max_steps=3, autoreset_mode="SameStep")
    env.reset(seed=0)
    for _ in range(3):
        obs, rew, term, trunc, info = env.step(np.zeros((2, 2), dtype=int))
    assert trunc.all() and info["_final_obs"].all()
    assert (info["final_info"]["outcome"] == OUTCOME_CODES["timeout"]).all()
    assert (info["step"] == 0).all() and (info["outcome"] == RUNNING).all()
    assert info["final_obs"][0].shape == (64, 64, 3)


def test_partial_reset_and_target_reward(layout):
    env = IslandVectorEnv(2, layout=layout, target="middle")
    env.reset(seed=0, options={"positions": [[0.0, 12.2], [0.0, -10.0]], "headings": [0, 0]})
    _, rew, term, *_ = env.step(np.array([[FORWARD, 0], [FORWARD, 0]]))
    assert rew.tolist() == [1.0, 0.0] and term.tolist() == [True, False]
    _, info = env.reset(options={"reset_mask": [True, False]})
    assert info["step"].tolist() == [0, 1]


@pytest.mark.parametrize("actions, message", [
    (np.zeros((3, 2), dtype=int), "shape"), (np.full((2, 2), 9), "out of range"),
    (np.zeros((2, 2)), "integers"),
])
def test_bad_actions(layout, actions, message):
    env = IslandVectorEnv(2, layout=layout)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(actions)


def test_bad_construction(layout):
    with pytest.raises(ValueError, match="unknown target pad"):
        IslandVectorEnv(1, layout=layout, target="north")
    with pytest.raises(ValueError, match="num_envs"):
        IslandVectorEnv(0, layout=layout)


def test_disabled_autoreset_freezes_ended_episodes(layout):
    env = IslandVectorEnv(2, layout=layout, autoreset_mode="Disabled")
    env.reset(seed=0, options={"positions": [[0.0, -21.0], [0.0, -10.0]], "headings": [180, 0]})
    for _ in range(60):  # the first falls at once; walking on must not move or crash it
        _, _, term, _, info = env.step(np.array([[FORWARD, 0], [FORWARD, 0]]))
    assert info["outcome"][0] == OUTCOME_CODES["fell"] and info["step"][0] == 2
    assert not term[0]  # it ended once, on its own step
