"""Live play on the Personalities page: a personality's exported ONNX, as Unity runs it, on the
embedded island, one decision per request.

A session is one island and one onnxruntime agent. Swapping personalities mid-episode starts the
new one with an empty context (zeroed memory), as the gRPC server does; restarting puts the
agent back on a chosen spawn. Sessions idle for IDLE_S are closed; at most MAX_SESSIONS live.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentalign.envs.island import IslandVectorEnv
from agentalign.spec import OUTCOMES, RUNNING
from agentalign.studio.media import map_path, png
from agentalign.studio.state import StudioError

MAX_SESSIONS = 8
IDLE_S = 300.0


def _agent(model: Path) -> Any:
    """One agent through onnxruntime (imported here: it brings torch and onnx, which the
    studio's pages do not need to start)."""
    from agentalign.export.onnx_agent import OnnxAgent

    return OnnxAgent(model, 1, threads=1)


@dataclass
class Session:
    personality: str
    env: IslandVectorEnv
    agent: Any  # OnnxAgent
    spawn: int
    frame: np.ndarray
    path: list[np.ndarray] = field(default_factory=list)
    outcome: str | None = None
    used: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Player:
    def __init__(self, personalities: list[Path]):
        self.folders = personalities  # where NAME.onnx files are looked up, in order
        self.sessions: dict[str, Session] = {}
        self.lock = threading.Lock()

    def model(self, name: str) -> Path:
        for folder in self.folders:
            if (folder / f"{name}.onnx").exists():
                return folder / f"{name}.onnx"
        raise StudioError(f"no exported personality {name!r}: align and export it first")

    def start(self, personality: str, spawn: int = 0) -> tuple[str, dict[str, Any]]:
        with self.lock:
            for key in [k for k, s in self.sessions.items() if time.time() - s.used > IDLE_S]:
                del self.sessions[key]
            if len(self.sessions) >= MAX_SESSIONS:
                raise StudioError(f"{MAX_SESSIONS} live sessions are open; close one (or wait "
                                  f"{IDLE_S:.0f} s for an idle one to close)")
        env = IslandVectorEnv(1, spawn_jitter=0.0)
        agent = _agent(self.model(personality))
        session = Session(personality, env, agent, spawn, np.zeros(0))
        self._restart(session, spawn)
        key = uuid.uuid4().hex
        with self.lock:
            self.sessions[key] = session
        return key, self._view(session)

    def session(self, key: str) -> Session:
        session = self.sessions.get(key)
        if session is None:
            raise StudioError("unknown or closed play session: start another")
        session.used = time.time()
        return session

    def _restart(self, session: Session, spawn: int) -> None:
        spawns = len(session.env.layout.spawns)
        if not 0 <= spawn < spawns:
            raise StudioError(f"spawn {spawn}: the island has spawns 0..{spawns - 1}")
        obs, info = session.env.reset(options={"spawns": np.array([spawn])})
        session.agent.begin(np.array([True]))
        session.spawn, session.frame, session.outcome = spawn, obs[0], None
        session.path = [info["position"][0].copy()]

    def restart(self, key: str, spawn: int) -> dict[str, Any]:
        session = self.session(key)
        with session.lock:
            self._restart(session, spawn)
            return self._view(session)

    def swap(self, key: str, personality: str) -> dict[str, Any]:
        session = self.session(key)
        agent = _agent(self.model(personality))  # an empty context
        with session.lock:
            session.agent, session.personality = agent, personality
            return self._view(session)

    def step(self, key: str) -> dict[str, Any]:
        session = self.session(key)
        with session.lock:
            if session.outcome is None:
                actions = session.agent.act(session.frame[None])
                obs, _, _, _, info = session.env.step(actions)
                session.frame = obs[0]
                session.path.append(info["position"][0].copy())
                if int(info["outcome"][0]) != RUNNING:
                    session.outcome = OUTCOMES[int(info["outcome"][0])]
            return self._view(session)

    def close(self, key: str) -> None:
        with self.lock:
            self.sessions.pop(key, None)

    @staticmethod
    def _view(session: Session) -> dict[str, Any]:
        frame = base64.b64encode(png(session.frame[None])).decode()
        return {"personality": session.personality, "spawn": session.spawn,
                "step": len(session.path) - 1, "outcome": session.outcome,
                "frame": f"data:image/png;base64,{frame}",
                "path": map_path(session.env.layout, np.array(session.path))}
