"""Stage settings: frozen dataclasses, loaded from YAML through one loader.

Each stage declares its settings as a frozen dataclass deriving from `Settings`, with the name of
its packaged YAML (`configs/<name>.yaml`), where every key's default is written and documented
once. `load(cls, path, overrides)` merges those defaults, an optional user file on top, then
`key.path=value` overrides (`--set`), and builds the dataclass: every key of the class present
and no other, each of its declared type (`int`, `float`, `bool`, `str`, `Literal[...]`, `X | None`,
tuples, `dict[str, X]` for sections whose keys are names, nested `Settings`) and within the range
its field declares. The first problem found is a one-line `ConfigError` naming where the value
came from (the file, or the `--set`/option) and the key.

A nested `Settings` with a packaged YAML of its own (e.g. `players` inside collect's settings)
takes its defaults from that file when the parent's YAML does not spell it out.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union

import yaml

from agentalign.errors import ConfigError

T = TypeVar("T", bound="Settings")
PACKAGED = "<agentalign>/configs"


# --- declaring settings --------------------------------------------------------------------------


def at_least(low: float) -> dict[str, Any]:
    """Field metadata: values >= low (every element of a tuple; None passes)."""
    return {"min": low}


def between(low: float, high: float) -> dict[str, Any]:
    return {"min": low, "max": high}


def above(low: float) -> dict[str, Any]:
    """Field metadata: values > low."""
    return {"above": low}


def dormant_while(key: str, off: Any) -> dict[str, Any]:
    """Field metadata: a key added after runs were recorded, left out of `to_dict` (so of stage
    identities and the recipe digest) while the sibling `key` holds `off`, the value that keeps
    the behaviour of before: folders, cards and digests recorded before it stay valid."""
    return {"dormant_while": (key, off)}


def packaged(name: str, **metadata: Any) -> dict[str, Any]:
    """Field metadata: when the YAML lacks the key, its value is configs/<name>.yaml."""
    return {"packaged": name, **metadata}


class Settings:
    """Base of the stages' settings dataclasses. Construction checks every field's type and
    range (whoever builds it: the loader, `dataclasses.replace`, a test), then `check()`, where a
    class puts its checks across fields."""

    YAML: ClassVar[str | None] = None  # the packaged config holding the defaults

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = _convert(hints[f.name], getattr(self, f.name), f.name, f.metadata)
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Checks across fields; raise `invalid(key, message)`."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples as lists), as the YAML holds them, less the dormant
        keys (`dormant_while`)."""
        return _plain(self)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


class InvalidSetting(ConfigError):
    """A value that does not fit its key; `key` is its dotted path, for the loader's message."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.detail = key, message


def invalid(key: str, message: str) -> InvalidSetting:
    return InvalidSetting(key, message)


# --- loading -------------------------------------------------------------------------------------


def load(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = (),
         options: dict[str, Any] | None = None) -> T:
    """The settings of `cls`: its packaged defaults, the YAML file at `path` on top, then
    `overrides` ("key.path=value", as --set gives them), then `options` (key -> value from a
    command's own flags, e.g. {"episodes": 500}; None values are skipped)."""
    data, origins = _packaged(cls)
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"config {path}: cannot read it ({e.strerror})") from None
        _merge(data, origins, _parse(text, str(path)), str(path), "", cls)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None
        _merge_key(data, origins, key, value, f"--set {item}", cls)
    for key, value in (options or {}).items():
        if value is not None:
            _merge_key(data, origins, key, value, f"--{key.replace('_', '-')}", cls)
    return build(cls, data, origins)


def defaults(cls: type[T]) -> T:
    """The packaged defaults of `cls`, as a settings object."""
    return load(cls)


def packaged_data(name: str) -> dict[str, Any]:
    """configs/<name>.yaml as parsed YAML."""
    ref = resources.files("agentalign") / "configs" / f"{name}.yaml"
    if not ref.is_file():
        raise ConfigError(f"no packaged config named {name!r}")
    return _parse(ref.read_text(), f"{PACKAGED}/{name}.yaml")


