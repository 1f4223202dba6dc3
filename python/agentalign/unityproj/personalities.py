"""The sample's shipped personalities as Unity assets: `<name>.onnx`, its card `<name>.json`, and
the `.meta` file of each, in the package sample's `Personalities/` folder.

Unity would write the `.meta` files on import, but a package sample is imported by copying, so
they ship with it and keep the GUIDs that the sample's assets refer to. The `.onnx.meta` is the
one the Inference Engine's ONNX importer writes for a new model; the card is a TextAsset.
`agentalign unity-personalities` (export.unity_personalities) makes the files; this module only
checks and writes them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from agentalign.atomic import atomic_path
from agentalign.unityproj.assets import asset_guid, meta_text
from agentalign.unityproj.paths import SAMPLE_PERSONALITIES

# The script GUID of Editor/ONNX/ONNXModelImporter.cs.meta in com.unity.ai.inference 2.2.1 (read
# from the package's source; FACTS.md, "Unity packages (UPM) and the Inference Engine").
ONNX_IMPORTER_GUID = "f22407ba6b4157b4a93d0a670bd3dd57"


def onnx_meta(guid: str) -> str:
    """The `.onnx.meta` the Inference Engine 2.2.1 writes for a newly imported model."""
    return "\n".join([
        "fileFormatVersion: 2", f"guid: {guid}", "ScriptedImporter:",
        "  internalIDToNameTable: []", "  externalObjects: {}", "  serializedVersion: 2",
        "  userData: ", "  assetBundleName: ", "  assetBundleVariant: ",
        f"  script: {{fileID: 11500000, guid: {ONNX_IMPORTER_GUID}, type: 3}}",
        "  dynamicDimConfigs: []"]) + "\n"


def check_files(name: str, model: bytes, card_text: str) -> None:
    """Raise ValueError unless the card names the files and hashes this model: a designer
    reads the card beside the file, so the two must agree."""
    card = json.loads(card_text)
    expected = {"name": name, "onnx_file": f"{name}.onnx",
                "onnx_sha256": hashlib.sha256(model).hexdigest()}
    wrong = {k: card.get(k) for k, v in expected.items() if card.get(k) != v}
    if wrong:
        raise ValueError(f"card of {name}.onnx disagrees with its files: {wrong}")


def write_personality(project: Path, name: str, model: bytes, card_text: str) -> list[str]:
    """Write `<name>.onnx`, `<name>.json` and their `.meta` files into the sample, each one
    atomically; an existing `.meta` keeps its GUID. Returns the paths, relative to `project`."""
    check_files(name, model, card_text)
    onnx_path = f"{SAMPLE_PERSONALITIES}/{name}.onnx"
    card_path = f"{SAMPLE_PERSONALITIES}/{name}.json"
    card_meta = meta_text(card_path, asset_guid(project, card_path))
    assert card_meta is not None  # a .json is a TextAsset
    files = {onnx_path: model, card_path: card_text.encode(),
             f"{onnx_path}.meta": onnx_meta(asset_guid(project, onnx_path)).encode(),
             f"{card_path}.meta": card_meta.encode()}
    for path, data in files.items():
        with atomic_path(project / path) as tmp:
            tmp.write_bytes(data)
            tmp.chmod(0o644)  # temporaries are private; these files are shipped
    return list(files)
