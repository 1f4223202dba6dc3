"""Playing episodes: where they start (starts.py), who acts (actors.py), the one loop that plays
them on either backend (loop.py), what came of them (outcomes.py), pictures of them
(pictures.py) and the learner's view of them (trajectories.py). Every stage that plays episodes
comes here.

The names below load on first use, so a settings module that needs `OfflaneSettings` does not
import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "PLAYER_STREAM": "actors", "Actor": "actors", "HandoffActor": "actors",
    "PlayerActor": "actors",
    "PolicyActor": "actors",
    "format_table": "outcomes", "intent_line": "outcomes", "outcome_rates": "outcomes",
    "rates_line": "outcomes", "summarise": "outcomes", "wilson_interval": "outcomes",
    "Episode": "loop", "Rollout": "loop", "play": "loop", "rollout_env": "loop",
    "START_KINDS": "starts", "OfflaneSettings": "starts", "Starts": "starts",
    "offlane_starts": "starts", "spawn_starts": "starts", "start_problems": "starts",
    "training_starts": "starts", "without_anywhere": "starts",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'agentalign.rollout' has no attribute {name!r}")
    return getattr(importlib.import_module(f"agentalign.rollout.{_WHERE[name]}"), name)
