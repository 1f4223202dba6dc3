"""`agentalign evaluate`'s settings and arguments (configs/evaluate.yaml)."""

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
    add_options,
    at_least,
    invalid,
    load,
    option_values,
)
from agentalign.envs.factory import ENV_HELP, check_env_setting
from agentalign.rollout.cluster import cluster_arguments, cluster_request
from agentalign.rollout.starts import OfflaneSettings

OPTIONS = {"episodes": "episodes to count", "num_envs": "environments stepped together",
           "env": ENV_HELP, "seed": "evaluation seed",
           "greedy": "argmax actions instead of sampling",
           "intent": "also report the share of episodes satisfying this designer intent, by "
                     "name (docs/intents.md)",
           "intents": "the intents file --intent reads; none: the packaged "
                      "configs/intents.yaml"}


@dataclass(frozen=True)
class EvaluateSettings(Settings):
    """How a policy is evaluated; each key is documented in configs/evaluate.yaml."""

    YAML = "evaluate"
    episodes: int = field(metadata=at_least(1))
    num_envs: int = field(metadata=at_least(1))
    env: str
    seed: int = field(metadata=at_least(0))
    greedy: bool
    starts: Literal["spawns", "offlane"]
    layout: str
    spawn_jitter: float = field(metadata=at_least(0))
    max_steps: int = field(metadata=at_least(1))
    device: str
    num_threads: int = field(metadata=at_least(0))
    gif_episodes: int = field(metadata=at_least(0))
    gif_scale: int = field(metadata=at_least(1))
    heatmap_cell: float = field(metadata=above(0))
    offlane: OfflaneSettings
    intent: str | None = None  # a designer intent to count satisfaction of (envs.intents)
    intents: str | None = None  # the intents file it is read from; None: the packaged one

    def check(self) -> None:
        check_env_setting(self.env)
        if self.intents is not None and self.intent is None:
            raise invalid("intents", "names an intents file, but no intent is chosen from it "
                          "(--intent NAME)")
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise invalid("device", f"must be cpu or cuda[:N], got {self.device!r}")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Play episodes with a policy checkpoint (sampled actions, as deployed, unless "
        "--greedy) and write results.json (outcome rates with 95% Wilson intervals, overall "
        "and per spawn), heatmap.png and episode GIFs. Defaults: configs/evaluate.yaml.")
    parser.add_argument("checkpoint", type=Path, help="a policy checkpoint folder or stage "
                        "folder")
    parser.add_argument("--out", type=Path, default=Path("runs/evaluate"), help="output folder")
    add_options(parser, EvaluateSettings, OPTIONS)
    parser.add_argument("--offlane", action="store_true", help="start displaced or turned "
                        "away from the demonstration lanes (the fixed set in "
                        "configs/evaluate.yaml)")
    cluster_arguments(parser)
    add_config_arguments(parser)


def request(args: argparse.Namespace) -> tuple[EvaluateSettings, dict[str, Any]]:
    options = option_values(args, OPTIONS)
    if args.offlane:
        options["starts"] = "offlane"
    return load(EvaluateSettings, args.config, args.overrides, options), {
        "checkpoint": args.checkpoint, "out": args.out, **cluster_request(args)}


COMMAND = Command("evaluate", "outcome rates of a policy, with a heatmap and GIFs", arguments,
                  request, "agentalign.evaluate:run", "agentalign.evaluate:summary",
                  inputs=("checkpoint",), outputs=("out",))

