"""Designer intents: what a personality should do, as a small vocabulary over an episode's track.

A personality used to be a target pad. A designer says more: "pass by the campfire, then run to
the middle pad", "keep 3 m from the edge", "be quick". Each such intent is read from an episode's
`Track` (positions, outcome, length), which only evaluation and the synthetic labeller see, never
a learner. It answers two questions: did the episode do it (`satisfied`, counted by
`satisfaction` and `agentalign evaluate --intent`), and how close did it come (`utility`, which
orders episodes for the `IntentLabeller`, the stand-in for a designer's clicks).

The vocabulary (YAML keys in brackets; docs/intents.md has the file format):
- `EndOn` [end: P]: the episode ends on pad P. Built in as `left`, `middle`, `right`.
- `PassBy` [pass: L, radius: R, then: P]: some position comes within R metres of landmark L's
  centre (R defaults to L's radius + 1 m), and, with `then`, the episode ends on pad P. Every
  position counts: the pad is entered at the last one, so any pass comes before it.
- `AwayFromEdge` [edge: D]: every position stays at least D metres inside the coast (measured
  from the agent's centre); an episode that fell never does, so `edge: 0` means "do not fall".
- `Fast` [fast: true | N]: as few decisions as possible. It only orders episodes; it counts as
  satisfied always, or, given N, when the episode took at most N decisions.
- `AllOf` [all: [...]]: every part.

Utility. Each intent scores an episode in three parts, and utility = bonus - shortfall - cost:
- bonus, credit for what it did: 100 for ending on the pad (`EndOn`), 50 for each of a landmark
  passed, the edge kept, and N decisions kept (`Fast` with N);
- shortfall, metres still missing: `EndOn`: the distance from the final position to the pad's
  centre (0 when it ended there; a run that ended on another pad counts as at that pad's centre);
  `PassBy`: how far the closest approach stayed outside R (plus `then`'s `EndOn` shortfall);
  `AwayFromEdge`: how far the worst position came inside D (positions off the island count as
  negative distances, and a fall as at least at the coast);
- cost, per decision: 0.01 for `EndOn` (the tie-break between two runs to the pad), 0.1 (one a
  second) for `Fast`;
- `AllOf`: each part summed over the parts.
Coming closer never lowers the utility: a nearer final position, a closer approach, a smaller
intrusion or a shorter episode each raise it, and reaching the goal adds the bonus on top.

For a pad intent this is exactly `SyntheticLabeller`'s rule (reach +100, minus the final
distance in metres, minus 0.01 a decision): without noise both labellers compare the same key
(bonus, then shortfall rounded to a micrometre, then cost) and give the same answers; with a
temperature both draw Bradley-Terry from the same utility (the tests hold them to it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from agentalign.config import yaml_mapping
from agentalign.envs.layout import DEFAULT_LAYOUT, Circle, Layout, load_layout
from agentalign.errors import UserError
from agentalign.spec import OUTCOME_CODES, OUTCOMES, PADS
from agentalign.stats import wilson_interval

PACKAGED_INTENTS = "<agentalign>/configs/intents.yaml"
REACH_BONUS = 100.0  # ending on the wanted pad: as SyntheticLabeller
PART_BONUS = 50.0  # a landmark passed, the edge kept, the decision budget kept
PAD_DECISION_COST = 0.01  # as SyntheticLabeller: the shorter of two equal runs wins
FAST_DECISION_COST = 0.1  # one a second: each decision counts for as much as a 0.1 m detour
PASS_MARGIN = 1.0  # metres beyond a landmark's radius that still count as passing by it
_FELL = OUTCOME_CODES["fell"]


class IntentError(UserError):
    """An intent that names what the island lacks, or an intents file that does not parse."""


@dataclass(frozen=True, eq=False)
class Track:
    """What an intent reads of an episode: every position known, its outcome and its length.

    positions: float [T, 2] metres, in order; the last row is where the episode ended as far as
    it is known (evaluate's episodes and label's rollouts know the position after the last
    decision; a plain corpus stores the position before each decision, 0.5 m short at most).
    """

    positions: np.ndarray
    outcome: int  # spec.OUTCOMES code
    length: int  # decisions taken

    def __post_init__(self) -> None:
        positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 2)
        if not len(positions):
            raise ValueError("a track needs at least one position")
        if not 0 <= self.outcome < len(OUTCOMES):
            raise ValueError(f"a track is a finished episode: outcome {self.outcome} is not a "
                             f"code of {OUTCOMES}")
        object.__setattr__(self, "positions", positions)

    @property
    def final(self) -> np.ndarray:
        return self.positions[-1]


def track_from_episode(steps: Mapping[str, Any], outcome: int | None = None,
                       final_position: Sequence[float] | None = None) -> Track:
    """A Track from a corpus episode: `Corpus.episode(i)` with the outcome from
    `corpus.episodes["outcomes"][i]`, or an item of `Corpus.iter_episodes()` (which carries its
    outcome). `final_position` (label's rollouts keep it in their shard metadata) is appended
    after the stored per-decision positions."""
    positions = np.asarray(steps["positions"], dtype=np.float64).reshape(-1, 2)
    if outcome is None:
        if "outcome" not in steps:
            raise ValueError("track_from_episode: give the outcome (Corpus.episode has none)")
        outcome = steps["outcome"]
    length = len(positions)
    if final_position is not None:
        positions = np.concatenate([positions, np.asarray(final_position,
                                                          dtype=np.float64).reshape(1, 2)])
    return Track(positions, int(outcome), length)


@dataclass(frozen=True)
class Score:
    """An episode's score under an intent: utility = bonus - shortfall - cost (module doc)."""

    bonus: float = 0.0  # credit for the parts done
    shortfall: float = 0.0  # metres still missing
    cost: float = 0.0  # per-decision cost

    def __add__(self, other: Score) -> Score:
        return Score(self.bonus + other.bonus, self.shortfall + other.shortfall,
                     self.cost + other.cost)

    @property
    def key(self) -> tuple[float, float, float]:
        """Larger is better, compared in order: SyntheticLabeller's (reached, -distance,
        -length) for a pad intent. Rounding makes float noise an exact tie, as there."""
        return (self.bonus, -round(self.shortfall, 6), -round(self.cost, 9))

    @property
    def utility(self) -> float:
        # Same operations as SyntheticLabeller.utility, so a pad intent's floats agree exactly.
        return self.bonus - round(self.shortfall, 6) - self.cost


@dataclass(frozen=True)
class Intent:
    """One designer intent; subclasses say what it reads. `name` and `description` (a sentence
    for reports and personality cards) default to ones made from the parameters."""

    name: str = field(default="", kw_only=True)
    description: str = field(default="", kw_only=True, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self._default_name())
        if not self.description:
            object.__setattr__(self, "description", self._default_description())

    def score(self, track: Track) -> Score:
        raise NotImplementedError

    def satisfied(self, track: Track) -> bool:
        raise NotImplementedError

    def utility(self, track: Track) -> float:
        """Higher is better (module doc); partial credit for coming closer."""
        return self.score(track).utility

    def key(self, track: Track) -> tuple[float, float, float]:
        return self.score(track).key

    def _default_name(self) -> str:
        raise NotImplementedError

    def _default_description(self) -> str:
        raise NotImplementedError


def _check_pad(pad: str) -> None:
    if pad not in PADS:
        raise IntentError(f"unknown pad {pad!r}: choose one of {', '.join(PADS)}")


@dataclass(frozen=True)
class EndOn(Intent):
    """End the episode on pad `pad`."""

    layout: Layout = field(repr=False, compare=False)
    pad: str

    def __post_init__(self) -> None:
        _check_pad(self.pad)
        super().__post_init__()

    def satisfied(self, track: Track) -> bool:
        return track.outcome == PADS.index(self.pad)

    def score(self, track: Track) -> Score:
        code = PADS.index(self.pad)
        reached = track.outcome == code
        # As SyntheticLabeller.key: a run that ended on a pad is at that pad's centre.
        final = (np.asarray(self.layout.pads[track.outcome].position, dtype=np.float64)
                 if track.outcome < len(PADS) else track.final)
        target = np.asarray(self.layout.pads[code].position, dtype=np.float64)
        distance = 0.0 if reached else float(np.linalg.norm(final - target))
        return Score(REACH_BONUS * reached, distance, PAD_DECISION_COST * track.length)

    def _default_name(self) -> str:
        return self.pad

    def _default_description(self) -> str:
        return f"end on the {self.pad} pad"


@dataclass(frozen=True)
class PassBy(Intent):
    """Come within `radius` metres of landmark `landmark` (default: its radius + 1 m), and with
    `then`, end on that pad."""

    layout: Layout = field(repr=False, compare=False)
    landmark: str
    then: str | None = None
    radius: float | None = None

    def __post_init__(self) -> None:
        names = [m.name for m in self.layout.landmarks]
        if self.landmark not in names:
            raise IntentError(f"unknown landmark {self.landmark!r}: choose one of "
                              f"{', '.join(names)}")
        if self.then is not None:
            _check_pad(self.then)
        if self.radius is None:
            object.__setattr__(self, "radius", self._landmark.radius + PASS_MARGIN)
        elif not (math.isfinite(self.radius) and self.radius > 0):
            raise IntentError(f"pass radius must be a positive number of metres, got "
                              f"{self.radius!r}")
        super().__post_init__()

    @property
    def _landmark(self) -> Circle:
        return next(m for m in self.layout.landmarks if m.name == self.landmark)

    @property
    def _pad(self) -> EndOn | None:
        return None if self.then is None else EndOn(self.layout, self.then)

    def closest(self, track: Track) -> float:
        """The closest approach to the landmark's centre, metres."""
        centre = np.asarray(self._landmark.position, dtype=np.float64)
        return float(np.hypot(*(track.positions - centre).T).min())

    def passed(self, track: Track) -> bool:
        assert self.radius is not None
        return self.closest(track) <= self.radius

    def satisfied(self, track: Track) -> bool:
        pad = self._pad
        return self.passed(track) and (pad is None or pad.satisfied(track))

    def score(self, track: Track) -> Score:
        assert self.radius is not None
        closest = self.closest(track)
        own = Score(PART_BONUS * (closest <= self.radius), max(0.0, closest - self.radius))
        pad = self._pad
        return own if pad is None else own + pad.score(track)

    def _default_name(self) -> str:
        return f"{self.landmark}-{self.then}" if self.then else f"pass-{self.landmark}"

    def _default_description(self) -> str:
        text = f"pass within {self.radius:g} m of the {self.landmark.replace('_', ' ')}"
        return f"{text}, then end on the {self.then} pad" if self.then else text


@dataclass(frozen=True)
class AwayFromEdge(Intent):
    """Keep every position at least `distance` metres inside the coast; never fall."""

    layout: Layout = field(repr=False, compare=False)
    distance: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.distance) and self.distance >= 0):
            raise IntentError(f"edge distance must be a number of metres >= 0, got "
                              f"{self.distance!r}")
        super().__post_init__()

    def margin(self, track: Track) -> float:
        """The least distance inside the coast over the track (negative: off the island)."""
        x, y = track.positions[:, 0], track.positions[:, 1]
        distance = self.layout.distance_to_edge(x, y)
        signed = np.where(self.layout.is_on_island(x, y), distance, -distance)
        margin = float(signed.min())
        return min(margin, 0.0) if track.outcome == _FELL else margin

    def satisfied(self, track: Track) -> bool:
        return track.outcome != _FELL and self.margin(track) >= self.distance

    def score(self, track: Track) -> Score:
        return Score(PART_BONUS * self.satisfied(track),
                     max(0.0, self.distance - self.margin(track)))

    def _default_name(self) -> str:
        return f"edge-{self.distance:g}"

    def _default_description(self) -> str:
        return f"never come within {self.distance:g} m of the island's edge"


