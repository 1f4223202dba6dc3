"""`agentalign export`, `play` and `check-model`: settings (configs/export.yaml, play.yaml,
check_model.yaml) and arguments."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentalign.command import Command
from agentalign.config import (
    Settings,
    add_config_arguments,
    add_options,
    at_least,
    dormant_while,
    load_from_args,
)
from agentalign.envs.factory import ENV_HELP, check_env_setting
from agentalign.envs.layout import DEFAULT_LAYOUT


def layout_field() -> Any:
    """The island a personality is measured (export) or played (play) on: a key added after
    cards and runs were recorded, so it stays out of their identities while it is the default."""
    return field(default=DEFAULT_LAYOUT, metadata=dormant_while("layout", DEFAULT_LAYOUT))


@dataclass(frozen=True)
class ExportSettings(Settings):
    YAML = "export"
    episodes: int = field(metadata=at_least(1))
    num_envs: int = field(metadata=at_least(1))
    seed: int = field(metadata=at_least(0))
    deterministic: bool
    env: str
    layout: str = layout_field()

    def check(self) -> None:
        check_env_setting(self.env)


@dataclass(frozen=True)
class PlaySettings(Settings):
    YAML = "play"
    episodes: int = field(metadata=at_least(1))
    num_envs: int = field(metadata=at_least(1))
    seed: int = field(metadata=at_least(0))
    deterministic: bool
    gifs: int = field(metadata=at_least(0))
    env: str
    layout: str = layout_field()

    def check(self) -> None:
        check_env_setting(self.env)


@dataclass(frozen=True)
class CheckModelSettings(Settings):
    YAML = "check_model"
    obs_shape: tuple[int, int, int] = field(metadata=at_least(1))
    branches: tuple[int, ...] = field(metadata=at_least(1))


EXPORT_OPTIONS = {"episodes": "episodes measured for the card",
                  "num_envs": "environments stepped together", "env": ENV_HELP,
                  "seed": "seed of the island and the sampling",
                  "deterministic": "export for Unity's Deterministic Inference: both action "
                                   "outputs are the argmax",
                  "layout": "the island the card's rates are measured on: a packaged layout "
                            "name or a .json path"}
PLAY_OPTIONS = {"episodes": "episodes to play", "num_envs": "environments stepped together",
                "env": ENV_HELP, "seed": "seed of the island and the sampling",
                "deterministic": "take deterministic_discrete_actions (Unity's Deterministic "
                                 "Inference)", "gifs": "episodes to film (the first ones)",
                "layout": "the island to play on: a packaged layout name or a .json path"}


def export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write NAME.onnx (one decision per call, in the ML-Agents inference contract: drop it "
        "into Behavior Parameters) and NAME.json (the card: source, spec, memory, and outcome "
        "rates measured by running the exported file in the island). Defaults: "
        "configs/export.yaml.")
    parser.add_argument("checkpoint", type=Path, help="a policy checkpoint folder or stage "
                        "folder")
    parser.add_argument("--name", required=True, help="personality name, e.g. left-runner "
                        "(letters, digits, - and _)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/<run>/"
                        "personalities for a checkpoint inside a run, else runs/personalities)")
    parser.add_argument("--target", metavar="INTENT", help="the designer intent it was aligned "
                        "to, by name: left, middle, right or one of --intents (default: the "
                        "checkpoint's meta, if any)")
    parser.add_argument("--intents", type=Path, metavar="FILE", help="the intents file the "
                        "target is read from (default: the file the alignment read, else the "
                        "packaged configs/intents.yaml)")
    add_options(parser, ExportSettings, EXPORT_OPTIONS)
    add_config_arguments(parser)


def export_request(args: argparse.Namespace) -> tuple[ExportSettings, dict[str, Any]]:
    return load_from_args(ExportSettings, args, EXPORT_OPTIONS), {
        "checkpoint": args.checkpoint, "name": args.name, "out": args.out,
        "target": args.target, "intents": args.intents}


def play_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run FILE with onnxruntime in the island, carrying its memory as Unity does (zeros at "
        "each episode start, recurrent_out -> recurrent_in); write episode.gif and results.json "
        "(outcome rates with 95% Wilson intervals). Defaults: configs/play.yaml.")
    parser.add_argument("file", type=Path, help="a personality .onnx file")
    parser.add_argument("--out", type=Path, default=Path("runs/play"), help="output folder")
    add_options(parser, PlaySettings, PLAY_OPTIONS)
    add_config_arguments(parser)


def play_request(args: argparse.Namespace) -> tuple[PlaySettings, dict[str, Any]]:
    return load_from_args(PlaySettings, args, PLAY_OPTIONS), {"file": args.file,
                                                              "out": args.out}


def _int_list(text: str) -> tuple[int, ...]:
    """'3,64,64' -> (3, 64, 64), for shape options."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}"
                                         ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Check FILE against the rules Unity's ML-Agents loader applies (constants, version, "
        "inputs and shapes for the island's camera, branch sizes, memory) and print each "
        "finding as the Behavior Parameters inspector words it. Exits non-zero if there are "
        "errors. Defaults: configs/check_model.yaml.")
    parser.add_argument("file", type=Path, help="an .onnx file")
    parser.add_argument("--obs-shape", type=_int_list, metavar="C,H,W",
                        help="the camera sensor's shape (default: 3,64,64)")
    parser.add_argument("--branches", type=_int_list, metavar="N,N",
                        help="discrete branch sizes (default: 9,3)")
    add_config_arguments(parser)


def check_request(args: argparse.Namespace) -> tuple[CheckModelSettings, dict[str, Any]]:
    return load_from_args(CheckModelSettings, args, ("obs_shape", "branches")), {
        "file": args.file}


EXPORT = Command("export", "export a policy as a personality (ONNX + card)", export_arguments,
                 export_request, "agentalign.export.personality:run",
                 "agentalign.export.personality:summary", inputs=("checkpoint", "intents"),
                 outputs=("out",))
PLAY = Command("play", "preview a personality in the island with onnxruntime", play_arguments,
               play_request, "agentalign.export.play:run", "agentalign.export.play:summary",
               inputs=("file",), outputs=("out",))
CHECK_MODEL = Command("check-model", "check an ONNX file against ML-Agents' loader",
                      check_arguments, check_request, "agentalign.export.contract:run",
                      "agentalign.export.contract:summary", inputs=("file",))
