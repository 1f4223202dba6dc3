"""`agentalign pipeline`'s settings (configs/pipeline.yaml) and arguments."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentalign.command import Command
from agentalign.config import (
    Settings,
    add_config_arguments,
    at_least,
    dormant_while,
    invalid,
    load,
)
from agentalign.envs.factory import ENV_HELP, check_env_setting
from agentalign.envs.intents import IntentError, load_intents
from agentalign.envs.layout import DEFAULT_LAYOUT
from agentalign.rollout.cluster import cluster_arguments, cluster_request
from agentalign.rollout.starts import without_anywhere
from agentalign.train.label_config import LabelSettings

STAGE_OVERRIDES = ("collect", "demos", "pretrain", "sft", "reward", "align", "evaluate")
# Stages run once per target also take overrides for one target, `<stage>-<target>` (e.g.
# align-middle: more RL for the middle pad), applied before the stage's own, so that a setting
# for every alignment still reaches every target.
PER_TARGET = ("reward", "align")
# Keys that change how a run is scheduled, not what it computes: a resume may change them.
SCHEDULING_KEYS = ("workers",)
# A target names its stages' folders and its personality, <target>-runner (export's names).
TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,56}")


@dataclass(frozen=True)
class PipelineSettings(Settings):
    """The recipe's run; each key is documented in configs/pipeline.yaml."""

    YAML = "pipeline"
    targets: tuple[str, ...]  # designer intents by name (envs.intents), of `intents`
    demo_episodes: int = field(metadata=at_least(1))
    eval_episodes: int = field(metadata=at_least(1))
    offlane: bool
    ablation: bool
    export: bool
    export_episodes: int = field(metadata=at_least(1))
    study: bool
    seed: int = field(metadata=at_least(0))
    workers: int = field(metadata=at_least(1))
    env: str
    labels_used: int = field(metadata=at_least(1))
    label: LabelSettings
    stages: dict[str, tuple[str, ...]]
    intents: str | None = None  # the intents file targets are read from; None: the packaged
    # The island every stage plays on (a packaged layout name or a .json path); out of the
    # run's identity and the recipe while it is the default, so runs from before resume.
    layout: str = field(default=DEFAULT_LAYOUT, metadata=dormant_while("layout", DEFAULT_LAYOUT))

    def check(self) -> None:
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise invalid("targets", f"must be distinct intent names, got "
                          f"{list(self.targets)!r}")
        for target in self.targets:
            if not TARGET_NAME.fullmatch(target):
                raise invalid("targets", f"{target!r} names folders and the personality "
                              f"{target}-runner: use up to 57 letters, digits, '-' or '_', "
                              "starting with a letter or digit")
        if self.intents is None:  # a file of one's own is read when the run starts (below)
            check_targets(self.targets, None)
        check_env_setting(self.env)
        if unknown := sorted(k for k in self.stages
                             if k not in STAGE_OVERRIDES and stage_target(k) is None):
            raise invalid(f"stages.{unknown[0]}", f"no such stage; stages take overrides for "
                          f"{', '.join(STAGE_OVERRIDES)}, and for one target as "
                          f"{' or '.join(f'{s}-TARGET' for s in PER_TARGET)}")

    def target_keys(self) -> tuple[str, ...]:
        """The targets named by per-target `stages` keys (intents, checked when a run starts)."""
        return tuple(dict.fromkeys(t for k in self.stages if (t := stage_target(k))))

    def identity(self) -> dict[str, Any]:
        return recipe(self.to_dict())

    @property
    def island(self) -> str | None:
        """`layout` when it is not the default (every stage that plays episodes is given it),
        else None (each stage keeps its own setting, as runs from before did)."""
        return self.layout if self.layout != DEFAULT_LAYOUT else None


def stage_target(key: str) -> str | None:
    """The target of a per-target `stages` key (`align-middle` -> middle), else None."""
    stage, _, target = key.partition("-")
    return target if stage in PER_TARGET and TARGET_NAME.fullmatch(target) else None


def check_targets(targets: tuple[str, ...], intents: str | None,
                  layout: str = DEFAULT_LAYOUT) -> None:
    """Refuse, in one line, a target that is no intent of `intents` (None: the packaged file).
    Settings check the packaged file's names as they load; a file of one's own (and the
    layout) only when the run starts, so that loading settings reads no path of the user's
    (the agent server checks those paths first)."""
    try:
        known = load_intents(intents, layout)
    except IntentError as e:
        raise invalid("intents", str(e)) from None
    for target in targets:
        if target not in known:
            raise invalid("targets", f"no intent {target!r} in "
                          f"{intents or 'the packaged configs/intents.yaml'}: choose from "
                          f"{', '.join(known)}")


def recipe(config: dict[str, Any]) -> dict[str, Any]:
    """What of a pipeline config (as pipeline.json holds it) a resumed run must agree on: not
    the scheduling keys, nor the label stage's starts-anywhere keys while unused, nor
    `intents` while it is the packaged file (runs from before the key existed resume)."""
    found = {k: v for k, v in config.items() if k not in SCHEDULING_KEYS
             and not (k == "intents" and v is None)}
    if isinstance(found.get("label"), dict):
        found["label"] = without_anywhere(found["label"])
    return found


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Collect the corpus and demos, pre-train, fine-tune, label preferences, train reward "
        "models, align each target, evaluate every stage, export the personalities and write "
        "report.html. Resumable: rerun the same command to continue. Defaults: "
        "configs/pipeline.yaml.")
    parser.add_argument("--name", default="default", help="run name: the run goes to runs/NAME")
    parser.add_argument("--out", type=Path, help="run folder (default runs/NAME)")
    parser.add_argument("--targets", nargs="+", metavar="INTENT",
                        help="designer intents to align personalities to, by name: left, "
                        "middle, right or those of --intents (default: "
                        + " ".join(load(PipelineSettings).targets) + "; docs/intents.md)")
    parser.add_argument("--intents", metavar="FILE", help="the intents file --targets are "
                        "read from (default: the packaged configs/intents.yaml)")
    parser.add_argument("--env", help=ENV_HELP + "; passed to every stage that runs episodes")
    parser.add_argument("--layout", metavar="NAME", help="the island every stage plays on: a "
                        "packaged layout (jumppad_island, jumppad_island_alike) or a .json "
                        f"path (default {DEFAULT_LAYOUT})")
    cluster_arguments(parser)  # collect, trainers, label, align, evaluate: docs/distributed.md
    add_config_arguments(parser)


def request(args: argparse.Namespace) -> tuple[PipelineSettings, dict[str, Any]]:
    options = {"targets": list(args.targets) if args.targets else None, "env": args.env,
               "intents": args.intents, "layout": args.layout}
    return load(PipelineSettings, args.config, args.overrides, options), {
        "out": args.out or Path("runs") / args.name, **cluster_request(args)}


COMMAND = Command("pipeline", "the whole recipe: collect to personalities and report",
                  arguments, request, "agentalign.pipeline:run", "agentalign.pipeline:summary",
                  outputs=("out",))
