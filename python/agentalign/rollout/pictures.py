"""Pictures of an evaluation: a trajectory heatmap over the island map, and episode GIFs.

The heatmap colours each spot by the share of episodes that passed through it (each episode
counts once per spot, so an agent that dithers in one place does not outshine a hundred that
walked by), on a log scale from one episode to all of them, over a dimmed map so the colours
read against grass, sand and water alike. The colours, the title strip and the colour bar come
from matplotlib (imported when a heatmap is drawn); the map itself is the island's own picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agentalign.atomic import atomic_path
from agentalign.envs.layout import Layout
from agentalign.envs.map import annotate, to_map_pixels, top_down_map
from agentalign.envs.render import IslandRenderer

if TYPE_CHECKING:
    from matplotlib.colors import Colormap

# Matplotlib's "inferno": perceptually uniform, readable in grey and by most colour-blind readers,
# and its dark-to-bright ramp stands out from the island's greens and blues.
COLOUR_FLOOR = 0.25  # the ramp starts at dark purple: black would read as a hole in the map
BACKGROUND = "#181a22"  # the strips around the map
TEXT, FAINT = "#f0f0f0", "#c8c8cd"


def colour_map(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 [..., 3] along matplotlib's inferno, from COLOUR_FLOOR up."""
    import matplotlib

    t = COLOUR_FLOOR + (1 - COLOUR_FLOOR) * np.clip(np.asarray(values, dtype=np.float64), 0, 1)
    return np.asarray(matplotlib.colormaps["inferno"](t, bytes=True))[..., :3]


def _ramp(steps: int = 256) -> Colormap:
    """The part of inferno that colour_map uses, as a colormap for the colour bar."""
    import matplotlib
    from matplotlib.colors import ListedColormap

    inferno = matplotlib.colormaps["inferno"]
    return ListedColormap(inferno(np.linspace(COLOUR_FLOOR, 1.0, steps)), name="inferno_floor")


def visit_shares(layout: Layout, tracks: Sequence[np.ndarray], cell: float = 0.5) -> np.ndarray:
    """Share of episodes that entered each `cell`-metre square, [rows, cols] with row 0 north.

    Each track (positions [T, 2]) is resampled every cell/2 metres, so a step of the agent
    (0.5 m) never jumps over a square."""
    (x0, y0), (x1, y1) = layout.world_min, layout.world_max
    cols, rows = round((x1 - x0) / cell), round((y1 - y0) / cell)
    counts = np.zeros(rows * cols, dtype=np.int64)
    for track in tracks:
        track = np.asarray(track, dtype=np.float64)
        steps = np.linalg.norm(np.diff(track, axis=0), axis=1)
        along = np.concatenate([[0.0], np.cumsum(steps)])
        ts = np.linspace(0.0, along[-1], max(2, int(along[-1] / (cell / 2)) + 2))
        xs, ys = np.interp(ts, along, track[:, 0]), np.interp(ts, along, track[:, 1])
        j = np.clip(((xs - x0) / cell).astype(np.int64), 0, cols - 1)
        i = np.clip(((y1 - ys) / cell).astype(np.int64), 0, rows - 1)
        counts[np.unique(i * cols + j)] += 1
    return counts.reshape(rows, cols) / max(len(tracks), 1)


def _smooth(grid: np.ndarray) -> np.ndarray:
    """A light [1, 2, 1] blur on both axes: soft edges, paths keep their place."""
    kernel = np.array([0.25, 0.5, 0.25])
    padded = np.pad(grid, 1, mode="edge")
    grid = sum(w * padded[:, k:k + grid.shape[1]] for k, w in enumerate(kernel))[1:-1]
    padded = np.pad(grid, ((1, 1), (0, 0)), mode="edge")
    return sum(w * padded[k:k + grid.shape[0]] for k, w in enumerate(kernel))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def trajectory_heatmap(renderer: IslandRenderer, tracks: Sequence[np.ndarray], title: str,
                       subtitle: str = "", cell: float = 0.5, pixels_per_metre: float = 10.0,
                       margin: float = 3.0) -> Image.Image:
    """The island from above (cropped to the island plus `margin` metres of sea) with visit
    shares in colour, pads and spawns marked, a title strip (`title`, `subtitle`, e.g. the
    outcome rates) and a colour bar."""
    layout = renderer.layout
    terrain = top_down_map(renderer, pixels_per_metre)
    shares = visit_shares(layout, tracks, cell)
    n = max(len(tracks), 1)
    # Log scale: one episode -> 0, every episode -> 1.
    level = np.log(np.maximum(_smooth(shares) * n, 1e-9)) / np.log(max(n, 2))
    seen = _smooth((shares > 0).astype(np.float64))  # soft coverage for the alpha edge
    rgb = colour_map(level)
    alpha = np.clip(seen * 1.6, 0.0, 1.0) * (0.7 + 0.3 * np.clip(level, 0.0, 1.0))
    overlay = np.dstack([rgb, np.round(alpha * 255).astype(np.uint8)])
    heat = Image.fromarray(overlay, "RGBA").resize(terrain.size, Image.BILINEAR)

    dim = Image.blend(terrain, Image.new("RGB", terrain.size, (20, 24, 32)), 0.45)
    dim.paste(heat, (0, 0), heat)
    _outline_pads(layout, dim)
    annotate(layout, dim)
    coast = np.array(layout.polygon)
    lo, hi = to_map_pixels(layout, dim, np.array([coast.min(0) - margin, coast.max(0) + margin]))
    dim = dim.crop((max(0, round(lo[0])), max(0, round(hi[1])),
                    min(dim.width, round(hi[0])), min(dim.height, round(lo[1]))))

    return _frame(dim, title, subtitle, n)


