"""Networks: the GPT-style pixel policy (policy.py) and, built on its trunk, the reward model."""

from agentalign.models.policy import (
    CONFIGS,
    KVCache,
    Policy,
    PolicyConfig,
    action_loss,
    get_config,
    no_previous_action,
    sample,
    window_start,
)

__all__ = [
    "CONFIGS",
    "KVCache",
    "Policy",
    "PolicyConfig",
    "action_loss",
    "get_config",
    "no_previous_action",
    "sample",
    "window_start",
]
