"""`agentalign label`'s settings and arguments (configs/label.yaml)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentalign.command import Command
from agentalign.config import (
    Settings,
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

OPTIONS = {"train_episodes": "train rollouts", "heldout_episodes": "held-out rollouts",
           "pairs": "train pairs", "heldout_pairs": "held-out pairs",
           "anywhere": "share of train rollouts started anywhere on the island",
           "anywhere_heldout_episodes": "held-out rollouts started anywhere (0 = none)",
           "along": "share of train rollouts started along the policy's own runs",
           "temperature": "labeller noise (0: exact)", "seed": "rollout and pairing seed",
           "num_envs": "environments stepped together",
           "num_threads": "torch CPU threads while acting (0 = every core)", "env": ENV_HELP}


@dataclass(frozen=True)
class LabelSettings(Settings):
    """What `agentalign label` makes; each key is documented in configs/label.yaml."""

    YAML = "label"
    train_episodes: int = field(metadata=at_least(2))
    heldout_episodes: int = field(metadata=at_least(2))
    pairs: int = field(metadata=at_least(1))
    heldout_pairs: int = field(metadata=at_least(1))
    anywhere: float = field(metadata=between(0.0, 1.0))
    anywhere_heldout_episodes: int = field(metadata=at_least(0))
    anywhere_edge: float = field(metadata=at_least(0))
    # added after runs were recorded: out of to_dict (the recipe digest) while along is 0
    along: float = field(metadata={**between(0.0, 1.0), **dormant_while("along", 0.0)})
    along_episodes: int = field(metadata={**at_least(1), **dormant_while("along", 0.0)})
    temperature: float = field(metadata=at_least(0))
    seed: int = field(metadata=at_least(0))
    num_envs: int = field(metadata=at_least(1))
    greedy: bool
    layout: str
    env: str
    num_threads: int = field(metadata=at_least(0))

    def check(self) -> None:
        check_env_setting(self.env)

    def identity(self) -> dict[str, Any]:
        """The settings that shape the labels: not `env`, as both backends play the same
        episodes for the same seeds, nor `num_threads`."""
        return without_anywhere({k: v for k, v in asdict(self).items()
                                 if k not in ("env", "num_threads")})


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Roll out the SFT policy (sampled actions) into corpora, OUT/rollouts-train and "
        "OUT/rollouts-heldout (and, with --anywhere-heldout-episodes, "
        "OUT/rollouts-heldout-anywhere from starts anywhere on the island; separate seeds), "
        "pair their episodes and label the pairs with "
        "the synthetic labeller for each --target (a designer intent by name: a pad, left, "
        "middle or right, or one of --intents), in OUT/labels.sqlite (ties dropped). Rerun "
        "with another --target to add its labels to the same store. Defaults: "
        "configs/label.yaml.")
    parser.add_argument("--policy", type=Path, required=True, metavar="SFT_CHECKPOINT",
                        help="the SFT policy: a checkpoint folder or the sft stage folder")
    parser.add_argument("--out", type=Path, default=Path("runs/labels"), help="output folder")
    parser.add_argument("--target", action="append", required=True, metavar="INTENT",
                        help="intent to label for, by name (repeatable): left, middle, right "
                        "or one of the --intents file (docs/intents.md)")
    parser.add_argument("--intents", type=Path, metavar="FILE", help="the intents file "
                        "--target names are read from (default: the packaged "
                        "configs/intents.yaml)")
    add_options(parser, LabelSettings, OPTIONS)
    cluster_arguments(parser)
    add_config_arguments(parser)


def request(args: argparse.Namespace) -> tuple[LabelSettings, dict[str, Any]]:
    targets = list(dict.fromkeys(args.target))  # --target is required: never empty
    return load_from_args(LabelSettings, args, OPTIONS), {
        "policy": args.policy, "out": args.out, "targets": targets, "intents": args.intents,
        **cluster_request(args)}


COMMAND = Command("label", "roll out the SFT agent and label pairs of its runs", arguments,
                  request, "agentalign.train.label:run", "agentalign.train.label:summary",
                  inputs=("policy", "intents"), outputs=("out",))
