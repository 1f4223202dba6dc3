"""The pieces a generated scene is built from: hierarchy nodes, components, settings, textures.

`scene` assembles the island, the agent and the personalities out of these. Here: how a node
and its components become Unity YAML documents (file ids derived from the hierarchy path, so
regenerating gives the same bytes), the component templates (scripts, meshes, colliders, the
camera), the scene-wide settings, and the textures and materials taken from the embedded
renderer, so that `scene` reads as the scene's layout alone.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from agentalign.envs.layout import Layout
from agentalign.envs.render import IslandRenderer, rasterise
from agentalign.spec import OBS_HEIGHT, OBS_WIDTH
from agentalign.unityproj.unity_yaml import (
    BUILTIN_EXTRA,
    BUILTIN_MESH,
    HEADER,
    colour,
    document,
    num,
    ref,
    vec,
)

NEAR_CLIP, FAR_CLIP = 0.1, 1000.0
BACKDROP_WIDTH_PX = 4


# -- the hierarchy -----------------------------------------------------------------------------

@dataclass
class _Component:
    key: str  # unique on its GameObject; part of the file id
    class_id: int
    type_name: str
    lines: list[str]


@dataclass
class _Node:
    name: str
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    euler: tuple[float, float, float] = (0.0, 0.0, 0.0)  # degrees, Unity's x (pitch), y (yaw), z
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    components: list[_Component] = field(default_factory=list)
    children: list[_Node] = field(default_factory=list)
    tag: str = "Untagged"


def file_id(path: str, key: str) -> int:
    """A scene-local file id from the object's hierarchy path and component key."""
    return int(hashlib.md5(f"{path}#{key}".encode()).hexdigest()[:12], 16) + 1000


def quaternion(euler: tuple[float, float, float]) -> tuple[float, float, float, float]:
    """Unity's rotation for Euler angles in degrees: about z, then x, then y (x, y, z, w)."""
    def axis(i: int, degrees: float) -> tuple[float, float, float, float]:
        q = [0.0, 0.0, 0.0, math.cos(math.radians(degrees) / 2)]
        q[i] = math.sin(math.radians(degrees) / 2)
        return q[0], q[1], q[2], q[3]

    def mul(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float, float]:
        ax, ay, az, aw = a
        bx, by, bz, bw = b
        return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)

    return mul(mul(axis(1, euler[1]), axis(0, euler[0])), axis(2, euler[2]))


def _object_header(game_object: int) -> list[str]:
    return ["m_ObjectHideFlags: 0", "m_CorrespondingSourceObject: {fileID: 0}",
            "m_PrefabInstance: {fileID: 0}", "m_PrefabAsset: {fileID: 0}",
            f"m_GameObject: {ref(game_object)}"]


def _emit(node: _Node, path: str, father: int, docs: list[tuple[int, str]]) -> int:
    go, tr = file_id(path, "GameObject"), file_id(path, "Transform")
    names = [child.name for child in node.children]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: two children share a name")
    components = [(file_id(path, c.key), c) for c in node.components]
    docs.append((go, document(1, go, "GameObject", [
        "m_ObjectHideFlags: 0", "m_CorrespondingSourceObject: {fileID: 0}",
        "m_PrefabInstance: {fileID: 0}", "m_PrefabAsset: {fileID: 0}", "serializedVersion: 6",
        "m_Component:", f"- component: {ref(tr)}",
        *(f"- component: {ref(cid)}" for cid, _ in components),
        "m_Layer: 0", f"m_Name: {node.name}", f"m_TagString: {node.tag}",
        "m_Icon: {fileID: 0}", "m_NavMeshLayer: 0", "m_StaticEditorFlags: 0", "m_IsActive: 1"])))
    children = [file_id(f"{path}/{child.name}", "Transform") for child in node.children]
    docs.append((tr, document(4, tr, "Transform", [
        *_object_header(go), "serializedVersion: 2",
        f"m_LocalRotation: {vec(*quaternion(node.euler))}",
        f"m_LocalPosition: {vec(*node.position)}", f"m_LocalScale: {vec(*node.scale)}",
        "m_ConstrainProportionsScale: 0",
        *(["m_Children:", *(f"- {ref(c)}" for c in children)] if children else
          ["m_Children: []"]),
        f"m_Father: {ref(father)}", f"m_LocalEulerAnglesHint: {vec(*node.euler)}"])))
    for cid, component in components:
        docs.append((cid, document(component.class_id, cid, component.type_name,
                                   _object_header(go) + component.lines)))
    for child in node.children:
        _emit(child, f"{path}/{child.name}", tr, docs)
    return tr


