"""Every `agentalign` command, by name: where its arguments and settings are declared (a light
module each, so parsing a command line imports no stage and no torch)."""

from __future__ import annotations

import importlib

from agentalign.command import Command

# name -> "module:attribute" of its Command, in the order `agentalign --help` lists them
WHERE = {
    "preview": "agentalign.preview_config:COMMAND",
    "collect": "agentalign.collect_config:COMMAND",
    "import-demo": "agentalign.data.demo_import:COMMAND",
    "pretrain": "agentalign.train.bc_config:PRETRAIN",
    "sft": "agentalign.train.bc_config:SFT",
    "label": "agentalign.train.label_config:COMMAND",
    "export-labels": "agentalign.train.label_io_config:EXPORT",
    "import-labels": "agentalign.train.label_io_config:IMPORT",
    "reward": "agentalign.train.reward_config:COMMAND",
    "prefft": "agentalign.train.prefft_config:COMMAND",
    "rl": "agentalign.train.rl_config:COMMAND",
    "align": "agentalign.train.align_config:COMMAND",
    "evaluate": "agentalign.evaluate_config:COMMAND",
    "export": "agentalign.export.export_config:EXPORT",
    "check-model": "agentalign.export.export_config:CHECK_MODEL",
    "play": "agentalign.export.export_config:PLAY",
    "unity-scene": "agentalign.unityproj.command:COMMAND",
    "unity-personalities": "agentalign.export.unity_personalities:COMMAND",
    "pipeline": "agentalign.pipeline_config:COMMAND",
    "report": "agentalign.report:COMMAND",
    "studio": "agentalign.studio.studio_config:COMMAND",
}


def command(name: str) -> Command:
    module, _, attribute = WHERE[name].partition(":")
    return getattr(importlib.import_module(module), attribute)
