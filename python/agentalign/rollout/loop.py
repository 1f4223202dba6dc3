"""The one loop that plays episodes: exactly N of them, batched, on either backend.

Every stage that plays (collect, preview, label, prefft, rl, evaluate, export's measurement,
play) comes here, so a policy's numbers and its teachers' numbers come from the same code.

Two ways to start episodes:
- chosen starts (`Starts`): episode k starts at starts[k], whichever row plays it; the start
  reaches the environment through reset options (Unity: the `start_*` environment parameters
  with a reset of the row's build), rounded to float32 as Unity's transforms hold them, so for
  the same seed both backends play the same episodes;
- the environment's own starts (`starts=None`): each row's autoreset picks a spawn (collect,
  whose corpora stay exactly as its per-shard streams made them).

A row that ends an episode starts the next unplayed one; once N have started, finished rows
idle (their actions are zeros) and only the N started episodes are counted. An episode cut short
by a crashed Unity build is not counted: the row plays the same episode again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from agentalign import events
from agentalign.envs.factory import make_env
from agentalign.envs.intents import Track
from agentalign.envs.layout import Layout, load_layout
from agentalign.errors import ConfigError, UserError
from agentalign.rollout.actors import Actor
from agentalign.rollout.starts import Starts
from agentalign.spec import MAX_DECISIONS, RUNNING


@dataclass
class Episode:
    """One finished episode."""

    index: int  # k: it started at starts[k] (or was the k-th to start)
    outcome: int  # spec.OUTCOMES code
    spawn: int
    kind: str  # start kind (rollout.starts.START_KINDS)
    length: int  # decisions taken
    positions: np.ndarray  # float32 [length + 1, 2]: the start, then after each decision
    headings: np.ndarray  # float32 [length + 1]
    actions: np.ndarray  # int64 [length, 2]
    frames: np.ndarray | None = None  # uint8 [length + 1, H, W, 3] for recorded episodes
    order: int = 0  # the how-many-th episode to finish

    def track(self) -> Track:
        """What a designer intent reads of it (envs.intents): positions, outcome, length."""
        return Track(self.positions[:self.length + 1], self.outcome, self.length)


@dataclass
class Rollout:
    episodes: list[Episode]  # ordered by index
    seconds: float
    env_steps: int = 0  # batched steps taken (each steps every row)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def decisions(self) -> int:
        return sum(e.length for e in self.episodes)


def rollout_env(spec: str, rows: int, layout: Layout | str = "jumppad_island", height: int = 64,
                width: int = 64, max_steps: int = MAX_DECISIONS, spawn_jitter: float = 0.0
                ) -> VectorEnv:
    """The environment `play` plays in, for a caller that reuses one across rollouts of `rows`
    rows (close it when done): same-step autoreset; no spawn jitter for chosen starts."""
    return make_env(spec, rows, layout=layout, height=height, width=width,
                    spawn_jitter=spawn_jitter, autoreset_mode=AutoresetMode.SAME_STEP,
                    max_steps=max_steps)


def play(actor: Actor, starts: Starts | None, *, episodes: int | None = None,
         env: str | VectorEnv = "island", num_envs: int = 64,
         layout: Layout | str = "jumppad_island", height: int = 64, width: int = 64,
         max_steps: int = MAX_DECISIONS, seed: int = 0, spawn_jitter: float = 0.5,
         record_frames: int = 4, progress: bool = False, stage: str = "play",
         first: int = 0) -> Rollout:
    """Play the episodes `starts` describes (or `episodes` from the environment's own starts),
    `num_envs` at a time, and return all of them.

    `env` is a `--env` value (island, unity, unity:PATH), made here and closed at the end, or
    an environment made by the caller (`rollout_env`) with `min(num_envs, N)` rows, same-step
    autoreset and `max_steps` (reused across calls, e.g. by RL iterations, and left open).
    `spawn_jitter` applies to the environment's own starts only. Frames are kept for episodes
    0..record_frames-1; positions, headings and actions for all. `first`: the index of
    `starts[0]` in a larger rollout whose part this is (rollout.cluster plays the parts of one
    on several machines): episodes are numbered, and draw their streams, from there.
    """
    total = len(starts) if starts is not None else (episodes or 0)
    if total < 1:
        raise ConfigError(f"{stage}: episodes must be at least 1, got {total}")
    if num_envs < 1:
        raise ConfigError(f"{stage}: num_envs must be at least 1, got {num_envs}")
    layout = load_layout(layout) if isinstance(layout, str) else layout
    rows = min(num_envs, total)
    if isinstance(env, str):
        vector = rollout_env(env, rows, layout, height, width, max_steps,
                             spawn_jitter if starts is None else 0.0)
    elif env.num_envs != rows:
        raise ValueError(f"play: the environment given has {env.num_envs} rows, not "
                         f"min(num_envs, episodes) = {rows}")
    else:
        vector = env
    try:
        return _Loop(actor, starts, total, vector, record_frames, seed, first).run(
            progress, stage, {
            "num_envs": rows, "height": height, "width": width, "max_steps": max_steps,
            "seed": seed})
    finally:
        if vector is not env:
            vector.close()  # a unity backend's builds quit here


class _Loop:
    """The state of one `play` call: which episode each row plays and what it recorded."""

    def __init__(self, actor: Actor, starts: Starts | None, total: int, env: VectorEnv,
                 record_frames: int, seed: int, first: int = 0) -> None:
        self.actor, self.starts, self.total, self.env = actor, starts, total, env
        self.record_frames, self.seed, self.first = record_frames, seed, first
        rows = env.num_envs
        self.episode_of = np.arange(rows)  # the episode each row plays; -1 once the row idles
        self.tracks: list[list[np.ndarray]] = [[] for _ in range(rows)]
        self.turns: list[list[np.ndarray]] = [[] for _ in range(rows)]
        self.moves: list[list[np.ndarray]] = [[] for _ in range(rows)]
        self.films: list[list[np.ndarray]] = [[] for _ in range(rows)]
        self.finished: list[Episode] = []
        if starts is not None:  # float32, as Unity's transforms hold positions
            self.positions = starts.positions.astype(np.float32).astype(np.float64)
            self.headings = starts.headings.astype(np.float32).astype(np.float64)

    def start(self, starting: np.ndarray, obs: np.ndarray | None, info: dict[str, Any] | None,
              reset_seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Begin episodes on the `starting` rows: reset them to their chosen starts, or (own
        starts) take the state the environment's reset or autoreset gave them."""
        if self.starts is not None:
            k = np.where(starting, self.episode_of, 0)
            options = {"reset_mask": starting, "spawns": self.starts.spawns[k],
                       "positions": self.positions[k], "headings": self.headings[k]}
            obs, info = self.env.reset(seed=reset_seed, options=options)
            self._check_placed(info, starting, k)
        elif obs is None or info is None:
            obs, info = self.env.reset(seed=reset_seed)
        self.actor.begin(starting, self.episode_of + self.first, self.seed)
        for row in np.flatnonzero(starting):
            self.tracks[row], self.moves[row] = [info["position"][row].copy()], []
            self.turns[row] = [np.float32(info["heading"][row])]
            recorded = self.first + self.episode_of[row] < self.record_frames
            self.films[row] = [obs[row]] if recorded else []
        return obs, info

    def _check_placed(self, info: dict[str, Any], starting: np.ndarray, k: np.ndarray) -> None:
        placed = np.asarray(info["position"], dtype=np.float64)[starting]
        error = np.abs(placed - self.positions[k][starting])
        if (error > 1e-3).any() and np.isfinite(placed).all():  # NaN: a build without records
            worst = error.max(1).argmax()
            raise UserError("the environment did not start the episodes where asked (e.g. "
                            f"{placed[worst].round(2).tolist()} for "
                            f"{self.positions[k][starting][worst].round(2).tolist()}): a Unity "
                            "build must honour the start_* environment parameters "
                            "(docs/unity.md)")

    def run(self, show: bool, stage: str, settings: dict[str, Any]) -> Rollout:
        rows, total = self.env.num_envs, self.total
        started_at, env_steps, next_episode = time.perf_counter(), 0, rows
        with torch.inference_mode(), events.progress(stage, total, unit="ep", show=show) as bar:
            obs, info = self.start(np.ones(rows, dtype=bool), None, None, reset_seed=self.seed)
            while len(self.finished) < total:
                actions = np.asarray(self.actor.act(obs, info), dtype=np.int64)
                actions[self.episode_of < 0] = 0  # idle rows stand still
                obs, _, terminated, truncated, info = self.env.step(actions)
                env_steps += 1
                ended = terminated | truncated
                final = info.get("final_info", info)
                # A Unity build that crashed mid-episode: the episode is lost, not ended by the
                # game; the row plays the same episode again (on the relaunched build).
                lost = ended & (np.asarray(final.get("interrupted", np.zeros(rows, bool)),
                                           dtype=bool) | (final["outcome"] == RUNNING))
                for row in np.flatnonzero(self.episode_of >= 0):
                    done = bool(ended[row])
                    after = final if done else info
                    self.tracks[row].append(after["position"][row].copy())
                    self.turns[row].append(np.float32(after["heading"][row]))
                    self.moves[row].append(actions[row])
                    if self.films[row]:
                        self.films[row].append(info["final_obs"][row] if done else obs[row])
                    if done and not lost[row]:
                        self._finish(row, final)
                        bar.update(1)
                restart = ended & (self.episode_of >= 0)
                for row in np.flatnonzero(restart & ~lost):
                    self.episode_of[row] = next_episode if next_episode < total else -1
                    next_episode += 1 if next_episode < total else 0
                restart &= self.episode_of >= 0
                if restart.any():
                    obs, info = self.start(restart, obs, info)
        self.finished.sort(key=lambda e: e.index)
        return Rollout(self.finished, time.perf_counter() - started_at, env_steps, settings)

    def _finish(self, row: int, final: dict[str, Any]) -> None:
        k = int(self.episode_of[row])
        own = self.starts is None
        self.finished.append(Episode(
            index=self.first + k, outcome=int(final["outcome"][row]),
            spawn=int(final["spawn"][row]) if own else int(self.starts.spawns[k]),
            kind="spawn" if own else str(self.starts.kinds[k]),
            length=int(final["step"][row]), positions=np.stack(self.tracks[row]),
            headings=np.array(self.turns[row], dtype=np.float32),
            actions=np.stack(self.moves[row]),
            frames=np.stack(self.films[row]) if self.films[row] else None,
            order=len(self.finished)))
