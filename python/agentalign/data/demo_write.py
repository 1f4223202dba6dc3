"""Writing ML-Agents `.demo` files: our trajectories, for a Unity project or ML-Agents' trainers.

The file layout and how a record pairs an observation with an action are described once, in
`data.demo` (the reader); the writer follows the same pairing and reuses the reader's message
classes, so a written file reads back step for step as it was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agentalign.atomic import write_atomic
from agentalign.data.demo import META_BYTES, _messages
from agentalign.data.shards import Episode
from agentalign.spec import ACTION_BRANCHES, BEHAVIOR_NAME, CAMERA_SENSOR_NAME, OUTCOME_CODES

WRITE_API_VERSION = 1


def write_demo(path: str | Path, episodes: Sequence[Episode | dict[str, Any]],
               name: str | None = None, behavior_name: str = f"{BEHAVIOR_NAME}?team=0",
               branches: Sequence[int] = ACTION_BRANCHES,
               rewards: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """Write our trajectories as a .demo file a Unity project (or ML-Agents' trainers) reads.

    Each episode's frames (uint8 [T, H, W, 3]) become CameraSensor observations, PNG-compressed
    and declared CHW as the Unity 4.0 camera sensor declares them, paired with its discrete
    actions [T, len(branches)]; the last step carries `done` (and `max_step_reached` if the
    episode timed out). Returns the meta fields written.
    """
    messages = _messages()
    from mlagents_envs.communicator_objects.agent_info_action_pair_pb2 import (
        AgentInfoActionPairProto,
    )
    from mlagents_envs.communicator_objects.agent_info_pb2 import AgentInfoProto
    from mlagents_envs.communicator_objects.brain_parameters_pb2 import ActionSpecProto
    from mlagents_envs.communicator_objects.observation_pb2 import PNG, ObservationProto

    from agentalign.envs.player import CAMERA_DIMENSION_PROPERTIES, encode_png

    path = Path(path)
    name = name or path.stem
    records: list[bytes] = []
    total_reward = 0.0
    timeout = OUTCOME_CODES["timeout"]
    for e, episode in enumerate(episodes):
        frames = np.asarray(_field(episode, "frames"))
        actions = np.asarray(_field(episode, "actions"))
        outcome = _field(episode, "outcome", -1)
        reward = np.zeros(len(frames), np.float32) if rewards is None else \
            np.asarray(rewards[e], dtype=np.float32)
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"episode {e}: frames must be uint8 [T, H, W, 3], got "
                             f"{frames.dtype} {list(frames.shape)}")
        if actions.shape != (len(frames), len(branches)):
            raise ValueError(f"episode {e}: actions must be [{len(frames)}, {len(branches)}]")
        total_reward += float(reward.sum())
        for t, frame in enumerate(frames):
            last = t + 1 == len(frames)
            camera = ObservationProto(
                shape=[3, frame.shape[0], frame.shape[1]], compression_type=PNG,
                compressed_data=encode_png(frame), name=CAMERA_SENSOR_NAME,
                dimension_properties=list(CAMERA_DIMENSION_PROPERTIES))
            info = AgentInfoProto(reward=float(reward[t]), done=last,
                                  max_step_reached=last and outcome == timeout, id=e + 1,
                                  observations=[camera])
            pair = AgentInfoActionPairProto(agent_info=info)
            pair.action_info.discrete_actions.extend(int(a) for a in actions[t])
            records.append(pair.SerializeToString())
    steps, count = len(records), len(episodes)
    meta = messages["meta"](api_version=WRITE_API_VERSION, demonstration_name=name,
                            number_steps=steps, number_episodes=count,
                            mean_reward=total_reward / max(count, 1))
    head = _delimited(meta.SerializeToString())
    while len(head) > META_BYTES and meta.demonstration_name:  # the name must fit the header
        meta.demonstration_name = meta.demonstration_name[:-1]
        head = _delimited(meta.SerializeToString())
    brain = messages["brain"](brain_name=behavior_name, action_spec=ActionSpecProto(
        num_continuous_actions=0, num_discrete_actions=len(branches),
        discrete_branch_sizes=list(branches)))

    def write(f: Any) -> None:
        f.write(head + b"\0" * (META_BYTES - len(head)))
        f.write(_delimited(brain.SerializeToString()))
        for r in records:
            f.write(_delimited(r))
        f.write(head)  # the stray trailing copy Unity's writer leaves; readers ignore it

    write_atomic(path, write)
    return {"name": meta.demonstration_name, "steps": steps, "episodes": count,
            "mean_reward": meta.mean_reward}


def _delimited(payload: bytes) -> bytes:
    return _encode_varint(len(payload)) + payload


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(episode: Episode | dict[str, Any], name: str, default: Any = None) -> Any:
    if isinstance(episode, dict):
        return episode.get(name, default)
    return getattr(episode, name, default)
