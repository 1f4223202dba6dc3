"""The embedded island's renderer: what the agent's third-person camera sees, batched in NumPy.

The camera follows the agent (fixed distance behind, height and pitch), so the ground point each
pixel sees depends only on the agent's heading, not on its position: per-heading lookup tables
(1 degree bins) hold, for every ground pixel, the raster-cell offset from the agent's cell. A frame
is then one integer add and two gathers per pixel. Beacons (upright columns over the pads and
some landmarks, so a pad is visible from the spawn) are projected per agent and painted far to
near as rectangles. Rows above the horizon (sky) and beyond the far
distance (haze) never change, and neither does the avatar, which always stands at the same place
in the image; they are painted from precomputed arrays.
"""

from __future__ import annotations

import math

import numpy as np

from agentalign.envs.layout import Layout

HEADING_BINS = 360

# Terrain classes in raster order; the palette colours come from the layout.
BASE_TERRAIN = ("water", "sand", "grass", "grass_alt")


def pinhole(layout: Layout, height: int, width: int) -> tuple[float, float, float]:
    """Focal length in pixels and the principal point (column, row) of the layout's camera."""
    f = (height / 2) / math.tan(math.radians(layout.camera.vertical_fov) / 2)
    return f, width / 2, height / 2


def project_point(layout: Layout, height: int, width: int, forward: float, right: float,
                  up: float = 0.0) -> tuple[float, float]:
    """Continuous image (column, row) of a point given relative to the agent (metres ahead,
    right, up); pixel (r, c) covers [c, c+1) x [r, r+1). Written from plain pinhole geometry,
    independently of the lookup tables, so tests can check one against the other."""
    cam = layout.camera
    f, cx, cy = pinhole(layout, height, width)
    p = math.radians(cam.pitch)
    a, z = forward + cam.back, up - cam.height  # relative to the camera
    depth = a * math.cos(p) - z * math.sin(p)  # along the optical axis
    down = -a * math.sin(p) - z * math.cos(p)  # along the image's downward axis
    return cx + f * right / depth, cy + f * down / depth


