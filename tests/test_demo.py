"""ML-Agents .demo files: a real one from ML-Agents' tests, our own round trip, legacy layouts,
truncated and corrupt files, import into shards and the spec check a trainer relies on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from agentalign.data.demo import META_BYTES, check_corpus_spec, read_demo
from agentalign.data.demo_import import run as import_demos
from agentalign.data.demo_write import write_demo
from agentalign.data.shards import Corpus, Episode
from agentalign.envs import mlagents_compat
from agentalign.envs.island import IslandVectorEnv
from agentalign.errors import CorpusError
from agentalign.spec import ACTION_BRANCHES, OUTCOME_CODES

FIXTURE = Path("/work/shared/fixtures/mlagents/testhybridvis.demo")
if not FIXTURE.exists():  # the same file, wherever the checkout keeps the shared fixtures
    FIXTURE = Path(__file__).resolve().parents[2] / "shared/fixtures/mlagents/testhybridvis.demo"

mlagents_compat.require_mlagents()


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def raw_demo(path: Path, meta: object, brain: object, pairs: list) -> None:
    """A .demo assembled by hand, byte by byte, as the format describes it."""
    head = varint(len(meta.SerializeToString())) + meta.SerializeToString()
    body = b"".join(varint(len(m.SerializeToString())) + m.SerializeToString()
                    for m in [brain, *pairs])
    path.write_bytes(head + b"\0" * (META_BYTES - len(head)) + body + head)


def island_episodes() -> tuple[list[Episode], list[np.ndarray]]:
    """Two short real episodes: one walks to the left pad (reward 1), one idles into MaxStep."""
    env = IslandVectorEnv(1, target="left", autoreset_mode=AutoresetMode.SAME_STEP, max_steps=12)
    episodes, rewards = [], []
    for policy in ("walk", "idle"):
        pad = np.array(env.layout.pad("left").position)
        start = {"positions": (pad - [0.0, 3.0])[None], "headings": np.zeros(1)}
        obs, info = env.reset(seed=3, options=start if policy == "walk" else None)
        frames, actions, reward = [], [], []
        while True:
            action = np.array([[1, 0]]) if policy == "walk" else np.array([[0, 0]])
            frames.append(obs[0])
            actions.append(action[0])
            obs, r, terminated, truncated, info = env.step(action)
            reward.append(r[0])
            if terminated[0] or truncated[0]:
                break
        final = info["final_info"]
        episodes.append(Episode(np.stack(frames), np.stack(actions).astype(np.uint8),
                                np.zeros((len(frames), 2), np.float32),
                                np.zeros(len(frames), np.float32), int(final["outcome"][0]),
                                0, 0, -1))
        rewards.append(np.array(reward, np.float32))
    return episodes, rewards


# -- reading -----------------------------------------------------------------------------------

def test_reads_the_real_ml_agents_fixture():
    demo = read_demo(FIXTURE)
    assert (demo.name, demo.api_version, len(demo), demo.number_episodes) == \
        ("testhybridvis", 1, 25, 1)
    camera, vector = demo.spec.sensors
    assert (camera.name, camera.shape, camera.compression, camera.layout) == \
        ("CameraSensor", (3, 84, 84), "PNG", "CHW")
    assert (vector.shape, vector.compression, vector.layout) == ((1,), "NONE", "vector")
    assert (demo.spec.continuous, demo.spec.branches) == (3, (2,))
    assert demo.spec.behavior_name == "VisualFoodCollector?team=0"
    assert demo.observations[0].shape == (25, 84, 84, 3) and demo.observations[0].dtype == np.uint8
    assert demo.observations[1].shape == (25, 1)
    assert demo.continuous_actions.shape == (25, 3) and demo.discrete_actions.shape == (25, 1)
    assert np.abs(demo.continuous_actions).max() <= 1.0 and set(demo.discrete_actions.ravel()) \
        <= {0, 1}
    assert demo.rewards.sum() == pytest.approx(4.0)  # the meta's mean reward over 1 episode
    assert demo.has_action.all() and [s.stop for s in demo.episodes()] == [25]

    # Same pixels as ML-Agents' own decoder gives (float CHW in 0..1).
    from mlagents_envs.rpc_utils import process_pixels

    data = FIXTURE.read_bytes()
    start = data.index(b"\x89PNG")
    end = data.index(b"IEND", start) + 8
    reference = process_pixels(data[start:end], 3)
    np.testing.assert_array_equal(np.rint(reference * 255).astype(np.uint8).transpose(1, 2, 0),
                                  demo.observations[0][0])


def test_round_trip_of_our_trajectories(tmp_path):
    episodes, rewards = island_episodes()
    assert episodes[0].outcome == OUTCOME_CODES["left"]
    assert episodes[1].outcome == OUTCOME_CODES["timeout"]
    path = tmp_path / "island.demo"
    meta = write_demo(path, episodes, rewards=rewards)
    steps = sum(len(e.frames) for e in episodes)
    assert meta == {"name": "island", "steps": steps, "episodes": 2, "mean_reward": 0.5}

    demo = read_demo(path)
    assert demo.spec.behavior_name == "JumppadAgent?team=0"
    (camera,) = demo.spec.sensors
    assert (camera.name, camera.shape, camera.layout) == ("CameraSensor", (3, 64, 64), "CHW")
    assert (demo.spec.continuous, demo.spec.branches) == (0, ACTION_BRANCHES)
    np.testing.assert_array_equal(demo.observations[0],
                                  np.concatenate([e.frames for e in episodes]))
    np.testing.assert_array_equal(demo.discrete_actions,
                                  np.concatenate([e.actions for e in episodes]))
    np.testing.assert_array_equal(demo.rewards, np.concatenate(rewards))
    assert [(s.start, s.stop) for s in demo.episodes()] == \
        [(0, len(episodes[0].frames)), (len(episodes[0].frames), steps)]
    assert demo.done.sum() == 2 and demo.max_step_reached.tolist()[-1]
    assert not demo.max_step_reached[:len(episodes[0].frames)].any()

    # ...and into shards: the island's spec, so training accepts it.
    import_demos([path], tmp_path / "corpus")
    corpus = Corpus(tmp_path / "corpus")
    check_corpus_spec(corpus, (64, 64, 3), ACTION_BRANCHES)
    for k, episode in enumerate(episodes):
        np.testing.assert_array_equal(corpus.episode(k)["frames"], episode.frames)
        np.testing.assert_array_equal(corpus.episode(k)["actions"], episode.actions)


def test_pairing_is_ml_agents_loaders_same_record(tmp_path):
    """ML-Agents' demo_loader.make_demo_buffer takes a step's observation and its action from the
    same AgentInfoActionPairProto (`current_pair_info`); the next record gives only done and
    reward. Our writer puts frame t and action t in record t, and our reader pairs them back."""
    import io

    from google.protobuf.internal.decoder import _DecodeVarint32
    from mlagents_envs.communicator_objects.agent_info_action_pair_pb2 import (
        AgentInfoActionPairProto,
    )
    from PIL import Image

    episodes, _ = island_episodes()
    path = tmp_path / "pairs.demo"
    write_demo(path, episodes)
    data, pos, records = path.read_bytes(), 33, []
    size, pos = _DecodeVarint32(data, pos)  # the brain parameters
    pos += size
    for _ in range(sum(len(e.frames) for e in episodes)):
        size, pos = _DecodeVarint32(data, pos)
        records.append(AgentInfoActionPairProto.FromString(data[pos:pos + size]))
        pos += size
    frames = np.concatenate([e.frames for e in episodes])
    actions = np.concatenate([e.actions for e in episodes])
    for t in (0, 1, len(episodes[0].frames) - 1, len(records) - 1):
        png = records[t].agent_info.observations[0].compressed_data
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), frames[t])
        assert list(records[t].action_info.discrete_actions) == actions[t].tolist()
    demo = read_demo(path)
    np.testing.assert_array_equal(demo.discrete_actions, actions)
    assert actions[1:].tolist() != actions[:-1].tolist()  # a shift would show


@pytest.mark.parametrize("layout", ["float HWC", "float CHW", "PNG HWC"])
def test_reads_legacy_layouts(tmp_path, layout):
    """Old packages: visual observations as floats or PNG declared HWC, no dimension properties,
    actions in the deprecated vector fields, api_version 0."""
    from mlagents_envs.communicator_objects.agent_info_action_pair_pb2 import (
        AgentInfoActionPairProto,
    )
    from mlagents_envs.communicator_objects.agent_info_pb2 import AgentInfoProto
    from mlagents_envs.communicator_objects.brain_parameters_pb2 import BrainParametersProto
    from mlagents_envs.communicator_objects.demonstration_meta_pb2 import (
        DemonstrationMetaProto,
    )
    from mlagents_envs.communicator_objects.observation_pb2 import ObservationProto

    from agentalign.envs.player import encode_png

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    actions = [[4, 2], [0, 1], [8, 0]]
    pairs = []
    for t, frame in enumerate(frames):
        if layout == "PNG HWC":
            obs = ObservationProto(shape=[8, 8, 3], compression_type=1,
                                   compressed_data=encode_png(frame))
        else:
            values = frame if layout == "float HWC" else frame.transpose(2, 0, 1)
            obs = ObservationProto(shape=list(values.shape))
            obs.float_data.data.extend((values / 255.0).ravel().tolist())
        info = AgentInfoProto(reward=float(t), done=t == 2, id=1, observations=[obs])
        pair = AgentInfoActionPairProto(agent_info=info)
        pair.action_info.vector_actions_deprecated.extend(map(float, actions[t]))
        pairs.append(pair)
    brain = BrainParametersProto(brain_name="Old", vector_action_size_deprecated=[9, 3],
                                 vector_action_space_type_deprecated=0)
    meta = DemonstrationMetaProto(api_version=0, demonstration_name="old", number_steps=3,
                                  number_episodes=1)
    raw_demo(tmp_path / "old.demo", meta, brain, pairs)

    demo = read_demo(tmp_path / "old.demo")
    assert demo.spec.sensors[0].layout == ("CHW" if layout == "float CHW" else "HWC")
    assert demo.spec.branches == (9, 3) and demo.spec.continuous == 0
    np.testing.assert_array_equal(demo.observations[0], frames)
    np.testing.assert_array_equal(demo.discrete_actions, actions)
    assert demo.rewards.tolist() == [0.0, 1.0, 2.0] and demo.done.tolist() == [0, 0, 1]


# -- broken files ------------------------------------------------------------------------------

@pytest.mark.parametrize("cut, message", [
    (20, "too short"), (40, "truncated"), (0.5, "truncated"), (-30, "truncated")])
def test_truncated_files_are_refused_clearly(tmp_path, cut, message):
    data = FIXTURE.read_bytes()
    size = int(len(data) * cut) if isinstance(cut, float) else cut % len(data)
    if cut == -30:  # ends inside the last step (the stray meta copy is gone too)
        size = len(data) - 60
    path = tmp_path / "cut.demo"
    path.write_bytes(data[:size])
    with pytest.raises(CorpusError, match=message) as caught:
        read_demo(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_corrupt_files_are_refused_clearly(tmp_path):
    data = bytearray(FIXTURE.read_bytes())
    broken_png = bytearray(data)
    third = broken_png.index(b"IDAT", broken_png.index(b"IDAT") + 1 + 3000)
    broken_png[third + 100:third + 116] = b"\xa5" * 16
    cases = {"png.demo": (bytes(broken_png), "not a valid PNG"),
             "header.demo": (b"\xff" * 40 + bytes(data[40:]), "corrupt|not an ML-Agents"),
             "noise.demo": (np.random.default_rng(1).bytes(5000), "corrupt|not an ML-Agents|"
                            "truncated")}
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CorpusError, match=message) as caught:
            read_demo(path)
        assert "\n" not in str(caught.value)
    with pytest.raises(CorpusError, match="no such file"):
        read_demo(tmp_path / "missing.demo")


# -- importing and checking --------------------------------------------------------------------

def test_import_demo_command_keeps_the_file_spec(tmp_path, capsys):
    from agentalign.cli import main

    out = tmp_path / "corpus"
    assert main(["import-demo", str(FIXTURE), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 episodes, 25 steps" in printed and "84x84x3" in printed
    manifest = json.loads((out / "corpus.json").read_text())
    (entry,) = manifest["shards"]
    assert entry["source"] == FIXTURE.name and not entry["outcomes_known"]
    assert entry["spec"]["frames"] == {"sensor": "CameraSensor", "shape": [84, 84, 3]}
    assert entry["spec"]["actions"] == {"continuous": 3, "discrete_branches": [2]}
    extra = np.load(out / entry["extra"]["file"])
    assert extra["continuous_actions"].shape == (25, 3)
    assert extra["vector/VectorSensor_size1"].shape == (25, 1)

    with pytest.raises(CorpusError, match=r"84x84x3 frames .*\[9, 3\]") as caught:
        check_corpus_spec(out, (64, 64, 3), ACTION_BRANCHES)
    assert "\n" not in str(caught.value) and "resize=True" in str(caught.value)
    with pytest.raises(CorpusError, match="map_actions=True"):
        check_corpus_spec(out, (64, 64, 3), ACTION_BRANCHES, resize=True)
    check_corpus_spec(out, (64, 64, 3), ACTION_BRANCHES, resize=True, map_actions=True)

    assert main(["import-demo", str(FIXTURE), "--out", str(out)]) == 0  # rerun: skipped
    assert "already imported" in capsys.readouterr().out
    assert len(json.loads((out / "corpus.json").read_text())["shards"]) == 1


def test_collected_corpus_passes_the_spec_check(small_corpus):
    check_corpus_spec(small_corpus, (64, 64, 3), ACTION_BRANCHES)
    with pytest.raises(CorpusError, match="128x128x3"):
        check_corpus_spec(small_corpus, (128, 128, 3), ACTION_BRANCHES)
    check_corpus_spec(small_corpus, (128, 128, 3), ACTION_BRANCHES, resize=True)
