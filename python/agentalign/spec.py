"""The contract every part shares: observations, actions, outcomes and episode timing.

The Unity side mirrors these constants in C#; a test keeps the two in step, so change them here
first and regenerate the scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Observation: RGB pixels from a third-person camera, uint8, height x width x 3.
OBS_HEIGHT = 64
OBS_WIDTH = 64
OBS_CHANNELS = 3

# Actions: ML-Agents discrete branches. Branch 0 moves relative to the facing, branch 1 turns.
ACTION_BRANCHES: tuple[int, ...] = (9, 3)
MOVE_NAMES: tuple[str, ...] = (
    "none", "forward", "forward_right", "right", "back_right",
    "back", "back_left", "left", "forward_left",
)
# Direction of each move, degrees clockwise from the facing direction (None for "none").
MOVE_ANGLES: tuple[float | None, ...] = (None, 0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
TURN_NAMES: tuple[str, ...] = ("none", "left", "right")
TURN_SIGNS: tuple[int, ...] = (0, -1, 1)  # heading is clockwise, so turning left lowers it

# Outcomes: how an episode ended. Codes are indices into OUTCOMES; RUNNING marks "not ended yet".
PADS: tuple[str, ...] = ("left", "middle", "right")
OUTCOMES: tuple[str, ...] = ("left", "middle", "right", "fell", "timeout")
OUTCOME_CODES: dict[str, int] = {name: code for code, name in enumerate(OUTCOMES)}
RUNNING = -1


def check_pad(name: str) -> str:
    """`name` if it names a pad, else a one-line UserError."""
    from agentalign.errors import UserError

    if name not in PADS:
        raise UserError(f"unknown target {name!r}: choose one of {', '.join(PADS)}")
    return name

# Timing: 10 decisions per second, at most 100 decisions (10 s) per episode, as in the paper.
DECISIONS_PER_SECOND = 10
MAX_DECISIONS = 100


@dataclass(frozen=True)
class ObservationSpec:
    """Shape of one observation; the resolution is configurable, the layout is not."""

    height: int = OBS_HEIGHT
    width: int = OBS_WIDTH
    channels: int = OBS_CHANNELS

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


def check_actions(actions: object, num_envs: int) -> np.ndarray:
    """A batch of actions as int64 [num_envs, branches]; ValueError naming what is wrong.

    Both environment backends take actions through this one check.
    """
    import numpy as np

    actions = np.asarray(actions)
    if actions.shape != (num_envs, len(ACTION_BRANCHES)):
        raise ValueError(f"actions must have shape ({num_envs}, {len(ACTION_BRANCHES)}), "
                         f"got {actions.shape}")
    if not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(f"actions must be integers, got {actions.dtype}")
    if (actions < 0).any() or (actions >= np.array(ACTION_BRANCHES)).any():
        raise ValueError(f"actions out of range: branch sizes are {list(ACTION_BRANCHES)}")
    return actions.astype(np.int64)


def outcome_name(code: int) -> str:
    """Name of an outcome code; RUNNING reads as 'running'."""
    return "running" if code == RUNNING else OUTCOMES[code]


# -- The engine link: names and the custom side channel, shared with the Unity C# agent ---------

BEHAVIOR_NAME = "JumppadAgent"  # ML-Agents behavior name (Python sees "JumppadAgent?team=0")
CAMERA_SENSOR_NAME = "CameraSensor"
# Environment parameter (EnvironmentParametersChannel) choosing the designer's pad: the float is
# the pad's index in PADS (0 left, 1 middle, 2 right); NO_TARGET means none.
TARGET_PARAMETER = "target_pad"
NO_TARGET = -1.0

# Outcome side channel: after each decision the Unity agent reports, for every agent, where it is
# and how its episode stands, because ML-Agents' own messages carry neither. One message:
#   int32 count, then per agent: int32 agent_id, int32 step, float32 x, float32 y,
#   float32 heading (degrees, clockwise from north), int32 outcome (RUNNING or an OUTCOMES code);
# all little-endian, as ML-Agents' OutgoingMessage writes them.
OUTCOME_CHANNEL_ID = "7c8c49a6-1a84-4165-8a1a-0a382b9097ef"
OUTCOME_RECORD_FORMAT = "<iifffi"


def pack_outcomes(records: list[tuple[int, int, float, float, float, int]]) -> bytes:
    """Encode (agent_id, step, x, y, heading, outcome) records as one side-channel message."""
    import struct

    return struct.pack("<i", len(records)) + b"".join(
        struct.pack(OUTCOME_RECORD_FORMAT, *r) for r in records)


def unpack_outcomes(data: bytes) -> list[tuple[int, int, float, float, float, int]]:
    """Decode one outcome side-channel message; raises ValueError if its length is wrong."""
    import struct

    if len(data) < 4:
        raise ValueError("outcome message shorter than its count field")
    (count,) = struct.unpack_from("<i", data)
    size = struct.calcsize(OUTCOME_RECORD_FORMAT)
    if count < 0 or len(data) != 4 + count * size:
        raise ValueError(f"outcome message of {len(data)} bytes does not hold {count} records")
    return [struct.unpack_from(OUTCOME_RECORD_FORMAT, data, 4 + i * size) for i in range(count)]


# Environment parameter asking the engine to reseed its spawn draws at the next reset, so that
# `reset(seed=...)` means the same on both backends. Parameters travel as float32, so the value
# is the seed modulo 2**24 (exact in float32); without a message the engine keeps its stream.
SEED_PARAMETER = "spawn_seed"
SEED_MODULUS = 2**24

# Environment parameters choosing where the episode begun by the next reset starts, so that an
# evaluation's chosen starts (evaluate/rollout.py) mean the same on both backends. Sent together
# just before a reset and used once, at that reset, like SEED_PARAMETER: spawn index (the spawn
# point the start belongs to; START_NONE = the game's own draw), x and y in layout metres
# (NaN = the spawn point, jittered as usual), heading in degrees clockwise from north (NaN = the
# spawn's heading). Values are float32, as Unity's transforms are. Scalars: they place every
# agent of the build, so chosen starts need one agent per build.
START_SPAWN_PARAMETER = "start_spawn"
START_X_PARAMETER = "start_x"
START_Y_PARAMETER = "start_y"
START_HEADING_PARAMETER = "start_heading"
START_NONE = -1.0
