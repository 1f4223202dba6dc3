"""`agentalign preview`: pictures of the island a person can look at.

A top-down map (terrain, obstacles, landmarks, labelled pads and numbered spawns, optionally a
trajectory) and an animated GIF of one episode from the agent's own camera, upscaled so pixels
stay crisp. The map is also the background of the trajectory heatmaps in evaluation reports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gymnasium.vector import AutoresetMode
from PIL import Image, ImageDraw

from agentalign.atomic import atomic_path
from agentalign.config import load_config
from agentalign.data.players import PLAYER_CLASSES, PLAYER_TYPES, Population
from agentalign.envs.island import IslandVectorEnv
from agentalign.envs.layout import Layout
from agentalign.envs.render import IslandRenderer
from agentalign.errors import ConfigError
from agentalign.spec import OUTCOMES, PADS


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


def preview(out: str | Path, layout: str = "jumppad_island", player: str = "pad_seeker",
            target: str = "middle", seed: int = 0, height: int = 64, width: int = 64,
            scale: int = 4) -> dict[str, Path]:
    """Write map.png and episode.gif (one episode of a scripted player) into `out`."""
    if player not in PLAYER_CLASSES:
        raise ConfigError(f"unknown player type {player!r}: choose one of {list(PLAYER_TYPES)}")
    if target not in PADS:
        raise ConfigError(f"unknown pad {target!r}: choose one of {list(PADS)}")
    out = Path(out)
    env = IslandVectorEnv(1, layout=layout, height=height, width=width,
                          autoreset_mode=AutoresetMode.SAME_STEP)
    obs, info = env.reset(seed=seed)
    section = load_config("players")["corpus"]
    section = {**section, "mixture": {player: 1.0}, "pad_choice": {target: 1.0}}
    actor = Population(section, env.layout).sample(np.random.default_rng(seed))
    frames, track = [obs[0]], [info["position"][0]]
    while True:
        action = actor.act(info["position"][0], info["heading"][0])
        obs, _, terminated, truncated, info = env.step(np.array([action]))
        if terminated[0] or truncated[0]:
            final = info["final_info"]
            frames.append(info["final_obs"][0])
            track.append(final["position"][0])
            outcome = OUTCOMES[int(final["outcome"][0])]
            break
        frames.append(obs[0])
        track.append(info["position"][0])

    image = annotate(env.layout, top_down_map(env.renderer))
    draw = ImageDraw.Draw(image)
    points = [tuple(p) for p in to_map_pixels(env.layout, image, np.array(track))]
    draw.line(points, fill=(255, 255, 255), width=2)
    draw.text((6, 6), f"{player} -> {target}: {outcome} after {len(track) - 1} decisions",
              fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    paths = {"map": out / "map.png", "gif": out / "episode.gif"}
    with atomic_path(paths["map"]) as tmp:
        image.save(tmp, format="PNG")
    big = [Image.fromarray(f).resize((width * scale, height * scale), Image.NEAREST)
           for f in frames]
    with atomic_path(paths["gif"]) as tmp:
        big[0].save(tmp, format="GIF", save_all=True, append_images=big[1:], duration=100,
                    loop=0)
    return paths
