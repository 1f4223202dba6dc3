"""The island seen from above: terrain, obstacles, landmarks, labelled pads, numbered spawns.

The background of `agentalign preview`'s map and of the trajectory heatmaps of evaluations.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from agentalign.envs.layout import Layout
from agentalign.envs.render import IslandRenderer


def top_down_map(renderer: IslandRenderer, pixels_per_metre: float = 8.0) -> Image.Image:
    """The world rectangle seen from above, north up, as an RGB image."""
    layout = renderer.layout
    x0, y0 = renderer.raster_origin
    cell = layout.cell
    j0 = round((layout.world_min[0] - x0) / cell)
    j1 = round((layout.world_max[0] - x0) / cell)
    i0 = round((layout.world_min[1] - y0) / cell)
    i1 = round((layout.world_max[1] - y0) / cell)
    rgb = renderer.palette[renderer.raster[i0:i1, j0:j1]][::-1]  # row 0 = north
    size = (round((layout.world_max[0] - layout.world_min[0]) * pixels_per_metre),
            round((layout.world_max[1] - layout.world_min[1]) * pixels_per_metre))
    return Image.fromarray(np.ascontiguousarray(rgb)).resize(size, Image.NEAREST)


def to_map_pixels(layout: Layout, image: Image.Image, xy: np.ndarray) -> np.ndarray:
    """World metres [N, 2] -> map image pixels [N, 2] (x right, y down)."""
    (wx0, wy0), (wx1, wy1) = layout.world_min, layout.world_max
    px = (xy[:, 0] - wx0) / (wx1 - wx0) * image.width
    py = (wy1 - xy[:, 1]) / (wy1 - wy0) * image.height
    return np.stack([px, py], axis=1)


def annotate(layout: Layout, image: Image.Image) -> Image.Image:
    """Label the pads and number the spawn points."""
    draw = ImageDraw.Draw(image)
    for pad in layout.pads:
        (px, py), = to_map_pixels(layout, image, np.array([pad.position]))
        draw.text((px + 12, py - 6), pad.name, fill=(255, 255, 255), stroke_width=2,
                  stroke_fill=(0, 0, 0))
    for k, spawn in enumerate(layout.spawns, 1):
        (px, py), = to_map_pixels(layout, image, np.array([spawn.position]))
        draw.ellipse((px - 6, py - 6, px + 6, py + 6), fill=(255, 255, 255), outline=(0, 0, 0))
        draw.text((px - 3, py - 6), str(k), fill=(0, 0, 0))
    return image
