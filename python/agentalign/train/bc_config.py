"""`agentalign pretrain` and `sft`: their settings and arguments (configs/pretrain.yaml,
configs/sft.yaml), and the policy-config fields every trainer may set (`ModelSettings`)."""

from __future__ import annotations

import argparse
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

# Keys that change no weight, so a resumed run may change them.
RESUMABLE_CHANGES = ("eval_interval", "log_interval", "checkpoint_interval", "keep_checkpoints",
                     "num_threads", "prefetch", "device")


@dataclass(frozen=True)
class ModelSettings(Settings):
    """A named policy config (models/policy.py CONFIGS) and the fields to change (None keeps
    the named config's, or, when fine-tuning, the checkpoint's)."""

    name: str | None
    obs_height: int | None = field(metadata=at_least(1))
    obs_width: int | None = field(metadata=at_least(1))
    context: int | None = field(metadata=at_least(1))
    n_layer: int | None = field(metadata=at_least(1))
    n_head: int | None = field(metadata=at_least(1))
    n_embd: int | None = field(metadata=at_least(1))
    cnn_channels: tuple[int, ...] | None = field(metadata=at_least(1))
    dropout: float | None = field(metadata=between(0.0, 1.0))


@dataclass(frozen=True)
class ImitationSettings(Settings):
    """The hyper-parameters of one imitation stage, documented where their defaults are
    declared: configs/pretrain.yaml and configs/sft.yaml."""

    YAML = "pretrain"
    model: ModelSettings
    episodes: int | None = field(metadata=at_least(1))
    context: int | None = field(metadata=at_least(1))
    batch_size: int = field(metadata=at_least(1))
    steps: int = field(metadata=at_least(1))
    lr: float = field(metadata=above(0))
    min_lr: float = field(metadata=at_least(0))
    warmup_steps: int = field(metadata=at_least(0))
    weight_decay: float = field(metadata=at_least(0))
    beta1: float = field(metadata=between(0.0, 1.0))
    beta2: float = field(metadata=between(0.0, 1.0))
    grad_clip: float = field(metadata=at_least(0))
    eval_fraction: float = field(metadata=between(0.0, 0.999))
    windows: Literal["starts", "steps"]
    eval_windows: int = field(metadata=at_least(1))
    eval_interval: int = field(metadata=at_least(1))
    log_interval: int = field(metadata=at_least(1))
    checkpoint_interval: int = field(metadata=at_least(1))
    keep_checkpoints: int = field(metadata=at_least(0))
    seed: int = field(metadata=at_least(0))
    num_threads: int = field(metadata=at_least(0))
    prefetch: int = field(metadata=at_least(0))
    device: Literal["auto", "cpu", "cuda"]
    future_weight: float = field(metadata={**at_least(0), **dormant_while("future_weight", 0)})
    future_temperature: float = field(metadata={**above(0),
                                                **dormant_while("future_weight", 0)})

    def check(self) -> None:
        if self.min_lr > self.lr:
            raise invalid("min_lr", f"must be <= lr ({self.lr}), got {self.min_lr}")

    def identity(self) -> dict[str, Any]:
        """The keys that shape the weights: a resume must agree on all of them."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_CHANGES}


@dataclass(frozen=True)
class SftSettings(ImitationSettings):
    YAML = "sft"


def pretrain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Behaviour cloning of the whole gameplay corpus from a random init. Resumes from the "
        "newest checkpoint in --out (rerun the same command after an interruption) and skips a "
        "finished run. Runs on N processes with `torchrun --nproc_per_node N -m agentalign "
        "pretrain ...`. Defaults: configs/pretrain.yaml.")
    parser.add_argument("--corpus", type=Path, default=Path("runs/corpus"),
                        help="gameplay corpus folder (from `agentalign collect`)")
    parser.add_argument("--out", type=Path, default=Path("runs/pretrain"), help="stage folder")
    cluster_arguments(parser, trains=True)
    add_config_arguments(parser)


def pretrain_request(args: argparse.Namespace) -> tuple[ImitationSettings, dict[str, Any]]:
    return load_from_args(ImitationSettings, args), {"corpus": args.corpus, "out": args.out,
                                                      **cluster_request(args)}


def sft_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Supervised fine-tuning on the curated demos (made by `agentalign collect --population "
        "direct --episodes 200`), from a pre-trained checkpoint (--init) or from a random init "
        "(--from-scratch, the ablation). Resumable like pretrain. Defaults: configs/sft.yaml.")
    start = parser.add_mutually_exclusive_group(required=True)
    start.add_argument("--init", type=Path, metavar="CHECKPOINT",
                       help="pre-trained policy: a checkpoint folder or the pretrain folder")
    start.add_argument("--from-scratch", action="store_true",
                       help="start from a random init instead (the paper's ablation)")
    parser.add_argument("--demos", type=Path, default=Path("runs/demos"),
                        help="demo corpus folder")
    parser.add_argument("--out", type=Path, default=Path("runs/sft"), help="stage folder")
    cluster_arguments(parser, trains=True)
    add_config_arguments(parser)


def sft_request(args: argparse.Namespace) -> tuple[SftSettings, dict[str, Any]]:
    return load_from_args(SftSettings, args), {"demos": args.demos, "out": args.out,
                                               "init": args.init, **cluster_request(args)}


PRETRAIN = Command("pretrain", "pre-train the policy by imitating the gameplay corpus",
                   pretrain_arguments, pretrain_request, "agentalign.train.bc:pretrain",
                   "agentalign.train.bc:summary", inputs=("corpus",), outputs=("out",))
SFT = Command("sft", "fine-tune the policy on curated direct demos", sft_arguments, sft_request,
              "agentalign.train.bc:sft", "agentalign.train.bc:summary",
              inputs=("demos", "init"), outputs=("out",))
