"""`agentalign collect`'s settings and arguments (configs/collect.yaml, configs/players.yaml)."""

from __future__ import annotations

import argparse
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
    packaged,
)
from agentalign.data.players import PopulationSettings
from agentalign.envs.factory import ENV_HELP, check_env_setting
from agentalign.rollout.cluster import cluster_arguments, cluster_request

HELP = "record a gameplay corpus from scripted players"
OPTIONS = {"population": "corpus = gameplay mixture, direct = curated straight-to-pad demos",
           "episodes": "number of episodes", "workers": "worker processes",
           "num_envs": "environments per worker", "env": ENV_HELP, "seed": "corpus seed"}


@dataclass(frozen=True)
class CollectSettings(Settings):
    """What `agentalign collect` records; each key is documented in configs/collect.yaml."""

    YAML = "collect"
    population: str
    episodes: int = field(metadata=at_least(1))
    shard_episodes: int = field(metadata=at_least(1))
    num_envs: int = field(metadata=at_least(1))
    env: str
    workers: int = field(metadata=at_least(1))
    seed: int = field(metadata=at_least(0))
    layout: str
    height: int = field(metadata=at_least(1))
    width: int = field(metadata=at_least(1))
    spawn_jitter: float = field(metadata=at_least(0))
    anywhere: float = field(metadata=between(0.0, 1.0))
    anywhere_edge: float = field(metadata=at_least(0))
    frames_codec: Literal["zlib", "raw"]
    compression_level: int = field(metadata=between(0, 9))
    players: dict[str, PopulationSettings] = field(metadata=packaged("players"))

    def check(self) -> None:
        check_env_setting(self.env)
        if self.env == "unity" and self.workers != 1:
            raise invalid("workers", "the Unity editor serves one connection; use --workers 1 "
                          "(or headless builds: --env unity:PATH)")
        if self.population not in self.players:
            raise invalid("population", f"{self.population!r} is not a section of the players "
                          f"config ({sorted(self.players)})")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Record episodes played by the scripted player population into "
                          "shards (resumable: rerun the same command to finish an interrupted "
                          "corpus). Defaults: configs/collect.yaml + players.yaml.")
    parser.add_argument("--out", type=Path, default=Path("runs/corpus"), help="corpus folder")
    add_options(parser, CollectSettings, OPTIONS)
    cluster_arguments(parser, what="make the shards as Ray tasks")
    add_config_arguments(parser)


def request(args: argparse.Namespace) -> tuple[CollectSettings, dict[str, Any]]:
    """The settings and the stage's other arguments, from a parsed command line."""
    return load_from_args(CollectSettings, args, OPTIONS), {"out": args.out,
                                                             **cluster_request(args)}


COMMAND = Command("collect", HELP, arguments, request, "agentalign.collect:run",
                  "agentalign.collect:summary", outputs=("out",))
