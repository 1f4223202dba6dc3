"""What the pages draw: a rollout as one PNG strip of camera frames plus its path in map pixels,
and the island's map.

One image per clip (frames stacked top to bottom) so a clip is one request and the page can
draw frame i from it at any moment: both clips of a pair are drawn from one clock, so they
cannot drift apart (Uni-RLHF concatenates its clips into one video for the same reason).
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agentalign.data.shards import Corpus
from agentalign.envs.layout import Layout, load_layout
from agentalign.envs.map import annotate, to_map_pixels, top_down_map
from agentalign.envs.render import IslandRenderer
from agentalign.spec import OUTCOMES

MAP_PIXELS_PER_METRE = 6.0


@lru_cache(maxsize=4)
def island_map(layout_name: str = "jumppad_island") -> tuple[bytes, int, int]:
    """The annotated top-down map as PNG bytes, its width and height."""
    layout = load_layout(layout_name)
    image = annotate(layout, top_down_map(IslandRenderer(layout, 64, 64), MAP_PIXELS_PER_METRE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), image.width, image.height


def png(frames: np.ndarray) -> bytes:
    """uint8 [T, H, W, 3] -> one PNG, frames stacked vertically."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frames.reshape(-1, *frames.shape[2:]))).save(
        buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()


def map_path(layout: Layout, positions: np.ndarray) -> list[list[float]]:
    """World positions [T, 2] -> map pixels, rounded (the page draws the path so far)."""
    size = (round((layout.world_max[0] - layout.world_min[0]) * MAP_PIXELS_PER_METRE),
            round((layout.world_max[1] - layout.world_min[1]) * MAP_PIXELS_PER_METRE))
    xy = to_map_pixels(layout, _blank(size), positions.astype(np.float64))
    return np.round(xy, 1).tolist()


@lru_cache(maxsize=4)
def _blank(size: tuple[int, int]) -> Image.Image:
    """An image of the map's size (to_map_pixels reads only the size), made once, not on every
    clip and every live step."""
    return Image.new("L", size)


class Clips:
    """Rollouts of the pool by (corpus, episode), opened once per corpus."""

    def __init__(self, labels: Path, layout: str = "jumppad_island"):
        self.labels = labels
        self.layout = load_layout(layout)
        self.corpora: dict[str, Corpus] = {}

    def corpus(self, name: str) -> Corpus:
        if name not in self.corpora:
            self.corpora[name] = Corpus(self.labels / name, verify=False)
        return self.corpora[name]

    def frames_png(self, corpus: str, episode: int) -> bytes:
        return png(self.corpus(corpus).episode(episode)["frames"])

    def info(self, corpus: str, episode: int) -> dict[str, Any]:
        """Length, frame size and the path in map pixels; no outcome (the designer judges)."""
        c = self.corpus(corpus)
        steps = c.episode(episode)
        return {"length": len(steps["frames"]),
                "frame": list(c.obs_shape[:2]),
                "path": map_path(self.layout, steps["positions"])}

    def outcome(self, corpus: str, episode: int) -> str:
        return OUTCOMES[int(self.corpus(corpus).episodes["outcomes"][episode])]
