"""Unity's YAML dialect: values written the way the editor writes them, and a reader for tests.

A Unity asset file (scene, material, settings) is a YAML stream whose documents are tagged
`--- !u!<class id> &<file id>`; each body is plain YAML with one top-level key, the object's
type. Objects refer to each other as `{fileID: N}` (same file) or `{fileID: N, guid: G, type: T}`
(another asset, found by the GUID in its `.meta` file).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

HEADER = "%YAML 1.1\n%TAG !u! tag:unity3d.com,2011:\n"

# Unity's built-in resources: meshes live in this pseudo-asset, with fixed file ids.
BUILTIN_EXTRA = "0000000000000000e000000000000000"
BUILTIN_MESH = {"Cube": 10202, "Cylinder": 10206, "Sphere": 10207, "Quad": 10210}
# Main-object file ids of an imported asset, by the kind of asset the GUID names.
MAIN_OBJECT = {"script": 11500000, "material": 2100000, "texture": 2800000, "shader": 4800000,
               "scriptable": 11400000, "text": 4900000}


def num(value: float) -> str:
    """A float as the editor writes it: float32, integers without a point, shortest digits."""
    v = np.float32(value)
    if not np.isfinite(v):
        raise ValueError(f"Unity YAML cannot hold {value!r}")
    if v == np.round(v) and abs(v) < 2**24:
        return str(int(v))
    return np.format_float_positional(v, unique=True, trim="-")


def vec(*values: float, names: str = "xyzw") -> str:
    return "{" + ", ".join(f"{n}: {num(v)}" for n, v in zip(names, values, strict=False)) + "}"


def colour(rgb: tuple[int, int, int]) -> str:
    return vec(*(c / 255 for c in rgb), 1.0, names="rgba")


def ref(file_id: int, guid: str | None = None, kind: int = 3) -> str:
    """`{fileID: N}` inside this file, or `{fileID: N, guid: G, type: T}` into another asset."""
    if guid is None:
        return f"{{fileID: {file_id}}}"
    return f"{{fileID: {file_id}, guid: {guid}, type: {kind}}}"


def int_array(values: list[int] | tuple[int, ...]) -> str:
    """Unity writes an `int[]` field as the hex of its little-endian 32-bit values."""
    return "".join(int(v).to_bytes(4, "little", signed=True).hex() for v in values)


def document(class_id: int, file_id: int, type_name: str, lines: list[str]) -> str:
    return f"--- !u!{class_id} &{file_id}\n{type_name}:\n" + "".join(f"  {ln}\n" for ln in lines)


# -- reading -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class UnityObject:
    """One document of a Unity YAML file."""

    class_id: int
    file_id: int
    type_name: str
    fields: dict[str, Any]


class _Loader(yaml.SafeLoader):
    """YAML 1.1 minus the readings Unity never means: `05000000` (an int[] in hex) is not octal."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^-?(?:0|[1-9][0-9]*)$"),
                              list("-0123456789"))

_DOCUMENT = re.compile(r"^--- !u!(\d+) &(-?\d+)( stripped)?[ \t]*$", re.M)


def read(text: str) -> list[UnityObject]:
    """Split a Unity YAML file into its objects, in file order."""
    starts = list(_DOCUMENT.finditer(text))
    if not text.startswith("%YAML 1.1") or not starts:
        raise ValueError("not a Unity YAML file (no '%YAML 1.1' header or no '--- !u!' document)")
    objects = []
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        body = yaml.load(text[match.end():end], Loader=_Loader)  # a SafeLoader subclass
        if not isinstance(body, dict) or len(body) != 1:
            raise ValueError(f"document &{match[2]} does not hold exactly one object")
        ((type_name, fields),) = body.items()
        objects.append(UnityObject(int(match[1]), int(match[2]), type_name, fields or {}))
    return objects


def read_file(path: Path) -> list[UnityObject]:
    return read(path.read_text(encoding="utf-8"))


def references(value: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every `{fileID: ...}` mapping inside a field value, with the field path leading to it."""
    if isinstance(value, dict):
        if "fileID" in value:
            yield where, value
        for key, item in value.items():
            yield from references(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from references(item, f"{where}[{i}]")


def read_meta_guid(meta: Path) -> str | None:
    """The `guid:` line of a `.meta` file (None if the file is missing or has none)."""
    try:
        text = meta.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    match = re.search(r"^guid: ([0-9a-f]{32})\s*$", text, re.M)
    return match[1] if match else None
