"""`agentalign unity-scene`: write (or check) the Unity scene of the island from the layout."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentalign.command import Command
from agentalign.errors import UserError


@dataclass(frozen=True)
class SceneResult:
    project: str
    changed: list[str]  # paths written (empty when checking, or when up to date)
    checked: bool


def run(project: str | Path, layout: str = "jumppad_island", check: bool = False, *,
        progress: bool = False) -> SceneResult:
    """Regenerate the scene and its assets from the layout; with `check`, change nothing and
    raise if the committed files differ from what the layout gives."""
    from agentalign.unityproj.scene import check as check_scene
    from agentalign.unityproj.scene import generate

    project = Path(project)
    if check:
        problems = check_scene(project, layout)
        if problems:
            raise UserError(f"the Unity scene is out of date ({len(problems)} files; run "
                            f"agentalign unity-scene): " + "; ".join(problems[:3]))
        return SceneResult(str(project), [], True)
    return SceneResult(str(project), generate(project, layout), False)


def summary(result: SceneResult) -> str:
    if result.checked:
        return f"{result.project}: the scene and its assets are up to date with the layout"
    lines = [f"wrote {path}" for path in result.changed]
    lines.append(f"{result.project}: {len(result.changed)} files changed" if result.changed
                 else f"{result.project}: already up to date")
    return "\n".join(lines)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Regenerate the island scene of the Unity package's sample (unity_project/Packages/"
        "com.agentalign.personalities/Samples~/JumppadIsland/Scenes/JumppadIsland.unity), its "
        "materials and textures, the build's scene list and missing .meta files from the layout "
        "file (the editor's AgentAlign > Regenerate Scene From Layout runs this). See "
        "docs/unity_project.md.")
    parser.add_argument("--project", type=Path, default=Path("unity_project"),
                        help="the Unity project folder (default: unity_project)")
    parser.add_argument("--layout", default="jumppad_island", help="layout name or .json path")
    parser.add_argument("--check", action="store_true", help="change nothing; fail if the "
                        "committed files differ from what the layout gives")


def request(args: argparse.Namespace) -> tuple[None, dict[str, Any]]:
    return None, {"project": args.project, "layout": args.layout, "check": args.check}


COMMAND = Command("unity-scene", "write the Unity scene of the island from the layout",
                  arguments, request, "agentalign.unityproj.command:run",
                  "agentalign.unityproj.command:summary", outputs=("project",), settings=False)
