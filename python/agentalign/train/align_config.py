"""`agentalign align`'s settings (configs/align.yaml: its prefft and rl sections) and
arguments."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from agentalign.command import Command
from agentalign.config import Settings, add_config_arguments, load
from agentalign.envs.factory import ENV_HELP
from agentalign.train.prefft_config import PrefftSettings, alignment_arguments, alignment_request
from agentalign.train.rl_config import RLSettings

OPTIONS = {"env": ENV_HELP, "num_envs": "environments stepped together, in prefft and rl"}


@dataclass(frozen=True)
class AlignSettings(Settings):
    YAML = "align"
    prefft: PrefftSettings
    rl: RLSettings


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Preference fine-tuning (OUT/prefft) then RL (OUT/rl); the aligned policy is saved in "
        "OUT/checkpoints with its target. Resumable: a finished sub-stage is skipped. Settings: "
        "--set prefft.KEY=VALUE, --set rl.KEY=VALUE (configs/prefft.yaml, configs/rl.yaml).")
    alignment_arguments(parser, "runs/align")
    parser.add_argument("--env", dest="env", help=ENV_HELP)
    parser.add_argument("--num-envs", dest="num_envs", type=int, help=OPTIONS["num_envs"])
    add_config_arguments(parser)


def request(args: argparse.Namespace) -> tuple[AlignSettings, dict[str, Any]]:
    both = {f"{stage}.{key}": getattr(args, key) for stage in ("prefft", "rl")
            for key in OPTIONS}
    return load(AlignSettings, args.config, args.overrides, both), alignment_request(args)


COMMAND = Command("align", "align a policy to a designer intent: prefft, then rl", arguments,
                  request, "agentalign.train.align:run", "agentalign.train.align:summary",
                  inputs=("policy", "reward", "intents"), outputs=("out",))