# -- components --------------------------------------------------------------------------------

def _script(key: str, guid: str, fields: list[str]) -> _Component:
    return _Component(key, 114, "MonoBehaviour", [
        "m_Enabled: 1", "m_EditorHideFlags: 0", f"m_Script: {ref(11500000, guid)}", "m_Name: ",
        "m_EditorClassIdentifier: ", *fields])


def _mesh(mesh: str, material_guid: str) -> list[_Component]:
    return [
        _Component("MeshFilter", 33, "MeshFilter",
                   [f"m_Mesh: {ref(BUILTIN_MESH[mesh], BUILTIN_EXTRA, 0)}"]),
        _Component("MeshRenderer", 23, "MeshRenderer", [
            "m_Enabled: 1", "m_CastShadows: 0", "m_ReceiveShadows: 0", "m_DynamicOccludee: 1",
            "m_StaticShadowCaster: 0", "m_MotionVectors: 1", "m_LightProbeUsage: 0",
            "m_ReflectionProbeUsage: 0", "m_RayTracingMode: 0", "m_RayTraceProcedural: 0",
            "m_RenderingLayerMask: 1", "m_RendererPriority: 0", "m_Materials:",
            f"- {ref(2100000, material_guid, 2)}", "m_StaticBatchInfo:", "  firstSubMesh: 0",
            "  subMeshCount: 0", "m_StaticBatchRoot: {fileID: 0}", "m_ProbeAnchor: {fileID: 0}",
            "m_LightProbeVolumeOverride: {fileID: 0}", "m_ScaleInLightmap: 1",
            "m_ReceiveGI: 1", "m_PreserveUVs: 0", "m_IgnoreNormalsForChartDetection: 0",
            "m_ImportantGI: 0", "m_StitchLightmapSeams: 1", "m_SelectedEditorRenderState: 3",
            "m_MinimumChartSize: 4", "m_AutoUVMaxDistance: 0.5", "m_AutoUVMaxAngle: 89",
            "m_LightmapParameters: {fileID: 0}", "m_SortingLayerID: 0", "m_SortingLayer: 0",
            "m_SortingOrder: 0", "m_AdditionalVertexStreams: {fileID: 0}"]),
    ]


def _collider_common(trigger: bool) -> list[str]:
    return ["m_Material: {fileID: 0}", "m_IncludeLayers:", "  serializedVersion: 2",
            "  m_Bits: 0", "m_ExcludeLayers:", "  serializedVersion: 2", "  m_Bits: 0",
            "m_LayerOverridePriority: 0", f"m_IsTrigger: {int(trigger)}",
            "m_ProvidesContacts: 0", "m_Enabled: 1"]


def _box_collider(size: tuple[float, float, float]) -> _Component:
    return _Component("BoxCollider", 65, "BoxCollider", [
        *_collider_common(False), "serializedVersion: 3", f"m_Size: {vec(*size)}",
        "m_Center: {x: 0, y: 0, z: 0}"])


def _trigger_cylinder() -> _Component:
    return _Component("MeshCollider", 64, "MeshCollider", [
        *_collider_common(True), "serializedVersion: 5", "m_Convex: 1", "m_CookingOptions: 30",
        f"m_Mesh: {ref(BUILTIN_MESH['Cylinder'], BUILTIN_EXTRA, 0)}"])


