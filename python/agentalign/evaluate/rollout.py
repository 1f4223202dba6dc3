"""Rollouts: play exactly N episodes with batched acting, and keep what they did.

One loop serves every actor: a Policy (KV-cached, one new token per decision, sampled actions as
deployed or greedy) and the scripted players alike, so a policy's numbers and its teachers'
numbers come from the very same code. Where each episode starts is decided up front (`Starts`):
episode k starts at starts[k] and draws its randomness from (seed, k), whichever environment row
plays it, so the start set does not depend on `num_envs` and two policies evaluated with the same
seed face the same starts. A row that ends an episode starts the next unplayed one; once N have
started, finished rows idle and only the N started episodes are counted.

The episodes run on the backend `env` names (`envs.factory.make_env`: the embedded island, or
Unity over ML-Agents). Chosen starts reach Unity as the `start_*` environment parameters with a
reset of the row's build (one agent per build), so for the same seed both backends play the same
episodes. Starts are rounded to float32, as Unity's transforms hold them, on both backends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from tqdm import tqdm

from agentalign.data.players import Player, Population
from agentalign.envs.factory import make_env
from agentalign.envs.layout import Layout, load_layout
from agentalign.errors import ConfigError, UserError
from agentalign.models.policy import KVCache, Policy, no_previous_action, sample
from agentalign.spec import MAX_DECISIONS

# Separate random streams per episode: (seed, stream, episode index).
STARTS_STREAM, PLAYER_STREAM = 0, 1
START_KINDS: tuple[str, ...] = ("spawn", "shifted", "turned", "shifted_turned")


# -- where episodes start ----------------------------------------------------------------------

@dataclass(frozen=True)
class Starts:
    """The start state of each of N episodes: episode k starts at row k of every array."""

    spawns: np.ndarray  # int [N]: the spawn point the start belongs to (for per-spawn rates)
    positions: np.ndarray  # float [N, 2] metres
    headings: np.ndarray  # float [N] degrees clockwise from north
    kinds: np.ndarray  # str [N]: "spawn" at a spawn point, else how it was moved off the lanes

    def __len__(self) -> int:
        return len(self.spawns)


def spawn_starts(layout: Layout, episodes: int, seed: int, jitter: float = 0.5) -> Starts:
    """The game's own starts: a uniform spawn point, jittered by up to `jitter` metres, facing the
    spawn's heading (what IslandVectorEnv draws at reset, drawn per episode here)."""
    xy = np.array([s.position for s in layout.spawns], dtype=np.float64)
    heading = np.array([s.heading for s in layout.spawns], dtype=np.float64)
    spawns, positions = np.zeros(episodes, dtype=np.int64), np.zeros((episodes, 2))
    for k in range(episodes):
        rng = np.random.default_rng([seed, STARTS_STREAM, k])
        spawns[k] = rng.integers(len(xy))
        positions[k] = xy[spawns[k]] + rng.uniform(-jitter, jitter, size=2)
    return Starts(spawns, positions, heading[spawns], np.full(episodes, "spawn"))