class IslandRenderer:
    """Renders batches of agent views of one layout at one resolution."""

    def __init__(self, layout: Layout, height: int = 64, width: int = 64):
        self.layout, self.height, self.width = layout, height, width
        self.colour_names = list(BASE_TERRAIN)
        for item in (*layout.landmarks, *layout.pads, *layout.obstacles):
            if item.colour not in self.colour_names:
                self.colour_names.append(item.colour)
        self.palette = np.array([layout.palette[n] for n in self.colour_names], dtype=np.uint8)
        self._build_tables()
        self.raster, self.raster_origin = rasterise(layout, self.colour_names, self.pad_metres)
        self.raster_flat = self.raster.reshape(-1)
        ncols = self.raster.shape[1]
        self.offsets = (self._di * ncols + self._dj).reshape(HEADING_BINS, -1).astype(np.int32)
        del self._di, self._dj
        self._build_background()
        self._build_avatar()
        beacons = [c for c in (*layout.pads, *layout.landmarks) if c.beacon_height > 0]
        self.beacon_xy = np.array([c.position for c in beacons], dtype=np.float64).reshape(-1, 2)
        self.beacon_size = np.array([(c.beacon_width, c.beacon_height) for c in beacons],
                                    dtype=np.float64).reshape(-1, 2)
        self.beacon_colours = np.array([layout.palette[c.colour] for c in beacons], dtype=np.uint8)

    # -- precomputation ------------------------------------------------------------------------

    def _pixel_rays(self) -> tuple[np.ndarray, np.ndarray]:
        f, cx, cy = pinhole(self.layout, self.height, self.width)
        cols = (np.arange(self.width) + 0.5 - cx) / f  # right, per unit of depth
        rows = (np.arange(self.height) + 0.5 - cy) / f  # down, per unit of depth
        return cols, rows

    def _build_tables(self) -> None:
        cam, cell = self.layout.camera, self.layout.cell
        p = math.radians(cam.pitch)
        cols, rows = self._pixel_rays()
        descent = math.sin(p) + rows * math.cos(p)  # how fast each row's ray falls per unit depth
        with np.errstate(divide="ignore"):
            t = np.where(descent > 0, cam.height / descent, np.inf)
        ahead = t * (math.cos(p) - rows * math.sin(p))  # horizontal distance from the camera
        ground_rows = np.nonzero(np.isfinite(ahead) & (ahead <= cam.far))[0]
        # The far distance cuts whole rows: rows above it are sky or haze in every frame.
        self.first_ground_row = int(ground_rows[0]) if len(ground_rows) else self.height
        self.horizon_row = float(np.interp(0.0, descent, np.arange(self.height)))
        r0 = self.first_ground_row
        fwd = (ahead[r0:] - cam.back)[:, None] * np.ones(self.width)  # metres ahead of the agent
        right = (t[r0:, None] * cols[None, :])  # metres right of the agent
        self.pad_metres = float(np.hypot(fwd, right).max()) + 2.0
        theta = np.radians(np.arange(HEADING_BINS) * (360.0 / HEADING_BINS))[:, None, None]
        dx = fwd * np.sin(theta) + right * np.cos(theta)  # world east offset
        dy = fwd * np.cos(theta) - right * np.sin(theta)  # world north offset
        # Offsets in cells, as if the agent stood at the centre of its cell.
        di = np.floor(0.5 + dy / cell).astype(np.int64)
        dj = np.floor(0.5 + dx / cell).astype(np.int64)
        self._di, self._dj = di, dj  # combined into flat offsets once the raster size is known

    def _build_background(self) -> None:
        pal = self.layout.palette
        r0 = self.first_ground_row
        bg = np.empty((r0, self.width, 3), dtype=np.uint8)
        top, horizon, haze = (np.array(pal[k], dtype=np.float64)
                              for k in ("sky_top", "sky_horizon", "haze"))
        hz = max(self.horizon_row, 1.0)
        for r in range(r0):
            if r < self.horizon_row:
                w = min(r / hz, 1.0)
                bg[r] = np.round(top * (1 - w) + horizon * w).astype(np.uint8)
            else:
                bg[r] = haze.astype(np.uint8)
        self.background = bg

    def _build_avatar(self) -> None:
        """Ray-cast the avatar (an upright cylinder at the agent's feet) once: it never moves."""
        cam, agent = self.layout.camera, self.layout.agent
        p = math.radians(cam.pitch)
        cols, rows = self._pixel_rays()
        da = (math.cos(p) - rows * math.sin(p))[:, None] * np.ones(self.width)  # ahead per t
        dl = np.ones(self.height)[:, None] * cols[None, :]  # right per t
        dz = (-math.sin(p) - rows * math.cos(p))[:, None] * np.ones(self.width)  # up per t
        a0, z0, r = -cam.back, cam.height, agent.radius
        # Side: (a0 + t da)^2 + (t dl)^2 = r^2, nearest root.
        qa, qb, qc = da**2 + dl**2, 2 * a0 * da, a0**2 - r**2
        disc = qb**2 - 4 * qa * qc
        with np.errstate(invalid="ignore"):
            t_side = (-qb - np.sqrt(disc)) / (2 * qa)
        z_side = z0 + t_side * dz
        side = (disc >= 0) & (t_side > 0) & (z_side >= 0) & (z_side <= agent.height)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_top = (agent.height - z0) / dz
        top = (t_top > 0) & ((a0 + t_top * da) ** 2 + (t_top * dl) ** 2 <= r**2) & ~side
        mask = side | top
        colours = np.where(top[..., None], self.layout.palette["avatar_shade"],
                           self.layout.palette["avatar"]).astype(np.uint8)
        self.avatar_pixels = np.flatnonzero(mask.reshape(-1))
        self.avatar_colours = colours.reshape(-1, 3)[self.avatar_pixels]

    # -- per frame -----------------------------------------------------------------------------

    def cell_index(self, positions: np.ndarray) -> np.ndarray:
        """Flat raster index of each position's cell (positions: [N, 2] metres)."""
        x0, y0 = self.raster_origin
        nrows, ncols = self.raster.shape
        j = np.clip(np.floor((positions[:, 0] - x0) / self.layout.cell), 0, ncols - 1)
        i = np.clip(np.floor((positions[:, 1] - y0) / self.layout.cell), 0, nrows - 1)
        return (i * ncols + j).astype(np.int32)

    def render(self, positions: np.ndarray, headings: np.ndarray,
               out: np.ndarray | None = None) -> np.ndarray:
        """Views for N agents: positions [N, 2] metres, headings [N] degrees -> [N, H, W, 3]."""
        n = len(positions)
        if out is None:
            out = np.empty((n, self.height, self.width, 3), dtype=np.uint8)
        if n == 0:
            return out
        bins = np.rint(np.asarray(headings) * (HEADING_BINS / 360.0)).astype(np.int64)
        bins %= HEADING_BINS
        cells = self.offsets[bins]  # [N, P] int32
        cells += self.cell_index(np.asarray(positions, dtype=np.float64))[:, None]
        terrain = self.raster_flat[cells]
        r0 = self.first_ground_row
        out[:, :r0] = self.background
        ground = out[:, r0:].reshape(n, -1, 3)  # a view: rows r0.. of each frame
        np.take(self.palette, terrain, axis=0, out=ground)  # ~3x faster than palette[terrain]
        if len(self.beacon_xy):
            self._draw_beacons(out, np.asarray(positions, dtype=np.float64),
                               np.asarray(headings, dtype=np.float64))
        flat = out.reshape(n, -1, 3)
        flat[:, self.avatar_pixels] = self.avatar_colours
        return out

    def _draw_beacons(self, out: np.ndarray, positions: np.ndarray, headings: np.ndarray) -> None:
        cam = self.layout.camera
        f, cx, cy = pinhole(self.layout, self.height, self.width)
        p = math.radians(cam.pitch)
        theta = np.radians(headings)[:, None]
        rel = self.beacon_xy[None] - positions[:, None]  # [N, B, 2]
        a = rel[..., 0] * np.sin(theta) + rel[..., 1] * np.cos(theta) + cam.back
        right = rel[..., 0] * np.cos(theta) - rel[..., 1] * np.sin(theta)
        width, tall = self.beacon_size[:, 0], self.beacon_size[:, 1]
        z_bottom, z_top = -cam.height, tall - cam.height
        depth = a * math.cos(p) - z_bottom * math.sin(p)
        depth_top = a * math.cos(p) - z_top * math.sin(p)
        visible = (depth > 0.5) & (depth_top > 0.5)
        with np.errstate(divide="ignore", invalid="ignore"):
            col = cx + f * right / depth
            half = f * width / 2 / depth
            row_bottom = cy + f * (-a * math.sin(p) - z_bottom * math.cos(p)) / depth
            row_top = cy + f * (-a * math.sin(p) - z_top * math.cos(p)) / depth_top
        c0 = np.floor(col - half + 0.5)
        c1 = np.maximum(c0 + 1, np.floor(col + half + 0.5))
        r0 = np.floor(row_top + 0.5)
        r1 = np.maximum(r0 + 1, np.floor(row_bottom + 0.5))
        visible &= (c1 > 0) & (c0 < self.width) & (r1 > 0) & (r0 < self.height)
        env, item = np.nonzero(visible)
        if not len(env):
            return
        order = np.lexsort((-depth[env, item], env))  # per agent, far to near
        c0 = np.clip(c0, 0, self.width).astype(np.int64)
        c1 = np.clip(c1, 0, self.width).astype(np.int64)
        r0 = np.clip(r0, 0, self.height).astype(np.int64)
        r1 = np.clip(r1, 0, self.height).astype(np.int64)
        for e, k in zip(env[order].tolist(), item[order].tolist(), strict=True):
            out[e, r0[e, k]:r1[e, k], c0[e, k]:c1[e, k]] = self.beacon_colours[k]


