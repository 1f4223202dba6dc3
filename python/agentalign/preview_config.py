"""`agentalign preview`'s settings and arguments (configs/preview.yaml)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentalign.command import Command
from agentalign.config import (
    Settings,
    add_config_arguments,
    add_options,
    at_least,
    invalid,
    load_from_args,
)
from agentalign.data.players import PLAYER_TYPES
from agentalign.envs.factory import ENV_HELP, check_env_setting

HELP = "draw the island: a top-down map and an episode GIF"
OPTIONS = {"layout": "layout name or .json path", "player": "scripted player type to film",
           "target": "pad the pad_seeker heads for", "seed": "seed of the spawn and the player",
           "height": "frame height", "width": "frame width", "env": ENV_HELP}


@dataclass(frozen=True)
class PreviewSettings(Settings):
    YAML = "preview"
    layout: str
    player: str
    target: Literal["left", "middle", "right"]
    seed: int = field(metadata=at_least(0))
    height: int = field(metadata=at_least(1))
    width: int = field(metadata=at_least(1))
    gif_scale: int = field(metadata=at_least(1))
    env: str

    def check(self) -> None:
        if self.player not in PLAYER_TYPES:
            raise invalid("player", f"unknown player type {self.player!r}: choose one of "
                          f"{list(PLAYER_TYPES)}")
        check_env_setting(self.env)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Write map.png (top-down, pads and spawns marked, one episode's "
                          "path) and episode.gif (that episode from the agent's camera). "
                          "Defaults: configs/preview.yaml.")
    parser.add_argument("--out", type=Path, default=Path("runs/preview"), help="output folder")
    add_options(parser, PreviewSettings, OPTIONS)
    add_config_arguments(parser)


def request(args: argparse.Namespace) -> tuple[PreviewSettings, dict[str, Any]]:
    return load_from_args(PreviewSettings, args, OPTIONS), {"out": args.out}


COMMAND = Command("preview", HELP, arguments, request, "agentalign.preview:run",
                  "agentalign.preview:summary", outputs=("out",))
