"""`agentalign evaluate`: a policy checkpoint's outcome rates, with a heatmap and episode GIFs.

Episodes run on the backend `env` names (configs/evaluate.yaml, `--env`): the embedded island or
Unity over ML-Agents; for the same seed both play the same starts.

The stage in one function: check the config, load the policy, draw the starts (the game's spawn
points, or the fixed off-lane set of configs/evaluate.yaml), play the episodes (rollout.py),
count them (metrics.py), draw them (pictures.py) and write results.json beside the pictures.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import torch

from agentalign import __version__
from agentalign.atomic import write_json_atomic
from agentalign.envs.factory import check_env_spec
from agentalign.envs.layout import Layout, load_layout
from agentalign.envs.render import IslandRenderer
from agentalign.errors import ConfigError
from agentalign.evaluate.metrics import format_table, summarise, wilson_interval
from agentalign.evaluate.pictures import save_episode_gif, save_heatmap, trajectory_heatmap
from agentalign.evaluate.rollout import (
    START_KINDS,
    Actor,
    Episode,
    PlayerActor,
    PolicyActor,
    Rollout,
    Starts,
    offlane_starts,
    rollout,
    spawn_starts,
    start_problems,
)
from agentalign.models.checkpoint import load_policy, resolve
from agentalign.spec import OUTCOMES

__all__ = [
    "Actor", "Episode", "PlayerActor", "PolicyActor", "Rollout", "Starts", "check_config",
    "evaluate", "format_table", "make_starts", "offlane_starts", "rollout", "spawn_starts",
    "start_problems", "summarise", "wilson_interval",
]


def check_config(config: dict[str, Any]) -> None:
    """One-line errors for settings that cannot work, before anything is loaded or played."""
    def whole(key: str, low: int, where: dict[str, Any] = config) -> None:
        value = where[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"evaluate: {key} must be an integer >= {low}, got {value!r}")

    def number_range(key: str, low: float, high: float) -> None:
        value = config["offlane"][key]
        ok = (isinstance(value, list) and len(value) == 2
              and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
              and low <= value[0] <= value[1] <= high)
        if not ok:
            raise ConfigError(f"evaluate: offlane.{key} must be [low, high] within "
                              f"{low}..{high}, got {value!r}")

    for key, low in (("episodes", 1), ("num_envs", 1), ("max_steps", 1), ("gif_episodes", 0),
                     ("gif_scale", 1), ("seed", 0), ("num_threads", 0)):
        whole(key, low)
    if not isinstance(config["greedy"], bool):
        raise ConfigError(f"evaluate: greedy must be true or false, got {config['greedy']!r}")
    if config["starts"] not in ("spawns", "offlane"):
        raise ConfigError(f"evaluate: starts must be spawns or offlane, got {config['starts']!r}")
    for key in ("spawn_jitter", "heatmap_cell"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 \
                or (key == "heatmap_cell" and value == 0):
            raise ConfigError(f"evaluate: {key} must be a number >= 0 (heatmap_cell > 0), "
                              f"got {value!r}")
    check_env_spec(config.get("env", "island"))
    offlane = config["offlane"]
    kinds = offlane["kinds"]
    if not isinstance(kinds, dict) or set(kinds) - set(START_KINDS[1:]) or not all(
            isinstance(w, int | float) and not isinstance(w, bool) and w >= 0
            for w in kinds.values()) or sum(kinds.values()) <= 0:
        raise ConfigError(f"evaluate: offlane.kinds must weigh {list(START_KINDS[1:])} with "
                          f"weights >= 0 (not all 0), got {kinds!r}")
    number_range("shift", 0.0, 20.0)
    number_range("turn", 0.0, 180.0)
    for key in ("jitter", "min_edge", "obstacle_margin"):
        value = offlane[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"evaluate: offlane.{key} must be a number >= 0, got {value!r}")


def make_starts(layout: Layout, config: dict[str, Any]) -> Starts:
    """The starts of `config["episodes"]` episodes: spawn points or the off-lane set."""
    if config["starts"] == "offlane":
        return offlane_starts(layout, config["episodes"], config["seed"], config["offlane"])
    return spawn_starts(layout, config["episodes"], config["seed"], config["spawn_jitter"])


def evaluate(checkpoint: str | Path, config: dict[str, Any], out: str | Path,
             progress: bool = True) -> dict[str, Any]:
    """Evaluate a policy checkpoint (or stage folder) and write results.json, heatmap.png and
    episode GIFs into `out`; returns what results.json holds."""
    check_config(config)
    try:
        device = torch.device(config["device"])
    except RuntimeError:
        raise ConfigError(f"evaluate: unknown torch device {config['device']!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("evaluate: device cuda asked for, but torch sees no CUDA GPU here")
    policy, info = load_policy(checkpoint, device=device)
    layout = load_layout(config["layout"])
    starts = make_starts(layout, config)
    actor = PolicyActor(policy, greedy=config["greedy"], seed=config["seed"])
    threads = torch.get_num_threads()
    torch.set_num_threads(config["num_threads"] or threads)
    try:
        played = rollout(actor, starts, num_envs=config["num_envs"], layout=layout,
                         height=policy.config.obs_height, width=policy.config.obs_width,
                         max_steps=config["max_steps"], seed=config["seed"],
                         record_frames=config["gif_episodes"], progress=progress,
                         env=config.get("env", "island"))
    finally:
        torch.set_num_threads(threads)
    episodes = played.episodes
    groups = {"spawn": [layout.spawns[e.spawn].name for e in episodes]}
    if config["starts"] == "offlane":
        groups["start"] = [e.kind for e in episodes]
    summary = summarise([e.outcome for e in episodes], [e.length for e in episodes], groups)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("episode-*.gif"):  # a previous run's GIFs would mislead
        old.unlink()
    step = info.get("step")
    title = (f"{info.get('stage', 'policy')} step {step}: {len(episodes)} episodes, "
             f"{'greedy' if config['greedy'] else 'sampled'}, "
             f"{'off-lane' if config['starts'] == 'offlane' else 'spawn'} starts")
    heatmap = trajectory_heatmap(IslandRenderer(layout), [e.positions for e in episodes], title,
                                 rates_line(summary), cell=config["heatmap_cell"])
    files = {"heatmap": save_heatmap(out / "heatmap.png", heatmap).name, "gifs": []}
    for e in episodes:
        if e.frames is not None:
            caption = f"{OUTCOMES[e.outcome]} after {e.length} decisions"
            path = out / f"episode-{e.index}-{OUTCOMES[e.outcome]}.gif"
            files["gifs"].append(save_episode_gif(path, e.frames, caption,
                                                  config["gif_scale"]).name)

    settings = {k: config[k] for k in ("episodes", "num_envs", "seed", "greedy", "starts",
                                       "layout", "spawn_jitter", "max_steps", "device",
                                       "num_threads")}
    settings["env"] = config.get("env", "island")
    if config["starts"] == "offlane":
        settings["offlane"] = config["offlane"]
    results = {
        "checkpoint": {"path": str(resolve(checkpoint)), "stage": info.get("stage"), "step": step,
                       "model": policy.config.name, "sha256": info.get("sha256")},
        "settings": settings,
        **summary,
        "per_episode": {"outcome": [OUTCOMES[e.outcome] for e in episodes],
                        "spawn": [e.spawn for e in episodes],
                        "start": [e.kind for e in episodes],
                        "length": [e.length for e in episodes]},
        "throughput": {"seconds": played.seconds,
                       "episodes_per_s": len(episodes) / played.seconds,
                       "decisions_per_s": played.decisions / played.seconds},
        "files": files,
        "agentalign": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(out / "results.json", results)
    return results


def rates_line(summary: dict[str, Any]) -> str:
    """'left 12.0%  middle 40.5%  right 9.5%  none 38.0% (fell 4.0%, timeout 34.0%)'."""
    r = {k: 100 * v["rate"] for k, v in summary["rates"].items()}
    return (f"left {r['left']:.1f}%  middle {r['middle']:.1f}%  right {r['right']:.1f}%  "
            f"none {r['none']:.1f}% (fell {r['fell']:.1f}%, timeout {r['timeout']:.1f}%)")
