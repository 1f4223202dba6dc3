"""`make_env`: the environment a `--env` value names, for every stage that runs episodes.

The unity backend is imported only when asked for, so the island path never touches
mlagents-envs (and works where it is not installed); `ENV_HELP` and `check_env_spec` import
nothing heavy, so every command's `--env` option and its check cost nothing at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentalign.config import InvalidSetting
from agentalign.errors import UserError

if TYPE_CHECKING:
    from gymnasium.vector import VectorEnv

ENV_HELP = ("island (default: the embedded simulator), unity (the Unity editor: press Play "
            "when asked; port 5004) or unity:PATH (headless builds of PATH, e.g. "
            "unity:agentalign-island-player)")


def check_env_spec(spec: str) -> None:
    """Refuse a malformed `--env` value, or `unity` without mlagents-envs, before any work."""
    kind, sep, path = spec.partition(":")
    if not ((kind == "island" and not sep) or (kind == "unity" and (path or not sep))):
        raise UserError(f"unknown environment {spec!r}: use {ENV_HELP}")
    if kind == "unity":
        from agentalign.envs import mlagents_compat

        if not mlagents_compat.mlagents_available():
            raise mlagents_compat.MissingMLAgentsError(mlagents_compat.missing_message())


def check_env_setting(spec: str, key: str = "env") -> None:
    """`check_env_spec` for a settings key: the loader's message names the file and the key."""
    try:
        check_env_spec(spec)
    except UserError as e:
        raise InvalidSetting(key, str(e)) from None


def make_env(spec: str, num_envs: int, **kwargs: Any) -> VectorEnv:
    """`island` -> IslandVectorEnv; `unity` -> UnityVectorEnv waiting for the editor on port
    5004 (as `mlagents-learn` does); `unity:PATH` -> UnityVectorEnv launching builds of PATH
    (a path or a command on PATH), one per row unless `workers=` says otherwise. Keyword
    arguments go to the backend (height, width, layout, spawn_jitter, autoreset_mode, ...)."""
    check_env_spec(spec)
    kind, _, path = spec.partition(":")
    if kind == "island":
        from agentalign.envs.island import IslandVectorEnv

        return IslandVectorEnv(num_envs, **kwargs)
    from agentalign.envs.unity import UnityVectorEnv

    return UnityVectorEnv(num_envs, file_name=path or None, **kwargs)
