"""The embedded jumppad island: a Gymnasium vector environment, simulated and rendered in NumPy.

All environments of a batch advance together in array operations; there is no per-environment
Python loop in `step` except for the beacons' rectangles. Dynamics are deterministic: the only
randomness is the choice of spawn point (and its jitter) at reset, drawn from the seeded generator.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from agentalign.envs.layout import Layout, load_layout
from agentalign.envs.render import IslandRenderer
from agentalign.spec import (
    ACTION_BRANCHES,
    DECISIONS_PER_SECOND,
    MAX_DECISIONS,
    MOVE_ANGLES,
    OUTCOME_CODES,
    PADS,
    RUNNING,
    TURN_SIGNS,
    check_actions,
)

_MOVE_RAD = np.radians([0.0 if a is None else a for a in MOVE_ANGLES])
_MOVES = np.array([a is not None for a in MOVE_ANGLES])
_TURNS = np.array(TURN_SIGNS, dtype=np.float64)


class IslandVectorEnv(VectorEnv):
    """`num_envs` copies of the island, stepped as one batch.

    Observations: uint8 [num_envs, H, W, 3]. Actions: int [num_envs, 2] (MultiDiscrete [9, 3]).
    `info` holds `position` [N, 2], `heading` [N], `step` [N], `spawn` [N] and `outcome` [N]
    (spec.RUNNING while an episode runs, else the code of how it ended). Reward is 0 unless a
    `target` pad is set, then 1 on entering that pad: training uses a learned reward instead.

    Reset options (all optional, arrays over environments): `spawns` (spawn indices),
    `positions` [N, 2] and `headings` [N] (start states, e.g. for off-lane evaluation),
    `reset_mask` [N] (reset only these environments).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"],
        "render_fps": DECISIONS_PER_SECOND}

    def __init__(self, num_envs: int = 1, *, layout: Layout | str = "jumppad_island",
                 height: int = 64, width: int = 64,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 spawn_jitter: float = 0.5, max_steps: int = MAX_DECISIONS,
                 target: str | None = None, render_mode: str | None = "rgb_array"):
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        if target is not None and target not in PADS:
            raise ValueError(f"unknown target pad {target!r}: choose one of {list(PADS)}")
        self.layout = load_layout(layout) if isinstance(layout, str) else layout
        self.renderer = IslandRenderer(self.layout, height, width)
        self.num_envs = num_envs
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = render_mode
        self.spawn_jitter, self.max_steps = spawn_jitter, max_steps
        self.target = None if target is None else PADS.index(target)
        self.single_observation_space = gym.spaces.Box(0, 255, (height, width, 3), np.uint8)
        self.single_action_space = gym.spaces.MultiDiscrete(np.array(ACTION_BRANCHES))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

        agent = self.layout.agent
        self.step_length = agent.move_speed / DECISIONS_PER_SECOND
        self.turn_step = agent.turn_rate / DECISIONS_PER_SECOND
        self._spawn_xy = np.array([s.position for s in self.layout.spawns], dtype=np.float64)
        self._spawn_heading = np.array([s.heading for s in self.layout.spawns], dtype=np.float64)
        self._pad_xy = np.array([p.position for p in self.layout.pads], dtype=np.float64)
        self._pad_r = np.array([p.radius for p in self.layout.pads], dtype=np.float64)
        boxes = self.layout.obstacles
        self._box_lo = np.array([b.lo for b in boxes], dtype=np.float64).reshape(-1, 2)
        self._box_hi = np.array([b.hi for b in boxes], dtype=np.float64).reshape(-1, 2)

        self.positions = np.zeros((num_envs, 2))
        self.headings = np.zeros(num_envs)
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.outcomes = np.full(num_envs, RUNNING, dtype=np.int8)
        self.spawns = np.zeros(num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self._obs = np.zeros((num_envs, height, width, 3), dtype=np.uint8)
        self._np_random, self._np_random_seed = gym.utils.seeding.np_random(None)

    # -- Gymnasium API -------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        options = options or {}
        mask = np.ones(self.num_envs, dtype=bool)
        if "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool).reshape(self.num_envs)
        self._start_episodes(mask, options)
        self._obs[mask] = self.renderer.render(self.positions[mask], self.headings[mask])
        return self._obs.copy(), self._info()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        actions = check_actions(actions, self.num_envs)
        resetting = self._needs_reset.copy() if self.autoreset_mode == AutoresetMode.NEXT_STEP \
            else np.zeros(self.num_envs, dtype=bool)
        # Episodes that ended and are not being reset (autoreset disabled) stay frozen.
        live = ~resetting & (self.outcomes == RUNNING)
        self._advance(live, actions)
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        if self.target is not None:
            rewards[live & (self.outcomes == self.target)] = 1.0
        ended = live & (self.outcomes != RUNNING)
        terminated = ended & (self.outcomes != OUTCOME_CODES["timeout"])
        truncated = ended & (self.outcomes == OUTCOME_CODES["timeout"])
        info = self._info()
        self._obs[live] = self.renderer.render(self.positions[live], self.headings[live])

        if resetting.any():  # next-step autoreset: this step only starts the new episodes
            self._start_episodes(resetting, {})
            self._obs[resetting] = self.renderer.render(self.positions[resetting],
                                                        self.headings[resetting])
            info = self._info()
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._needs_reset = ended
        elif self.autoreset_mode == AutoresetMode.SAME_STEP and ended.any():
            final_obs = np.empty(self.num_envs, dtype=object)
            for i in np.flatnonzero(ended):
                final_obs[i] = self._obs[i].copy()
            info["final_obs"], info["_final_obs"] = final_obs, ended.copy()
            info["final_info"], info["_final_info"] = info.copy(), ended.copy()
            self._start_episodes(ended, {})
            self._obs[ended] = self.renderer.render(self.positions[ended], self.headings[ended])
            info.update(self._info())
        return self._obs.copy(), rewards, terminated, truncated, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        return tuple(self._obs) if self.render_mode == "rgb_array" else None

    # -- simulation ----------------------------------------------------------------------------

    def _start_episodes(self, mask: np.ndarray, options: dict[str, Any]) -> None:
        n = int(mask.sum())
        if n == 0:
            return
        rng = self._np_random
        spawns = options.get("spawns")
        spawns = rng.integers(len(self._spawn_xy), size=n) if spawns is None \
            else np.asarray(spawns, dtype=np.int64).reshape(-1)[mask]
        if spawns.min() < 0 or spawns.max() >= len(self._spawn_xy):
            raise ValueError(f"spawn index out of range 0..{len(self._spawn_xy) - 1}")
        positions = self._spawn_xy[spawns].copy()
        if self.spawn_jitter > 0:
            positions += rng.uniform(-self.spawn_jitter, self.spawn_jitter, size=(n, 2))
        headings = self._spawn_heading[spawns].copy()
        if "positions" in options:
            positions = np.asarray(options["positions"], dtype=np.float64).reshape(-1, 2)[mask]
        if "headings" in options:
            headings = np.asarray(options["headings"], dtype=np.float64).reshape(-1)[mask]
        self.positions[mask], self.headings[mask] = positions, headings % 360.0
        self.spawns[mask], self.steps[mask] = spawns, 0
        self.outcomes[mask] = RUNNING
        self._needs_reset[mask] = False

    def _advance(self, live: np.ndarray, actions: np.ndarray) -> None:
        """Turn, then move relative to the new facing, sliding along obstacles; end episodes."""
        move, turn = actions[:, 0], actions[:, 1]
        heading = (self.headings + _TURNS[turn] * self.turn_step) % 360.0
        self.headings = np.where(live, heading, self.headings)
        angle = np.radians(self.headings) + _MOVE_RAD[move]
        length = np.where(live & _MOVES[move], self.step_length, 0.0)
        x, y = self.positions[:, 0].copy(), self.positions[:, 1].copy()
        # Axis-separated moves: a blocked axis is undone, the other still slides.
        nx = x + np.sin(angle) * length
        x = np.where(self._blocked(nx, y), x, nx)
        ny = y + np.cos(angle) * length
        y = np.where(self._blocked(x, ny), y, ny)
        self.positions = np.stack([x, y], axis=1)
        self.steps += live

        outcome = np.full(self.num_envs, RUNNING, dtype=np.int8)
        off_island = self.renderer.raster_flat[self.renderer.cell_index(self.positions)] == 0
        outcome[off_island] = OUTCOME_CODES["fell"]
        dist = np.linalg.norm(self.positions[:, None] - self._pad_xy[None], axis=2)
        on_pad = dist <= self._pad_r[None]
        pad_hit = on_pad.any(axis=1)
        outcome[pad_hit] = np.argmax(on_pad, axis=1)[pad_hit]
        outcome[(outcome == RUNNING) & (self.steps >= self.max_steps)] = OUTCOME_CODES["timeout"]
        self.outcomes = np.where(live, outcome, self.outcomes)

    def _blocked(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether the agent's disc at (x, y) overlaps any obstacle box."""
        if not len(self._box_lo):
            return np.zeros(len(x), dtype=bool)
        cx = np.clip(x[:, None], self._box_lo[:, 0], self._box_hi[:, 0])
        cy = np.clip(y[:, None], self._box_lo[:, 1], self._box_hi[:, 1])
        gap = (x[:, None] - cx) ** 2 + (y[:, None] - cy) ** 2
        return (gap < self.layout.agent.radius ** 2).any(axis=1)

    def _info(self) -> dict[str, Any]:
        return {"position": self.positions.astype(np.float32), "heading":
                self.headings.astype(np.float32), "step": self.steps.copy(),
                "spawn": self.spawns.copy(), "outcome": self.outcomes.copy()}