def _camera(layout: Layout) -> list[_Component]:
    cam = layout.camera
    return [
        _Component("Camera", 20, "Camera", [
            "m_Enabled: 1", "serializedVersion: 2", "m_ClearFlags: 2",
            f"m_BackGroundColor: {colour(layout.palette['haze'])}", "m_projectionMatrixMode: 1",
            "m_GateFitMode: 2", "m_FOVAxisMode: 0", "m_Iso: 200", "m_ShutterSpeed: 0.005",
            "m_Aperture: 16", "m_FocusDistance: 10", "m_FocalLength: 50", "m_BladeCount: 5",
            "m_Curvature: {x: 2, y: 11}", "m_BarrelClipping: 0.25", "m_Anamorphism: 0",
            "m_SensorSize: {x: 36, y: 24}", "m_LensShift: {x: 0, y: 0}",
            "m_NormalizedViewPortRect:", "  serializedVersion: 2", "  x: 0", "  y: 0",
            "  width: 1", "  height: 1", f"near clip plane: {num(NEAR_CLIP)}",
            f"far clip plane: {num(FAR_CLIP)}", f"field of view: {num(cam.vertical_fov)}",
            "orthographic: 0", "orthographic size: 5", "m_Depth: 0", "m_CullingMask:",
            "  serializedVersion: 2", "  m_Bits: 4294967295", "m_RenderingPath: -1",
            "m_TargetTexture: {fileID: 0}", "m_TargetDisplay: 0", "m_TargetEye: 3", "m_HDR: 0",
            "m_AllowMSAA: 0", "m_AllowDynamicResolution: 0", "m_ForceIntoRT: 0",
            "m_OcclusionCulling: 0", "m_StereoConvergence: 10", "m_StereoSeparation: 0.022"]),
        _Component("AudioListener", 81, "AudioListener", ["m_Enabled: 1"]),
    ]


def haze_depth(layout: Layout) -> float:
    """Depth along the optical axis at which the embedded renderer's ground turns to haze."""
    cam = layout.camera
    pitch = math.radians(cam.pitch)
    return cam.far * math.cos(pitch) + cam.height * math.sin(pitch)


def material_name(colour_key: str) -> str:
    return "".join(part.capitalize() for part in colour_key.split("_"))


# -- textures ----------------------------------------------------------------------------------

def textures(layout: Layout) -> dict[str, np.ndarray]:
    """The ground and backdrop textures, RGB, row 0 at the top (north for the ground).

    - IslandGround: the embedded renderer's raster over the world rectangle, cells aligned to
      the world's south-west corner (the renderer's own raster may sit up to a cell off that
      grid, its origin depending on its padding).
    - Backdrop: the embedded renderer's background for an OBS_HEIGHT-row image, one texel row
      per image row (sky gradient above the horizon, haze below).
    """
    renderer = IslandRenderer(layout, OBS_HEIGHT, OBS_WIDTH)
    raster, _ = rasterise(layout, renderer.colour_names, 0.0)
    ground = renderer.palette[raster][::-1]
    rows = np.empty((OBS_HEIGHT, 3), dtype=np.uint8)
    rows[:] = layout.palette["haze"]  # below the background rows the ground covers the backdrop
    rows[:renderer.first_ground_row] = renderer.background[:, 0]
    backdrop = np.repeat(rows[:, None, :], BACKDROP_WIDTH_PX, axis=1)
    return {"IslandGround": np.ascontiguousarray(ground), "Backdrop": backdrop}


# -- scene-wide settings -----------------------------------------------------------------------

