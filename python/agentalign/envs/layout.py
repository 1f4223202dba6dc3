"""The island's layout file: the single source of truth for both the embedded and the Unity island.

Loading validates every field and names the file and the field in the error, because a layout
that loads but is subtly wrong (a pad in the water, a spawn inside a rock) would only show up
later as an agent that can never succeed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from agentalign.errors import LayoutError
from agentalign.spec import PADS

DEFAULT_LAYOUT = "jumppad_island"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Spawn:
    name: str
    position: tuple[float, float]
    heading: float


@dataclass(frozen=True)
class Circle:
    """A jumppad or a landmark: a flat disc on the ground."""

    name: str
    position: tuple[float, float]
    radius: float
    colour: str
    beacon_height: float = 0.0  # an upright column at the centre, seen from afar; 0 = none
    beacon_width: float = 0.0


@dataclass(frozen=True)
class Box:
    """An obstacle: an axis-aligned box the agent collides with."""

    name: str
    center: tuple[float, float]
    size: tuple[float, float]
    colour: str

    @property
    def lo(self) -> tuple[float, float]:
        return (self.center[0] - self.size[0] / 2, self.center[1] - self.size[1] / 2)

    @property
    def hi(self) -> tuple[float, float]:
        return (self.center[0] + self.size[0] / 2, self.center[1] + self.size[1] / 2)


@dataclass(frozen=True)
class AgentParams:
    radius: float
    height: float
    move_speed: float  # metres per second
    turn_rate: float  # degrees per second


@dataclass(frozen=True)
class CameraRig:
    """Third-person camera: `back` metres behind the agent, `height` above ground, pitched down."""

    back: float
    height: float
    pitch: float  # degrees below the horizon
    vertical_fov: float  # degrees
    far: float  # ground beyond this horizontal distance is drawn as haze


@dataclass(frozen=True)
class Layout:
    name: str
    source: str
    world_min: tuple[float, float]
    world_max: tuple[float, float]
    polygon: tuple[tuple[float, float], ...]
    beach_width: float
    tile_size: float
    agent: AgentParams
    spawns: tuple[Spawn, ...]
    pads: tuple[Circle, ...]  # ordered left, middle, right
    obstacles: tuple[Box, ...]
    landmarks: tuple[Circle, ...]
    palette: dict[str, tuple[int, int, int]]
    camera: CameraRig
    cell: float  # raster resolution in metres
    digest: str  # sha256 of the file's canonical JSON, recorded in corpora and cards

    def pad(self, name: str) -> Circle:
        return self.pads[PADS.index(name)]

    def is_on_island(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Point-in-polygon (even-odd rule), vectorised over points."""
        inside = np.zeros(np.broadcast(x, y).shape, dtype=bool)
        pts = self.polygon
        for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True):
            crosses = (y1 > y) != (y2 > y)
            with np.errstate(divide="ignore", invalid="ignore"):
                x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            inside ^= crosses & (x < x_at)
        return inside

    def distance_to_edge(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance from each point to the nearest coastline segment."""
        best = np.full(np.broadcast(x, y).shape, np.inf)
        pts = self.polygon
        for (x1, y1), (x2, y2) in zip(pts, pts[1:] + pts[:1], strict=True):
            dx, dy = x2 - x1, y2 - y1
            t = np.clip(((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
            best = np.minimum(best, np.hypot(x - (x1 + t * dx), y - (y1 + t * dy)))
        return best

    def in_obstacle(self, x: np.ndarray, y: np.ndarray, margin: float = 0.0) -> np.ndarray:
        hit = np.zeros(np.broadcast(x, y).shape, dtype=bool)
        for box in self.obstacles:
            (lx, ly), (hx, hy) = box.lo, box.hi
            hit |= (x > lx - margin) & (x < hx + margin) & (y > ly - margin) & (y < hy + margin)
        return hit


def load_layout(name_or_path: str | Path = DEFAULT_LAYOUT) -> Layout:
    """Load a packaged layout by name, or a layout file by path, and validate it."""
    path = Path(name_or_path)
    if path.suffix != ".json" and not path.exists():
        ref = resources.files("agentalign.envs") / "layouts" / f"{name_or_path}.json"
        if not ref.is_file():
            folder = resources.files("agentalign.envs") / "layouts"
            known = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))
            raise LayoutError(f"unknown layout {name_or_path!r}: packaged layouts are {known}, "
                              "or give the path of a .json layout file")
        text, source = ref.read_text(), f"<packaged>/{name_or_path}.json"
    else:
        try:
            text, source = path.read_text(), str(path)
        except OSError as e:
            raise LayoutError(f"layout {path}: cannot read it ({e.strerror})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise LayoutError(f"layout {source}: not valid JSON ({e.msg} at line {e.lineno})") from None
    return parse_layout(raw, source)


def parse_layout(raw: Any, source: str = "<layout>") -> Layout:
    """Build a Layout from decoded JSON, checking every field and the island's consistency."""
    v = _Validator(source)
    if not isinstance(raw, dict):
        v.fail("", "expected a JSON object at the top level")
    version = v.get(raw, "format_version", int)
    if version != FORMAT_VERSION:
        v.fail("format_version", f"is {version}, this agentalign reads version {FORMAT_VERSION}")
    world = v.get(raw, "world", dict)
    world_min, world_max = v.point(world, "min", "world"), v.point(world, "max", "world")
    if not (world_min[0] < world_max[0] and world_min[1] < world_max[1]):
        v.fail("world", "min must be below max on both axes")
    island = v.get(raw, "island", dict)
    polygon_raw = v.get(island, "polygon", list, "island")
    if len(polygon_raw) < 3:
        v.fail("island.polygon", "needs at least 3 vertices")
    polygon = tuple(v.point(polygon_raw, i, "island.polygon") for i in range(len(polygon_raw)))
    agent = v.get(raw, "agent", dict)
    camera = v.get(raw, "camera", dict)
    palette_raw = v.get(raw, "palette", dict)
    palette = {k: v.colour(palette_raw, k) for k in palette_raw}
    for needed in ("sky_top", "sky_horizon", "haze", "water", "sand", "grass", "grass_alt",
                   "avatar", "avatar_shade"):
        if needed not in palette:
            v.fail(f"palette.{needed}", "is missing")

    def circles(key: str) -> tuple[Circle, ...]:
        items = v.get(raw, key, list)
        out = []
        for i, item in enumerate(items):
            where = f"{key}[{i}]"
            beacon = (0.0, 0.0)
            if isinstance(item, dict) and "beacon" in item:
                b = v.get(item, "beacon", dict, where)
                beacon = (v.positive(b, "height", f"{where}.beacon"),
                          v.positive(b, "width", f"{where}.beacon"))
            out.append(Circle(v.get(item, "name", str, where), v.point(item, "position", where),
                              v.positive(item, "radius", where),
                              v.palette_ref(item, palette, where), *beacon))
        return tuple(out)

    pads = circles("jumppads")
    names = [p.name for p in pads]
    if sorted(names) != sorted(PADS):
        v.fail("jumppads", f"must be exactly {list(PADS)}, found {names}")
    pads = tuple(sorted(pads, key=lambda p: PADS.index(p.name)))
    landmarks = circles("landmarks")
    obstacles = []
    for i, item in enumerate(v.get(raw, "obstacles", list)):
        where = f"obstacles[{i}]"
        size = v.point(item, "size", where)
        if min(size) <= 0:
            v.fail(f"{where}.size", "must be positive")
        obstacles.append(Box(v.get(item, "name", str, where), v.point(item, "center", where),
                             size, v.palette_ref(item, palette, where)))
    spawns = []
    for i, item in enumerate(v.get(raw, "spawns", list)):
        where = f"spawns[{i}]"
        spawns.append(Spawn(v.get(item, "name", str, where), v.point(item, "position", where),
                            v.number(item, "heading", where)))
    if not spawns:
        v.fail("spawns", "needs at least one spawn point")
    rig = CameraRig(v.positive(camera, "back", "camera"), v.positive(camera, "height", "camera"),
                    v.number(camera, "pitch", "camera"), v.number(camera, "vertical_fov", "camera"),
                    v.positive(camera, "far", "camera"))
    if not 0 < rig.pitch < 80:
        v.fail("camera.pitch", f"is {rig.pitch}; it must be between 0 and 80 degrees")
    if not 10 <= rig.vertical_fov <= 120:
        v.fail("camera.vertical_fov", f"is {rig.vertical_fov}; it must be 10..120 degrees")
    if rig.pitch + rig.vertical_fov / 2 >= 89:
        v.fail("camera", "pitch + vertical_fov/2 must stay below 89 degrees")
    layout = Layout(
        name=v.get(raw, "name", str), source=source, world_min=world_min, world_max=world_max,
        polygon=polygon, beach_width=v.number(island, "beach_width", "island"),
        tile_size=v.positive(island, "tile_size", "island"),
        agent=AgentParams(*(v.positive(agent, k, "agent")
                            for k in ("radius", "height", "move_speed", "turn_rate"))),
        spawns=tuple(spawns), pads=pads, obstacles=tuple(obstacles), landmarks=landmarks,
        palette=palette, camera=rig,
        cell=v.positive(v.get(raw, "raster", dict), "cell", "raster"),
        digest=hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest(),
    )
    _check_consistency(layout, v)
    return layout


def _check_consistency(layout: Layout, v: _Validator) -> None:
    """Things that parse but would make the task impossible or the renderer wrong."""
    r = layout.agent.radius
    (wx0, wy0), (wx1, wy1) = layout.world_min, layout.world_max
    for i, (x, y) in enumerate(layout.polygon):
        if not (wx0 <= x <= wx1 and wy0 <= y <= wy1):
            v.fail(f"island.polygon[{i}]", "lies outside the world bounds")
    for kind, items in (("spawns", layout.spawns), ("jumppads", layout.pads),
                        ("landmarks", layout.landmarks)):
        for item in items:
            x, y = np.array(item.position[0]), np.array(item.position[1])
            if not layout.is_on_island(x, y):
                v.fail(kind, f"{item.name!r} at {item.position} is not on the island")
            if layout.in_obstacle(x, y, margin=r):
                v.fail(kind, f"{item.name!r} at {item.position} is inside an obstacle")
    for spawn in layout.spawns:
        for pad in layout.pads:
            if math.dist(spawn.position, pad.position) <= pad.radius + r:
                v.fail("spawns", f"{spawn.name!r} starts on the {pad.name} pad")
    if layout.agent.turn_rate <= 0 or layout.agent.move_speed <= 0:
        v.fail("agent", "move_speed and turn_rate must be positive")


class _Validator:
    """Typed field access whose errors name the file and the field."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> None:
        field = f" field {where}" if where else ""
        raise LayoutError(f"layout {self.source}:{field} {problem}")

    def get(self, obj: Any, key: str | int, kind: type, where: str = "") -> Any:
        path = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else key
        if isinstance(key, str):
            if not isinstance(obj, dict):
                self.fail(where, f"must be a JSON object, got {type(obj).__name__}")
            if key not in obj:
                self.fail(path, "is missing")
        value = obj[key]
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                self.fail(path, f"must be a finite number, got {value!r}")
            return float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(path, f"must be a {kind.__name__}, got {type(value).__name__}")
        return value

    def number(self, obj: Any, key: str, where: str) -> float:
        return self.get(obj, key, float, where)

    def positive(self, obj: Any, key: str, where: str) -> float:
        value = self.number(obj, key, where)
        if value <= 0:
            self.fail(f"{where}.{key}", f"must be positive, got {value}")
        return value

    def point(self, obj: Any, key: str | int, where: str) -> tuple[float, float]:
        value = self.get(obj, key, list, where)
        path = f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]"
        if len(value) != 2:
            self.fail(path, f"must be [x, y], got {value!r}")
        return (self.get(value, 0, float, path), self.get(value, 1, float, path))

    def colour(self, palette: dict, key: str) -> tuple[int, int, int]:
        value = palette[key]
        ok = isinstance(value, list) and len(value) == 3 and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
        if not ok:
            self.fail(f"palette.{key}", f"must be [r, g, b] with integers 0..255, got {value!r}")
        return (value[0], value[1], value[2])

    def palette_ref(self, item: Any, palette: dict, where: str) -> str:
        name = self.get(item, "colour", str, where)
        if name not in palette:
            self.fail(f"{where}.colour", f"names {name!r}, which is not in the palette")
        return name