def rasterise(layout: Layout, colour_names: list[str],
              pad_metres: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Top-down raster of colour indices and its origin (x, y of cell [0, 0]'s corner).

    Padded with water far enough beyond the world that no view can sample outside it. Row i
    covers y in [origin_y + i*cell, ...), column j covers x in [origin_x + j*cell, ...). Items
    are painted in order: ground, landmarks, pads, obstacles (obstacles are drawn flat, as
    coloured footprints; the Unity scene mirrors that choice).
    """
    cell = layout.cell
    x0 = layout.world_min[0] - pad_metres
    y0 = layout.world_min[1] - pad_metres
    ncols = math.ceil((layout.world_max[0] + pad_metres - x0) / cell)
    nrows = math.ceil((layout.world_max[1] + pad_metres - y0) / cell)
    raster = np.zeros((nrows, ncols), dtype=np.uint8)  # 0 = water
    # Only the world rectangle can hold land; sample cell centres there.
    j0 = math.floor((layout.world_min[0] - x0) / cell)
    j1 = math.ceil((layout.world_max[0] - x0) / cell)
    i0 = math.floor((layout.world_min[1] - y0) / cell)
    i1 = math.ceil((layout.world_max[1] - y0) / cell)
    xs = x0 + (np.arange(j0, j1) + 0.5) * cell
    ys = y0 + (np.arange(i0, i1) + 0.5) * cell
    x, y = np.meshgrid(xs, ys)
    code = {name: i for i, name in enumerate(colour_names)}
    land = layout.is_on_island(x, y)
    tile = (np.floor(x / layout.tile_size) + np.floor(y / layout.tile_size)) % 2 == 1
    block = np.where(tile, code["grass_alt"], code["grass"]).astype(np.uint8)
    block[land & (layout.distance_to_edge(x, y) < layout.beach_width)] = code["sand"]
    block[~land] = code["water"]
    for disc in (*layout.landmarks, *layout.pads):
        inside = np.hypot(x - disc.position[0], y - disc.position[1]) <= disc.radius
        block[inside] = code[disc.colour]
    for box in layout.obstacles:
        (lx, ly), (hx, hy) = box.lo, box.hi
        block[(x >= lx) & (x <= hx) & (y >= ly) & (y <= hy)] = code[box.colour]
    raster[i0:i1, j0:j1] = block
    return raster, (x0, y0)
