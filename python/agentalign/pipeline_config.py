"""`agentalign pipeline`'s settings (configs/pipeline.yaml) and arguments."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentalign.command import Command
from agentalign.config import (
    Settings,
    add_config_arguments,
    at_least,
    invalid,
    load,
)
from agentalign.envs.factory import ENV_HELP, check_env_setting
from agentalign.rollout.starts import without_anywhere
from agentalign.spec import PADS
from agentalign.train.label_config import LabelSettings

STAGE_OVERRIDES = ("collect", "demos", "pretrain", "sft", "reward", "align", "evaluate")
# Keys that change how a run is scheduled, not what it computes: a resume may change them.
SCHEDULING_KEYS = ("workers",)


@dataclass(frozen=True)
class PipelineSettings(Settings):
    """The recipe's run; each key is documented in configs/pipeline.yaml."""

    YAML = "pipeline"
    targets: tuple[Literal["left", "middle", "right"], ...]
    demo_episodes: int = field(metadata=at_least(1))
    eval_episodes: int = field(metadata=at_least(1))
    offlane: bool
    ablation: bool
    export: bool
    export_episodes: int = field(metadata=at_least(1))
    study: bool
    seed: int = field(metadata=at_least(0))
    workers: int = field(metadata=at_least(1))
    env: str
    labels_used: int = field(metadata=at_least(1))
    label: LabelSettings
    stages: dict[str, tuple[str, ...]]

    def check(self) -> None:
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise invalid("targets", f"must be distinct pads from {list(PADS)}, got "
                          f"{list(self.targets)!r}")
        check_env_setting(self.env)
        if unknown := sorted(set(self.stages) - set(STAGE_OVERRIDES)):
            raise invalid(f"stages.{unknown[0]}", f"no such stage; stages take overrides for "
                          f"{', '.join(STAGE_OVERRIDES)}")

    def identity(self) -> dict[str, Any]:
        return recipe(self.to_dict())


def recipe(config: dict[str, Any]) -> dict[str, Any]:
    """What of a pipeline config (as pipeline.json holds it) a resumed run must agree on: not
    the scheduling keys, nor the label stage's starts-anywhere keys while unused."""
    found = {k: v for k, v in config.items() if k not in SCHEDULING_KEYS}
    if isinstance(found.get("label"), dict):
        found["label"] = without_anywhere(found["label"])
    return found


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Collect the corpus and demos, pre-train, fine-tune, label preferences, train reward "
        "models, align each target, evaluate every stage, export the personalities and write "
        "report.html. Resumable: rerun the same command to continue. Defaults: "
        "configs/pipeline.yaml.")
    parser.add_argument("--name", default="default", help="run name: the run goes to runs/NAME")
    parser.add_argument("--out", type=Path, help="run folder (default runs/NAME)")
    parser.add_argument("--targets", nargs="+", choices=list(PADS),
                        help="pads to align personalities to (default: "
                        + " ".join(load(PipelineSettings).targets) + ")")
    parser.add_argument("--env", help=ENV_HELP + "; passed to every stage that runs episodes")
    add_config_arguments(parser)


def request(args: argparse.Namespace) -> tuple[PipelineSettings, dict[str, Any]]:
    options = {"targets": list(args.targets) if args.targets else None, "env": args.env}
    return load(PipelineSettings, args.config, args.overrides, options), {
        "out": args.out or Path("runs") / args.name}


COMMAND = Command("pipeline", "the whole recipe: collect to personalities and report",
                  arguments, request, "agentalign.pipeline:run", "agentalign.pipeline:summary",
                  outputs=("out",))
