"""The contract every part shares: observations, actions, outcomes and episode timing.

The Unity side mirrors these constants in C#; a test keeps the two in step, so change them here
first and regenerate the scene.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def outcome_name(code: int) -> str:
    """Name of an outcome code; RUNNING reads as 'running'."""
    return "running" if code == RUNNING else OUTCOMES[code]
