"""Scripted players: the stand-in for hours of human play.

Each episode is played by one `Player` with an intent (go to a pad, explore, visit landmarks,
idle, wander off the edge) and human-like imperfections (reaction delay, sticky inputs, aim bias
and jitter, hesitation, missing a pad and sometimes recovering). Players steer from the true
state (position and heading), as a person who sees the game would; only the recorded pixels and
actions reach the policy. A `Population` draws players from a YAML mixture.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from agentalign.config import Settings, at_least, invalid
from agentalign.envs.layout import Layout
from agentalign.spec import DECISIONS_PER_SECOND, PADS

PLAYER_TYPES: tuple[str, ...] = ("pad_seeker", "explorer", "landmark_visitor", "idler",
                                 "edge_walker")
IMPERFECTIONS: tuple[str, ...] = ("reaction_delay", "sticky", "aim_noise", "hesitation", "miss",
                                  "recover", "detour")
NO_TARGET = -1


@dataclass(frozen=True)
class Imperfections:
    reaction_delay: int = 0
    sticky: float = 0.0
    aim_bias: float = 0.0  # degrees, fixed for the episode
    aim_jitter: float = 0.0  # degrees, per decision
    hesitation: float = 0.0
    miss: bool = False
    recover: bool = True
    detour: bool = False


def wrap_degrees(angle: float) -> float:
    """Angle in [-180, 180)."""
    return (angle + 180.0) % 360.0 - 180.0


class Player:
    """One scripted player for one episode; `act` is called once per decision."""

    kind = "player"

    def __init__(self, layout: Layout, rng: np.random.Generator, flaws: Imperfections,
                 target: int = NO_TARGET):
        self.layout, self.rng, self.flaws, self.target = layout, rng, flaws, target
        self.turn_step = layout.agent.turn_rate / DECISIONS_PER_SECOND
        self.seen: deque[tuple[np.ndarray, float]] = deque(maxlen=flaws.reaction_delay + 1)
        self.previous = (0, 0)
        self.pause = 0
        self.goals: list[np.ndarray] = []
        self.linger = 0

    @property
    def kind_index(self) -> int:
        return PLAYER_TYPES.index(self.kind)

    def act(self, position: np.ndarray, heading: float) -> tuple[int, int]:
        """The (move, turn) input for this decision, from what the player saw `delay` ago."""
        self.seen.append((np.asarray(position, dtype=np.float64), float(heading)))
        pos, head = self.seen[0]  # the oldest kept view: reaction delay
        rng = self.rng
        if self.pause > 0:
            self.pause -= 1
            action = (0, self.previous[1] if rng.random() < 0.5 else 0)
        elif rng.random() < self.flaws.sticky:
            action = self.previous
        elif rng.random() < self.flaws.hesitation:
            self.pause = int(rng.integers(2, 7))
            action = (0, 0)
        else:
            action = self.decide(pos, head)
        self.previous = action
        return action

    def decide(self, position: np.ndarray, heading: float) -> tuple[int, int]:
        raise NotImplementedError

    # -- shared skills -------------------------------------------------------------------------

    def steer(self, position: np.ndarray, heading: float, goal: np.ndarray) -> tuple[int, int]:
        """Push the stick towards the goal (nearest of 8 directions) while turning to face it."""
        goal = self._around_obstacles(position, goal)
        bearing = math.degrees(math.atan2(goal[0] - position[0], goal[1] - position[1]))
        error = wrap_degrees(bearing - heading + self.flaws.aim_bias
                             + self.rng.normal(0.0, self.flaws.aim_jitter + 1e-9))
        tolerance = 0.6 * self.turn_step
        turn = 2 if error > tolerance else 1 if error < -tolerance else 0
        sector = round(error / 45.0) % 8
        return sector + 1, turn

    def look_around(self) -> tuple[int, int]:
        """Stand and turn, now and then changing direction."""
        if self.rng.random() < 0.2 or self.previous[1] == 0:
            return 0, int(self.rng.integers(0, 3))
        return 0, self.previous[1]

    def follow_goals(self, position: np.ndarray, heading: float,
                     reach: float = 1.0) -> tuple[int, int] | None:
        """Walk the goal list, lingering (looking around) on arrival; None when it is empty."""
        if self.linger > 0:
            self.linger -= 1
            return self.look_around()
        while self.goals and np.linalg.norm(self.goals[0] - position) < reach:
            self.goals.pop(0)
            self.linger = self.linger_after_goal()
            if self.linger > 0:
                return self.look_around()
        if not self.goals:
            return None
        return self.steer(position, heading, self.goals[0])

    def linger_after_goal(self) -> int:
        return 0

    def random_land_point(self, min_edge: float = 2.5) -> np.ndarray:
        (x0, y0), (x1, y1) = self.layout.world_min, self.layout.world_max
        for _ in range(1000):
            p = self.rng.uniform((x0, y0), (x1, y1))
            x, y = np.array(p[0]), np.array(p[1])
            if (self.layout.is_on_island(x, y) and self.layout.distance_to_edge(x, y) > min_edge
                    and not self.layout.in_obstacle(x, y, margin=1.0)):
                return p
        raise RuntimeError("the layout has no open land for random goals")

    def _around_obstacles(self, position: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """If the straight line to the goal crosses an obstacle, head for its best corner."""
        margin = self.layout.agent.radius + 0.4
        for box in self.layout.obstacles:
            lo = np.array(box.lo) - margin
            hi = np.array(box.hi) + margin
            if not _segment_hits_box(position, goal, lo, hi) or _inside(position, lo, hi):
                continue
            corners = [np.array(c) for c in ((lo[0] - 0.3, lo[1] - 0.3), (lo[0] - 0.3, hi[1] + 0.3),
                                             (hi[0] + 0.3, lo[1] - 0.3),
                                             (hi[0] + 0.3, hi[1] + 0.3))]
            reachable = [c for c in corners if not _segment_hits_box(position, c, lo, hi)]
            if reachable:
                return min(reachable, key=lambda c: np.linalg.norm(c - position)
                           + np.linalg.norm(goal - c))
        return goal


def _inside(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    return bool(np.all(p > lo) and np.all(p < hi))


def _segment_hits_box(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Slab test: does the segment a-b pass through the open box (lo, hi)?"""
    t0, t1 = 0.0, 1.0
    d = b - a
    for k in range(2):
        if abs(d[k]) < 1e-12:
            if not lo[k] < a[k] < hi[k]:
                return False
            continue
        ta, tb = (lo[k] - a[k]) / d[k], (hi[k] - a[k]) / d[k]
        t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
        if t0 >= t1:
            return False
    return True


