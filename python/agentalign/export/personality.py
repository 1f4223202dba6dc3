"""Personalities: an exported policy (`<name>.onnx`) plus its card (`<name>.json`), and `play`.

The card says what a designer gets before they drop the file into Unity: where it came from
(checkpoint hash, stage, config), what it expects (observation and action spec, memory size)
and how it behaves: outcome rates with 95% Wilson intervals, measured at export time by running
the exported ONNX file itself in the island, not the PyTorch policy it came from.

`OnnxAgent` drives a personality the way Unity's ML-Agents does: NCHW float frames in 0..1,
an all-zero memory at the first decision of every episode, `recurrent_out` fed back as the next
`recurrent_in`, sampled actions (`discrete_actions`) unless deterministic inference is asked for.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode
from PIL import Image, ImageDraw

from agentalign import __version__
from agentalign.atomic import atomic_path, write_json_atomic
from agentalign.envs.island import IslandVectorEnv
from agentalign.errors import UserError
from agentalign.evaluate.metrics import outcome_rates
from agentalign.export.contract import constant_value, load_model, require_valid
from agentalign.export.onnx import (
    ACTION_MASKS,
    DETERMINISTIC_ACTIONS,
    DISCRETE_ACTIONS,
    MEMORY_SIZE,
    OBS,
    OPSET,
    RECURRENT_IN,
    RECURRENT_OUT,
    MemoryLayout,
    export_model,
)
from agentalign.spec import (
    ACTION_BRANCHES,
    CAMERA_SENSOR_NAME,
    DECISIONS_PER_SECOND,
    MOVE_NAMES,
    OUTCOMES,
    PADS,
    TURN_NAMES,
)

CARD_FORMAT = "agentalign-personality"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")

class PersonalityError(UserError):
    """A personality name, target, folder or file that cannot be used."""


def check_name(name: str) -> str:
    """The name if it is safe as a file name on every OS (letters, digits, - and _)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise PersonalityError(f"personality name {name!r}: use 1-64 letters, digits, '-' or "
                               "'_', starting with a letter or digit (it becomes a file name)")
    return name


def default_out(checkpoint_folder: Path) -> Path:
    """runs/<run>/personalities for a checkpoint of runs/<run>/<stage>/checkpoints/step-N,
    else runs/personalities (DESIGN.md: a run's personalities live in the run)."""
    if checkpoint_folder.parent.name == "checkpoints":
        return checkpoint_folder.parent.parent.parent / "personalities"
    return Path("runs/personalities")


def _check_out_folder(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise PersonalityError(f"output folder {out}: is a file")
    return out


# -- acting as Unity does ---------------------------------------------------------------------

class OnnxAgent:
    """A batch of agents played by one ONNX personality through onnxruntime.

    `seed` seeds onnxruntime's random ops (the graph's Multinomial) for reproducible sampled
    actions; it is process-wide in onnxruntime, so it is set right before the session is made.
    """

    def __init__(self, model: bytes | str | Path, num_agents: int, *, seed: int | None = None,
                 deterministic: bool = False, threads: int | None = None) -> None:
        import onnxruntime as ort

        proto = require_valid(model if isinstance(model, bytes) else Path(model))
        memory = constant_value(proto, MEMORY_SIZE)
        self.memory_size = int(memory.flat[0]) if memory is not None else 0
        if seed is not None:
            ort.set_seed(int(seed))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle pool threads would spin while the island steps between decisions.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own error types
            raise PersonalityError(f"onnxruntime cannot load the model: "
                                   f"{str(e).strip().splitlines()[0]}") from None
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.action_output = DETERMINISTIC_ACTIONS if deterministic else DISCRETE_ACTIONS
        self.memory = np.zeros((num_agents, 1, self.memory_size), np.float32)
        self.masks = np.ones((num_agents, sum(ACTION_BRANCHES)), np.float32)

    def reset(self, rows: np.ndarray) -> None:
        """Start new episodes in `rows` (bool [N]): Unity zeroes an agent's memory then."""
        self.memory[rows] = 0.0

    def act(self, frames: np.ndarray) -> np.ndarray:
        """Actions int64 [N, n_branches] for frames uint8 [N, H, W, 3] (the island's layout)."""
        feeds = {OBS: np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32)
                 / np.float32(255.0)}
        if ACTION_MASKS in self.input_names:
            feeds[ACTION_MASKS] = self.masks
        outputs = [self.action_output]
        if self.memory_size:
            feeds[RECURRENT_IN] = self.memory
            outputs.append(RECURRENT_OUT)
        results = self.session.run(outputs, feeds)
        if self.memory_size:
            self.memory = results[1]
        return results[0]


