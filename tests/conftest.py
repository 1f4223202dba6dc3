"""Shared fixtures: the layout, a small corpus and the stand-in Unity player, once per session;
and the order the modules run in, for the two test workers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from agentalign.collect_config import CollectSettings
from agentalign.config import load
from agentalign.envs.layout import load_layout

# The suite runs on two workers, a module to a worker (pyproject: -n 2 --dist loadfile, no
# reordering), handed out in collection order. These modules take most of the time (about 170,
# 170, 75 and 40 s on the 2-core machine), so they go first, alternating between the workers,
# and the many short modules fill in behind them.
SLOWEST_FIRST = ["test_cluster.py", "test_resume.py", "test_studio.py", "test_pipeline.py"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest in order


@pytest.fixture(scope="session")
def player(tmp_path_factory) -> str:
    """The installed stand-in player, or (in a tree not reinstalled since it was added) a
    launcher with the same command line."""
    installed = Path(sys.executable).parent / "agentalign-island-player"
    if installed.exists():
        return str(installed)
    launcher = tmp_path_factory.mktemp("player") / "agentalign-island-player"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m agentalign.envs.player "$@"\n')
    launcher.chmod(0o755)
    return str(launcher)


@pytest.fixture(scope="session")
def csharp(tmp_path_factory) -> dict[str, Path]:
    """The Unity side's C# compiled per assembly with Mono's mcs (tests/unity_csharp.py):
    assembly name -> dll, and "harness" -> the engine-free console harness."""
    from unity_csharp import NO_MCS, build

    try:
        return build(tmp_path_factory.mktemp("csharp"))
    except FileNotFoundError:
        pytest.skip(NO_MCS)


@pytest.fixture(scope="session")
def layout():
    return load_layout()


# A tiny policy and trainer (1 layer, 32 wide, context 8) for imitation runs on the small corpus.
TINY_IMITATION = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.context=8",
                  "model.cnn_channels=[8,8,8]", "batch_size=8", "num_threads=1",
                  "log_interval=1", "eval_windows=16", "eval_interval=10", "warmup_steps=2",
                  "prefetch=2"]


def small_collect_config(**overrides) -> CollectSettings:
    return load(CollectSettings).replace(**{"episodes": 40, "shard_episodes": 10, "num_envs": 8,
                                            "workers": 2, **overrides})


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    from agentalign.collect import run

    out = tmp_path_factory.mktemp("corpus")
    run(small_collect_config(), out, progress=False)
    return out


@pytest.fixture
def one_torch_thread():
    """One torch thread for a test: tiny models step faster so on 2 shared cores, and results do
    not depend on the machine's thread count. Modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