class PadSeeker(Player):
    """Heads for its pad, perhaps through an off-line waypoint, perhaps missing it."""

    kind = "pad_seeker"

    def __init__(self, layout: Layout, rng: np.random.Generator, flaws: Imperfections,
                 target: int = NO_TARGET):
        super().__init__(layout, rng, flaws, target)
        self.pad = np.array(layout.pads[target].position)
        self.recovered = False
        self.gave_up = False

    def decide(self, position: np.ndarray, heading: float) -> tuple[int, int]:
        if not self.goals and not self.recovered and not self.gave_up:
            self._plan(position)
        if self.gave_up:
            action = self.follow_goals(position, heading)
            if action is None:
                self.goals.append(self.random_land_point())
                action = self.steer(position, heading, self.goals[0])
            return action
        action = self.follow_goals(position, heading, reach=1.2)
        if action is not None:
            return action
        if self.flaws.miss and not self.recovered:  # arrived at the aim point beside the pad
            self.recovered = True
            if not self.flaws.recover:
                self.gave_up = True
                return self.look_around()
        return self.steer(position, heading, self.pad)

    def _plan(self, position: np.ndarray) -> None:
        line = self.pad - position
        length = float(np.linalg.norm(line)) + 1e-9
        side = np.array([line[1], -line[0]]) / length  # perpendicular
        if self.flaws.detour and length > 8:
            via = position + line * self.rng.uniform(0.35, 0.65) \
                + side * float(np.clip(self.rng.normal(0, 4.0), -6, 6))
            if self.layout.is_on_island(np.array(via[0]), np.array(via[1])) and \
                    self.layout.distance_to_edge(np.array(via[0]), np.array(via[1])) > 2.5:
                self.goals.append(via)
        if self.flaws.miss:
            radius = self.layout.pads[self.target].radius
            offset = self.rng.choice([-1.0, 1.0]) * self.rng.uniform(radius + 1.0, radius + 2.5)
            self.goals.append(self.pad + side * offset + line / length * self.rng.uniform(1, 3))
        else:
            self.goals.append(self.pad)


class Explorer(Player):
    """Roams between random points, stopping to look around now and then."""

    kind = "explorer"

    def decide(self, position: np.ndarray, heading: float) -> tuple[int, int]:
        action = self.follow_goals(position, heading)
        if action is None:
            self.goals.append(self.random_land_point())
            action = self.steer(position, heading, self.goals[0])
        return action

    def linger_after_goal(self) -> int:
        return int(self.rng.integers(0, 6))


class LandmarkVisitor(Player):
    """Visits one to three landmarks, looking around at each, then roams."""

    kind = "landmark_visitor"

    def __init__(self, layout: Layout, rng: np.random.Generator, flaws: Imperfections,
                 target: int = NO_TARGET):
        super().__init__(layout, rng, flaws, target)
        order = rng.permutation(len(layout.landmarks))[: int(rng.integers(1, 4))]
        self.goals = [np.array(layout.landmarks[i].position) for i in order]

    def decide(self, position: np.ndarray, heading: float) -> tuple[int, int]:
        action = self.follow_goals(position, heading, reach=1.2)
        if action is None:
            self.goals.append(self.random_land_point())
            action = self.steer(position, heading, self.goals[0])
        return action

    def linger_after_goal(self) -> int:
        return int(self.rng.integers(3, 11))