def rollout(agent: OnnxAgent, num_envs: int, episodes: int, seed: int, filmed: int = 1
            ) -> dict[str, Any]:
    """Play exactly `episodes` episodes in the island, `num_envs` at a time.

    A row that ends an episode starts the next unplayed one; once all have started, finished
    rows idle and are not counted, so short episodes are not over-represented. Episode k's
    frames are kept for k < `filmed`.
    """
    env = IslandVectorEnv(num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
    frames, _ = env.reset(seed=seed)
    episode_of = np.where(np.arange(num_envs) < episodes, np.arange(num_envs), -1)
    next_episode = min(num_envs, episodes)
    outcomes = np.full(episodes, -1, dtype=np.int64)
    lengths = np.zeros(episodes, dtype=np.int64)
    films: dict[int, list[np.ndarray]] = {k: [] for k in range(min(filmed, episodes))}
    agent.reset(np.ones(num_envs, dtype=bool))
    while (episode_of >= 0).any():
        for row in np.flatnonzero(np.isin(episode_of, list(films))):
            films[int(episode_of[row])].append(frames[row])
        frames, _, terminated, truncated, info = env.step(agent.act(frames))
        ended = terminated | truncated
        if not ended.any():
            continue
        for row in np.flatnonzero(ended):
            k = int(episode_of[row])
            if k >= 0:
                outcomes[k] = info["final_info"]["outcome"][row]
                lengths[k] = info["final_info"]["step"][row]
                if k in films:
                    films[k].append(info["final_obs"][row])
            episode_of[row] = next_episode if next_episode < episodes else -1
            next_episode = min(next_episode + 1, episodes)
        agent.reset(ended)  # SAME_STEP: these rows already show their next episode's first frame
    return {"outcomes": outcomes, "lengths": lengths,
            "films": [np.stack(films[k]) for k in sorted(films)]}


# -- rates ------------------------------------------------------------------------------------

def format_rates(rates: dict[str, dict[str, float | int]]) -> str:
    """One line per outcome: rate and 95% interval in percent."""
    return "\n".join(f"  {name:8s} {100 * r['rate']:5.1f}%  [{100 * r['low']:5.1f}, "
                     f"{100 * r['high']:5.1f}]  ({r['count']}/{r['n']})"
                     for name, r in rates.items())


def measure(model: bytes | str | Path, episodes: int, seed: int, num_envs: int,
            deterministic: bool = False, filmed: int = 0) -> dict[str, Any]:
    """Outcome rates of an ONNX personality in the island (what the card and `play` report)."""
    if episodes < 1:
        raise PersonalityError(f"episodes must be at least 1, got {episodes}")
    if num_envs < 1:
        raise PersonalityError(f"num-envs must be at least 1, got {num_envs}")
    num_envs = min(num_envs, episodes)
    agent = OnnxAgent(model, num_envs, seed=seed, deterministic=deterministic)
    played = rollout(agent, num_envs, episodes, seed, filmed=filmed)
    return {"episodes": episodes, "seed": seed, "num_envs": num_envs,
            "actions": "deterministic" if deterministic else "sampled",
            "rates": outcome_rates(played["outcomes"]),
            "mean_length": float(played["lengths"].mean()),
            "outcomes": [OUTCOMES[o] for o in played["outcomes"]],
            "films": played["films"]}


# -- export -----------------------------------------------------------------------------------

def export_personality(checkpoint: str | Path, name: str, out: str | Path | None = None, *,
                       target: str | None = None, episodes: int = 200, seed: int = 0,
                       num_envs: int = 64, deterministic: bool = False
                       ) -> tuple[dict[str, Any], Path]:
    """Write `<out>/<name>.onnx` and `<out>/<name>.json` (the card); returns the card and
    the .onnx path.

    Both files appear together or not at all: they are written to temporaries and renamed only
    after the export, the contract check and the measurement have all succeeded.
    `deterministic` exports a personality whose sampled output is the argmax too (for Unity's
    Deterministic Inference checkbox; see onnx.py on which action the memory feeds back).
    """
    from agentalign.models.checkpoint import load_policy, resolve

    check_name(name)
    folder = resolve(checkpoint)
    out = _check_out_folder(Path(out) if out is not None else default_out(folder))
    policy, info = load_policy(folder)
    meta = info.get("meta") or {}
    target = target if target is not None else meta.get("target")
    if target is not None and target not in PADS:
        raise PersonalityError(f"unknown target pad {target!r}: choose one of {list(PADS)}")

    feedback = "greedy" if deterministic else "sampled"
    proto = export_model(policy, feedback=feedback,
                         doc=f"agentalign personality {name!r} ({info.get('stage')} "
                             f"step {info.get('step')})")
    model_bytes = proto.SerializeToString()
    measured = measure(model_bytes, episodes, seed, num_envs)
    card = make_card(name, target, info, policy.config, measured, model_bytes, feedback)
    try:
        with atomic_path(out / f"{name}.onnx") as onnx_tmp, \
                atomic_path(out / f"{name}.json") as card_tmp:
            onnx_tmp.write_bytes(model_bytes)
            card_tmp.write_text(json.dumps(card, indent=2) + "\n")
            _shareable(onnx_tmp, card_tmp)
    except OSError as e:
        raise PersonalityError(f"cannot write to {out}: {e.strerror or e}") from None
    return card, out / f"{name}.onnx"


def _shareable(*paths: Path) -> None:
    """Give temporaries (created private, 0600) the usual file mode: a personality is meant to
    be copied into a Unity project by someone else."""
    umask = os.umask(0)
    os.umask(umask)
    for path in paths:
        path.chmod(0o666 & ~umask)


def make_card(name: str, target: str | None, info: dict[str, Any], config: Any,
              measured: dict[str, Any], model_bytes: bytes, feedback: str) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import torch

    layout = MemoryLayout.of(config)
    model_config = json.loads(json.dumps(config.to_dict()))  # tuples as lists, as on disk
    config_json = json.dumps(model_config, sort_keys=True).encode()
    return {
        "format": CARD_FORMAT, "format_version": 1,
        "name": name, "target": target,
        "stage": info.get("stage"), "step": info.get("step"),
        "source_checkpoint_sha256": info.get("sha256"),
        "onnx_file": f"{name}.onnx",
        "onnx_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "config": model_config,
        "config_sha256": hashlib.sha256(config_json).hexdigest(),
        "observation_spec": [{"name": OBS, "sensor": CAMERA_SENSOR_NAME,
                              "shape": [3, config.obs_height, config.obs_width],
                              "layout": "NCHW", "dtype": "float32", "range": [0.0, 1.0]}],
        "action_spec": {"discrete_branches": list(config.action_branches),
                        "names": [list(MOVE_NAMES), list(TURN_NAMES)],
                        "decisions_per_second": DECISIONS_PER_SECOND},
        "memory_size": layout.size,
        "memory_layout": layout.describe(),
        "actions_fed_back": feedback,
        "sampling": "ONNX Multinomial on masked logits, no seed attribute (each session draws "
                    "its own seed); deterministic_discrete_actions is the masked argmax",
        "measured": {k: v for k, v in measured.items() if k not in ("films", "outcomes")},
        "exported": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "tool": {"agentalign": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                 "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
        "opset": OPSET,
    }


# -- play -------------------------------------------------------------------------------------

def play(model_path: str | Path, out: str | Path, *, episodes: int = 20, seed: int = 0,
         num_envs: int = 16, deterministic: bool = False, gifs: int = 1) -> dict[str, Any]:
    """Run a personality in the island as Unity would; write episode GIFs and results.json."""
    model_path = Path(model_path)
    out = _check_out_folder(Path(out))
    props = {p.key: p.value for p in load_model(model_path).metadata_props}  # readable first
    measured = measure(model_path, episodes, seed, num_envs, deterministic, filmed=gifs)
    files: list[str] = []
    results = {"model": str(model_path), **measured, "files": files,
               "played": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    if deterministic and props.get("agentalign.feedback") == "sampled":
        results["warning"] = ("this personality feeds its sampled action back into its memory; "
                              "with deterministic actions its context holds actions it did not "
                              "take (export with --deterministic for that checkbox)")
    try:
        for k, film in enumerate(results.pop("films")):
            caption = f"{model_path.stem}: {measured['outcomes'][k]} ({len(film) - 1} decisions)"
            name = "episode.gif" if k == 0 else f"episode-{k}.gif"
            files.append(str(save_gif(out / name, film, caption)))
        write_json_atomic(out / "results.json", results)
    except OSError as e:
        raise PersonalityError(f"cannot write to {out}: {e.strerror or e}") from None
    return results


def save_gif(path: Path, frames: np.ndarray, caption: str, scale: int = 4) -> Path:
    """Frames uint8 [T, H, W, 3] as a GIF at the game's 10 decisions/s, pixels kept crisp."""
    h, w = frames.shape[1:3]
    images = [Image.fromarray(f).resize((w * scale, h * scale), Image.NEAREST) for f in frames]
    ImageDraw.Draw(images[-1]).text((4, 4), caption, fill=(255, 255, 255), stroke_width=2,
                                    stroke_fill=(0, 0, 0))
    durations = [1000 // DECISIONS_PER_SECOND] * (len(images) - 1) + [1500]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=durations, loop=0)
    return path
