"""Checkpoints: safetensors weights + JSON config + trainer state, written atomically.

A checkpoint is a folder:
  model.safetensors   the weights (no pickle)
  checkpoint.json     format, kind ("policy", "reward", ...), the model config, the stage, step,
                      the weights' sha256, creation time, agentalign version, free-form `meta`
  trainer.pt          optional: optimizer/scheduler/step/RNG state, read with
                      torch.load(weights_only=True), which refuses arbitrary pickled objects

A training run keeps its checkpoints as `<stage folder>/checkpoints/step-NNNNNNNN/` plus a
`latest` file naming the newest; every path argument accepts either a checkpoint folder or a
stage folder (then `latest` is followed). A folder only becomes visible by a rename once all its
files are written, and `latest` is replaced atomically, so a killed job leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from agentalign import __version__
from agentalign.atomic import write_json_atomic
from agentalign.errors import UserError

FORMAT = "agentalign-checkpoint"
FORMAT_VERSION = 1
LATEST = "latest"


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, or of another kind or config."""


def save_checkpoint(folder: str | Path, model: torch.nn.Module, model_config: dict[str, Any],
                    *, kind: str, stage: str, step: int, meta: dict[str, Any] | None = None,
                    trainer_state: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint folder atomically (it appears complete or not at all)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(weights, tmp / "model.safetensors")
        info = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
                "model_config": model_config, "stage": stage, "step": step,
                "sha256": _sha256(tmp / "model.safetensors"),
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "agentalign": __version__, "meta": meta or {}}
        (tmp / "checkpoint.json").write_text(json.dumps(info, indent=2) + "\n")
        if trainer_state is not None:
            torch.save(trainer_state, tmp / "trainer.pt")
        for f in tmp.iterdir():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
        if folder.exists():  # replacing: move the old one aside first, then drop it
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def save_step(stage_folder: str | Path, model: torch.nn.Module, model_config: dict[str, Any],
              *, kind: str, stage: str, step: int, meta: dict[str, Any] | None = None,
              trainer_state: dict[str, Any] | None = None, keep: int = 2) -> Path:
    """Save `checkpoints/step-N` under a stage folder, point `latest` at it, prune old ones."""
    root = Path(stage_folder) / "checkpoints"
    path = save_checkpoint(root / f"step-{step:08d}", model, model_config, kind=kind,
                           stage=stage, step=step, meta=meta, trainer_state=trainer_state)
    write_json_atomic(root / LATEST, {"checkpoint": path.name, "step": step})
    for old in sorted(root.glob("step-*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return path


def remove_stale_temporaries(stage_folder: str | Path) -> None:
    """A job killed while saving leaves a hidden temporary folder; it is never read, drop it."""
    for tmp in (Path(stage_folder) / "checkpoints").glob(".step-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def resolve(path: str | Path) -> Path:
    """A checkpoint folder from a checkpoint folder, a `checkpoints/` folder or a stage folder."""
    path = Path(path)
    if (path / "checkpoint.json").exists():
        return path
    for root in (path, path / "checkpoints"):
        latest = root / LATEST
        if latest.exists():
            try:
                name = json.loads(latest.read_text())["checkpoint"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise CheckpointError(f"checkpoint {latest}: is not valid; delete it to start "
                                      "over or pass a step-N folder") from None
            return root / name
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: does not exist")
    raise CheckpointError(f"checkpoint {path}: no checkpoint.json here and no "
                          f"checkpoints/{LATEST}; pass a checkpoint or stage folder")


def latest_or_none(stage_folder: str | Path) -> Path | None:
    """The newest checkpoint of a stage folder, or None if it has none (for resuming)."""
    try:
        return resolve(Path(stage_folder) / "checkpoints")
    except CheckpointError:
        return None


def read_info(path: str | Path, kind: str | None = None) -> tuple[Path, dict[str, Any]]:
    """(checkpoint folder, checkpoint.json) after checking format and, if given, kind."""
    folder = resolve(path)
    try:
        info = json.loads((folder / "checkpoint.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {folder}: checkpoint.json is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint {folder}: checkpoint.json is not valid JSON") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {folder}: not an agentalign checkpoint")
    if info.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {folder}: format version {info.get('format_version')}"
                              f", this agentalign reads {FORMAT_VERSION}")
    if kind is not None and info.get("kind") != kind:
        raise CheckpointError(f"checkpoint {folder}: holds a {info.get('kind')!r} model, "
                              f"expected a {kind!r} one")
    return folder, info


def load_weights(path: str | Path, kind: str | None = None,
                 verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, checkpoint.json), checking the weights' sha256 unless verify=False."""
    folder, info = read_info(path, kind)
    weights = folder / "model.safetensors"
    if not weights.exists():
        raise CheckpointError(f"checkpoint {folder}: model.safetensors is missing")
    if verify and _sha256(weights) != info.get("sha256"):
        raise CheckpointError(f"checkpoint {folder}: model.safetensors does not match its "
                              "checksum (corrupt or replaced)")
    try:
        return load_file(weights), info
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"checkpoint {folder}: cannot read model.safetensors ({e})") from None


def load_trainer_state(path: str | Path) -> dict[str, Any] | None:
    """The optimizer/step state saved with a checkpoint, or None if it has none."""
    folder = resolve(path)
    state_path = folder / "trainer.pt"
    if not state_path.exists():
        return None
    try:
        return torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only raises UnpicklingError for anything but plain data
        raise CheckpointError(f"checkpoint {folder}: trainer.pt cannot be read safely "
                              f"({type(e).__name__}); resume from another checkpoint") from None


def restore_training(latest: Path, weights: dict[str, torch.Tensor], model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, counters: tuple[str, ...],
                     optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """Put a checkpoint's weights and AdamW state back and return its named counters (and the
    `optional` ones, None where a checkpoint of older code lacks them).

    Every training stage resumes through this, so a checkpoint that does not fit the run fails
    the same way everywhere: one line naming the checkpoint and what does not fit.
    """
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {latest}: weights do not fit the model "
                              f"({str(e).splitlines()[0]})") from None
    state = load_trainer_state(latest)
    if state is None:
        raise CheckpointError(f"checkpoint {latest}: has no trainer.pt, so it cannot be resumed")
    try:
        optimizer.load_state_dict(state.pop("optimizer"))
        return {**{k: state[k] for k in counters}, **{k: state.get(k) for k in optional}}
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {latest}: trainer.pt does not fit this run "
                              f"({type(e).__name__}: {str(e).splitlines()[0]})") from None


def config_from_info(info: dict[str, Any], path: str | Path) -> Any:
    """The PolicyConfig a checkpoint.json records (policies and reward models alike)."""
    from agentalign.models.policy import PolicyConfig

    try:
        return PolicyConfig.from_dict(info["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: bad model_config ({e})") from None


def load_policy(path: str | Path, device: str | torch.device = "cpu",
                verify: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A Policy in eval mode and its checkpoint.json, from a checkpoint or stage folder."""
    from agentalign.models.policy import Policy

    weights, info = load_weights(path, kind="policy", verify=verify)
    config = config_from_info(info, path)
    policy = Policy(config)
    load_exactly(policy, weights, path, f"{config.name!r} config")
    return policy.to(device).eval(), info


def load_exactly(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: str | Path,
                 what: str) -> None:
    """Load `weights` into `model`, refusing any missing or unexpected tensor by name."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path}: weights do not fit the {what} (missing "
                              f"{list(missing)[:3]}, unexpected {list(unexpected)[:3]})")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
