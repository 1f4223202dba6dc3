"""The engine link, over real gRPC with the real mlagents_envs client and the stand-in player.

Every test talks to 127.0.0.1 only, on ports found free at the time (never 5004/5005 fixed).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import numpy as np
import pytest

from agentalign.envs import mlagents_compat
from agentalign.envs.factory import make_env
from agentalign.envs.island import IslandVectorEnv
from agentalign.errors import UserError
from agentalign.spec import (
    ACTION_BRANCHES,
    OUTCOME_CHANNEL_ID,
    OUTCOME_CODES,
    PADS,
    RUNNING,
    unpack_outcomes,
)

mlagents_compat.require_mlagents()
from mlagents_envs.base_env import ActionTuple  # noqa: E402
from mlagents_envs.environment import UnityEnvironment  # noqa: E402

from agentalign.envs.player import PACKAGE_VERSION, parse_args  # noqa: E402
from agentalign.envs.unity import UnityVectorEnv  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BEHAVIOR = "JumppadAgent?team=0"
# mlagents-envs 1.1.0 compares versions with distutils' StrictVersion (deprecated, harmless).
pytestmark = pytest.mark.filterwarnings("ignore:distutils Version classes:DeprecationWarning")


def free_base_port(count: int = 1) -> int:
    """A base port with `count` consecutive free ports after it (on 127.0.0.1)."""
    for _ in range(200):
        base = random.randint(20000, 60000)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free ports")


def steer(layout, targets: list[int], positions: np.ndarray, headings: np.ndarray) -> np.ndarray:
    """A scripted policy: walk forward, turning towards each row's target pad."""
    pads = np.array([p.position for p in layout.pads])[targets]
    bearing = np.degrees(np.arctan2(pads[:, 0] - positions[:, 0], pads[:, 1] - positions[:, 1]))
    error = (bearing - headings + 180.0) % 360.0 - 180.0
    turn = np.where(error > 8, 2, np.where(error < -8, 1, 0))
    return np.stack([np.ones(len(targets), dtype=np.int64), turn], axis=1)


def side_messages(data: bytes) -> dict[uuid.UUID, list[bytes]]:
    out: dict[uuid.UUID, list[bytes]] = {}
    offset = 0
    while offset < len(data):
        channel = uuid.UUID(bytes_le=data[offset:offset + 16])
        (length,) = struct.unpack_from("<i", data, offset + 16)
        out.setdefault(channel, []).append(data[offset + 20:offset + 20 + length])
        offset += 20 + length
    return out


# -- installing mlagents-envs on current protobuf ----------------------------------------------

def test_hook_builds_the_message_modules_from_their_descriptors():
    from google.protobuf import descriptor_pb2
    from mlagents_envs.communicator_objects import unity_rl_output_pb2

    folder = Path(unity_rl_output_pb2.__file__).parent
    for name in ("observation_pb2.py", "unity_to_external_pb2.py"):  # both protoc styles
        data = mlagents_compat.descriptor_bytes((folder / name).read_text(), name)
        proto = descriptor_pb2.FileDescriptorProto.FromString(data)
        assert proto.name == f"mlagents_envs/communicator_objects/{name[:-7]}.proto"
    assert isinstance(unity_rl_output_pb2.__spec__.loader, mlagents_compat._DescriptorLoader)
    output = unity_rl_output_pb2.UnityRLOutputProto()
    output.agentInfos[BEHAVIOR].value.add(id=7)  # a map field, not a list: agents are seen
    assert list(output.agentInfos) == [BEHAVIOR]
    again = unity_rl_output_pb2.UnityRLOutputProto.FromString(output.SerializeToString())
    assert again.agentInfos[BEHAVIOR].value[0].id == 7