class Idler(Player):
    """Mostly stands still and looks around; now and then shuffles a step."""

    kind = "idler"

    def decide(self, position: np.ndarray, heading: float) -> tuple[int, int]:
        r = self.rng.random()
        if r < 0.6:
            return 0, 0
        if r < 0.93:
            return self.look_around()
        return int(self.rng.integers(1, 9)), 0


class EdgeWalker(Player):
    """Walks to a nearby stretch of coast and over it; a cautious one stops at the beach and
    turns back inland."""

    kind = "edge_walker"

    def __init__(self, layout: Layout, rng: np.random.Generator, flaws: Imperfections,
                 target: int = NO_TARGET):
        super().__init__(layout, rng, flaws, target)
        self.cautious = rng.random() < 0.2
        self.planned = False

    def decide(self, position: np.ndarray, heading: float) -> tuple[int, int]:
        if not self.planned:  # the nearest of three random coast points
            self.planned = True
            poly = np.array(self.layout.polygon)
            centre = poly.mean(axis=0)
            options = []
            for _ in range(3):
                k = int(self.rng.integers(len(poly)))
                a, b = poly[k], poly[(k + 1) % len(poly)]
                options.append(a + (b - a) * self.rng.uniform(0.15, 0.85))
            coast = min(options, key=lambda p: float(np.linalg.norm(p - position)))
            outward = (coast - centre) / np.linalg.norm(coast - centre)
            self.goals = [coast - outward * 1.5] if self.cautious else [coast + outward * 3.0]
        action = self.follow_goals(position, heading)
        if action is None:  # a cautious walker reached the beach: turn back inland
            self.goals.append(self.random_land_point())
            action = self.steer(position, heading, self.goals[0])
        return action


PLAYER_CLASSES: dict[str, type[Player]] = {
    cls.kind: cls for cls in (PadSeeker, Explorer, LandmarkVisitor, Idler, EdgeWalker)}


@dataclass(frozen=True)
class ImperfectionSettings(Settings):
    """Ranges [low, high] each player's imperfections are drawn from, uniformly per episode."""

    reaction_delay: tuple[int, int] = field(metadata=at_least(0))  # decisions
    sticky: tuple[float, float] = field(metadata=at_least(0))
    aim_noise: tuple[float, float] = field(metadata=at_least(0))
    hesitation: tuple[float, float] = field(metadata=at_least(0))
    miss: tuple[float, float] = field(metadata=at_least(0))
    recover: tuple[float, float] = field(metadata=at_least(0))
    detour: tuple[float, float] = field(metadata=at_least(0))

    def check(self) -> None:
        for name in IMPERFECTIONS:
            low, high = getattr(self, name)
            if low > high:
                raise invalid(name, f"must be [low, high] with low <= high, got {[low, high]}")


@dataclass(frozen=True)
class PopulationSettings(Settings):
    """One section of configs/players.yaml: who plays (a mixture of intents) and how well."""

    mixture: dict[str, float] = field(metadata=at_least(0))
    pad_choice: dict[str, float] = field(metadata=at_least(0))
    imperfections: ImperfectionSettings

    def check(self) -> None:
        for key, known in (("mixture", PLAYER_TYPES), ("pad_choice", PADS)):
            weights = getattr(self, key)
            if unknown := sorted(set(weights) - set(known)):
                raise invalid(f"{key}.{unknown[0]}", f"unknown name; known ones are "
                              f"{list(known)}")
            if sum(weights.values()) <= 0:
                raise invalid(key, "the weights add up to zero")


class Population:
    """Draws one player per episode from a population (a mixture and imperfection ranges)."""

    def __init__(self, settings: PopulationSettings, layout: Layout):
        self.layout = layout
        mixture = settings.mixture
        self.kinds = list(mixture)
        self.kind_p = np.array([float(w) for w in mixture.values()]) / sum(mixture.values())
        pads = settings.pad_choice
        self.pad_p = np.array([float(pads.get(p, 0.0)) for p in PADS]) / sum(pads.values())
        self.ranges: dict[str, tuple[float, float]] = {
            name: (float(low), float(high))
            for name in IMPERFECTIONS
            for low, high in [getattr(settings.imperfections, name)]}

    def sample(self, rng: np.random.Generator) -> Player:
        kind = self.kinds[int(rng.choice(len(self.kinds), p=self.kind_p))]
        r = self.ranges
        aim = rng.uniform(*r["aim_noise"])
        flaws = Imperfections(
            reaction_delay=int(rng.integers(int(r["reaction_delay"][0]),
                                            int(r["reaction_delay"][1]) + 1)),
            sticky=rng.uniform(*r["sticky"]), aim_bias=rng.normal(0.0, aim + 1e-9),
            aim_jitter=aim / 3, hesitation=rng.uniform(*r["hesitation"]),
            miss=rng.random() < rng.uniform(*r["miss"]),
            recover=rng.random() < rng.uniform(*r["recover"]),
            detour=rng.random() < rng.uniform(*r["detour"]))
        target = int(rng.choice(len(PADS), p=self.pad_p)) if kind == "pad_seeker" else NO_TARGET
        player_rng = np.random.default_rng(rng.integers(2**63))
        return PLAYER_CLASSES[kind](self.layout, player_rng, flaws, target)