def build(cls: type[T], data: dict[str, Any], origins: dict[str, str], prefix: str = "") -> T:
    """`cls` from a mapping, nested Settings included; errors name the value's origin."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    where = origins.get(prefix.rstrip("."), origins.get("", "config"))
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or 'the config'} must be a mapping")
    for key in data:
        if key not in names:
            full = f"{prefix}{key}"
            raise ConfigError(f"{origins.get(full, where)}: unknown key {full!r}; known keys "
                              f"are {', '.join(names)}")
    values = {}
    for name in names:
        full = f"{prefix}{name}"
        if name not in data:
            raise ConfigError(f"{where}: missing key {full!r}")
        nested = _settings_class(hints[name])
        if nested is not None and isinstance(data[name], dict):
            values[name] = build(nested, data[name], origins, f"{full}.")
        elif (inner := _dict_of_settings(hints[name])) is not None \
                and isinstance(data[name], dict):
            values[name] = {k: build(inner, v, origins, f"{full}.{k}.")
                            for k, v in data[name].items()}
        else:
            values[name] = data[name]
    try:
        return cls(**values)
    except InvalidSetting as e:
        full = f"{prefix}{e.key}"
        raise ConfigError(f"{origins.get(full, where)}: {full}: {e.detail}") from None


# --- command-line options ------------------------------------------------------------------------


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """--config FILE and --set KEY=VALUE, which every command with settings takes."""
    parser.add_argument("--config", type=Path, help="a YAML file whose keys override the "
                        "defaults")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override one config key, e.g. --set "
                        "seed=3 (repeatable)")


def add_options(parser: argparse.ArgumentParser, cls: type[Settings],
                options: dict[str, str]) -> None:
    """One flag per settings key (`episodes` -> --episodes), typed from the field, its help
    ending with the default read from the packaged YAML; a bool key is a store_true flag."""
    known = defaults(cls)
    hints = _hints(cls)
    for key, text in options.items():
        default = getattr(known, key)
        flag = "--" + key.replace("_", "-")
        tp = _strip_optional(hints[key])
        if tp is bool:
            parser.add_argument(flag, dest=key, action="store_true", default=None,
                                help=f"{text} (default: {str(default).lower()})")
            continue
        kind = {int: int, float: float}.get(tp, str)
        choices = typing.get_args(tp) if typing.get_origin(tp) is Literal else None
        parser.add_argument(flag, dest=key, type=kind, default=None, choices=choices,
                            help=f"{text} (default: {_show(default)})")


def option_values(args: argparse.Namespace, options: Iterable[str]) -> dict[str, Any]:
    return {key: getattr(args, key, None) for key in options}


def load_from_args(cls: type[T], args: argparse.Namespace, options: Iterable[str] = ()) -> T:
    """Settings from a parsed command line: --config, --set, then the command's own flags."""
    return load(cls, getattr(args, "config", None), getattr(args, "overrides", ()),
                option_values(args, options))


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


# --- internals -----------------------------------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse(text: str, source: str) -> dict[str, Any]:
    return yaml_mapping(text, f"config {source}")


def yaml_mapping(text: str, label: str, error: type[Exception] = ConfigError,
                 expected: str = "a mapping at the top level") -> dict[str, Any]:
    """`text` as a YAML mapping (empty text: {}), else a one-line `error` that starts with
    `label` and names the line (configs and intents files read YAML the same way)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{label}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise error(f"{label}: expected {expected}, got {type(data).__name__}")
    return data


def _packaged(cls: type[Settings]) -> tuple[dict[str, Any], dict[str, str]]:
    """The defaults of `cls` with the origin of every key; nested Settings missing from the
    YAML come from their own packaged file."""
    if cls.YAML is None:
        raise ConfigError(f"{cls.__name__} has no packaged config")
    data = packaged_data(cls.YAML)
    origins: dict[str, str] = {}
    _stamp(data, f"{PACKAGED}/{cls.YAML}.yaml", "", origins)
    _fill_sections(cls, data, origins, "")
    return data, origins


def _fill_sections(cls: type, data: dict[str, Any], origins: dict[str, str],
                   prefix: str) -> None:
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        nested = _settings_class(hints[f.name])
        name = f.metadata.get("packaged") or (nested.YAML if nested is not None else None)
        if f.name not in data and name is not None:
            section = packaged_data(name)
            _stamp(section, f"{PACKAGED}/{name}.yaml", f"{prefix}{f.name}.", origins)
            data[f.name] = section
        if nested is not None and isinstance(data.get(f.name), dict):
            _fill_sections(nested, data[f.name], origins, f"{prefix}{f.name}.")


def _stamp(data: Any, source: str, prefix: str, origins: dict[str, str]) -> None:
    origins[prefix.rstrip(".")] = source
    if isinstance(data, dict):
        for key, value in data.items():
            _stamp(value, source, f"{prefix}{key}.", origins)


def _open_section(cls: type, parts: list[str]) -> bool:
    """Whether the mapping at `parts` takes keys of the user's choosing (a dict[str, X] field)."""
    tp: Any = cls
    i = 0
    while i < len(parts):
        settings = _settings_class(tp)
        if settings is None:
            return False
        hints = _hints(settings)
        if parts[i] not in hints:
            return False
        tp = _strip_optional(hints[parts[i]])
        i += 1
        if typing.get_origin(tp) is dict:
            if i == len(parts):
                return True
            tp = typing.get_args(tp)[1]
            i += 1  # the free key
    return False


