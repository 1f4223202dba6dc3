"""`agentalign play`: a personality in the island, driven by onnxruntime as Unity drives it;
and `measure`, the outcome rates a personality's card reports.

Both play the exported file itself (`OnnxAgent`) through the one rollout loop, not the PyTorch
policy it came from.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentalign.atomic import write_json_atomic
from agentalign.envs.intents import Intent, satisfaction
from agentalign.envs.layout import DEFAULT_LAYOUT
from agentalign.export.contract import load_model
from agentalign.export.export_config import PlaySettings
from agentalign.export.onnx_agent import OnnxAgent, PersonalityError
from agentalign.lifecycle import result_from
from agentalign.rollout import format_table, outcome_rates, play
from agentalign.rollout.pictures import save_episode_gif
from agentalign.spec import OUTCOMES


def measure(model: bytes | str | Path, episodes: int, seed: int, num_envs: int,
            deterministic: bool = False, filmed: int = 0, env: str = "island",
            intent: Intent | None = None, layout: str = DEFAULT_LAYOUT) -> dict[str, Any]:
    """Outcome rates of an ONNX personality in the island (what the card and `play` report):
    `episodes` episodes from the island's own spawns, `num_envs` at a time; onnxruntime's
    sampling is seeded with `seed` (it is process-wide, so the seed is set as the session is
    made). Episode k's frames are kept for k < `filmed`. With `intent`, also the share of the
    same episodes that satisfy it (`intent`: envs.intents.satisfaction). `layout`: the island."""
    num_envs = min(num_envs, episodes)
    agent = OnnxAgent(model, num_envs, seed=seed, deterministic=deterministic)
    played = play(agent, None, episodes=episodes, env=env, num_envs=num_envs, seed=seed,
                  layout=layout, record_frames=filmed, stage="play")
    outcomes = [e.outcome for e in played.episodes]
    measured = {"episodes": episodes, "seed": seed, "num_envs": num_envs,
                "actions": "deterministic" if deterministic else "sampled",
                "rates": outcome_rates(outcomes),
                "mean_length": float(sum(e.length for e in played.episodes) / episodes),
                "outcomes": [OUTCOMES[o] for o in outcomes],
                "films": [e.frames for e in played.episodes if e.frames is not None]}
    if intent is not None:
        measured["intent"] = satisfaction(intent, [e.track() for e in played.episodes])
    return measured


@dataclass(frozen=True)
class PlayResult:
    """What results.json holds."""

    model: str
    episodes: int
    seed: int
    num_envs: int
    actions: str
    rates: dict[str, dict[str, Any]]
    mean_length: float
    outcomes: list[str]
    files: list[str]
    warning: str | None = None


def run(settings: PlaySettings, file: str | Path, out: str | Path, *, progress: bool = False
        ) -> PlayResult:
    """Run a personality in the island as Unity would; write episode GIFs and results.json."""
    model_path, out = Path(file), Path(out)
    if out.exists() and not out.is_dir():
        raise PersonalityError(f"output folder {out}: is a file")
    props = {p.key: p.value for p in load_model(model_path).metadata_props}  # readable first
    measured = measure(model_path, settings.episodes, settings.seed, settings.num_envs,
                       settings.deterministic, filmed=settings.gifs, env=settings.env,
                       layout=settings.layout)
    files: list[str] = []
    results = {"model": str(model_path), **measured, "files": files,
               "played": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    if settings.deterministic and props.get("agentalign.feedback") == "sampled":
        results["warning"] = ("this personality feeds its sampled action back into its memory; "
                              "with deterministic actions its context holds actions it did not "
                              "take (export with --deterministic for that checkbox)")
    try:
        for k, film in enumerate(results.pop("films")):
            caption = f"{model_path.stem}: {measured['outcomes'][k]} ({len(film) - 1} decisions)"
            name = "episode.gif" if k == 0 else f"episode-{k}.gif"
            files.append(str(save_episode_gif(out / name, film, caption)))
        write_json_atomic(out / "results.json", results)
    except OSError as e:
        raise PersonalityError(f"cannot write to {out}: {e.strerror or e}") from None
    return result_from(PlayResult, results)


def summary(result: PlayResult) -> str:
    lines = [f"{result.model}: {result.episodes} episodes ({result.actions} actions, seed "
             f"{result.seed}), mean length {result.mean_length:.1f} decisions",
             format_table({"rates": result.rates, "episodes": result.episodes,
                           "mean_length": result.mean_length})]
    if result.warning:
        lines.append(f"warning: {result.warning}")
    lines.append(f"wrote results.json and {len(result.files)} GIF(s)")
    return "\n".join(lines)
