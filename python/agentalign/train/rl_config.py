"""`agentalign rl`'s settings and arguments (configs/rl.yaml)."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
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
    invalid,
    load_from_args,
)
from agentalign.envs.factory import ENV_HELP, check_env_setting
from agentalign.rollout.starts import without_anywhere
from agentalign.train.prefft_config import alignment_arguments, alignment_request

OPTIONS = {"env": ENV_HELP, "num_envs": "environments stepped together while acting"}
# Keys that change no weight, so a resumed run may change them. `env` too: both backends play
# the same episodes for the same seeds.
RESUMABLE_CHANGES = ("eval_interval", "eval_episodes", "checkpoint_interval", "keep_checkpoints",
                     "num_threads", "env")


@dataclass(frozen=True)
class RLSettings(Settings):
    """The hyper-parameters of `agentalign rl`, each documented in configs/rl.yaml."""

    YAML = "rl"
    iterations: int = field(metadata=at_least(0))
    starts_per_iteration: int = field(metadata=at_least(1))
    samples_per_start: int = field(metadata=at_least(2))
    lr: float = field(metadata=above(0))
    weight_decay: float = field(metadata=at_least(0))
    beta1: float = field(metadata=between(0.0, 1.0))
    beta2: float = field(metadata=between(0.0, 1.0))
    grad_clip: float = field(metadata=at_least(0))
    kl_coef: float = field(metadata=at_least(0))
    freeze_cnn: bool
    normalize_advantages: bool
    update_epochs: int = field(metadata=at_least(1))
    minibatches: int = field(metadata=at_least(1))
    clip_range: float = field(metadata=at_least(0))
    minibatch_episodes: int = field(metadata=at_least(1))
    num_envs: int = field(metadata=at_least(1))
    env: str
    max_steps: int = field(metadata=at_least(1))
    spawn_jitter: float = field(metadata=at_least(0))
    anywhere: float = field(metadata=between(0.0, 1.0))
    anywhere_edge: float = field(metadata=at_least(0))
    # added after runs were recorded: out of to_dict (the recipe digest) while along is 0
    along: float = field(metadata={**between(0.0, 1.0), **dormant_while("along", 0.0)})
    along_episodes: int = field(metadata={**at_least(1), **dormant_while("along", 0.0)})
    start_priority: float = field(metadata=between(0.0, 1.0))
    layout: str
    eval_episodes: int = field(metadata=at_least(0))
    eval_interval: int = field(metadata=at_least(0))
    checkpoint_interval: int = field(metadata=at_least(1))
    keep_checkpoints: int = field(metadata=at_least(0))
    seed: int = field(metadata=at_least(0))
    num_threads: int = field(metadata=at_least(0))

    def check(self) -> None:
        check_env_setting(self.env)
        if self.minibatches > self.starts_per_iteration * self.samples_per_start:
            raise invalid("minibatches", f"{self.minibatches} is more than the batch's "
                          f"{self.starts_per_iteration * self.samples_per_start} episodes")

    def identity(self) -> dict[str, Any]:
        """The keys that shape the weights: a resume must agree on all of them."""
        identity = without_anywhere({k: v for k, v in asdict(self).items()
                                     if k not in RESUMABLE_CHANGES})
        if not self.start_priority:  # uniform spawns: the runs of before the key stay valid
            identity.pop("start_priority")
        return identity


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "On-policy RLOO: k sampled runs per start, reward = score - kl_coef * KL to the "
        "starting policy, logged to TensorBoard with the true outcome rates. Resumable; a "
        "finished run is skipped. Defaults: configs/rl.yaml.")
    alignment_arguments(parser, "runs/rl")
    add_options(parser, RLSettings, OPTIONS)
    add_config_arguments(parser)


def request(args: argparse.Namespace) -> tuple[RLSettings, dict[str, Any]]:
    return load_from_args(RLSettings, args, OPTIONS), alignment_request(args)


COMMAND = Command("rl", "RL (RLOO) against the reward model with a KL penalty", arguments,
                  request, "agentalign.train.rl:run", "agentalign.train.rl:summary",
                  inputs=("policy", "reward", "intents"), outputs=("out",))
