"""`agentalign prefft`'s settings and arguments (configs/prefft.yaml), and the arguments every
alignment command shares (--policy, --reward, --target, --intents, --out)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentalign.command import Command
from agentalign.config import (
    Settings,
    above,
    add_config_arguments,
    add_options,
    at_least,
    between,
    dormant_while,
    load_from_args,
)
from agentalign.envs.factory import ENV_HELP, check_env_setting
from agentalign.rollout.cluster import cluster_arguments, cluster_request
from agentalign.rollout.starts import without_anywhere
from agentalign.train.bc_config import SftSettings

OPTIONS = {"env": ENV_HELP, "num_envs": "environments stepped together while sampling"}


@dataclass(frozen=True)
class PrefftSettings(Settings):
    """Preference fine-tuning; each key is documented in configs/prefft.yaml."""

    YAML = "prefft"
    rounds: int = field(metadata=at_least(0))
    episodes: int = field(metadata=at_least(1))
    top_fraction: float = field(metadata={**above(0.0), "max": 1.0})
    num_envs: int = field(metadata=at_least(1))
    env: str
    max_steps: int = field(metadata=at_least(1))
    spawn_jitter: float = field(metadata=at_least(0))
    anywhere: float = field(metadata=between(0.0, 1.0))
    anywhere_edge: float = field(metadata=at_least(0))
    layout: str
    eval_episodes: int = field(metadata=at_least(0))
    seed: int = field(metadata=at_least(0))
    num_threads: int = field(metadata=at_least(0))
    finetune: SftSettings  # the imitation trainer's settings for each round's fine-tuning
    # added later: out of to_dict (identities, the recipe digest) while explore_episodes is 0
    explore_episodes: int = field(default=0, metadata={
        **at_least(0), **dormant_while("explore_episodes", 0)})
    explore_policy: str = field(default="", metadata=dormant_while("explore_episodes", 0))
    explore_within: int = field(default=40, metadata={
        **at_least(0), **dormant_while("explore_episodes", 0)})

    def check(self) -> None:
        check_env_setting(self.env)
        if self.explore_episodes and not self.explore_policy:
            raise ValueError("prefft explore_episodes > 0 needs explore_policy: the checkpoint "
                             "that takes over those runs part way (e.g. the pre-trained agent)")

    def identity(self) -> dict[str, Any]:
        """Not `env`: both backends play the same episodes for a seed; not the explorer's path
        (its checkpoint's hash is part of the stage's identity instead)."""
        return without_anywhere({k: v for k, v in self.to_dict().items()
                                 if k not in ("env", "explore_policy")})


def alignment_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """--policy, --reward, --target, --intents, --out: what prefft, rl and align are given;
    --cluster and its options: where their episodes play."""
    parser.add_argument("--policy", type=Path, required=True, metavar="CHECKPOINT",
                        help="the policy to align: a checkpoint folder or a stage folder")
    parser.add_argument("--reward", type=Path, required=True, metavar="CHECKPOINT",
                        help="the target's reward model: a checkpoint or stage folder")
    parser.add_argument("--target", required=True, metavar="INTENT", help="the intent to align "
                        "to, by name: left, middle, right or one of --intents (the reward "
                        "model must be trained for it)")
    parser.add_argument("--intents", type=Path, metavar="FILE", help="the intents file "
                        "--target is read from (default: the packaged configs/intents.yaml)")
    parser.add_argument("--out", type=Path, default=Path(out), help="stage folder")
    cluster_arguments(parser, what="play prefft's episodes on Ray actors and train RL on Ray "
                      "Train workers, each playing its share of every batch")


def alignment_request(args: argparse.Namespace) -> dict[str, Any]:
    return {"policy": args.policy, "reward": args.reward, "target": args.target,
            "out": args.out, "intents": args.intents, **cluster_request(args)}


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "ReST-like: sample rollouts from the policy, score them with the reward model, "
        "fine-tune on the top fraction (a few rounds), then measure the true outcome rates. "
        "Resumable; a finished run is skipped. Defaults: configs/prefft.yaml.")
    alignment_arguments(parser, "runs/prefft")
    add_options(parser, PrefftSettings, OPTIONS)
    add_config_arguments(parser)


def request(args: argparse.Namespace) -> tuple[PrefftSettings, dict[str, Any]]:
    return load_from_args(PrefftSettings, args, OPTIONS), alignment_request(args)


COMMAND = Command("prefft", "preference fine-tuning on the best-scored rollouts", arguments,
                  request, "agentalign.train.prefft:run", "agentalign.train.prefft:summary",
                  inputs=("policy", "reward", "intents"), outputs=("out",))
