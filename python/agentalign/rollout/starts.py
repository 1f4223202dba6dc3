"""Where episodes start: the game's spawn points, the fixed off-lane set, or (for training) a
share of starts anywhere on the walkable island.

Episode k's start is drawn from its own random stream (seed, STARTS_STREAM, k), so a start set
does not depend on how many episodes are played at once, and two policies evaluated with the
same seed face the same starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentalign.config import Settings, at_least, between, invalid
from agentalign.envs.layout import Layout
from agentalign.errors import ConfigError

STARTS_STREAM = 0
ANYWHERE_STREAM = 1  # which episodes of a mixed start set start anywhere (its own stream)
ALONG_STREAM = 2  # which episodes start along the reference runs, and where (its own stream)
START_KINDS: tuple[str, ...] = ("spawn", "shifted", "turned", "shifted_turned", "anywhere",
                                "along")
OFFLANE_KINDS = START_KINDS[1:4]


@dataclass(frozen=True)
class Starts:
    """The start state of each of N episodes: episode k starts at row k of every array."""

    spawns: np.ndarray  # int [N]: the spawn point the start belongs to (for per-spawn rates)
    positions: np.ndarray  # float [N, 2] metres
    headings: np.ndarray  # float [N] degrees clockwise from north
    kinds: np.ndarray  # str [N]: "spawn" at a spawn point, else how it was moved off the lanes

    def __len__(self) -> int:
        return len(self.spawns)

    def repeated(self, k: int) -> Starts:
        """Each start k times in a row (episodes i*k .. i*k+k-1 share start i)."""
        return Starts(*(np.repeat(a, k, axis=0) for a in (self.spawns, self.positions,
                                                          self.headings, self.kinds)))

    def part(self, rows: slice) -> Starts:
        return Starts(self.spawns[rows], self.positions[rows], self.headings[rows],
                      self.kinds[rows])


@dataclass(frozen=True)
class OfflaneSettings(Settings):
    """The off-lane start set (configs/evaluate.yaml `offlane`, which says why these numbers)."""

    kinds: dict[str, float] = field(metadata=at_least(0))
    shift: tuple[float, float] = field(metadata=between(0.0, 20.0))
    turn: tuple[float, float] = field(metadata=between(0.0, 180.0))
    jitter: float = field(metadata=at_least(0))
    min_edge: float = field(metadata=at_least(0))
    obstacle_margin: float = field(metadata=at_least(0))

    def check(self) -> None:
        if set(self.kinds) - set(OFFLANE_KINDS) or sum(self.kinds.values()) <= 0:
            raise invalid("kinds", f"must weigh {list(OFFLANE_KINDS)} with weights >= 0, "
                          f"not all 0; got {self.kinds!r}")
        for key in ("shift", "turn"):
            low, high = getattr(self, key)
            if low > high:
                raise invalid(key, f"must be [low, high] with low <= high, got {[low, high]}")


def spawn_starts(layout: Layout, episodes: int, seed: int, jitter: float = 0.5,
                 weights: np.ndarray | None = None) -> Starts:
    """The game's own starts: a uniform spawn point, jittered by up to `jitter` metres, facing the
    spawn's heading (what IslandVectorEnv draws at reset, drawn per episode here). `weights`
    (one per spawn, summing to 1) draws the spawn points in those proportions instead."""
    xy = np.array([s.position for s in layout.spawns], dtype=np.float64)
    heading = np.array([s.heading for s in layout.spawns], dtype=np.float64)
    spawns, positions = np.zeros(episodes, dtype=np.int64), np.zeros((episodes, 2))
    for k in range(episodes):
        rng = np.random.default_rng([seed, STARTS_STREAM, k])
        spawns[k] = rng.integers(len(xy)) if weights is None else rng.choice(len(xy), p=weights)
        positions[k] = xy[spawns[k]] + rng.uniform(-jitter, jitter, size=2)
    return Starts(spawns, positions, heading[spawns], np.full(episodes, "spawn"))


def offlane_starts(layout: Layout, episodes: int, seed: int, config: OfflaneSettings) -> Starts:
    """Starts displaced sideways and/or turned away from the demonstration lanes. Each is
    redrawn until it is valid."""
    kinds = [k for k in OFFLANE_KINDS if config.kinds.get(k, 0) > 0]
    weights = np.array([config.kinds[k] for k in kinds], dtype=np.float64)
    xy = np.array([s.position for s in layout.spawns], dtype=np.float64)
    heading = np.array([s.heading for s in layout.spawns], dtype=np.float64)
    spawns, positions = np.zeros(episodes, dtype=np.int64), np.zeros((episodes, 2))
    headings, names = np.zeros(episodes), np.empty(episodes, dtype=object)
    for k in range(episodes):
        rng = np.random.default_rng([seed, STARTS_STREAM, k])
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        for _ in range(1000):
            spawn = int(rng.integers(len(xy)))
            position = xy[spawn] + rng.uniform(-config.jitter, config.jitter, size=2)
            if "shifted" in kind:  # sideways = perpendicular to the spawn's facing
                side = np.radians(heading[spawn] + 90.0)
                shift = rng.choice([-1.0, 1.0]) * rng.uniform(*config.shift)
                position += shift * np.array([np.sin(side), np.cos(side)])
            turn = rng.choice([-1.0, 1.0]) * rng.uniform(*config.turn) if "turned" in kind \
                else 0.0
            if not start_problems(layout, position[None], config.min_edge,
                                  config.obstacle_margin):
                break
        else:
            raise ConfigError(f"offlane starts: no valid start for episode {k} in 1000 tries; "
                              "loosen offlane.shift or offlane.min_edge")
        spawns[k], positions[k], names[k] = spawn, position, kind
        headings[k] = (heading[spawn] + turn) % 360.0
    return Starts(spawns, positions, headings, names.astype(str))


def without_anywhere(identity: dict[str, Any]) -> dict[str, Any]:
    """A stage identity without its starts-anywhere keys when none of them draws a start anywhere:
    such a run plays exactly the spawn starts of before those keys existed, so the folders of
    earlier runs stay valid (resumed or skipped, not refused as another run's)."""
    if not identity.get("along"):  # likewise the starts-along keys
        identity = {k: v for k, v in identity.items() if not k.startswith("along")}
    if identity.get("anywhere") or identity.get("anywhere_heldout_episodes"):
        return identity
    return {k: v for k, v in identity.items() if not k.startswith("anywhere")}


def training_starts(layout: Layout, episodes: int, seed: int, jitter: float, anywhere: float,
                    min_edge: float = 1.5, weights: np.ndarray | None = None) -> Starts:
    """The game's spawn starts, with a share `anywhere` of them drawn uniformly over the walkable
    island instead (position and heading; `min_edge` metres from the coast, clear of obstacles
    and pads), so that a policy trained on them learns to recover from wherever it finds itself.
    Episode k starts anywhere when its own draw (seed, ANYWHERE_STREAM, k) falls below the share;
    the others start exactly where `spawn_starts` would start them, and `anywhere=0` is
    `spawn_starts`."""
    starts = spawn_starts(layout, episodes, seed, jitter, weights)
    if anywhere <= 0:
        return starts
    xy = np.array([s.position for s in layout.spawns], dtype=np.float64)
    polygon = np.array(layout.polygon, dtype=np.float64)
    low, high = polygon.min(axis=0), polygon.max(axis=0)
    spawns, positions = starts.spawns.copy(), starts.positions.copy()
    headings, kinds = starts.headings.copy(), starts.kinds.astype(object)
    for k in range(episodes):
        rng = np.random.default_rng([seed, ANYWHERE_STREAM, k])
        if rng.random() >= anywhere:
            continue
        for _ in range(1000):
            position = rng.uniform(low, high)
            if not start_problems(layout, position[None], min_edge, 0.0):
                break
        else:
            raise ConfigError(f"anywhere starts: no valid start in 1000 tries on layout "
                              f"{layout.name!r}; lower the coast margin ({min_edge} m)")
        positions[k], headings[k], kinds[k] = position, rng.uniform(0.0, 360.0), "anywhere"
        spawns[k] = int(np.argmin(np.hypot(*(xy - position).T)))  # nearest, for per-spawn rates
    return Starts(spawns, positions, headings, kinds.astype(str))


@dataclass(frozen=True)
class Visited:
    """States (position, heading) that some runs passed through, with the spawn each run began
    at: where `along_starts` may start an episode."""

    positions: np.ndarray  # float [M, 2] metres
    headings: np.ndarray  # float [M] degrees clockwise from north
    spawns: np.ndarray  # int [M]

    def __len__(self) -> int:
        return len(self.spawns)


def visited_states(layout: Layout, runs: list[tuple[np.ndarray, np.ndarray, int]],
                   min_edge: float) -> Visited:
    """Every state of the runs `(positions [T + 1, 2], headings [T + 1], spawn)` before their
    last decision that is a fit start (`start_problems`: on land, `min_edge` from the coast,
    clear of obstacles and pads). A run's final state is left out: it ended there."""
    positions = np.concatenate([p[:-1] for p, _, _ in runs]).astype(np.float64)
    headings = np.concatenate([h[:-1] for _, h, _ in runs]).astype(np.float64)
    spawns = np.concatenate([np.full(len(p) - 1, s, dtype=np.int64) for p, _, s in runs])
    fit = fit_positions(layout, positions, min_edge, 0.0)
    return Visited(positions[fit], headings[fit] % 360.0, spawns[fit])


def along_starts(starts: Starts, visited: Visited, share: float, seed: int) -> Starts:
    """`starts` with a share of them moved to states the reference runs passed through (drawn
    uniformly over `visited`): a curriculum made of the agent's own routes. A behaviour the
    reward model pays for that begins half-way along a habitual route (pass a landmark the
    left-bound runs pass, then turn to the middle pad) is then tried from where the route
    goes by, and once learnt there it pays off from the spawns too, where the route starts.
    Uniform starts anywhere rarely face the right way at the right place (docs/results.md,
    "The studio"). Episode k's draw is its own stream (seed, ALONG_STREAM, k)."""
    if share <= 0 or not len(visited):
        return starts
    spawns, positions = starts.spawns.copy(), starts.positions.copy()
    headings, kinds = starts.headings.copy(), starts.kinds.astype(object)
    for k in range(len(starts)):
        rng = np.random.default_rng([seed, ALONG_STREAM, k])
        if rng.random() >= share:
            continue
        i = int(rng.integers(len(visited)))
        positions[k], headings[k] = visited.positions[i], visited.headings[i]
        spawns[k], kinds[k] = visited.spawns[i], "along"
    return Starts(spawns, positions, headings, kinds.astype(str))


def _checks(layout: Layout, positions: np.ndarray, min_edge: float, obstacle_margin: float
            ) -> list[tuple[str, np.ndarray]]:
    """(problem, bool [N] of the positions [N, 2] that have it), one per rule of a fit start."""
    x, y = positions[:, 0], positions[:, 1]
    checks = [("off the island", ~layout.is_on_island(x, y)),
              (f"closer than {min_edge} m to the coast", layout.distance_to_edge(x, y) < min_edge),
              ("in or against an obstacle",
               layout.in_obstacle(x, y, margin=layout.agent.radius + obstacle_margin))]
    for pad in layout.pads:
        reach = pad.radius + layout.agent.radius + 1.0
        checks.append((f"on or next to the {pad.name} pad",
                       np.hypot(x - pad.position[0], y - pad.position[1]) < reach))
    return checks


def fit_positions(layout: Layout, positions: np.ndarray, min_edge: float,
                  obstacle_margin: float) -> np.ndarray:
    """bool [N]: which of the positions [N, 2] `start_problems` finds nothing wrong with."""
    fit = np.ones(len(positions), dtype=bool)
    for _, bad in _checks(layout, positions, min_edge, obstacle_margin):
        fit &= ~bad
    return fit


def start_problems(layout: Layout, positions: np.ndarray, min_edge: float,
                   obstacle_margin: float) -> list[str]:
    """Why any of these start positions [N, 2] is unfit (empty if all are fine): each must be on
    land, `min_edge` metres from the coast, clear of obstacles and off the pads."""
    return [problem for problem, bad in _checks(layout, positions, min_edge, obstacle_margin)
            if bad.any()]
