"""Shared fixtures: one renderer per layout and a small corpus, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentalign.config import load_config
from agentalign.envs.layout import load_layout


@pytest.fixture(scope="session")
def layout():
    return load_layout()


def small_collect_config(**overrides) -> dict:
    config = load_config("collect", sections={"players": "players"})
    config.update({"episodes": 40, "shard_episodes": 10, "num_envs": 8, "workers": 2})
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    from agentalign.data.collect import collect

    out = tmp_path_factory.mktemp("corpus")
    collect(small_collect_config(), out, progress=False)
    return out