def test_missing_mlagents_fails_with_one_line_naming_pip(monkeypatch, capsys, tmp_path):
    from agentalign.cli import main

    monkeypatch.setitem(sys.modules, "mlagents_envs", None)
    monkeypatch.setitem(sys.modules, "mlagents_envs.environment", None)
    assert main(["collect", "--env", "unity", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert mlagents_compat.PIP_COMMAND in err
    with pytest.raises(mlagents_compat.MissingMLAgentsError, match="--no-deps"):
        make_env("unity:anything", 1)


def test_make_env_names():
    env = make_env("island", 2)
    assert isinstance(env, IslandVectorEnv) and env.num_envs == 2
    for bad in ("isle", "island:x", "unity:", "Unity"):
        with pytest.raises(UserError, match="unknown environment"):
            make_env(bad, 1)


# -- the stand-in player -----------------------------------------------------------------------

def test_player_takes_the_unity_player_command_line():
    options = parse_args(["-nographics", "-batchmode", "--mlagents-port", "5011", "-logFile",
                          "/tmp/Player-6.log", "-screen-width", "80", "--num-agents", "2"])
    assert (options.port, options.log_file, options.num_agents) == (5011, "/tmp/Player-6.log", 2)
    assert options.nographics and options.batchmode
    assert options.ignored == ["-screen-width", "80"]  # unknown to the island, as to Unity
    assert parse_args([]).port == 5004  # no port: where the editor listens
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["agentalign-island-player"] == "agentalign.envs.player:main"


def test_player_sends_what_a_unity_4_player_sends(player, tmp_path):
    """Handshake and first messages field by field, read with mlagents' own communicator."""
    from mlagents_envs.communicator_objects.agent_action_pb2 import AgentActionProto
    from mlagents_envs.communicator_objects.command_pb2 import RESET, STEP
    from mlagents_envs.communicator_objects.unity_input_pb2 import UnityInputProto
    from mlagents_envs.communicator_objects.unity_rl_initialization_input_pb2 import (
        UnityRLInitializationInputProto,
    )
    from mlagents_envs.rpc_communicator import RpcCommunicator
    from PIL import Image

    port = free_base_port()
    communicator = RpcCommunicator(worker_id=0, base_port=port, timeout_wait=30)
    process = subprocess.Popen([player, "--mlagents-port", str(port), "--num-agents", "2",
                                "-logFile", str(tmp_path / "player.log")])
    try:
        init = UnityInputProto()
        init.rl_initialization_input.CopyFrom(UnityRLInitializationInputProto(
            seed=4, communication_version="1.5.0", package_version="1.1.0",
            capabilities=UnityEnvironment._get_capabilities_proto()))
        first = communicator.initialize(init).rl_initialization_output
        assert first.name == "AcademySingleton"
        assert first.communication_version == "1.5.0"
        assert first.package_version.startswith("4.0.") and PACKAGE_VERSION == "4.0.0"
        caps = first.capabilities
        assert all(getattr(caps, f.name) for f in caps.DESCRIPTOR.fields)  # all seven
        assert not first.brain_parameters  # declared with the first agents, as in Unity

        reset = UnityInputProto()
        reset.rl_input.command = RESET
        out = communicator.exchange(reset)
        (brain,) = out.rl_initialization_output.brain_parameters
        assert brain.brain_name == BEHAVIOR and brain.is_training
        assert brain.action_spec.num_continuous_actions == 0
        assert brain.action_spec.num_discrete_actions == 2
        assert tuple(brain.action_spec.discrete_branch_sizes) == ACTION_BRANCHES
        infos = out.rl_output.agentInfos[BEHAVIOR].value  # the declared behaviour has agents
        assert len(infos) == 2 and len({i.id for i in infos}) == 2
        for info in infos:
            assert not info.done and info.reward == 0 and not info.action_mask
            (camera,) = info.observations
            assert list(camera.shape) == [3, 64, 64]
            assert camera.compression_type == 1  # PNG
            assert camera.name == "CameraSensor"
            assert list(camera.dimension_properties) == [1, 2, 2]
            assert camera.observation_type == 0 and not camera.compressed_channel_mapping
            image = Image.open(__import__("io").BytesIO(camera.compressed_data))
            assert image.format == "PNG" and image.size == (64, 64) and image.mode == "RGB"
        records = side_messages(out.rl_output.side_channel)[uuid.UUID(OUTCOME_CHANNEL_ID)]
        assert {r[0] for r in unpack_outcomes(records[0])} == {i.id for i in infos}

        step = UnityInputProto()
        step.rl_input.command = STEP
        for _ in infos:
            step.rl_input.agent_actions[BEHAVIOR].value.append(
                AgentActionProto(discrete_actions=[1, 0]))
        out = communicator.exchange(step)
        assert not out.rl_initialization_output.brain_parameters  # declared once
        assert [i.id for i in out.rl_output.agentInfos[BEHAVIOR].value] == [i.id for i in infos]
        (records,) = side_messages(out.rl_output.side_channel)[uuid.UUID(OUTCOME_CHANNEL_ID)]
        assert all(r[1] == 1 and r[5] == RUNNING for r in unpack_outcomes(records))
    finally:
        communicator.close()
    assert process.wait(timeout=20) == 0
    log = (tmp_path / "player.log").read_text()
    assert "communication 1.5.0, seed 4" in log


def test_full_episode_through_unity_environment_launching_a_build(player, tmp_path):
    port = free_base_port()
    env = UnityEnvironment(player, base_port=port, seed=1, no_graphics=True, timeout_wait=30,
                           log_folder=str(tmp_path))
    try:
        env.reset()
        spec = env.behavior_specs[BEHAVIOR]
        assert spec.observation_specs[0].shape == (3, 64, 64)
        assert spec.action_spec.discrete_branches == ACTION_BRANCHES
        decision, _ = env.get_steps(BEHAVIOR)
        first_id = int(decision.agent_id[0])
        obs = decision.obs[0]
        assert obs.shape == (1, 3, 64, 64) and obs.min() >= 0.0 and obs.max() <= 1.0
        t = 0
        while t < 100:  # forward until the episode ends (pad, edge or MaxStep)
            t += 1
            env.set_actions(BEHAVIOR, ActionTuple(discrete=np.array([[1, 0]], np.int32)))
            env.step()
            decision, terminal = env.get_steps(BEHAVIOR)
            if len(terminal):
                break
        assert terminal.agent_id.tolist() == [first_id]  # the episode's last step
        assert terminal.obs[0].shape == (1, 3, 64, 64)
        assert len(decision) == 1 and decision.agent_id[0] != first_id  # its successor
        assert terminal.interrupted[0] == (t == 100)
    finally:
        env.close()
    log = (tmp_path / "Player-0.log").read_text()
    assert "-batchmode" not in log and "episode 1 ended" in log  # flags taken, not ignored


def test_full_episode_on_an_editor_style_port(player, tmp_path):
    """The player connects to a waiting trainer, as pressing Play in the editor does."""
    port = free_base_port()
    process = subprocess.Popen([player, "--mlagents-port", str(port), "--connect-timeout", "60",
                                "-logFile", str(tmp_path / "editor.log")])
    try:
        env = make_env("unity", 1, base_port=port, timeout_wait=30)
        try:
            obs, info = env.reset(seed=3)
            assert obs.shape == (1, 64, 64, 3) and info["step"][0] == 0
            assert env.worker_processes() == [None]  # nothing launched: the editor's own
            for _ in range(100):
                obs, reward, terminated, truncated, info = env.step(np.array([[1, 0]]))
                if terminated[0] or truncated[0]:
                    break
            assert info["outcome"][0] != RUNNING
        finally:
            env.close()
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()


# -- the unity backend -------------------------------------------------------------------------

def test_two_workers_match_the_island_step_for_step(player):
    """The same scripted policy and seeds give the same frames, rewards and outcomes through
    the engine link (two builds stepped in parallel) as through the embedded island."""
    seed, targets = 11, [PADS.index("left"), PADS.index("right")]
    islands = [IslandVectorEnv(1, target="left") for _ in targets]
    env = UnityVectorEnv(2, file_name=player, base_port=free_base_port(8), seed=seed,
                         target="left", timeout_wait=30)
    try:
        assert len({pid for pid in env.worker_processes()}) == 2
        obs, info = env.reset(seed=seed)
        pairs = [island.reset(seed=seed + k) for k, island in enumerate(islands)]
        outcomes: list[tuple[int, int]] = []
        for _ in range(180):
            np.testing.assert_array_equal(obs, np.concatenate([o for o, _ in pairs]))
            for key in ("position", "heading", "step", "spawn", "outcome"):
                np.testing.assert_array_equal(info[key],
                                              np.concatenate([i[key] for _, i in pairs]))
            actions = steer(islands[0].layout, targets, info["position"], info["heading"])
            obs, reward, terminated, truncated, info = env.step(actions)
            steps = [island.step(actions[k:k + 1]) for k, island in enumerate(islands)]
            expected = [np.concatenate([s[i] for s in steps]) for i in range(1, 4)]
            for got, want in zip((reward, terminated, truncated), expected, strict=True):
                np.testing.assert_array_equal(got, want)
            pairs = [(s[0], s[4]) for s in steps]
            outcomes += [(k, int(info["outcome"][k])) for k in np.flatnonzero(terminated)]
        assert (0, OUTCOME_CODES["left"]) in outcomes and (1, OUTCOME_CODES["right"]) in outcomes
    finally:
        env.close()
    assert env.worker_processes() == [None, None]


@pytest.mark.parametrize("fault", ["crash", "silence"])
def test_failed_player_is_restarted_and_the_rollout_goes_on(player, fault):
    """A build killed (or stopped: no answer within timeout_wait) mid-rollout is replaced; its
    episode in flight ends truncated and flagged, the other worker's goes on."""
    env = UnityVectorEnv(2, file_name=player, base_port=free_base_port(8), seed=5,
                         autoreset_mode="SameStep", timeout_wait=10)
    try:
        obs, info = env.reset()
        for _ in range(3):
            obs, *_, info = env.step(np.array([[0, 1], [0, 1]]))
        victim = env.worker_processes()[0]
        os.kill(victim, signal.SIGKILL if fault == "crash" else signal.SIGSTOP)
        started = time.monotonic()
        obs, reward, terminated, truncated, info = env.step(np.array([[0, 1], [0, 1]]))
        assert time.monotonic() - started < (15 if fault == "crash" else 40)
        assert truncated.tolist() == [True, False] and not terminated.any()
        assert info["interrupted"].tolist() == [True, False]
        final = info["final_info"]
        assert final["outcome"][0] == RUNNING and final["step"][0] == 3  # cut short in flight
        assert info["step"].tolist() == [0, 4]  # a fresh episode on the new build; row 1 goes on
        assert env.restarts == 1 and env.worker_processes()[0] not in (None, victim)
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(np.array([[0, 1], [0, 1]]))
        assert info["step"].tolist() == [3, 7] and not info["interrupted"].any()
    finally:
        env.close()


def test_side_channels_set_time_scale_and_target(player, tmp_path):
    env = UnityVectorEnv(1, file_name=player, base_port=free_base_port(4), seed=2,
                         time_scale=7.5, target="left", timeout_wait=30, log_folder=str(tmp_path),
                         autoreset_mode="SameStep")
    layout = env.layout
    try:
        rewards = {}
        for pad in ("left", "right"):
            if pad == "right":
                env.set_target("right")
            obs, info = env.reset(seed=2)
            for _ in range(100):
                actions = steer(layout, [PADS.index("left")], info["position"], info["heading"])
                obs, reward, terminated, truncated, info = env.step(actions)
                if terminated[0] or truncated[0]:
                    break
            assert info["final_info"]["outcome"][0] == OUTCOME_CODES["left"]
            rewards[pad] = float(reward[0])
        assert rewards == {"left": 1.0, "right": 0.0}  # the target moved; the walk did not
        worker_id = env._workers[0].worker_id
    finally:
        env.close()
    log = (tmp_path / f"Player-{worker_id}.log").read_text()
    assert "engine configuration: time_scale=7.5" in log
    assert "environment parameter target_pad=0.0" in log
    assert "environment parameter target_pad=2.0" in log


def test_collect_through_the_engine_link(player, tmp_path):
    out = tmp_path / "corpus"
    result = subprocess.run(
        [sys.executable, "-m", "agentalign.cli", "collect", "--env", f"unity:{player}",
         "--num-envs", "2", "--episodes", "4", "--workers", "1", "--out", str(out),
         "--no-progress", "--set", "shard_episodes=2", "--set", "population=direct"],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    from agentalign.data.shards import Corpus

    corpus = Corpus(out)
    assert corpus.num_episodes == 4 and corpus.obs_shape == (64, 64, 3)
    assert corpus.shards[0].metadata["env"] == f"unity:{player}"
    episode = corpus.episode(0)
    assert episode["frames"].shape[1:] == (64, 64, 3) and episode["actions"].max() < 9
    manifest = json.loads((out / "corpus.json").read_text())
    assert manifest["summary"]["episodes"] == 4
