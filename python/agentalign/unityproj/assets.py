"""Per-asset files of the Unity project: stable GUIDs, `.meta` files, materials, PNG textures.

Unity names every asset by the GUID in its `.meta` file; a scene refers to scripts, materials and
textures by those GUIDs. Ours are derived from the asset's path (md5 of a salt and the path), so
a fresh checkout, the generator and the editor agree without anyone copying GUIDs around. An
existing `.meta` always wins: once Unity or a person has written one, its GUID is the asset's.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np

from agentalign.unityproj.unity_yaml import HEADER, colour, document, num, read_meta_guid, ref

GUID_SALT = "agentalign-unity:"
# Folders ending in "~" are invisible to the editor, but a sample's files are copied into a
# project's Assets on import, .meta files and all: they need theirs.
COPIED_HIDDEN = ("Samples~",)

_COMMON_TAIL = ["  userData: ", "  assetBundleName: ", "  assetBundleVariant: "]


def guid_for(asset_path: str) -> str:
    """The GUID an asset of ours gets when it has no `.meta` yet (path relative to the project)."""
    return hashlib.md5((GUID_SALT + asset_path).encode()).hexdigest()


def asset_guid(project: Path, asset_path: str) -> str:
    """The asset's GUID: from its `.meta` file if there is one, else the path-derived one."""
    return read_meta_guid(project / f"{asset_path}.meta") or guid_for(asset_path)


def _meta(guid: str, importer: list[str], folder: bool = False) -> str:
    lines = ["fileFormatVersion: 2", f"guid: {guid}"]
    if folder:
        lines.append("folderAsset: yes")
    return "\n".join(lines + importer + _COMMON_TAIL) + "\n"


def meta_text(asset_path: str, guid: str, folder: bool = False) -> str | None:
    """The `.meta` Unity would write for a new asset of this kind (None: leave it to Unity)."""
    suffix = Path(asset_path).suffix.lower()
    if folder:
        return _meta(guid, ["DefaultImporter:", "  externalObjects: {}"], folder=True)
    if suffix == ".asmdef":
        return _meta(guid, ["AssemblyDefinitionImporter:", "  externalObjects: {}"])
    if Path(asset_path).name == "package.json":
        return _meta(guid, ["PackageManifestImporter:", "  externalObjects: {}"])
    if suffix == ".cs":
        return _meta(guid, ["MonoImporter:", "  externalObjects: {}", "  serializedVersion: 2",
                            "  defaultReferences: []", "  executionOrder: 0",
                            "  icon: {instanceID: 0}"])
    if suffix == ".shader":
        return _meta(guid, ["ShaderImporter:", "  externalObjects: {}", "  defaultTextures: []",
                            "  nonModifiableTextures: []"])
    if suffix in (".mat", ".asset"):
        main = 2100000 if suffix == ".mat" else 11400000
        return _meta(guid, ["NativeFormatImporter:", "  externalObjects: {}",
                            f"  mainObjectFileID: {main}"])
    if suffix == ".unity":
        return _meta(guid, ["DefaultImporter:", "  externalObjects: {}"])
    if suffix in (".md", ".json", ".txt"):
        return _meta(guid, ["TextScriptImporter:", "  externalObjects: {}"])
    if suffix == ".png":
        return texture_meta(guid)
    return None  # e.g. .onnx: the Inference Engine's importer writes its own


def texture_meta(guid: str) -> str:
    """A texture imported exactly as painted: no mipmaps, point filtering, no compression.

    The Python renderer samples its raster at each pixel centre without filtering; a point-
    filtered, unmipmapped texture makes the GPU do the same.
    """
    return _meta(guid, [
        "TextureImporter:", "  internalIDToNameTable: []", "  externalObjects: {}",
        "  serializedVersion: 13", "  mipmaps:", "    mipMapMode: 0", "    enableMipMap: 0",
        "    sRGBTexture: 1", "    linearTexture: 0", "    fadeOut: 0", "    borderMipMap: 0",
        "    mipMapsPreserveCoverage: 0", "    alphaTestReferenceValue: 0.5",
        "    mipMapFadeDistanceStart: 1", "    mipMapFadeDistanceEnd: 3", "  bumpmap:",
        "    convertToNormalMap: 0", "    externalNormalMap: 0", "    heightScale: 0.25",
        "    normalMapFilter: 0", "    flipGreenChannel: 0", "  isReadable: 0",
        "  streamingMipmaps: 0", "  streamingMipmapsPriority: 0", "  vTOnly: 0",
        "  ignoreMipmapLimit: 0", "  grayScaleToAlpha: 0", "  generateCubemap: 6",
        "  cubemapConvolution: 0", "  seamlessCubemap: 0", "  textureFormat: 1",
        "  maxTextureSize: 2048", "  textureSettings:", "    serializedVersion: 2",
        "    filterMode: 0", "    aniso: 1", "    mipBias: 0", "    wrapU: 1", "    wrapV: 1",
        "    wrapW: 1", "  nPOTScale: 0", "  lightmap: 0", "  compressionQuality: 50",
        "  spriteMode: 0", "  alignment: 0", "  alphaUsage: 0", "  alphaIsTransparency: 0",
        "  textureType: 0", "  textureShape: 1", "  singleChannelComponent: 0",
        "  maxTextureSizeSet: 0", "  compressionQualitySet: 0", "  textureFormatSet: 0",
        "  ignorePngGamma: 0", "  applyGammaDecoding: 0", "  swizzle: 50462976",
        "  platformSettings:", "  - serializedVersion: 4",
        "    buildTarget: DefaultTexturePlatform",
        "    maxTextureSize: 2048", "    resizeAlgorithm: 0", "    textureFormat: -1",
        "    textureCompression: 0", "    compressionQuality: 50", "    crunchedCompression: 0",
        "    allowsAlphaSplitting: 0", "    overridden: 0", "    ignorePlatformSupport: 0",
        "    androidETC2FallbackOverride: 0", "    forceMaximumCompressionQuality_BC6H_BC7: 0",
    ])


