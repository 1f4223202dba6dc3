"""The `unity` backend: the island's Gymnasium vector API, played by Unity over ML-Agents.

`UnityVectorEnv` drives one or more `mlagents_envs.UnityEnvironment`s: the editor (port 5004,
after a press of Play) or N headless builds (`worker_id`s, one port each), and presents them as
one `VectorEnv` with the embedded island's observations (uint8 [N, H, W, 3]), actions
(MultiDiscrete [9, 3]), rewards, terminations and `info` (position, heading, step, spawn,
outcome), so training and evaluation code never knows which backend it drives.

How ML-Agents' steps map onto the vector API:
- Rows are agents. Each worker contributes the agents it reports at reset, in the order they
  first ask for a decision; the total must be `num_envs`.
- An agent's id is its episode id: an episode that ends arrives as a terminal step (old id) and
  its successor as a decision step (new id) in the same message; the new id takes the freed row
  (agents are interchangeable, so any pairing is a valid episode stream). That is same-step
  autoreset natively; next-step autoreset holds the successor's first frame back one call.
- Terminal steps with `interrupted` (the agent's MaxStep) are truncations; others terminations.
- Positions, headings, step counts and outcomes come from the outcome side channel
  (`agentalign.spec.OUTCOME_CHANNEL_ID`), which the Unity agent fills every decision; the spawn
  point is the layout spawn nearest to an episode's first position.
- Time scale goes through EngineConfigurationChannel; the target pad, `reset(seed=...)` and
  chosen starts (`reset(options=...)`) through EnvironmentParametersChannel (`target_pad`,
  `spawn_seed`, `start_*`); worker k is seeded with seed + k. A reset restarts whole workers:
  with one agent per build (the default) that is per row, as the island's `reset_mask`.

When a build crashes or stops answering (`timeout_wait` seconds), it is killed and relaunched
(on its port if free again, else the next free one) and the rollout continues. The episode in
flight on that build is lost: the step that noticed the failure reports it **truncated** with
`info["interrupted"]` True and outcome RUNNING (it never ended in the game), its final
observation is the last one seen, and the row continues with a fresh episode from the new build
(next-step autoreset: at the following call). Other rows are unaffected. A worker that fails
more than `max_restarts` times, or the editor (which cannot be restarted from here), raises
`EngineError`.
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from agentalign.envs import mlagents_compat
from agentalign.envs.layout import Layout, load_layout
from agentalign.envs.unity_builds import (
    BUILD_BASE_PORT,
    EDITOR_PORT,
    EngineError,
    _Ended,
    _layout_argument,
    _resolve_executable,
    _RowState,
    _Worker,
    _write_state,
    free_worker_ids,
)
from agentalign.envs.unity_workers import UnityWorkers
from agentalign.spec import (
    ACTION_BRANCHES,
    DECISIONS_PER_SECOND,
    NO_TARGET,
    OUTCOME_CHANNEL_ID,
    PADS,
    RUNNING,
    START_HEADING_PARAMETER,
    START_NONE,
    START_SPAWN_PARAMETER,
    START_X_PARAMETER,
    START_Y_PARAMETER,
    TARGET_PARAMETER,
    check_actions,
)

__all__ = ["BUILD_BASE_PORT", "EDITOR_PORT", "EngineError", "UnityVectorEnv", "free_worker_ids"]

mlagents_compat.install()  # before anything imports mlagents_envs' message modules
# mlagents-envs compares versions with distutils' StrictVersion at every connection.
warnings.filterwarnings("ignore", "distutils Version classes are deprecated", DeprecationWarning)

log = logging.getLogger("agentalign.unity")


class UnityVectorEnv(UnityWorkers, VectorEnv):
    """`num_envs` Unity agents as one Gymnasium vector environment (see the module docstring).

    `file_name=None` waits for the editor on `base_port` (default 5004) after Play is pressed;
    otherwise `workers` builds (default: one per row) are launched on ports
    `base_port + worker_id` (default base 5005; free ids are picked when `worker_id` is None).
    Each build hosts num_envs / workers agents. `height`/`width` must match the build's camera
    sensor; they, the agents per build, `layout`, `spawn_jitter` and `max_steps` go on the
    build's command line (the stand-in player honours them; a Unity build ignores what its
    scripts do not read). `timeout_wait` is how long a silent build has before it is restarted.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"],
        "render_fps": DECISIONS_PER_SECOND}

    def __init__(self, num_envs: int = 1, *, file_name: str | None = None,
                 workers: int | None = None, worker_id: int | None = None,
                 base_port: int | None = None, seed: int = 0, time_scale: float = 20.0,
                 target: str | None = None, height: int = 64, width: int = 64,
                 layout: Layout | str = "jumppad_island", spawn_jitter: float | None = None,
                 max_steps: int | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 timeout_wait: int = 60, max_restarts: int = 3, log_folder: str | None = None,
                 no_graphics: bool = False, additional_args: list[str] | None = None,
                 render_mode: str | None = "rgb_array"):
        mlagents_compat.require_mlagents()
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        if target is not None and target not in PADS:
            raise ValueError(f"unknown target pad {target!r}: choose one of {list(PADS)}")
        if timeout_wait < 10:  # mlagents polls the build every timeout_wait // 10 seconds
            raise ValueError("timeout_wait must be at least 10 seconds")
        self.layout = load_layout(layout) if isinstance(layout, str) else layout
        self.num_envs = num_envs
        self.file_name = None if file_name is None else _resolve_executable(file_name)
        workers = 1 if file_name is None else (workers or num_envs)
        if file_name is None and (workers != 1 or worker_id not in (None, 0)):
            raise ValueError("the editor is one worker (worker_id 0)")
        if num_envs % workers:
            raise ValueError(f"{num_envs} rows do not split over {workers} workers")
        self.base_port = base_port if base_port is not None else (
            EDITOR_PORT if file_name is None else BUILD_BASE_PORT)
        self.fixed_worker_id = worker_id
        self.seed = seed
        self.time_scale = time_scale
        self.target = None if target is None else PADS.index(target)
        self.height, self.width = height, width
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = render_mode
        self.timeout_wait, self.max_restarts = timeout_wait, max_restarts
        self.log_folder = log_folder
        # Camera sensors render: a real build needs graphics (under Xvfb on a headless server).
        self.no_graphics = no_graphics
        self.per_worker = num_envs // workers
        args = list(additional_args or [])
        args += ["--obs-height", str(height), "--obs-width", str(width),
                 "--num-agents", str(self.per_worker)]
        args += ["--layout", _layout_argument(layout, self.layout)]
        if spawn_jitter is not None:
            args += ["--spawn-jitter", str(spawn_jitter)]
        if max_steps is not None:
            args += ["--max-steps", str(max_steps)]
        self.additional_args = args
        self.single_observation_space = gym.spaces.Box(0, 255, (height, width, 3), np.uint8)
        self.single_action_space = gym.spaces.MultiDiscrete(np.array(ACTION_BRANCHES))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.behavior_name: str | None = None
        self._spawn_xy = np.array([s.position for s in self.layout.spawns], dtype=np.float64)

        self.positions = np.full((num_envs, 2), np.nan)
        self.headings = np.full(num_envs, np.nan)
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.outcomes = np.full(num_envs, RUNNING, dtype=np.int8)
        self.spawns = np.full(num_envs, -1, dtype=np.int64)
        self._obs = np.zeros((num_envs, height, width, 3), dtype=np.uint8)
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self._warned_no_outcomes = False
        self._reset_seed = seed
        self._workers = [_Worker(index=k, seed=seed + k) for k in range(workers)]
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        self.restarts = 0
        try:
            self._map(self._launch, self._workers)
        except BaseException:
            self.close()
            raise

    # -- Gymnasium API -------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the workers; `seed` reseeds worker k with seed + k.

        An ML-Agents reset is global to its environment, so the island's per-row options map
        onto whole workers: `reset_mask` (bool [N]) must cover each worker's rows entirely or
        not at all, and only those workers reset (the others' episodes go on). Chosen starts
        (`spawns`, `positions`, `headings`, arrays over rows as for the island) go to each
        resetting build as the `start_*` environment parameters (agentalign.spec), which it
        applies to the episodes its next reset begins; they are scalars per build, so they need
        one agent per build (`workers=num_envs`, the default for builds)."""
        options = dict(options or {})
        if unknown := set(options) - {"reset_mask", "spawns", "positions", "headings"}:
            raise ValueError(f"unknown reset options {sorted(unknown)}")
        mask = options.pop("reset_mask", None)
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else \
            np.asarray(mask, dtype=bool).reshape(self.num_envs)
        workers = []
        for w in self._workers:
            rows = self._worker_rows(w)
            if mask[rows].all():
                workers.append(w)
            elif mask[rows].any():
                raise ValueError(f"reset_mask covers part of worker {w.index}'s rows {rows}: "
                                 "an ML-Agents reset restarts every agent of its build")
        starts = {k: v for k, v in options.items() if v is not None}
        if starts and self.per_worker != 1:
            raise ValueError(f"chosen starts need one agent per build ({self.per_worker} per "
                             f"worker here): use workers=num_envs")
        if seed is not None:
            self._reset_seed = seed
            for w in self._workers:
                w.seed = seed + w.index
        if starts:
            for w in workers:
                self._send_start(w, self._worker_rows(w)[0], starts)
        self._map(self._reset_worker, workers, seed is not None)
        if "spawns" in starts:  # the spawn asked for, not the nearest one (a start may be moved)
            spawns = np.asarray(starts["spawns"], dtype=np.int64).reshape(self.num_envs)
            self.spawns[mask] = spawns[mask]
        self._needs_reset[mask] = False
        return self._obs.copy(), self._info()

    def _worker_rows(self, w: _Worker) -> list[int]:
        return w.rows or list(range(w.index * self.per_worker, (w.index + 1) * self.per_worker))

    def _send_start(self, w: _Worker, row: int, starts: dict[str, Any]) -> None:
        """Queue the start_* parameters placing worker `w`'s agent as row `row` of `starts`."""
        spawn = float(np.asarray(starts["spawns"]).reshape(-1)[row]) if "spawns" in starts \
            else START_NONE
        xy = np.asarray(starts["positions"], dtype=np.float64).reshape(-1, 2)[row] \
            if "positions" in starts else (np.nan, np.nan)
        heading = float(np.asarray(starts["headings"]).reshape(-1)[row]) % 360.0 \
            if "headings" in starts else np.nan
        w.start = (spawn, float(xy[0]), float(xy[1]), float(heading))
        self._queue_start(w)

    def _queue_start(self, w: _Worker) -> None:
        if w.start is not None:
            for key, value in zip((START_SPAWN_PARAMETER, START_X_PARAMETER, START_Y_PARAMETER,
                                   START_HEADING_PARAMETER), w.start, strict=True):
                w.parameters_channel.set_float_parameter(key, value)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        if self.behavior_name is None:
            raise RuntimeError("call reset() before step(): the engine has no agents yet")
        actions = check_actions(actions, self.num_envs)
        n = self.num_envs
        rewards = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        interrupted = np.zeros(n, dtype=bool)
        # Next-step autoreset: rows whose episode ended last call show their successor's first
        # frame now. The engine started that successor already; a worker whose rows all wait
        # is not stepped at all this call, so no decision is skipped. (A worker with several
        # agents must step: its waiting agents idle through one decision.)
        resetting = self._needs_reset.copy()
        todo = [w for w in self._workers if not resetting[w.rows].all()]
        ended: dict[int, _Ended] = {}
        for result in self._map(self._step_worker, todo, actions, resetting):
            for row, reward in result.rewards.items():
                rewards[row] = reward
            for row, end in result.ended.items():
                ended[row] = end
                truncated[row] = end.interrupted or end.lost
                terminated[row] = not truncated[row]
                interrupted[row] = end.lost
        obs = self._obs.copy()
        info = self._info()
        info["interrupted"] = interrupted
        rows = sorted(ended)
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            if rows:  # obs and info already show the successors; the ends go in final_*
                final_obs = np.empty(n, dtype=object)
                final = self._info()
                final["interrupted"] = interrupted.copy()
                for row in rows:
                    final_obs[row] = ended[row].frame
                    _write_state(final, row, ended[row].state)
                info["final_obs"], info["_final_obs"] = final_obs, mask
                info["final_info"], info["_final_info"] = final, mask.copy()
        else:  # show the ends now; the engine's state (the successors) shows next call
            for row in rows:
                obs[row] = ended[row].frame
                _write_state(info, row, ended[row].state)
            self._needs_reset = mask
        return obs, rewards, terminated, truncated, info

    def set_target(self, target: str | None) -> None:
        """Change the rewarded pad; the engine applies it from the next exchange."""
        if target is not None and target not in PADS:
            raise ValueError(f"unknown target pad {target!r}: choose one of {list(PADS)}")
        self.target = None if target is None else PADS.index(target)
        for w in self._workers:
            if w.parameters_channel is not None:
                w.parameters_channel.set_float_parameter(TARGET_PARAMETER, self._target_value())

    def worker_processes(self) -> list[int | None]:
        """Process id of each worker's build (None for the editor or a worker being replaced)."""
        return [getattr(getattr(w.env, "_process", None), "pid", None) for w in self._workers]

    def render(self) -> tuple[np.ndarray, ...] | None:
        return tuple(self._obs) if self.render_mode == "rgb_array" else None

    def close(self, **kwargs: Any) -> None:
        workers = [w for w in getattr(self, "_workers", []) if w.env is not None]
        if workers:
            self._map(self._shutdown, workers, False)
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        super().close(**kwargs)

    # -- rows ----------------------------------------------------------------------------------

    def _frames(self, obs: np.ndarray) -> np.ndarray:
        """Camera observations as ML-Agents decodes them (float CHW in 0..1) back to uint8 HWC."""
        return np.rint(np.asarray(obs) * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)

    def _check_spec(self, spec: Any) -> None:
        shapes = [tuple(o.shape) for o in spec.observation_specs]
        expected = (3, self.height, self.width)
        if not shapes or shapes[0] != expected:
            raise EngineError(f"the build's first observation has shape "
                              f"{shapes[0] if shapes else None}, expected a {expected} camera "
                              "(CHW); match --set height/width to its camera sensor")
        branches = tuple(spec.action_spec.discrete_branches)
        if branches != ACTION_BRANCHES or spec.action_spec.continuous_size:
            raise EngineError(f"the build's actions are {spec.action_spec}, expected discrete "
                              f"branches {ACTION_BRANCHES}")

    def _target_value(self) -> float:
        return NO_TARGET if self.target is None else float(self.target)

    def _start_row(self, row: int, record: tuple | None) -> None:
        self.steps[row] = 0
        self._update_row(row, record)
        if record is None:
            self.spawns[row] = -1
        else:  # the layout spawn nearest to where the episode starts
            distance = np.linalg.norm(self._spawn_xy - np.array(record[2:4]), axis=1)
            self.spawns[row] = int(np.argmin(distance))

    def _update_row(self, row: int, record: tuple | None) -> None:
        """Take a row's position, heading, step and outcome from its outcome-channel record."""
        if record is None:
            if not self._warned_no_outcomes:
                log.warning("the build sends no outcome-channel records (%s); positions and "
                            "outcomes are unknown", OUTCOME_CHANNEL_ID)
                self._warned_no_outcomes = True
            self.positions[row], self.headings[row] = np.nan, np.nan
            self.steps[row] += 1
            return
        _, step, x, y, heading, outcome = record
        self.positions[row] = (x, y)
        self.headings[row] = heading
        self.steps[row] = step
        self.outcomes[row] = outcome

    def _state(self, row: int) -> _RowState:
        return _RowState(int(self.steps[row]), (float(self.positions[row][0]),
                         float(self.positions[row][1])), float(self.headings[row]),
                         int(self.spawns[row]), int(self.outcomes[row]))

    def _info(self) -> dict[str, Any]:
        return {"position": self.positions.astype(np.float32),
                "heading": self.headings.astype(np.float32), "step": self.steps.copy(),
                "spawn": self.spawns.copy(), "outcome": self.outcomes.copy()}
