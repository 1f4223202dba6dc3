"""`agentalign preview`: pictures of the island a person can look at.

A top-down map (terrain, obstacles, landmarks, labelled pads and numbered spawns, and one
episode's path) and an animated GIF of that episode from the agent's own camera, upscaled so
pixels stay crisp. The episode is one scripted player's, played by the one rollout loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ImageDraw

from agentalign.atomic import atomic_path
from agentalign.collect_config import CollectSettings
from agentalign.config import defaults
from agentalign.data.players import Population
from agentalign.envs.layout import load_layout
from agentalign.envs.map import annotate, to_map_pixels, top_down_map
from agentalign.envs.render import IslandRenderer
from agentalign.preview_config import PreviewSettings
from agentalign.rollout import PlayerActor, play
from agentalign.rollout.pictures import save_episode_gif
from agentalign.spec import OUTCOMES


@dataclass(frozen=True)
class PreviewResult:
    map: Path
    gif: Path
    outcome: str
    decisions: int


def run(settings: PreviewSettings, out: str | Path, *, progress: bool = False
        ) -> PreviewResult:
    """Write map.png and episode.gif (one episode of a scripted player) into `out`."""
    out = Path(out)
    layout = load_layout(settings.layout)
    corpus = defaults(CollectSettings).players["corpus"]
    population = Population(corpus.replace(mixture={settings.player: 1.0},
                                           pad_choice={settings.target: 1.0}), layout)
    actor = PlayerActor(population, rng=np.random.default_rng(settings.seed))
    played = play(actor, None, episodes=1, env=settings.env, num_envs=1, layout=layout,
                  height=settings.height, width=settings.width, seed=settings.seed,
                  record_frames=1, stage="preview")
    episode = played.episodes[0]
    outcome = OUTCOMES[episode.outcome]
    image = annotate(layout, top_down_map(IslandRenderer(layout, settings.height,
                                                         settings.width)))
    draw = ImageDraw.Draw(image)
    draw.line([tuple(p) for p in to_map_pixels(layout, image, episode.positions)],
              fill=(255, 255, 255), width=2)
    caption = f"{settings.player} -> {settings.target}: {outcome} after {episode.length} decisions"
    draw.text((6, 6), caption, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    with atomic_path(out / "map.png") as tmp:
        image.save(tmp, format="PNG")
    assert episode.frames is not None
    gif = save_episode_gif(out / "episode.gif", episode.frames, f"{outcome}",
                           settings.gif_scale)
    return PreviewResult(out / "map.png", gif, outcome, episode.length)


def summary(result: PreviewResult) -> str:
    return (f"wrote map: {result.map}\nwrote gif: {result.gif}\n"
            f"({result.outcome} after {result.decisions} decisions)")