def offlane_starts(layout: Layout, episodes: int, seed: int, config: dict[str, Any]) -> Starts:
    """Starts displaced sideways and/or turned away from the demonstration lanes (configs/
    evaluate.yaml `offlane`, which says why these numbers). Each is redrawn until it is valid."""
    kinds = [k for k in START_KINDS[1:] if config["kinds"].get(k, 0) > 0]
    weights = np.array([config["kinds"][k] for k in kinds], dtype=np.float64)
    xy = np.array([s.position for s in layout.spawns], dtype=np.float64)
    heading = np.array([s.heading for s in layout.spawns], dtype=np.float64)
    spawns, positions = np.zeros(episodes, dtype=np.int64), np.zeros((episodes, 2))
    headings, names = np.zeros(episodes), np.empty(episodes, dtype=object)
    for k in range(episodes):
        rng = np.random.default_rng([seed, STARTS_STREAM, k])
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        for _ in range(1000):
            spawn = int(rng.integers(len(xy)))
            position = xy[spawn] + rng.uniform(-config["jitter"], config["jitter"], size=2)
            if "shifted" in kind:  # sideways = perpendicular to the spawn's facing
                side = np.radians(heading[spawn] + 90.0)
                shift = rng.choice([-1.0, 1.0]) * rng.uniform(*config["shift"])
                position += shift * np.array([np.sin(side), np.cos(side)])
            turn = rng.choice([-1.0, 1.0]) * rng.uniform(*config["turn"]) if "turned" in kind \
                else 0.0
            if not start_problems(layout, position[None], config["min_edge"],
                                  config["obstacle_margin"]):
                break
        else:
            raise ConfigError(f"evaluate: offlane starts found no valid start for episode {k} "
                              "in 1000 tries; loosen offlane.shift or offlane.min_edge")
        spawns[k], positions[k], names[k] = spawn, position, kind
        headings[k] = (heading[spawn] + turn) % 360.0
    return Starts(spawns, positions, headings, names.astype(str))


def start_problems(layout: Layout, positions: np.ndarray, min_edge: float,
                   obstacle_margin: float) -> list[str]:
    """Why any of these start positions [N, 2] is unfit (empty if all are fine): each must be on
    land, `min_edge` metres from the coast, clear of obstacles and off the pads."""
    x, y = positions[:, 0], positions[:, 1]
    problems = []
    if not layout.is_on_island(x, y).all():
        problems.append("off the island")
    if (layout.distance_to_edge(x, y) < min_edge).any():
        problems.append(f"closer than {min_edge} m to the coast")
    if layout.in_obstacle(x, y, margin=layout.agent.radius + obstacle_margin).any():
        problems.append("in or against an obstacle")
    for pad in layout.pads:
        reach = pad.radius + layout.agent.radius + 1.0
        if (np.hypot(x - pad.position[0], y - pad.position[1]) < reach).any():
            problems.append(f"on or next to the {pad.name} pad")
    return problems


# -- who acts ----------------------------------------------------------------------------------