@dataclass(frozen=True)
class Fast(Intent):
    """As few decisions as possible; with `max_decisions`, satisfied at that many or fewer,
    else always satisfied (it only orders episodes)."""

    max_decisions: int | None = None

    def __post_init__(self) -> None:
        n = self.max_decisions
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise IntentError(f"fast takes true or a number of decisions >= 1, got {n!r}")
        super().__post_init__()

    def satisfied(self, track: Track) -> bool:
        return self.max_decisions is None or track.length <= self.max_decisions

    def score(self, track: Track) -> Score:
        kept = self.max_decisions is not None and track.length <= self.max_decisions
        return Score(PART_BONUS * kept, 0.0, FAST_DECISION_COST * track.length)

    def _default_name(self) -> str:
        return "fast" if self.max_decisions is None else f"fast-{self.max_decisions}"

    def _default_description(self) -> str:
        return ("take as few decisions as possible" if self.max_decisions is None
                else f"take at most {self.max_decisions} decisions")


@dataclass(frozen=True)
class AllOf(Intent):
    """Every part at once; scores add up."""

    parts: tuple[Intent, ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise IntentError("an `all` intent needs at least one part")
        object.__setattr__(self, "parts", tuple(self.parts))
        super().__post_init__()

    def satisfied(self, track: Track) -> bool:
        return all(p.satisfied(track) for p in self.parts)

    def score(self, track: Track) -> Score:
        total = Score()
        for part in self.parts:
            total = total + part.score(track)
        return total

    def _default_name(self) -> str:
        return "+".join(p.name for p in self.parts)

    def _default_description(self) -> str:
        return "; ".join(p.description for p in self.parts)


def final_pad(intent: Intent) -> str | None:
    """The pad an intent ends on, if it names one (an align logs its reach of that pad)."""
    if isinstance(intent, EndOn):
        return intent.pad
    if isinstance(intent, PassBy):
        return intent.then
    if isinstance(intent, AllOf):
        return next((p for p in map(final_pad, intent.parts) if p is not None), None)
    return None


def builtin_intents(layout: Layout) -> dict[str, Intent]:
    """`left`, `middle`, `right`: end on that pad (the personalities of the paper)."""
    return {pad: EndOn(layout, pad) for pad in PADS}


class IntentLabeller:
    """Prefers one of two tracks by an intent: SyntheticLabeller's interface, any intent.

    Without noise the better key wins; with `temperature > 0` the choice is drawn Bradley-Terry
    from the utilities (an imperfect human); exact ties give no label, as there.
    """

    def __init__(self, intent: Intent, temperature: float = 0.0, seed: int = 0):
        if temperature < 0 or not math.isfinite(temperature):
            raise UserError(f"labeller temperature must be >= 0, got {temperature}")
        self.intent = intent
        self.temperature = temperature
        self.rng = np.random.default_rng(seed)
        self.labeller_id = f"intent:{intent.name}:T={temperature:g}"

    def key(self, t: Track) -> tuple[float, float, float]:
        return self.intent.key(t)

    def utility(self, t: Track) -> float:
        return self.intent.utility(t)

    def prefer(self, a: Track, b: Track) -> int | None:
        """0 if a is preferred, 1 if b, None for an exact tie (the pair is dropped)."""
        sa, sb = self.intent.score(a), self.intent.score(b)
        if sa.key == sb.key:
            return None
        if self.temperature == 0:
            return 0 if sa.key > sb.key else 1
        margin = (sa.utility - sb.utility) / self.temperature
        p_a = 1.0 / (1.0 + math.exp(-max(min(margin, 50.0), -50.0)))
        return 0 if self.rng.random() < p_a else 1


def satisfaction(intent: Intent, tracks: Iterable[Track]) -> dict[str, Any]:
    """The share of episodes that satisfy `intent`, with its 95% Wilson interval (the one
    outcome rates use): {"intent", "description", "rate", "low", "high", "count", "episodes"}."""
    done = [intent.satisfied(t) for t in tracks]
    count, n = int(sum(done)), len(done)
    low, high = wilson_interval(count, n)
    return {"intent": intent.name, "description": intent.description,
            "rate": count / n if n else 0.0, "low": low, "high": high, "count": count,
            "episodes": n}


# --- intent files ---------------------------------------------------------------------------------

_CLAUSE_KEYS: dict[str, tuple[str, ...]] = {
    "end": ("end",), "pass": ("pass", "radius", "then"), "edge": ("edge",), "fast": ("fast",),
    "all": ("all",)}


def load_intents(path: str | Path | None = None, layout: Layout | str | Path = DEFAULT_LAYOUT
                 ) -> dict[str, Intent]:
    """Every intent of an intents file (default: the packaged configs/intents.yaml), by name,
    with the built-in `left`, `middle`, `right` always there (a file may restate them, not
    change them)."""
    layout = load_layout(layout) if isinstance(layout, str | Path) else layout
    text, source = _read(path)
    raw = yaml_mapping(text, f"intents {source}", IntentError,
                       "a mapping of intent names to intents")
    intents = builtin_intents(layout)
    for name, spec in raw.items():
        where = f"intents {source}: intent {name!r}"
        if not isinstance(name, str) or not name:
            raise IntentError(f"intents {source}: intent names must be non-empty strings, got "
                              f"{name!r}")
        try:
            intent = _parse_intent(name, spec, layout)
        except IntentError as e:
            raise IntentError(f"{where}: {e}") from None
        if name in PADS and not (isinstance(intent, EndOn) and intent.pad == name):
            raise IntentError(f"{where}: is built in as `end: {name}`; choose another name")
        intents[name] = intent
    return intents


def intent_by_name(name: str, path: str | Path | None = None,
                   layout: Layout | str | Path = DEFAULT_LAYOUT) -> Intent:
    """One intent of an intents file (default: the packaged one), by name."""
    intents = load_intents(path, layout)
    if name not in intents:
        raise IntentError(f"intents {_read(path)[1]}: no intent {name!r}: choose one of "
                          f"{', '.join(intents)}")
    return intents[name]


def _read(path: str | Path | None) -> tuple[str, str]:
    if path is None:
        return (resources.files("agentalign") / "configs" / "intents.yaml").read_text(), \
            PACKAGED_INTENTS
    try:
        return Path(path).read_text(), str(path)
    except OSError as e:
        raise IntentError(f"intents {path}: cannot read it ({e.strerror})") from None


def _parse_intent(name: str, spec: Any, layout: Layout) -> Intent:
    if not isinstance(spec, dict):
        raise IntentError("must be a mapping with a description and one of the keys "
                          f"{', '.join(_CLAUSE_KEYS)}")
    spec = dict(spec)
    description = spec.pop("description", "")
    if not isinstance(description, str):
        raise IntentError(f"description must be a sentence, got {description!r}")
    return _parse_clause(spec, layout, name=name, description=description)


def _parse_clause(spec: Any, layout: Layout, **label: str) -> Intent:
    """One clause: a mapping with exactly one kind key (end, pass, edge, fast, all)."""
    if not isinstance(spec, dict):
        raise IntentError(f"each part must be a mapping with one of the keys "
                          f"{', '.join(_CLAUSE_KEYS)}, got {spec!r}")
    kinds = [k for k in _CLAUSE_KEYS if k in spec]
    if len(kinds) != 1:
        found = ", ".join(map(str, spec)) or "nothing"
        raise IntentError(f"needs exactly one of the keys {', '.join(_CLAUSE_KEYS)}, found "
                          f"{found}")
    kind = kinds[0]
    allowed = _CLAUSE_KEYS[kind] + (("description",) if label else ())
    unknown = [k for k in spec if k not in allowed]
    if unknown:
        raise IntentError(f"unknown key {unknown[0]!r} for `{kind}`: allowed keys are "
                          f"{', '.join(allowed)}")
    value = spec[kind]
    if kind == "end":
        return EndOn(layout, _text(value, "end", "a pad"), **label)
    if kind == "pass":
        then = spec.get("then")
        radius = spec.get("radius")
        return PassBy(layout, _text(value, "pass", "a landmark"),
                      None if then is None else _text(then, "then", "a pad"),
                      None if radius is None else _number(radius, "radius"), **label)
    if kind == "edge":
        return AwayFromEdge(layout, _number(value, "edge"), **label)
    if kind == "fast":
        if value is True:
            return Fast(None, **label)
        if isinstance(value, int) and not isinstance(value, bool):
            return Fast(value, **label)
        raise IntentError(f"fast takes true or a number of decisions >= 1, got {value!r}")
    if not isinstance(value, list) or not value:
        raise IntentError(f"all must be a list of parts, got {value!r}")
    return AllOf(tuple(_parse_clause(part, layout) for part in value), **label)


def _text(value: Any, key: str, what: str) -> str:
    if not isinstance(value, str):
        raise IntentError(f"{key} must name {what}, got {value!r}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IntentError(f"{key} must be a number of metres, got {value!r}")
    return float(value)