def _frame(map_image: Image.Image, title: str, subtitle: str, episodes: int) -> Image.Image:
    """The map at its own pixel size under a title strip and over a colour bar, drawn by
    matplotlib (Agg) and returned as an RGB image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    dpi, header, footer = 100, 54, 40
    width, height = map_image.width, header + map_image.height + footer
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=BACKGROUND)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, footer / height, 1.0, map_image.height / height))
    ax.imshow(np.asarray(map_image), interpolation="nearest")
    ax.set_axis_off()
    pt = 72 / dpi  # points per pixel: sizes below are in pixels
    fig.text(10 / width, 1 - 8 / height, title, color=TEXT, fontsize=17 * pt, va="top",
             parse_math=False)
    fig.text(10 / width, 1 - 31 / height, subtitle, color=FAINT, fontsize=13 * pt, va="top",
             parse_math=False)

    # The colour bar: shares of episodes on a log scale from one episode to all of them (the
    # overlay's level), ticks at 1 episode and at 1%, 10%, 100% of episodes where they fit.
    top, bar = 8, 10
    caption = fig.text(10 / width, (footer - top - bar / 2) / height, "share of episodes passing",
                       color=FAINT, fontsize=13 * pt, va="center")
    caption_end = caption.get_window_extent(canvas.get_renderer()).x1
    left, right = max(min(220, width // 2), round(caption_end) + 16), width - 20
    cax = fig.add_axes((left / width, (footer - top - bar) / height, (right - left) / width,
                        bar / height))
    norm = LogNorm(vmin=1.0 / episodes, vmax=max(episodes, 2) / episodes)
    colour_bar = fig.colorbar(ScalarMappable(norm=norm, cmap=_ramp()), cax=cax,
                              orientation="horizontal")
    ticks = [(1.0 / episodes, "1 ep")] + [(s, f"{100 * s:g}%") for s in (0.01, 0.1, 1.0)
                                          if s > 3.0 / episodes]
    colour_bar.set_ticks([s for s, _ in ticks], labels=[label for _, label in ticks])
    colour_bar.minorticks_off()
    colour_bar.outline.set_visible(False)
    cax.tick_params(colors=FAINT, labelcolor=FAINT, labelsize=11 * pt, length=3, width=1,
                    pad=1)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB")


def _outline_pads(layout: Layout, image: Image.Image) -> None:
    """Ring each pad in its own colour, so the pads stay visible under the heat."""
    draw = ImageDraw.Draw(image)
    scale = image.width / (layout.world_max[0] - layout.world_min[0])
    for pad in layout.pads:
        (px, py), = to_map_pixels(layout, image, np.array([pad.position]))
        r = pad.radius * scale
        draw.ellipse((px - r, py - r, px + r, py + r), outline=(0, 0, 0), width=4)
        draw.ellipse((px - r, py - r, px + r, py + r), outline=layout.palette[pad.colour], width=2)


def save_heatmap(path: str | Path, image: Image.Image) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return path


def save_episode_gif(path: str | Path, frames: np.ndarray, caption: str, scale: int = 4,
                     hold_ms: int = 1500) -> Path:
    """Frames uint8 [T, H, W, 3] as a GIF at 10 decisions per second, upscaled `scale` times
    with nearest neighbour (pixels stay crisp), `caption` written on the last frame, held."""
    path = Path(path)
    h, w = frames.shape[1:3]
    big = [Image.fromarray(f).resize((w * scale, h * scale), Image.NEAREST) for f in frames]
    draw = ImageDraw.Draw(big[-1])
    draw.text((6, 6), caption, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0),
              font=_font(max(10, 4 * scale)))
    durations = [100] * (len(big) - 1) + [hold_ms]
    with atomic_path(path) as tmp:
        big[0].save(tmp, format="GIF", save_all=True, append_images=big[1:], duration=durations,
                    loop=0)
    return path
