"""`agentalign align`'s settings (configs/align.yaml: its prefft and rl sections, and how many RL
draws to pick from) and arguments."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from agentalign.command import Command
from agentalign.config import Settings, add_config_arguments, at_least, dormant_while, load
from agentalign.envs.factory import ENV_HELP
from agentalign.train.prefft_config import PrefftSettings, alignment_arguments, alignment_request
from agentalign.train.rl_config import RLSettings

OPTIONS = {"env": ENV_HELP, "num_envs": "environments stepped together, in prefft and rl"}


@dataclass(frozen=True)
class AlignSettings(Settings):
    YAML = "align"
    prefft: PrefftSettings
    rl: RLSettings
    # added after runs were recorded: out of to_dict (the recipe digest) at their "off" values
    draws: int = field(default=1, metadata={**at_least(1), **dormant_while("draws", 1)})
    pick_episodes: int = field(default=256,
                               metadata={**at_least(1), **dormant_while("draws", 1)})
    second_iterations: int = field(
        default=0, metadata={**at_least(0), **dormant_while("second_iterations", 0)})
    draw_workers: int = field(default=0,
                              metadata={**at_least(0), **dormant_while("draws", 1)})


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Preference fine-tuning (OUT/prefft) then RL (OUT/rl); the aligned policy is saved in "
        "OUT/checkpoints with its target. Resumable: a finished sub-stage is skipped. Settings: "
        "--set prefft.KEY=VALUE, --set rl.KEY=VALUE (configs/prefft.yaml, configs/rl.yaml); "
        "--set draws=K runs RL with K seeds (side by side, one per core: --set draw_workers=N) "
        "and keeps the one the reward model rates best, "
        "--set second_iterations=N then runs a second RL from it (configs/align.yaml).")
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
