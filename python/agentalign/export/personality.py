"""`agentalign export`: a personality, an exported policy (`<name>.onnx`) plus its card
(`<name>.json`).

The card says what a designer gets before they drop the file into Unity: where it came from
(checkpoint hash, stage, config), what it expects (observation and action spec, memory size)
and how it behaves: outcome rates with 95% Wilson intervals, measured at export time by running
the exported ONNX file itself in the island (`export.play.measure`), not the PyTorch policy it
came from.

Its target is a designer intent by name (`envs.intents`): the card's `intent` names it and says
it in a sentence, and for an intent other than a plain pad (whose reach rate says it) gives
the share of the measured episodes that satisfy it, with its 95% interval. The definition comes
from `intents` (default: the file the aligned checkpoint names, else the packaged one).

Two digests say what it was made against: `layout_sha256`, the island it was measured on (the
packaged default unless `layout` says otherwise), and `recipe_sha256`, this agentalign's
default recipe (`export.recipe`). The shipped personalities' test compares both with the
repository's, so a changed island or recipe asks for a refresh.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentalign import __version__
from agentalign.atomic import atomic_path
from agentalign.envs.intents import Intent, intent_by_name
from agentalign.envs.layout import load_layout
from agentalign.export.export_config import ExportSettings
from agentalign.export.onnx import OBS, OPSET, MemoryLayout, export_model
from agentalign.export.onnx_agent import PersonalityError
from agentalign.export.play import measure
from agentalign.export.recipe import recipe_sha256
from agentalign.rollout import format_table, intent_line
from agentalign.spec import (
    CAMERA_SENSOR_NAME,
    DECISIONS_PER_SECOND,
    MOVE_NAMES,
    PADS,
    TURN_NAMES,
)

CARD_FORMAT = "agentalign-personality"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class ExportResult:
    """A written personality: its card and the .onnx path."""

    card: dict[str, Any]
    path: Path


def check_name(name: str) -> str:
    """The name if it is safe as a file name on every OS (letters, digits, - and _)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise PersonalityError(f"personality name {name!r}: use 1-64 letters, digits, '-' or "
                               "'_', starting with a letter or digit (it becomes a file name)")
    return name


def default_out(checkpoint_folder: Path) -> Path:
    """runs/<run>/personalities for a checkpoint of runs/<run>/<stage>/checkpoints/step-N,
    else runs/personalities (a run's personalities live in the run)."""
    if checkpoint_folder.parent.name == "checkpoints":
        return checkpoint_folder.parent.parent.parent / "personalities"
    return Path("runs/personalities")


def run(settings: ExportSettings, checkpoint: str | Path, name: str,
        out: str | Path | None = None, target: str | None = None, *,
        intents: str | Path | None = None, progress: bool = False) -> ExportResult:
    """Write `<out>/<name>.onnx` and `<out>/<name>.json` (the card).

    Both files appear together or not at all: they are written to temporaries and renamed only
    after the export, the contract check and the measurement have all succeeded.
    `deterministic` exports a personality whose sampled output is the argmax too (for Unity's
    Deterministic Inference checkbox; see onnx.py on which action the memory feeds back).
    `target` (default: the checkpoint's) is an intent of `intents` (module doc).
    """
    from agentalign.models.checkpoint import load_policy, resolve

    check_name(name)
    folder = resolve(checkpoint)
    out = Path(out) if out is not None else default_out(folder)
    if out.exists() and not out.is_dir():
        raise PersonalityError(f"output folder {out}: is a file")
    policy, info = load_policy(folder)
    meta = info.get("meta") or {}
    target = target if target is not None else meta.get("target")
    aligned_to = meta.get("intent") or {}
    if intents is None and target is not None and aligned_to.get("name") == target:
        intents = aligned_to.get("file")  # the file the alignment read it from
    intent = intent_by_name(target, intents) if target is not None else None

    feedback = "greedy" if settings.deterministic else "sampled"
    proto = export_model(policy, feedback=feedback,
                         doc=f"agentalign personality {name!r} ({info.get('stage')} "
                             f"step {info.get('step')})")
    model_bytes = proto.SerializeToString()
    counted = intent if intent is not None and intent.name not in PADS else None
    measured = measure(model_bytes, settings.episodes, settings.seed, settings.num_envs,
                       env=settings.env, intent=counted, layout=settings.layout)
    card = make_card(name, target, info, policy.config, measured, model_bytes, feedback,
                     intent, layout_sha256=load_layout(settings.layout).digest)
    try:
        with atomic_path(out / f"{name}.onnx") as onnx_tmp, \
                atomic_path(out / f"{name}.json") as card_tmp:
            onnx_tmp.write_bytes(model_bytes)
            card_tmp.write_text(json.dumps(card, indent=2) + "\n")
            _shareable(onnx_tmp, card_tmp)
    except OSError as e:
        raise PersonalityError(f"cannot write to {out}: {e.strerror or e}") from None
    return ExportResult(card, out / f"{name}.onnx")


def summary(result: ExportResult) -> str:
    card, path = result.card, result.path
    measured = card["measured"]
    lines = [
        f"wrote {path} and {path.with_suffix('.json').name}: stage {card['stage']}, target "
        f"{card['target']}, opset {card['opset']}, memory {card['memory_size']} floats",
        f"outcomes over {measured['episodes']} episodes ({measured['actions']} actions, seed "
        f"{measured['seed']}):",
        format_table({"rates": measured["rates"], "episodes": measured["episodes"],
                      "mean_length": measured["mean_length"]})]
    if measured.get("intent"):
        lines.append(intent_line(measured["intent"]))
    return "\n".join(lines)


def _shareable(*paths: Path) -> None:
    """Give temporaries (created private, 0600) the usual file mode: a personality is meant to
    be copied into a Unity project by someone else."""
    umask = os.umask(0)
    os.umask(umask)
    for path in paths:
        path.chmod(0o666 & ~umask)


def make_card(name: str, target: str | None, info: dict[str, Any], config: Any,
              measured: dict[str, Any], model_bytes: bytes, feedback: str,
              intent: Intent | None = None, *, layout_sha256: str) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import torch

    layout = MemoryLayout.of(config)
    model_config = json.loads(json.dumps(config.to_dict()))  # tuples as lists, as on disk
    config_json = json.dumps(model_config, sort_keys=True).encode()
    return {
        "format": CARD_FORMAT, "format_version": 1,
        "name": name, "target": target,
        # what the target means; measured.intent: how often the exported file does it
        "intent": None if intent is None else {"name": intent.name,
                                               "description": intent.description},
        "stage": info.get("stage"), "step": info.get("step"),
        "source_checkpoint_sha256": info.get("sha256"),
        "onnx_file": f"{name}.onnx",
        "onnx_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "config": model_config,
        "config_sha256": hashlib.sha256(config_json).hexdigest(),
        "layout_sha256": layout_sha256,  # the island `measured` played
        "recipe_sha256": recipe_sha256(),
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
                    "its own seed), an out-of-range draw replaced by the argmax; "
                    "deterministic_discrete_actions is the masked argmax",
        "measured": {k: v for k, v in measured.items() if k not in ("films", "outcomes")},
        "exported": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "tool": {"agentalign": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                 "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
        "opset": OPSET,
    }