class Actor(Protocol):
    """Anything that plays a batch of environment rows, one decision per row per call."""

    def begin(self, starting: np.ndarray, episodes: np.ndarray) -> None:
        """Rows where `starting` (bool [R]) begin episode `episodes[row]` now; the first call
        has every row starting and tells the actor how many rows there are."""

    def act(self, frames: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        """Actions int [R, 2] from frames uint8 [R, H, W, 3] and the env's info."""


class PolicyActor:
    """A Policy acting through its KV cache: one new token per decision and row.

    Puts the policy in eval mode (acting uses no dropout); a trainer that evaluates mid-run
    calls `train()` again afterwards."""

    def __init__(self, policy: Policy, greedy: bool = False, seed: int = 0) -> None:
        self.policy, self.greedy = policy.eval(), greedy
        self.device = policy.rope_cos.device
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.cache: KVCache | None = None
        self.previous = torch.empty(0)

    def begin(self, starting: np.ndarray, episodes: np.ndarray) -> None:
        rows = torch.as_tensor(starting, device=self.device)
        if self.cache is None or self.cache.batch_size != len(starting):
            self.cache = self.policy.new_cache(len(starting))
            self.previous = no_previous_action(len(starting), self.policy.config.action_branches,
                                               self.device)
        self.cache.reset_rows(rows)
        self.previous[rows] = no_previous_action(int(rows.sum()),
                                                 self.policy.config.action_branches, self.device)

    def act(self, frames: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        pixels = torch.from_numpy(frames).to(self.device)
        assert self.cache is not None, "begin() comes before act()"
        logits, self.cache = self.policy.step(pixels, self.previous, self.cache)
        self.previous = sample(logits, self.greedy, self.generator)
        return self.previous.cpu().numpy()


class PlayerActor:
    """Scripted players from a Population, one per episode, seeded by (seed, episode index)."""

    def __init__(self, population: Population, seed: int = 0) -> None:
        self.population, self.seed = population, seed
        self.players: list[Player | None] = []
        self.targets: dict[int, int] = {}  # episode index -> the pad its player aimed for, -1 none

    def begin(self, starting: np.ndarray, episodes: np.ndarray) -> None:
        if len(self.players) != len(starting):
            self.players = [None] * len(starting)
        for row in np.flatnonzero(starting):
            rng = np.random.default_rng([self.seed, PLAYER_STREAM, int(episodes[row])])
            player = self.population.sample(rng)
            self.players[row], self.targets[int(episodes[row])] = player, player.target

    def act(self, frames: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        return np.array([p.act(info["position"][i], info["heading"][i]) if p else (0, 0)
                         for i, p in enumerate(self.players)], dtype=np.int64)


# -- the loop ----------------------------------------------------------------------------------

@dataclass
class Episode:
    """One finished episode."""

    index: int  # k: it started at starts[k]
    outcome: int  # spec.OUTCOMES code
    spawn: int
    kind: str  # start kind (see START_KINDS)
    length: int  # decisions taken
    positions: np.ndarray  # float32 [length + 1, 2]: the start, then after each decision
    actions: np.ndarray  # int64 [length, 2]
    frames: np.ndarray | None = None  # uint8 [length + 1, H, W, 3], first few episodes only


@dataclass
class Rollout:
    episodes: list[Episode]  # ordered by index
    seconds: float
    env_steps: int = 0  # batched steps taken (each steps every row)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def decisions(self) -> int:
        return sum(e.length for e in self.episodes)


def rollout(actor: Actor, starts: Starts, *, num_envs: int = 64,
            layout: Layout | str = "jumppad_island", height: int = 64, width: int = 64,
            max_steps: int = MAX_DECISIONS, seed: int = 0, record_frames: int = 4,
            progress: bool = True, env: str | VectorEnv = "island") -> Rollout:
    """Play the episodes `starts` describes, `num_envs` at a time, and return all of them.

    `env` is a `--env` value (island, unity, unity:PATH), made here and closed at the end, or
    an environment made by the caller with `min(num_envs, len(starts))` rows, same-step
    autoreset, no spawn jitter and `max_steps` (reused across calls, e.g. by RL iterations, and
    left open). Frames are kept for episodes 0..record_frames-1 (for GIFs); positions and
    actions for all.
    """
    total = len(starts)
    if total < 1:
        raise ConfigError(f"evaluate: episodes must be at least 1, got {total}")
    if num_envs < 1:
        raise ConfigError(f"evaluate: num_envs must be at least 1, got {num_envs}")
    layout = load_layout(layout) if isinstance(layout, str) else layout
    rows = min(num_envs, total)
    if isinstance(env, str):
        vector = rollout_env(env, rows, layout, height, width, max_steps)
    elif env.num_envs != rows:
        raise ValueError(f"rollout: the environment given has {env.num_envs} rows, not "
                         f"min(num_envs, episodes) = {rows}")
    else:
        vector = env
    try:
        return _play(actor, starts, vector, record_frames, progress, seed, {
            "num_envs": rows, "height": height, "width": width, "max_steps": max_steps,
            "seed": seed})
    finally:
        if vector is not env:
            vector.close()  # a unity backend's builds quit here


def rollout_env(spec: str, rows: int, layout: Layout | str = "jumppad_island", height: int = 64,
                width: int = 64, max_steps: int = MAX_DECISIONS) -> VectorEnv:
    """The environment `rollout` plays in, for a caller that reuses one across rollouts of
    `rows` rows (close it when done): same-step autoreset, no spawn jitter (starts are chosen)."""
    return make_env(spec, rows, layout=layout, height=height, width=width, spawn_jitter=0.0,
                    autoreset_mode=AutoresetMode.SAME_STEP, max_steps=max_steps)


def _play(actor: Actor, starts: Starts, env: VectorEnv, record_frames: int, progress: bool,
          seed: int, settings: dict[str, Any]) -> Rollout:
    total, rows = len(starts), env.num_envs
    # Float32, as Unity's transforms hold positions (and the start_* parameters carry them).
    positions = starts.positions.astype(np.float32).astype(np.float64)
    headings = starts.headings.astype(np.float32).astype(np.float64)
    episode_of = np.arange(rows)  # the episode each row plays; -1 once the row is idle
    tracks: list[list[np.ndarray]] = [[] for _ in range(rows)]
    moves: list[list[np.ndarray]] = [[] for _ in range(rows)]
    films: list[list[np.ndarray]] = [[] for _ in range(rows)]
    finished: list[Episode] = []
    started_at, env_steps = time.perf_counter(), 0

    def start(starting: np.ndarray, seed: int | None = None) -> tuple[np.ndarray, dict]:
        k = np.where(starting, episode_of, 0)
        options = {"reset_mask": starting, "spawns": starts.spawns[k],
                   "positions": positions[k], "headings": headings[k]}
        obs, info = env.reset(seed=seed, options=options)
        placed = np.asarray(info["position"], dtype=np.float64)[starting]
        error = np.abs(placed - positions[k][starting])
        if (error > 1e-3).any() and np.isfinite(placed).all():  # NaN: a build without records
            raise UserError("the environment did not start the episodes where asked (e.g. "
                            f"{placed[error.max(1).argmax()].round(2).tolist()} for "
                            f"{positions[k][starting][error.max(1).argmax()].round(2).tolist()}"
                            "): a Unity build must honour the start_* environment parameters "
                            "(docs/unity.md)")
        actor.begin(starting, episode_of)
        for row in np.flatnonzero(starting):
            tracks[row], moves[row] = [info["position"][row].copy()], []
            films[row] = [obs[row]] if episode_of[row] < record_frames else []
        return obs, info

    next_episode = rows
    with torch.inference_mode(), tqdm(total=total, unit="ep", desc="evaluate",
                                      disable=not progress) as bar:
        obs, info = start(np.ones(rows, dtype=bool), seed=seed)
        while len(finished) < total:
            actions = np.asarray(actor.act(obs, info), dtype=np.int64)
            obs, _, terminated, truncated, info = env.step(actions)
            env_steps += 1
            ended = terminated | truncated
            final = info.get("final_info", info)
            # A Unity build that crashed mid-episode: the episode is lost, not ended by the
            # game; the row plays the same start again (on the relaunched build).
            lost = ended & np.asarray(final.get("interrupted", np.zeros(rows, dtype=bool)),
                                      dtype=bool)
            for row in np.flatnonzero(episode_of >= 0):
                done = bool(ended[row])
                tracks[row].append((final if done else info)["position"][row].copy())
                moves[row].append(actions[row])
                if films[row]:
                    films[row].append(info["final_obs"][row] if done else obs[row])
                if done and not lost[row]:
                    k = int(episode_of[row])
                    finished.append(Episode(
                        index=k, outcome=int(final["outcome"][row]),
                        spawn=int(starts.spawns[k]), kind=str(starts.kinds[k]),
                        length=int(final["step"][row]), positions=np.stack(tracks[row]),
                        actions=np.stack(moves[row]),
                        frames=np.stack(films[row]) if films[row] else None))
                    bar.update(1)
            restart = ended & (episode_of >= 0)
            for row in np.flatnonzero(restart & ~lost):
                episode_of[row] = next_episode if next_episode < total else -1
                next_episode += 1 if next_episode < total else 0
            restart &= episode_of >= 0
            if restart.any():
                obs, info = start(restart)
    finished.sort(key=lambda e: e.index)
    return Rollout(finished, time.perf_counter() - started_at, env_steps, settings)