def _merge(base: dict[str, Any], origins: dict[str, str], update: dict[str, Any], source: str,
           prefix: str, cls: type) -> None:
    """Deep-merge `update` into `base`, refusing keys the defaults do not have (except in
    sections whose keys are names)."""
    for key, value in update.items():
        path = f"{prefix}{key}"
        free = _open_section(cls, prefix.rstrip(".").split(".")) if prefix else False
        if key not in base and not free:
            raise ConfigError(f"{source}: unknown key {path!r}")
        if isinstance(base.get(key), dict) and not (free and not isinstance(value, dict)):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {path!r} must be a mapping")
            _merge(base[key], origins, value, source, f"{path}.", cls)
        else:
            base[key] = value
            _stamp(value, source, f"{path}.", origins)


def _merge_key(data: dict[str, Any], origins: dict[str, str], key: str, value: Any,
               source: str, cls: type) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{source}: unknown key {'.'.join(parts[:i + 1])!r}")
        node = node[part]
    free = len(parts) > 1 and _open_section(cls, parts[:-1])
    if not isinstance(node, dict) or (parts[-1] not in node and not free):
        raise ConfigError(f"{source}: unknown key {key!r}")
    _merge(node, origins, {parts[-1]: value}, source, ".".join(parts[:-1]) + "." if
           len(parts) > 1 else "", cls)


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _settings_class(tp: Any) -> type[Settings] | None:
    tp = _strip_optional(tp)
    return tp if isinstance(tp, type) and issubclass(tp, Settings) else None


def _dict_of_settings(tp: Any) -> type[Settings] | None:
    tp = _strip_optional(tp)
    if typing.get_origin(tp) is dict:
        return _settings_class(typing.get_args(tp)[1])
    return None


def _describe(tp: Any) -> str:
    tp = _strip_optional(tp)
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return f"[{', '.join(_describe(a) for a in args)}]"
    if typing.get_origin(tp) is dict:
        return "a mapping of name: value"
    if isinstance(tp, type) and issubclass(tp, Settings):
        return "a mapping"
    return str(tp)


def _convert(tp: Any, value: Any, key: str, meta: Any = None) -> Any:
    """`value` checked against the type `tp` and the range in `meta`, converted where YAML is
    loose (a float written `1e-3` reads as a string; lists become tuples)."""
    meta = meta or {}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, key, meta)
    bad = invalid(key, f"must be {_describe(tp)}, got {value!r}")
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return _in_range(value, key, meta)
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        return _in_range(float(value), key, meta)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin is Literal:
        if value not in args:
            raise bad
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise bad
        items = args if not (len(args) == 2 and args[1] is Ellipsis) else [args[0]] * len(value)
        if len(items) != len(value):
            raise bad
        return tuple(_convert(t, v, f"{key}[{i}]", meta)
                     for i, (t, v) in enumerate(zip(items, value, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return {str(k): _convert(args[1], v, f"{key}.{k}", meta) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Settings):
        if not isinstance(value, tp):
            raise bad
        return value
    raise TypeError(f"settings field {key}: unsupported type {tp!r}")


def _in_range(value: float, key: str, meta: Any) -> Any:
    if "min" in meta and value < meta["min"]:
        if "max" in meta:
            raise invalid(key, f"must be within {meta['min']}..{meta['max']}, got {value!r}")
        raise invalid(key, f"must be >= {meta['min']}, got {value!r}")
    if "max" in meta and value > meta["max"]:
        if "min" in meta:
            raise invalid(key, f"must be within {meta['min']}..{meta['max']}, got {value!r}")
        raise invalid(key, f"must be <= {meta['max']}, got {value!r}")
    if "above" in meta and not value > meta["above"]:
        raise invalid(key, f"must be > {meta['above']}, got {value!r}")
    return value


def _plain(value: Any) -> Any:
    """JSON-able values: settings as dicts without their dormant fields (`dormant_while`),
    tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        def asleep(f: dataclasses.Field) -> bool:
            key, off = f.metadata.get("dormant_while", (None, None))
            return key is not None and getattr(value, key) == off

        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not asleep(f)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
