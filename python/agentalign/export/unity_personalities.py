"""`agentalign unity-personalities RUN`: the left, middle and right personalities of a default
pipeline run, shipped in the Unity package's sample (`left.onnx`, `left.json`, ... and their
`.meta` files, `unityproj.personalities`).

Only a run of the default recipe qualifies, so that what the sample ships is what the README's
command makes: RUN/pipeline.json's recorded config must equal the packaged default with seed 0
(`recipe.default_pipeline_config`). `workers` is left out of the comparison because it only
schedules the stages (the pipeline lets a resume change it too); a run's name and folder are not
recorded. The three alignments must have finished.

Each personality is exported again from RUN/align-<target> by the export stage itself, with its
settings (configs/export.yaml: the pipeline's own export settings for a default run), named after
the file it becomes. So its card carries this agentalign's layout and recipe digests and rates
measured by playing the very file shipped, and its graph is this agentalign's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentalign.command import Command
from agentalign.config import add_config_arguments, load_from_args
from agentalign.errors import UserError
from agentalign.export.export_config import ExportSettings
from agentalign.export.recipe import default_pipeline_config
from agentalign.unityproj.paths import PACKAGE, SAMPLE_PERSONALITIES

TARGETS = ("left", "middle", "right")
SEED = 0
# Keys of the recorded config that schedule a run without changing what it computes
# (pipeline_config.SCHEDULING_KEYS; the pipeline's module sits above this layer).
IGNORED = ("workers",)


@dataclass(frozen=True)
class ShippedResult:
    project: str
    run: str
    files: list[str]  # written, relative to the project
    cards: dict[str, dict[str, Any]]  # name -> card


def check_run(run: Path) -> dict[str, Any]:
    """pipeline.json of `run` if it is a finished default run with seed 0, else a one-line
    UserError saying what differs."""
    path = run / "pipeline.json"
    try:
        state = json.loads(path.read_text())
    except OSError:
        raise UserError(f"{run}: no pipeline.json; pass a run folder that `agentalign pipeline` "
                        "made") from None
    except json.JSONDecodeError:
        raise UserError(f"{path}: is not valid JSON") from None
    recorded = state.get("config") if isinstance(state, dict) else None
    if not isinstance(recorded, dict):
        raise UserError(f"{path}: records no pipeline config")
    expected = {**default_pipeline_config(), "seed": SEED}
    differ = _differences({k: v for k, v in recorded.items() if k not in IGNORED},
                          {k: v for k, v in expected.items() if k not in IGNORED})
    if differ:
        shown = "; ".join(differ[:3]) + (f"; {len(differ) - 3} more" if len(differ) > 3 else "")
        raise UserError(f"{run}: not a default pipeline run with seed {SEED} ({shown}); only "
                        "the default recipe's personalities are shipped")
    done = {s.get("name") for s in state.get("stages", []) if s.get("status") == "done"}
    missing = [t for t in TARGETS if f"align-{t}" not in done]
    if missing:
        raise UserError(f"{run}: align-{missing[0]} has not finished; rerun the same "
                        "`agentalign pipeline` command to complete the run")
    return state


def _differences(recorded: Any, expected: Any, prefix: str = "") -> list[str]:
    """'key: value (default value)' for each dotted key whose value differs."""
    if isinstance(recorded, dict) and isinstance(expected, dict):
        return [d for key in sorted(set(recorded) | set(expected))
                for d in _differences(recorded.get(key, "<absent>"),
                                      expected.get(key, "<absent>"), f"{prefix}{key}.")]
    if recorded == expected:
        return []
    return [f"{prefix.rstrip('.')}: {json.dumps(recorded)} (default {json.dumps(expected)})"]


def run(settings: ExportSettings, run_folder: str | Path,
        project: str | Path = "unity_project", *, progress: bool = False) -> ShippedResult:
    """Export RUN's three personalities and write them, with `.meta` files, into the sample.

    All three are exported before any file of the sample changes; each file is then written
    atomically.
    """
    from agentalign.export.personality import run as export
    from agentalign.unityproj.personalities import write_personality

    run_folder, project = Path(run_folder), Path(project)
    check_run(run_folder)
    if not (project / PACKAGE).is_dir():
        raise UserError(f"{project / PACKAGE}: no such folder; pass the Unity project with "
                        "--project")
    exported: dict[str, tuple[bytes, str]] = {}
    with tempfile.TemporaryDirectory(prefix="unity-personalities-") as tmp:
        for target in TARGETS:
            start = time.perf_counter()
            if progress:
                print(f"[unity-personalities] {target}: exporting {run_folder / f'align-{target}'}"
                      f" and playing {settings.episodes} episodes", flush=True)
            result = export(settings, run_folder / f"align-{target}", target, tmp, target)
            exported[target] = (result.path.read_bytes(),
                                result.path.with_suffix(".json").read_text())
            if progress:
                print(f"[unity-personalities] {target}: done in "
                      f"{time.perf_counter() - start:.0f} s", flush=True)
    files = [path for name, (model, card) in exported.items()
             for path in write_personality(project, name, model, card)]
    return ShippedResult(str(project), str(run_folder), files,
                         {name: json.loads(card) for name, (_, card) in exported.items()})


def summary(result: ShippedResult) -> str:
    lines = []
    for name, card in result.cards.items():
        measured = card["measured"]
        rate = measured["rates"][card["target"]]
        lines.append(f"{name}: {card['stage']} step {card['step']}, reaches its pad in "
                     f"{rate['rate']:.1%} [{rate['low']:.1%}, {rate['high']:.1%}] of "
                     f"{measured['episodes']} episodes (seed {measured['seed']})")
    lines.append(f"wrote {len(result.files)} files to {result.project}/{SAMPLE_PERSONALITIES}")
    return "\n".join(lines)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Export the left, middle and right personalities of RUN (a finished `agentalign "
        "pipeline` run with the default config and seed 0) into the Unity package's sample, "
        f"{SAMPLE_PERSONALITIES}: left.onnx, left.json, ... with their .meta files. Each card "
        "records the layout and recipe digests the shipped-personalities test compares with "
        "the repository's. Export settings: configs/export.yaml. See docs/personalities.md.")
    parser.add_argument("run_folder", type=Path, metavar="RUN", help="the pipeline run folder, "
                        "e.g. runs/default")
    parser.add_argument("--project", type=Path, default=Path("unity_project"),
                        help="the Unity project folder (default: unity_project)")
    add_config_arguments(parser)


def request(args: argparse.Namespace) -> tuple[ExportSettings, dict[str, Any]]:
    return load_from_args(ExportSettings, args), {"run_folder": args.run_folder,
                                                  "project": args.project}


COMMAND = Command("unity-personalities", "ship a default run's personalities in the Unity "
                  "sample", arguments, request, "agentalign.export.unity_personalities:run",
                  "agentalign.export.unity_personalities:summary", inputs=("run_folder",),
                  outputs=("project",))