def _settings_documents() -> str:
    """Scene-wide settings: no lights, fog, skybox or baked lighting (everything is unlit)."""
    return (
        document(29, 1, "OcclusionCullingSettings", [
            "m_ObjectHideFlags: 0", "serializedVersion: 2", "m_OcclusionBakeSettings:",
            "  smallestOccluder: 5", "  smallestHole: 0.25", "  backfaceThreshold: 100",
            "m_SceneGUID: 00000000000000000000000000000000", "m_OcclusionCullingData: {fileID: 0}"])
        + document(104, 2, "RenderSettings", [
            "m_ObjectHideFlags: 0", "serializedVersion: 10", "m_Fog: 0",
            "m_FogColor: {r: 0.5, g: 0.5, b: 0.5, a: 1}", "m_FogMode: 3", "m_FogDensity: 0.01",
            "m_LinearFogStart: 0", "m_LinearFogEnd: 300",
            "m_AmbientSkyColor: {r: 1, g: 1, b: 1, a: 1}",
            "m_AmbientEquatorColor: {r: 1, g: 1, b: 1, a: 1}",
            "m_AmbientGroundColor: {r: 1, g: 1, b: 1, a: 1}", "m_AmbientIntensity: 1",
            "m_AmbientMode: 3", "m_SubtractiveShadowColor: {r: 0.42, g: 0.478, b: 0.627, a: 1}",
            "m_SkyboxMaterial: {fileID: 0}", "m_HaloStrength: 0.5", "m_FlareStrength: 1",
            "m_FlareFadeSpeed: 3", "m_HaloTexture: {fileID: 0}", "m_SpotCookie: {fileID: 0}",
            "m_DefaultReflectionMode: 0", "m_DefaultReflectionResolution: 128",
            "m_ReflectionBounces: 1", "m_ReflectionIntensity: 1",
            "m_CustomReflection: {fileID: 0}", "m_Sun: {fileID: 0}",
            "m_UseRadianceAmbientProbe: 0"])
        + document(157, 3, "LightmapSettings", [
            "m_ObjectHideFlags: 0", "serializedVersion: 12", "m_GIWorkflowMode: 1",
            "m_GISettings:", "  serializedVersion: 2", "  m_BounceScale: 1",
            "  m_IndirectOutputScale: 1", "  m_AlbedoBoost: 1", "  m_EnvironmentLightingMode: 0",
            "  m_EnableBakedLightmaps: 0", "  m_EnableRealtimeLightmaps: 0",
            "m_LightingDataAsset: {fileID: 0}", "m_LightingSettings: {fileID: 0}"])
        + document(196, 4, "NavMeshSettings", [
            "serializedVersion: 2", "m_ObjectHideFlags: 0", "m_BuildSettings:",
            "  serializedVersion: 3", "  agentTypeID: 0", "  agentRadius: 0.5",
            "  agentHeight: 2", "  agentSlope: 45", "  agentClimb: 0.4", "  ledgeDropHeight: 0",
            "  maxJumpAcrossDistance: 0", "  minRegionArea: 2", "  manualCellSize: 0",
            "  cellSize: 0.16666667", "  manualTileSize: 0", "  tileSize: 256",
            "  buildHeightMesh: 0", "  maxJobWorkers: 0", "  preserveTilesOutsideBounds: 0",
            "  debug:", "    m_Flags: 0", "m_NavMeshData: {fileID: 0}"]))


# -- materials and the personality library -----------------------------------------------------

def _materials(layout: Layout) -> dict[str, dict]:
    """Material name -> keyword arguments of `assets.material` (without the shader)."""
    depth = haze_depth(layout)
    out: dict[str, dict] = {
        "Ground": {"texture": "IslandGround", "far_depth": depth},
        "Water": {"rgb": layout.palette["water"], "far_depth": depth},
        "Backdrop": {"texture": "Backdrop", "background": True},
        "Avatar": {"rgb": layout.palette["avatar"]},
        "AvatarShade": {"rgb": layout.palette["avatar_shade"]},
    }
    for item in (*layout.pads, *layout.landmarks):
        if item.beacon_height > 0:
            out[material_name(item.colour)] = {"rgb": layout.palette[item.colour]}
    return out


def _library_asset(script_guid: str) -> str:
    return HEADER + document(114, 11400000, "MonoBehaviour", [
        "m_ObjectHideFlags: 0", "m_CorrespondingSourceObject: {fileID: 0}",
        "m_PrefabInstance: {fileID: 0}", "m_PrefabAsset: {fileID: 0}",
        "m_GameObject: {fileID: 0}", "m_Enabled: 1", "m_EditorHideFlags: 0",
        f"m_Script: {ref(11500000, script_guid)}", "m_Name: Personalities",
        "m_EditorClassIdentifier: ", "personalities: []"])
