"""`agentalign studio`'s settings and arguments (configs/studio.yaml)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentalign.command import Command
from agentalign.config import (
    Settings,
    add_config_arguments,
    add_options,
    at_least,
    between,
    invalid,
    load_from_args,
)

HELP = "the designers' web application: label pairs, learn a reward, align, watch"
OPTIONS = {"host": "address to bind (any but loopback needs a token)", "port": "TCP port",
           "overlap": "answers wanted per pair", "budget": "training labels per personality"}
STAGES = ("reward", "align", "export", "evaluate")


@dataclass(frozen=True)
class PoolSettings(Settings):
    sft_episodes: int = field(metadata=at_least(2))
    anywhere_episodes: int = field(metadata=at_least(0))
    base_episodes: int = field(metadata=at_least(0))
    aligned_episodes: int = field(metadata=at_least(0))
    along_episodes: int = field(metadata=at_least(0))
    anywhere: float = field(metadata=between(0.0, 1.0))
    aligned_along: float = field(metadata=between(0.0, 1.0))
    handoff_episodes: int = field(metadata=at_least(0))
    handoff_within: int = field(metadata=at_least(0))
    num_envs: int = field(metadata=at_least(1))
    seed: int = field(metadata=at_least(0))
    features: Literal["colour", "encoder"]


@dataclass(frozen=True)
class StudioSettings(Settings):
    YAML = "studio"
    host: str
    port: int = field(metadata=between(0, 65535))
    overlap: int = field(metadata=at_least(1))
    heldout_share: float = field(metadata=between(0.0, 0.9))
    random_share: float = field(metadata=between(0.0, 1.0))
    warmup_labels: int = field(metadata=at_least(0))
    refit_every: int = field(metadata=at_least(1))
    candidates: int = field(metadata=at_least(1))
    uncertainty: Literal["entropy", "disagreement", "top"]
    members: int = field(metadata=at_least(1))
    budget: int = field(metadata=at_least(1))
    pool: PoolSettings
    stages: dict[str, tuple[str, ...]]

    def check(self) -> None:
        if unknown := sorted(set(self.stages) - set(STAGES)):
            raise invalid(f"stages.{unknown[0]}", f"an align job runs {', '.join(STAGES)}")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Serve the studio for a run folder made by `agentalign pipeline` "
                          "(it needs RUN/sft and RUN/pretrain): label pairs in the browser, "
                          "align personalities, watch them play. Everything it writes goes to "
                          "RUN/studio. Defaults: configs/studio.yaml.")
    parser.add_argument("--run", type=Path, required=True, help="the run folder")
    parser.add_argument("--token-file", type=Path,
                        help="file holding the access token (or AGENTALIGN_STUDIO_TOKEN)")
    parser.add_argument("--no-pool", action="store_true",
                        help="do not record the pool of rollouts at start (tests, demos)")
    add_options(parser, StudioSettings, OPTIONS)
    add_config_arguments(parser)


def request(args: argparse.Namespace) -> tuple[StudioSettings, dict[str, Any]]:
    token = os.environ.get("AGENTALIGN_STUDIO_TOKEN")
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as e:
            from agentalign.errors import UserError

            raise UserError(f"token file {args.token_file}: {e.strerror}") from None
    return load_from_args(StudioSettings, args, OPTIONS), {
        "run": args.run, "token": token or None, "pool": not args.no_pool}


COMMAND = Command("studio", HELP, arguments, request, "agentalign.studio.app:serve",
                  "agentalign.studio.app:summary", inputs=("run",))