def needs_meta(rel: str) -> bool:
    """Whether Unity expects a `.meta` beside this project path: not for hidden files, a
    package's root folder, a sample's own folder (its content is copied into a folder named
    after the sample) or anything in a "~" folder other than a sample's content."""
    parts = Path(rel).parts
    if rel.endswith(".meta") or (len(parts) == 2 and parts[0] == "Packages"):
        return False
    if len(parts) >= 2 and parts[-2] in COPIED_HIDDEN:
        return False
    return not any(part.startswith(".") or (part.endswith("~") and
                   (part not in COPIED_HIDDEN or part == parts[-1])) for part in parts)


def ensure_metas(project: Path, root: str) -> list[Path]:
    """Write a `.meta` for every file and folder under `root` that has none; return them."""
    written = []
    base = project / root
    candidates = [base, *sorted(base.rglob("*"))] if base.exists() else []
    for path in candidates:
        rel = path.relative_to(project).as_posix()
        if not needs_meta(rel):
            continue
        meta = project / f"{rel}.meta"
        if meta.exists():
            continue
        text = meta_text(rel, guid_for(rel), folder=path.is_dir())
        if text is not None:
            meta.write_text(text, encoding="utf-8")
            written.append(meta)
    return written


# -- materials and textures --------------------------------------------------------------------

# Values of the Flat shader's depth test (UnityEngine.Rendering.CompareFunction).
ZTEST_LESS_EQUAL, ZTEST_ALWAYS = 4, 8
NO_HAZE = 100000.0  # _FarDepth for objects the embedded renderer draws at any distance


def material(name: str, shader_guid: str, rgb: tuple[int, int, int] = (255, 255, 255),
             texture_guid: str | None = None, far_depth: float = NO_HAZE,
             background: bool = False) -> str:
    """A material of the Flat shader: texture x colour, unlit, ground cut at `far_depth`.

    `background` draws first and under everything (the sky and haze backdrop).
    """
    texture = ref(2800000, texture_guid) if texture_guid else ref(0)
    ztest, zwrite, queue = (ZTEST_ALWAYS, 0, 1000) if background else (ZTEST_LESS_EQUAL, 1, -1)
    lines = [
        "serializedVersion: 8", "m_ObjectHideFlags: 0",
        "m_CorrespondingSourceObject: {fileID: 0}", "m_PrefabInstance: {fileID: 0}",
        "m_PrefabAsset: {fileID: 0}", f"m_Name: {name}",
        f"m_Shader: {ref(4800000, shader_guid)}", "m_Parent: {fileID: 0}",
        "m_ModifiedSerializedProperties: 0", "m_ValidKeywords: []", "m_InvalidKeywords: []",
        "m_LightmapFlags: 4", "m_EnableInstancingVariants: 0", "m_DoubleSidedGI: 0",
        f"m_CustomRenderQueue: {queue}", "stringTagMap: {}", "disabledShaderPasses: []",
        "m_LockedProperties: ", "m_SavedProperties:", "  serializedVersion: 3", "  m_TexEnvs:",
        "  - _MainTex:", f"      m_Texture: {texture}", "      m_Scale: {x: 1, y: 1}",
        "      m_Offset: {x: 0, y: 0}", "  m_Ints: []", "  m_Floats:",
        f"  - _FarDepth: {num(far_depth)}", f"  - _ZTest: {ztest}", f"  - _ZWrite: {zwrite}",
        "  m_Colors:", f"  - _Color: {colour(rgb)}", "m_BuildTextureStacks: []",
        "m_AllowLocking: 1",
    ]
    return HEADER + document(21, 2100000, "Material", lines)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG, written here so its pixels (not its zlib stream) are the contract."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width, channels = rgb.shape
    if channels != 3:
        raise ValueError(f"expected an RGB image, got {channels} channels")
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
