"""`agentalign import-demo`: ML-Agents .demo recordings (human play) into a corpus of shards.

One shard per file, each keeping its file's spec (sensors, shapes, actions) in the manifest;
training refuses a corpus that does not fit the policy (`data.demo.check_corpus_spec`). A file
already imported (same sha256) is skipped, so rerunning is safe.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentalign import __version__
from agentalign.atomic import remove_stale_temporaries, write_atomic, write_json_atomic
from agentalign.command import Command
from agentalign.data.demo import IMPORT_PLAYER_TYPES, Demonstration, read_demo
from agentalign.data.shards import FORMAT_VERSION, MANIFEST, Episode, write_shard
from agentalign.errors import CorpusError
from agentalign.spec import NO_TARGET, OUTCOME_CODES, OUTCOMES


def demo_episodes(demo: Demonstration) -> list[tuple[Episode, slice]]:
    """Our episodes from a demonstration (camera frames and discrete actions), with the step
    range each came from. Action-less steps (Unity's terminal records) are left out."""
    camera = demo.spec.camera
    if camera is None:
        raise CorpusError(f"demo {demo.name}: has no camera observation; agentalign policies "
                          "learn from pixels")
    if demo.spec.branches and (max(demo.spec.branches) > 256):
        raise CorpusError(f"demo {demo.name}: a discrete branch of {max(demo.spec.branches)} "
                          "actions does not fit a shard (at most 256 per branch)")
    timeout = OUTCOME_CODES["timeout"]
    out = []
    for steps in demo.episodes():
        keep = np.arange(steps.start, steps.stop)[demo.has_action[steps]]
        if not len(keep):
            continue
        frames = demo.observations[camera][keep]
        episode = Episode(
            frames=frames, actions=demo.discrete_actions[keep].astype(np.uint8),
            positions=np.full((len(keep), 2), np.nan, np.float32),
            headings=np.full(len(keep), np.nan, np.float32),
            # A .demo records no outcome: "timeout" is the placeholder ("none" in reports);
            # the manifest says outcomes are unknown.
            outcome=timeout, player=0, spawn=-1, target=NO_TARGET)
        out.append((episode, steps))
    return out


@dataclass(frozen=True)
class ImportResult:
    out: str
    files: list[dict[str, Any]]  # per file: its shard, steps, episodes, spec; or why skipped


def run(files: Sequence[str | Path], out: str | Path, *, progress: bool = False
        ) -> ImportResult:
    """Convert .demo files into shards of the corpus folder `out` (one shard per file).

    Each shard's manifest entry keeps the file's own spec and sha256; a file already imported
    (same sha256) is skipped, so rerunning is safe. Rewards, continuous actions and vector
    observations, which shards do not hold, go to a `.extra.npz` beside the shard.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            raise CorpusError(f"corpus {out}: {MANIFEST} is not valid JSON") from None
        if manifest.get("config", {}).get("source") != "import-demo":
            raise CorpusError(f"corpus {out} was not made by import-demo; import into a new "
                              "folder (mixing recorded and collected play in one corpus is "
                              "not supported)")
    else:
        manifest = {"format_version": FORMAT_VERSION, "agentalign": __version__,
                    "config": {"source": "import-demo"}, "shards": []}
    imported = {e["source_sha256"] for e in manifest["shards"]}
    results = []
    for file in map(Path, files):
        digest = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None
        if digest in imported:
            results.append({"file": str(file), "skipped": "already imported"})
            continue
        demo = read_demo(file)
        episodes = demo_episodes(demo)
        if not episodes:
            raise CorpusError(f"demo {file}: no step carries an action; nothing to import")
        index = max((e["index"] for e in manifest["shards"]), default=-1) + 1
        shard = out / f"shard-{index:05d}.safetensors"
        spec = demo.spec.to_dict()
        metadata = {"player_types": list(IMPORT_PLAYER_TYPES), "source": file.name,
                    "demo_spec": spec, "agentalign": __version__}
        entry = write_shard(shard, [e for e, _ in episodes], metadata)
        extra = _write_extra(out / f"shard-{index:05d}.extra.npz", demo, episodes)
        kept = sum(len(e.frames) for e, _ in episodes)
        entry.update({"index": index, "source": file.name, "source_sha256": digest,
                      "spec": spec, "outcomes_known": False, "extra": extra,
                      "outcomes_by_player": {IMPORT_PLAYER_TYPES[0]: np.bincount(
                          [e.outcome for e, _ in episodes], minlength=len(OUTCOMES)).tolist()}})
        manifest["shards"].append(entry)
        write_json_atomic(manifest_path, manifest)
        imported.add(digest)
        results.append({"file": str(file), "shard": shard.name, "steps": kept,
                        "episodes": len(episodes), "spec": spec,
                        "dropped_terminal_steps": len(demo) - kept})
    return ImportResult(str(out), results)


def _write_extra(path: Path, demo: Demonstration,
                 episodes: list[tuple[Episode, slice]]) -> dict[str, Any]:
    keep = np.concatenate([np.arange(s.start, s.stop)[demo.has_action[s]]
                           for _, s in episodes])
    arrays = {"rewards": demo.rewards[keep], "done": demo.done[keep],
              "max_step_reached": demo.max_step_reached[keep],
              "continuous_actions": demo.continuous_actions[keep]}
    for sensor, values in zip(demo.spec.sensors, demo.observations, strict=True):
        if not sensor.is_visual:
            arrays[f"vector/{sensor.name}"] = values[keep]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    write_atomic(path, lambda f: f.write(data))
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def summary(result: ImportResult) -> str:
    lines = []
    for item in result.files:
        if "skipped" in item:
            lines.append(f"{item['file']}: skipped ({item['skipped']})")
            continue
        spec = item["spec"]
        actions = spec["actions"]
        lines.append(f"{item['file']}: {item['episodes']} episodes, {item['steps']} steps -> "
                     f"{item['shard']} (frames {'x'.join(map(str, spec['frames']['shape']))} "
                     f"from {spec['frames']['sensor']}, discrete {actions['discrete_branches']}"
                     + (f", {actions['continuous']} continuous" if actions["continuous"] else "")
                     + ")")
    lines.append(f"corpus: {result.out}")
    return "\n".join(lines)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Read Unity ML-Agents demonstration files (recorded human play; any layout ML-Agents "
        "has written) into a corpus of shards. Each shard keeps its file's spec (sensors, "
        "shapes, actions); training refuses a corpus that does not fit the policy. Rerunning "
        "skips files already imported.")
    parser.add_argument("files", nargs="+", type=Path, help=".demo files")
    parser.add_argument("--out", type=Path, default=Path("runs/demos"), help="corpus folder")


def request(args: argparse.Namespace) -> tuple[None, dict[str, Any]]:
    return None, {"files": args.files, "out": args.out}


COMMAND = Command("import-demo", "convert ML-Agents .demo recordings into shards", arguments,
                  request, "agentalign.data.demo_import:run",
                  "agentalign.data.demo_import:summary", inputs=("files",), outputs=("out",),
                  settings=False)
