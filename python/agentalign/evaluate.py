"""`agentalign evaluate`: a policy checkpoint's outcome rates, with a heatmap and episode GIFs.

Episodes run on the backend `env` names (configs/evaluate.yaml, `--env`): the embedded island or
Unity over ML-Agents; for the same seed both play the same starts.

The stage in one function: load the policy, draw the starts (the game's spawn points, or the
fixed off-lane set of configs/evaluate.yaml), play the episodes (`rollout.loop.play`), count them
(`rollout.outcomes`), draw them (`rollout.pictures`) and write results.json beside the pictures.
With `intent` (`--intent NAME`), each episode's track (its positions, outcome and length) is also
checked against that designer intent (`envs.intents`), and the share that satisfies it is
reported with its 95% interval; without it every output is as before.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agentalign import __version__, events
from agentalign.atomic import write_json_atomic
from agentalign.envs.intents import intent_by_name, satisfaction
from agentalign.envs.layout import Layout, load_layout
from agentalign.envs.render import IslandRenderer
from agentalign.errors import ConfigError
from agentalign.evaluate_config import EvaluateSettings
from agentalign.lifecycle import result_from
from agentalign.models.checkpoint import load_policy, resolve
from agentalign.rollout import (
    PolicyActor,
    Starts,
    format_table,
    intent_line,
    offlane_starts,
    rates_line,
    spawn_starts,
    summarise,
)
from agentalign.rollout.cluster import Cluster, play_on
from agentalign.rollout.pictures import save_episode_gif, save_heatmap, trajectory_heatmap
from agentalign.spec import OUTCOMES


@dataclass(frozen=True)
class EvaluateResult:
    """What results.json holds."""

    checkpoint: dict[str, Any]  # path, stage, step, model, sha256
    settings: dict[str, Any]
    episodes: int
    rates: dict[str, dict[str, Any]]  # per outcome: rate, 95% interval, count, n
    mean_length: float
    by_spawn: dict[str, Any]
    per_episode: dict[str, list[Any]]
    throughput: dict[str, float]
    files: dict[str, Any]
    by_start: dict[str, Any] | None = None  # off-lane starts only
    intent: dict[str, Any] | None = None  # with --intent: name, description, file, rate, ...


def make_starts(layout: Layout, settings: EvaluateSettings) -> Starts:
    """The starts of `settings.episodes` episodes: spawn points or the off-lane set."""
    if settings.starts == "offlane":
        return offlane_starts(layout, settings.episodes, settings.seed, settings.offlane)
    return spawn_starts(layout, settings.episodes, settings.seed, settings.spawn_jitter)


def run(settings: EvaluateSettings, checkpoint: str | Path, out: str | Path, *,
        progress: bool = True, cluster: Cluster | None = None) -> EvaluateResult:
    """Evaluate a policy checkpoint (or stage folder) and write results.json, heatmap.png and
    episode GIFs into `out`; with `cluster`, the same episodes are played by Ray actors."""
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("evaluate: device cuda asked for, but torch sees no CUDA GPU here")
    policy, info = load_policy(checkpoint, device=device)
    layout = load_layout(settings.layout)
    intent = (intent_by_name(settings.intent, settings.intents, layout)  # fails before playing
              if settings.intent is not None else None)
    starts = make_starts(layout, settings)
    actor = PolicyActor(policy, greedy=settings.greedy)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.num_threads or threads)
    try:
        options = dict(num_envs=settings.num_envs, layout=layout,
                       height=policy.config.obs_height, width=policy.config.obs_width,
                       max_steps=settings.max_steps, seed=settings.seed,
                       record_frames=settings.gif_episodes, progress=progress, env=settings.env,
                       stage="evaluate")
        played = play_on(cluster, actor, starts, **options)
    finally:
        torch.set_num_threads(threads)
    episodes = played.episodes
    groups = {"spawn": [layout.spawns[e.spawn].name for e in episodes]}
    if settings.starts == "offlane":
        groups["start"] = [e.kind for e in episodes]
    summary_ = summarise([e.outcome for e in episodes], [e.length for e in episodes], groups)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("episode-*.gif"):  # a previous run's GIFs would mislead
        old.unlink()
    step = info.get("step")
    title = (f"{info.get('stage', 'policy')} step {step}: {len(episodes)} episodes, "
             f"{'greedy' if settings.greedy else 'sampled'}, "
             f"{'off-lane' if settings.starts == 'offlane' else 'spawn'} starts")
    heatmap = trajectory_heatmap(IslandRenderer(layout), [e.positions for e in episodes], title,
                                 rates_line(summary_["rates"]), cell=settings.heatmap_cell)
    files = {"heatmap": save_heatmap(out / "heatmap.png", heatmap).name, "gifs": []}
    for e in episodes:
        if e.frames is not None:
            caption = f"{OUTCOMES[e.outcome]} after {e.length} decisions"
            path = out / f"episode-{e.index}-{OUTCOMES[e.outcome]}.gif"
            files["gifs"].append(save_episode_gif(path, e.frames, caption,
                                                  settings.gif_scale).name)

    plain = settings.to_dict()
    kept = {k: plain[k] for k in ("episodes", "num_envs", "seed", "greedy", "starts", "layout",
                                  "spawn_jitter", "max_steps", "device", "num_threads", "env")}
    if settings.starts == "offlane":
        kept["offlane"] = plain["offlane"]
    extra: dict[str, Any] = {}  # only with an intent, so that results.json is otherwise as before
    satisfied: dict[str, list[bool]] = {}
    if intent is not None:
        kept.update(intent=settings.intent, intents=settings.intents)
        tracks = [e.track() for e in episodes]
        satisfied["intent"] = [intent.satisfied(t) for t in tracks]
        extra["intent"] = {**satisfaction(intent, tracks),
                           "file": settings.intents or "<packaged>"}
    results = {
        "checkpoint": {"path": str(resolve(checkpoint)), "stage": info.get("stage"), "step": step,
                       "model": policy.config.name, "sha256": info.get("sha256")},
        "settings": kept,
        **summary_,
        **extra,
        "per_episode": {"outcome": [OUTCOMES[e.outcome] for e in episodes],
                        "spawn": [e.spawn for e in episodes],
                        "start": [e.kind for e in episodes],
                        "length": [e.length for e in episodes],
                        **satisfied},
        "throughput": {"seconds": played.seconds,
                       "episodes_per_s": len(episodes) / played.seconds,
                       "decisions_per_s": played.decisions / played.seconds},
        "files": files,
        "agentalign": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(out / "results.json", results)
    events.metrics("evaluate", {"rates": summary_["rates"], **extra})
    return result_from(EvaluateResult, results)


def summary(result: EvaluateResult) -> str:
    ckpt, speed, s = result.checkpoint, result.throughput, result.settings
    return "\n".join([
        f"{ckpt['path']} (stage {ckpt['stage']}, step {ckpt['step']}): {result.episodes} "
        f"episodes from {s['starts']} starts, {'greedy' if s['greedy'] else 'sampled'} "
        f"actions, {speed['episodes_per_s']:.1f} episodes/s",
        format_table({"rates": result.rates, "episodes": result.episodes,
                      "mean_length": result.mean_length, "by_spawn": result.by_spawn,
                      **({"by_start": result.by_start} if result.by_start else {})}),
        *([intent_line(result.intent)] if result.intent else []),
        f"wrote results.json, heatmap.png and {len(result.files['gifs'])} GIFs"])
