"""What the `unity` backend keeps about its builds: ports, worker ids, executables, state.

A build listens on `BUILD_BASE_PORT + worker_id` (the editor on `EDITOR_PORT`); a file lock
keeps two processes from choosing the same free port. Also here: the records `UnityVectorEnv`
keeps per worker and per row, and the outcome side channel through which the Unity agent
reports every step (its class is built on first use, so importing this does not import
mlagents_envs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentalign.envs.layout import Layout
from agentalign.errors import UserError
from agentalign.spec import OUTCOME_CHANNEL_ID, RUNNING, unpack_outcomes

EDITOR_PORT = 5004
BUILD_BASE_PORT = 5005
_PORT_LOCK = Path(tempfile.gettempdir()) / "agentalign-unity-ports.lock"


class EngineError(UserError):
    """The engine link failed in a way a restart cannot fix (or the build does not fit)."""


@dataclass
class _Worker:
    """One UnityEnvironment (a build, or the editor) and the rows of the vector it serves."""

    index: int
    seed: int
    worker_id: int = 0
    env: Any = None
    outcome_channel: Any = None
    parameters_channel: Any = None
    engine_channel: Any = None
    rows: list[int] = field(default_factory=list)
    agent_ids: list[int] = field(default_factory=list)  # current episode id per row
    decision_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    restarts: int = 0
    start: tuple[float, float, float, float] | None = None  # start_* for its next reset


@dataclass(frozen=True)
class _RowState:
    """What `info` reports for a row: its episode's step, position, heading, spawn, outcome."""

    step: int
    position: tuple[float, float]
    heading: float
    spawn: int
    outcome: int


@dataclass
class _Ended:
    """An episode that ended this step: its last frame and state, and how it ended."""

    frame: np.ndarray
    state: _RowState
    interrupted: bool = False  # the agent's MaxStep (a timeout): truncated
    lost: bool = False  # its build crashed or went silent: truncated, outcome RUNNING


@dataclass
class _StepResult:
    rewards: dict[int, float]
    ended: dict[int, _Ended]


def _write_state(info: dict[str, Any], row: int, state: _RowState) -> None:
    info["step"][row] = state.step
    info["position"][row] = state.position
    info["heading"][row] = state.heading
    info["spawn"][row] = state.spawn
    info["outcome"][row] = state.outcome


def _outcome_channel_class() -> type:
    from mlagents_envs.side_channel.side_channel import SideChannel

    class OutcomeChannel(SideChannel):
        """Receives the Unity agent's per-step records: id, step, x, y, heading, outcome."""

        def __init__(self) -> None:
            super().__init__(uuid.UUID(OUTCOME_CHANNEL_ID))
            self.records: dict[int, tuple[int, int, float, float, float, int]] = {}
            # A record that ends an episode is kept apart: if the engine reuses an agent's id
            # for its next episode, that episode's first record must not overwrite the outcome.
            self.finals: dict[int, tuple[int, int, float, float, float, int]] = {}

        def on_message_received(self, msg: Any) -> None:
            for record in unpack_outcomes(bytes(msg.buffer)):
                (self.finals if record[5] != RUNNING else self.records)[record[0]] = record

    return OutcomeChannel


def free_worker_ids(count: int, base_port: int = BUILD_BASE_PORT, start: int = 0) -> list[int]:
    """`count` worker ids from `start` on whose ports (base_port + id) nothing listens.

    The check binds 127.0.0.1 the way mlagents' own check does; call it under `_port_lock()`
    and keep the lock until the servers are bound, so two processes cannot pick the same port.
    """
    chosen: list[int] = []
    worker_id = start
    while len(chosen) < count:
        port = base_port + worker_id
        if port > 65535:
            raise EngineError(f"no free ports above {base_port} for {count} Unity workers")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                chosen.append(worker_id)
            except OSError:
                pass
        worker_id += 1
    return chosen


@contextlib.contextmanager
def _port_lock() -> Any:
    from filelock import FileLock

    with FileLock(str(_PORT_LOCK), timeout=120):
        yield


def _resolve_executable(file_name: str) -> str:
    """A path, or a command on PATH (e.g. the installed `agentalign-island-player`)."""
    if os.path.exists(file_name) or os.sep in file_name:
        return file_name
    found = shutil.which(file_name)
    return found if found else file_name


def _layout_argument(given: Layout | str, layout: Layout) -> str:
    """How a build's command line names the layout: a packaged name or a file path."""
    if isinstance(given, str):
        return given
    packaged = layout.source.removeprefix("<packaged>/")
    return packaged.removesuffix(".json") if packaged != layout.source else layout.source


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
