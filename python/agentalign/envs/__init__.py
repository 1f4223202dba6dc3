"""Environments: the embedded island (default) and, later, the Unity backend."""

from agentalign.envs.island import IslandVectorEnv
from agentalign.envs.layout import Layout, load_layout

__all__ = ["IslandVectorEnv", "Layout", "load_layout"]
