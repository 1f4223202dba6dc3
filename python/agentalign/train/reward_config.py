"""`agentalign reward` (and its label-scaling study): settings and arguments
(configs/reward.yaml)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentalign.command import Command
from agentalign.config import (
    Settings,
    above,
    add_config_arguments,
    at_least,
    between,
    dormant_while,
    invalid,
    load_from_args,
)
from agentalign.rollout.cluster import cluster_arguments, cluster_request
from agentalign.train.bc_config import ModelSettings

SUMMARY_WIDTH = 16  # the default, as models.reward.SUMMARY_WIDTH (a test keeps them equal): the
# model of before the key, so its identities, cards and the recipe digest leave the key out

INITS = ("agent", "random")
# Keys that change no weight: not part of a run's identity.
RESUMABLE_CHANGES = ("log_interval", "checkpoint_interval", "keep_checkpoints", "num_threads",
                     "device", "study")


@dataclass(frozen=True)
class StudySettings(Settings):
    """`agentalign reward --study`: the paper's label-scaling figure."""

    label_counts: tuple[int, ...] = field(metadata=at_least(1))
    seeds: tuple[int, ...] = field(metadata=at_least(0))
    inits: tuple[Literal["agent", "random"], ...]
    workers: int = field(metadata=at_least(1))

    def check(self) -> None:
        for key in ("label_counts", "seeds", "inits"):
            if not getattr(self, key):
                raise invalid(key, "must not be empty")


@dataclass(frozen=True)
class RewardSettings(Settings):
    """The hyper-parameters of the reward model; documented in configs/reward.yaml."""

    YAML = "reward"
    model: ModelSettings
    freeze_cnn: bool
    summary_stride: int = field(metadata=at_least(0))
    summary_width: int = field(metadata={**at_least(0),
                                         **dormant_while("summary_width", SUMMARY_WIDTH)})
    batch_size: int = field(metadata=at_least(1))
    epochs: float = field(metadata=above(0))
    min_steps: int = field(metadata=at_least(1))
    max_steps: int = field(metadata=at_least(1))
    lr: float = field(metadata=above(0))
    min_lr: float = field(metadata=at_least(0))
    warmup_steps: int = field(metadata=at_least(0))
    weight_decay: float = field(metadata=at_least(0))
    beta1: float = field(metadata=between(0.0, 1.0))
    beta2: float = field(metadata=between(0.0, 1.0))
    grad_clip: float = field(metadata=at_least(0))
    log_interval: int = field(metadata=at_least(1))
    checkpoint_interval: int = field(metadata=at_least(1))
    keep_checkpoints: int = field(metadata=at_least(0))
    seed: int = field(metadata=at_least(0))
    num_threads: int = field(metadata=at_least(0))
    device: Literal["auto", "cpu", "cuda"]
    study: StudySettings

    def check(self) -> None:
        if self.min_steps > self.max_steps:
            raise invalid("min_steps", f"must be <= max_steps ({self.max_steps})")
        if self.min_lr > self.lr:
            raise invalid("min_lr", f"must be <= lr ({self.lr}), got {self.min_lr}")
        if self.summary_stride and self.freeze_cnn:
            raise invalid("summary_stride", "the episode summary trains through the CNN; it "
                          "cannot be combined with freeze_cnn (set one of them off)")

    def steps_for(self, labels: int) -> int:
        """Optimisation steps for `labels` labels: `epochs` passes, clamped."""
        batch = min(self.batch_size, labels)
        return int(min(self.max_steps, max(self.min_steps,
                                           math.ceil(self.epochs * labels / batch))))

    def identity(self) -> dict[str, Any]:
        return without_summary({k: v for k, v in self.to_dict().items()
                                if k not in RESUMABLE_CHANGES})


def without_summary(identity: dict[str, Any]) -> dict[str, Any]:
    """A reward identity without `summary_stride` when it is 0 (and then without
    `summary_width`, which only a summary reads; at 16, the width of before the key, to_dict
    has already left it out): such runs are the models of before the keys existed, bit for bit,
    so the folders of earlier runs stay valid (skipped or resumed, not refused as another
    run's)."""
    if identity.get("summary_stride"):
        return identity
    return {k: v for k, v in identity.items() if k not in ("summary_stride", "summary_width")}


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train the reward model (the policy's trunk + a scalar head) with the Bradley-Terry "
        "loss on the first N train labels of a target; report held-out accuracy (all, easy = "
        "different outcomes, hard = same outcome) in OUT/metrics.json. Resumable like "
        "pretrain. With --study, run the label-scaling study instead (study.json, study.md, "
        "study.png). Defaults: configs/reward.yaml.")
    parser.add_argument("--labels", type=Path, default=Path("runs/labels"),
                        help="a folder made by `agentalign label`")
    parser.add_argument("--target", required=True, metavar="INTENT",
                        help="the intent whose labels to learn: any target the store labelled")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", type=Path, metavar="PRETRAINED_CHECKPOINT",
                       help="agent-encoder init: the pre-trained policy's checkpoint or folder")
    start.add_argument("--random-init", action="store_true", help="a random trunk instead")
    parser.add_argument("--labels-used", type=int, help="train on the first N labels (default: "
                        "all)")
    parser.add_argument("--study", action="store_true", help="the label-scaling study (both "
                        "inits, the label counts and seeds of the config's study section)")
    parser.add_argument("--out", type=Path, default=Path("runs/reward"), help="stage folder")
    cluster_arguments(parser, trains=True)
    add_config_arguments(parser)


def request(args: argparse.Namespace) -> tuple[RewardSettings, dict[str, Any]]:
    return load_from_args(RewardSettings, args), {
        "labels": args.labels, "target": args.target, "out": args.out, "init": args.init,
        "labels_used": args.labels_used, "study": args.study, **cluster_request(args)}


COMMAND = Command("reward", "train the reward model on preference labels", arguments, request,
                  "agentalign.train.reward_study:command",
                  "agentalign.train.reward_study:command_summary",
                  inputs=("labels", "init"), outputs=("out",))
