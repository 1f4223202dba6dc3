"""Environments: the embedded island (default) and the Unity backend (`factory.make_env`).

The names below load on first use, so importing `agentalign.envs.factory` (for the CLI's
`--env` help and checks) does not pull in NumPy and the renderer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentalign.envs.island import IslandVectorEnv
    from agentalign.envs.layout import Layout, load_layout

__all__ = ["IslandVectorEnv", "Layout", "load_layout"]


def __getattr__(name: str) -> Any:
    if name == "IslandVectorEnv":
        from agentalign.envs.island import IslandVectorEnv

        return IslandVectorEnv
    if name in ("Layout", "load_layout"):
        from agentalign.envs import layout

        return getattr(layout, name)
    raise AttributeError(f"module 'agentalign.envs' has no attribute {name!r}")
