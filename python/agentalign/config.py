"""YAML configs: packaged defaults, an optional user file on top, then `key.path=value` overrides.

Every stage reads its options this way, so any option can be changed from the command line
(`--set players.mixture.idler=0.2`). Keys must already exist in the defaults: a typo is an error,
not a silently ignored option.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from agentalign.errors import ConfigError


def packaged_config(name: str) -> dict[str, Any]:
    """The default config shipped with agentalign, e.g. `collect` for configs/collect.yaml."""
    ref = resources.files("agentalign") / "configs" / f"{name}.yaml"
    if not ref.is_file():
        raise ConfigError(f"no packaged config named {name!r}")
    return _parse(ref.read_text(), f"<packaged>/{name}.yaml")


def load_config(name: str, path: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = (),
                sections: dict[str, str] | None = None) -> dict[str, Any]:
    """Defaults for `name`, merged with the YAML file at `path`, then with `overrides`.

    `sections` nests other packaged configs under a key (e.g. {"players": "players"}), so one
    file and one `--set` syntax reach them too.
    """
    config = packaged_config(name)
    for key, other in (sections or {}).items():
        config[key] = packaged_config(other)
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"config {path}: cannot read it ({e.strerror})") from None
        _merge(config, _parse(text, str(path)), str(path), "")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
        node = config
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"override {item!r}: unknown key {'.'.join(parts[:i + 1])!r}")
            node = node[part]
        open_section = len(parts) > 1 and parts[-2] in OPEN_SECTIONS
        if not isinstance(node, dict) or (parts[-1] not in node and not open_section):
            raise ConfigError(f"override {item!r}: unknown key {key!r}")
        _merge(node, {parts[-1]: value}, f"override {item!r}", ".".join(parts[:-1]))
    return config


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config {source}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {source}: expected a mapping at the top level")
    return data


# Sections whose keys are free (names chosen by the user, e.g. player types in a mixture).
OPEN_SECTIONS = {"mixture", "pad_choice"}


def _merge(base: dict[str, Any], update: dict[str, Any], source: str, prefix: str) -> None:
    """Deep-merge `update` into `base`, refusing keys the defaults do not have."""
    for key, value in update.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        open_section = prefix.rsplit(".", 1)[-1] in OPEN_SECTIONS
        if key not in base and not open_section:
            raise ConfigError(f"{source}: unknown key {path!r}")
        if isinstance(base.get(key), dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {path!r} must be a mapping")
            _merge(base[key], value, source, path)
        else:
            base[key] = copy.deepcopy(value)


def checked_values(cls: type, config: dict[str, Any], what: str, numbers: tuple[str, ...],
                   integers_at_least: dict[str, int], nullable: tuple[str, ...] = (),
                   prefix: str = "") -> dict[str, Any]:
    """A stage config's values, checked against the fields of its dataclass `cls`.

    Every key present and none unknown; `numbers` coerced to float (YAML reads `1e-3` without a
    dot as a string); `integers_at_least` integers with a minimum (`nullable` ones may be null).
    The stage adds its own cross-field checks on the result.
    """
    from dataclasses import fields

    names = {f.name for f in fields(cls)}
    if missing := names - set(config):
        raise ConfigError(f"{what} config lacks the keys {sorted(missing)}")
    if unknown := set(config) - names:
        raise ConfigError(f"{what} config has unknown keys {sorted(unknown)}")
    values = dict(config)
    for key in numbers:
        try:
            values[key] = float(values[key])
        except (TypeError, ValueError):
            raise ConfigError(f"{prefix}{key} must be a number, got {values[key]!r}") from None
    for key, low in integers_at_least.items():
        value = values[key]
        if value is None and key in nullable:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{prefix}{key} must be an integer >= {low}, got {value!r}")
    return values
