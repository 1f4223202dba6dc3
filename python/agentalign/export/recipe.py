"""The default recipe as data, and its digest: what a personality's card and the shipped
personalities' test compare to know the recipe has not moved since they were made.

The recipe is the packaged defaults of `agentalign pipeline` and of every stage it runs to make
a personality: collect (with its player population), pretrain, sft, label, reward, align (prefft
and rl) and export. Evaluation is left out: it measures, it does not make. The digest is the
sha256 of those settings as sorted JSON, so comments and key order in the YAML files do not
count and a changed default does.

The pipeline's settings class sits in a layer above export, so its default config is built here
from the same packaged files its loader reads (pipeline.yaml, its `label` section from
label.yaml); a test keeps the two equal.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from agentalign.collect_config import CollectSettings
from agentalign.config import Settings, defaults, packaged_data
from agentalign.envs.layout import DEFAULT_LAYOUT
from agentalign.export.export_config import ExportSettings
from agentalign.train.align_config import AlignSettings
from agentalign.train.bc_config import ImitationSettings, SftSettings
from agentalign.train.label_config import LabelSettings
from agentalign.train.reward_config import RewardSettings

# The stages that make a personality, in the pipeline's order, by the name of their config.
STAGES: dict[str, type[Settings]] = {
    "collect": CollectSettings, "pretrain": ImitationSettings, "sft": SftSettings,
    "label": LabelSettings, "reward": RewardSettings, "align": AlignSettings,
    "export": ExportSettings}
# Pipeline keys that its settings leave out of to_dict while they hold these values
# (config.dormant_while): keys added after runs were recorded. A test keeps this in step.
PIPELINE_DORMANT = {"layout": DEFAULT_LAYOUT}


def default_pipeline_config() -> dict[str, Any]:
    """The default pipeline config exactly as a run's pipeline.json records it
    (`PipelineSettings.to_dict()`)."""
    config = packaged_data("pipeline")
    config.setdefault("label", defaults(LabelSettings).to_dict())
    for key, off in PIPELINE_DORMANT.items():
        if config.get(key) == off:
            del config[key]
    return json.loads(json.dumps(config))  # tuples as lists, as on disk


def default_recipe() -> dict[str, Any]:
    """The pipeline's defaults and each stage's, by name."""
    return {"pipeline": default_pipeline_config(),
            **{name: defaults(cls).to_dict() for name, cls in STAGES.items()}}


def recipe_sha256() -> str:
    """sha256 of the default recipe as sorted JSON."""
    text = json.dumps(default_recipe(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
