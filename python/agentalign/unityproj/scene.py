"""The jumppad island as a Unity scene, written from the layout file (one layout, two renderers).

What the scene holds, and how it mirrors the embedded renderer (`agentalign.envs.render`):

- Ground: one quad over the world rectangle, textured with the embedded renderer's own raster
  (water, beach, grass tiles, landmark and pad discs, obstacle footprints: all flat), point-
  sampled as Python samples it. The coastline, beach and tiles are therefore exact, not a
  polygon approximated by primitives. Water: a larger quad just below, in the water colour.
- Haze: the embedded renderer paints ground farther than `camera.far` (horizontal distance) as
  haze. For a level, unrolled camera that distance is constant along an image row, and so is the
  depth along the optical axis (`far * cos(pitch) + height * sin(pitch)`): the ground and water
  materials discard fragments beyond that depth, and the backdrop shows through.
- Sky and haze backdrop: a quad fixed in front of the agent's camera, drawn first and under
  everything, textured with the embedded renderer's background rows (sky gradient above the
  horizon, haze below) so that every image row gets the colour Python gives it.
- Beacons: upright cylinders (diameter = beacon width) over the pads and landmarks that have
  one; Python draws them as upright rectangles of the same width, at any distance.
- Obstacles: BoxColliders without a renderer (their footprint is in the ground texture, as in
  Python). Jumppads: trigger volumes with a `Jumppad` component. The agent's own rules
  (`IslandRules.cs`) use the same geometry, stored on the `Island` component.
- The agent: ML-Agents' BehaviorParameters (branches [9, 3], no vector observation),
  DecisionRequester (one decision per academy step; the Island sets 10 steps/s),
  CameraSensorComponent (64x64 RGB, PNG), DemonstrationRecorder (off), our JumppadAgent; an
  avatar cylinder (its top in the shade colour) and the camera rig of the layout.
- Personalities: a PersonalitySwitcher (the package's runtime) reading the personality library
  asset beside the sample's personalities, so adding one never touches this generated scene.

The scene and its assets are the package's sample (`Samples~/JumppadIsland`, see
`agentalign.unityproj.paths`): the development project plays and builds the copy the Package
Manager imports from it, which keeps every GUID.

File ids are derived from each object's path in the hierarchy, so regenerating gives the same
bytes and a layout change touches only the objects it changes.
"""

from __future__ import annotations

import math
from pathlib import Path

from agentalign.envs.layout import DEFAULT_LAYOUT, Layout, load_layout
from agentalign.errors import UserError
from agentalign.spec import (
    ACTION_BRANCHES,
    BEHAVIOR_NAME,
    CAMERA_SENSOR_NAME,
    DECISIONS_PER_SECOND,
    OBS_HEIGHT,
    OBS_WIDTH,
)
from agentalign.unityproj.assets import (
    asset_guid,
    ensure_metas,
    material,
    meta_text,
    png_bytes,
    texture_meta,
)
from agentalign.unityproj.paths import (
    DEV,
    IMPORTED_SAMPLE,
    PACKAGE,
    RUNTIME,
    SAMPLE,
    SAMPLE_PERSONALITIES,
    SAMPLE_SCRIPTS,
)
from agentalign.unityproj.scene_parts import (
    _box_collider,
    _camera,
    _emit,
    _library_asset,
    _materials,
    _mesh,
    _Node,
    _script,
    _settings_documents,
    _trigger_cylinder,
    file_id,
    material_name,
    textures,
)
from agentalign.unityproj.unity_yaml import (
    HEADER,
    document,
    int_array,
    num,
    ref,
    vec,
)

SCENE = f"{SAMPLE}/Scenes/JumppadIsland.unity"
SHADER = f"{SAMPLE}/Shaders/Flat.shader"
MATERIALS = f"{SAMPLE}/Materials"
TEXTURES = f"{SAMPLE}/Textures"
LIBRARY = f"{SAMPLE_PERSONALITIES}/Personalities.asset"
BUILD_SETTINGS = "ProjectSettings/EditorBuildSettings.asset"
# The development project builds the sample as the Package Manager imports it (same GUID).
BUILD_SCENE = f"{IMPORTED_SAMPLE}/Scenes/JumppadIsland.unity"
GENERATED_FOLDERS = (MATERIALS, TEXTURES)  # wholly generated: stale files there are removed

# Script GUIDs of the ML-Agents package (FACTS.md; stable across 3.x and 4.x).
MLAGENTS_SCRIPTS = {
    "BehaviorParameters": "5d1c4e0b1822b495aa52bc52839ecb30",
    "DecisionRequester": "3a5c9d521e5ef4759a8246a07d52221e",
    "CameraSensorComponent": "282f342c2ab144bf38be65d4d0c4e07d",
    "DemonstrationRecorder": "f2902496c0120472b90269f94a0aec7e",
}
# Our scripts the scene refers to, by the folder they live in.
OUR_SCRIPTS = {"Island": SAMPLE_SCRIPTS, "Jumppad": SAMPLE_SCRIPTS, "JumppadAgent": SAMPLE_SCRIPTS,
               "PersonalitySwitcher": RUNTIME, "PersonalityLibrary": RUNTIME}
KEY_N, KEY_B = 110, 98  # UnityEngine.KeyCode values of the switcher's next / previous keys

# One decision per academy step; Island.cs sets Time.fixedDeltaTime = 1 / DECISIONS_PER_SECOND,
# so the agent decides 10 times a second of game time, and an episode's end and its successor's
# first decision reach Python in the same message.
DECISION_PERIOD = 1
FIXED_DELTA_TIME = 1.0 / DECISIONS_PER_SECOND
SPAWN_JITTER = 0.5  # metres, uniform on each axis (IslandVectorEnv's default)
BACKDROP_DISTANCE = 1.0  # metres in front of the camera; drawn first, so any distance works
BACKDROP_ASPECT = 4.0  # wide enough for a 4:1 game view as well as the square sensor
OBSTACLE_HEIGHT = 2.0  # collider height; obstacles are drawn flat
PAD_VOLUME_HEIGHT = 2.0
AVATAR_CAP = 0.001  # thickness of the disc that paints the avatar's top in the shade colour
DEMO_NAME = "JumppadHuman"


# -- the scene ---------------------------------------------------------------------------------

def _island(layout: Layout, guids: dict[str, str]) -> _Node:
    (wx0, wy0), (wx1, wy1) = layout.world_min, layout.world_max
    centre = ((wx0 + wx1) / 2, (wy0 + wy1) / 2)
    water_span = max(wx1 - wx0, wy1 - wy0) + 4 * (layout.camera.far + layout.camera.back)
    flat = (90.0, 0.0, 0.0)  # a quad faces -z; this turns it up, its +y (texture top) north
    ground = _Node("Ground", (centre[0], 0.0, centre[1]), flat, (wx1 - wx0, wy1 - wy0, 1.0),
                   _mesh("Quad", guids["mat:Ground"]))
    water = _Node("Water", (centre[0], -0.05, centre[1]), flat, (water_span, water_span, 1.0),
                  _mesh("Quad", guids["mat:Water"]))
    spawns = _Node("Spawns", children=[
        _Node(s.name, (s.position[0], 0.0, s.position[1]), (0.0, s.heading, 0.0))
        for s in layout.spawns])
    pads = _Node("Jumppads", children=[
        _Node(f"Jumppad {pad.name}", (pad.position[0], PAD_VOLUME_HEIGHT / 2, pad.position[1]),
              scale=(2 * pad.radius, PAD_VOLUME_HEIGHT / 2, 2 * pad.radius),
              components=[_trigger_cylinder(), _script("Jumppad", guids["Jumppad"], [
                  f"padIndex: {index}", f"radius: {num(pad.radius)}"])])
        for index, pad in enumerate(layout.pads)])
    obstacles = _Node("Obstacles", children=[
        _Node(box.name, (box.center[0], OBSTACLE_HEIGHT / 2, box.center[1]),
              components=[_box_collider((box.size[0], OBSTACLE_HEIGHT, box.size[1]))])
        for box in layout.obstacles])
    landmarks = _Node("Landmarks", children=[
        _Node(mark.name, (mark.position[0], 0.0, mark.position[1])) for mark in layout.landmarks])
    beacons = _Node("Beacons", children=[
        _Node(f"{item.name} beacon", (item.position[0], item.beacon_height / 2, item.position[1]),
              scale=(item.beacon_width, item.beacon_height / 2, item.beacon_width),
              components=_mesh("Cylinder", guids[f"mat:{material_name(item.colour)}"]))
        for item in (*layout.pads, *layout.landmarks) if item.beacon_height > 0])

    island_fields = ["coastline:", *(f"- {vec(x, y)}" for x, y in layout.polygon), "obstacles:"]
    for box in layout.obstacles:
        (lx, ly), (hx, hy) = box.lo, box.hi
        island_fields += ["- serializedVersion: 2", f"  x: {num(lx)}", f"  y: {num(ly)}",
                          f"  width: {num(hx - lx)}", f"  height: {num(hy - ly)}"]
    if not layout.obstacles:
        island_fields[-1] = "obstacles: []"
    island_fields += ["jumppads:", *(
        f"- {ref(file_id(f'Island/Jumppads/Jumppad {pad.name}', 'Jumppad'))}"
        for pad in layout.pads)]
    island_fields += ["spawns:", *(f"- {ref(file_id(f'Island/Spawns/{s.name}', 'Transform'))}"
                                   for s in layout.spawns)]
    island_fields.append(f"spawnJitter: {num(SPAWN_JITTER)}")
    return _Node("Island", components=[_script("Island", guids["Island"], island_fields)],
                 children=[ground, water, spawns, pads, obstacles, landmarks, beacons])


def _agent(layout: Layout, guids: dict[str, str]) -> _Node:
    agent, cam = layout.agent, layout.camera
    spawn = layout.spawns[0]
    backdrop_height = 2 * BACKDROP_DISTANCE * math.tan(math.radians(cam.vertical_fov) / 2)
    backdrop = _Node("Backdrop", (0.0, 0.0, BACKDROP_DISTANCE),
                     scale=(BACKDROP_ASPECT * backdrop_height, backdrop_height, 1.0),
                     components=_mesh("Quad", guids["mat:Backdrop"]))
    rig = _Node("CameraRig", (0.0, cam.height, -cam.back), (cam.pitch, 0.0, 0.0),
                components=_camera(layout), children=[backdrop], tag="MainCamera")
    body = _Node("Avatar", (0.0, agent.height / 2, 0.0),
                 scale=(2 * agent.radius, agent.height / 2, 2 * agent.radius),
                 components=_mesh("Cylinder", guids["mat:Avatar"]))
    top = _Node("AvatarTop", (0.0, agent.height + AVATAR_CAP, 0.0),
                scale=(2 * agent.radius, AVATAR_CAP / 2, 2 * agent.radius),
                components=_mesh("Cylinder", guids["mat:AvatarShade"]))
    path = "JumppadAgent"
    components = [
        _script("BehaviorParameters", MLAGENTS_SCRIPTS["BehaviorParameters"], [
            "m_BrainParameters:", "  VectorObservationSize: 0",
            "  NumStackedVectorObservations: 1", "  m_ActionSpec:",
            "    m_NumContinuousActions: 0", f"    BranchSizes: {int_array(ACTION_BRANCHES)}",
            f"  VectorActionSize: {int_array(ACTION_BRANCHES)}", "  VectorActionDescriptions: []",
            "  VectorActionSpaceType: 0", "  hasUpgradedBrainParametersWithActionSpec: 1",
            "m_Model: {fileID: 0}", "m_InferenceDevice: 0", "m_BehaviorType: 0",
            f"m_BehaviorName: {BEHAVIOR_NAME}", "TeamId: 0", "m_UseChildSensors: 1",
            "m_UseChildActuators: 1", "m_DeterministicInference: 0",
            "m_ObservableAttributeHandling: 0"]),
        _script("JumppadAgent", guids["JumppadAgent"], [
            "agentParameters:", "  maxStep: 0", "hasUpgradedFromAgentParameters: 1",
            "MaxStep: 0", f"island: {ref(file_id('Island', 'Island'))}",
            f"moveSpeed: {num(agent.move_speed)}", f"turnRate: {num(agent.turn_rate)}",
            f"radius: {num(agent.radius)}"]),
        _script("DecisionRequester", MLAGENTS_SCRIPTS["DecisionRequester"], [
            f"DecisionPeriod: {DECISION_PERIOD}", "DecisionStep: 0",
            "TakeActionsBetweenDecisions: 0"]),
        _script("CameraSensorComponent", MLAGENTS_SCRIPTS["CameraSensorComponent"], [
            f"m_Camera: {ref(file_id(f'{path}/CameraRig', 'Camera'))}",
            f"m_SensorName: {CAMERA_SENSOR_NAME}", f"m_Width: {OBS_WIDTH}",
            f"m_Height: {OBS_HEIGHT}", "m_Grayscale: 0", "m_ObservationType: 0",
            "m_RuntimeCameraEnable: 1", "m_ObservationStacks: 1", "m_Compression: 1"]),
        _script("DemonstrationRecorder", MLAGENTS_SCRIPTS["DemonstrationRecorder"], [
            "Record: 0", "NumStepsToRecord: 0", f"DemonstrationName: {DEMO_NAME}",
            "DemonstrationDirectory: "]),
    ]
    return _Node(path, (spawn.position[0], 0.0, spawn.position[1]), (0.0, spawn.heading, 0.0),
                 components=components, children=[body, top, rig])


def _personalities(guids: dict[str, str]) -> _Node:
    return _Node("Personalities", components=[_script("PersonalitySwitcher",
                                                      guids["PersonalitySwitcher"], [
        f"agent: {ref(file_id('JumppadAgent', 'JumppadAgent'))}",
        f"library: {ref(11400000, guids['library'], 2)}", "inferenceDevice: 0",
        "startWithPersonality: 1", "showMenu: 1", "restartEpisodeOnSwitch: 1",
        f"nextKey: {KEY_N}", f"previousKey: {KEY_B}"])])


def scene_text(layout: Layout, guids: dict[str, str]) -> str:
    """The scene file. `guids`: our scripts by class name, materials as `mat:<Name>`, `library`."""
    docs: list[tuple[int, str]] = []
    roots = [_emit(node, node.name, 0, docs)
             for node in (_island(layout, guids), _agent(layout, guids), _personalities(guids))]
    ids = [fid for fid, _ in docs]
    if len(set(ids)) != len(ids):
        raise ValueError("two scene objects got the same file id")
    body = "".join(text for _, text in sorted(docs))
    scene_roots = document(1660057539, 9223372036854775807, "SceneRoots", [
        "m_ObjectHideFlags: 0", "m_Roots:", *(f"- {ref(r)}" for r in roots)])
    return HEADER + _settings_documents() + body + scene_roots


# -- the files ---------------------------------------------------------------------------------

def render_files(project: Path, layout: Layout) -> dict[str, bytes]:
    """Every generated file, relative path -> content; reads the project's existing GUIDs."""
    files: dict[str, bytes] = {}
    guids = {name: asset_guid(project, f"{folder}/{name}.cs")
             for name, folder in OUR_SCRIPTS.items()}
    shader = asset_guid(project, SHADER)
    for name, rgb in textures(layout).items():
        path = f"{TEXTURES}/{name}.png"
        guids[f"tex:{name}"] = guid = asset_guid(project, path)
        files[path] = png_bytes(rgb)
        files[f"{path}.meta"] = texture_meta(guid).encode()
    for name, spec in _materials(layout).items():
        path = f"{MATERIALS}/{name}.mat"
        guids[f"mat:{name}"] = guid = asset_guid(project, path)
        texture = spec.pop("texture", None)
        text = material(name, shader, texture_guid=guids[f"tex:{texture}"] if texture else None,
                        **spec)
        files[path] = text.encode()
        files[f"{path}.meta"] = meta_text(path, guid).encode()
    guids["library"] = asset_guid(project, LIBRARY)
    scene_guid = asset_guid(project, SCENE)
    files[SCENE] = scene_text(layout, guids).encode()
    files[f"{SCENE}.meta"] = meta_text(SCENE, scene_guid).encode()
    files[BUILD_SETTINGS] = (HEADER + document(1045, 1, "EditorBuildSettings", [
        "m_ObjectHideFlags: 0", "serializedVersion: 2", "m_Scenes:", "- enabled: 1",
        f"  path: {BUILD_SCENE}", f"  guid: {scene_guid}", "m_configObjects: {}"])).encode()
    return files


def _same(path: str, ours: bytes, theirs: bytes) -> bool:
    if path.endswith(".png"):  # compare pixels: zlib versions may compress differently
        from io import BytesIO

        from PIL import Image

        with Image.open(BytesIO(ours)) as a, Image.open(BytesIO(theirs)) as b:
            return a.size == b.size and a.mode == b.mode and a.tobytes() == b.tobytes()
    return ours == theirs


def _project_root(project: Path) -> Path:
    project = Path(project)
    if not (project / "Assets").is_dir() or not (project / "ProjectSettings").is_dir():
        raise UserError(f"{project} is not a Unity project (it needs Assets/ and "
                        "ProjectSettings/): give the unity_project folder with --project")
    return project


def _stale(project: Path, expected: set[str]) -> list[str]:
    stale = []
    for folder in GENERATED_FOLDERS:
        for path in sorted((project / folder).glob("*")):
            rel = path.relative_to(project).as_posix()
            if path.is_file() and rel not in expected:
                stale.append(rel)
    return stale


def generate(project: Path, layout: Layout | str = DEFAULT_LAYOUT) -> list[str]:
    """Write the scene and its generated assets into `project`; return the paths that changed.

    Also writes the personality library if it is missing (never over one a designer filled),
    removes files an older layout left in the generated folders, and gives every file and
    folder of ours that lacks one a `.meta` with its path-derived GUID (the GUID the scene was
    just written with, when a reference to it had no `.meta` yet).
    """
    project = _project_root(project)
    layout = load_layout(layout) if isinstance(layout, str) else layout
    changed = []
    library = project / LIBRARY
    if not library.exists():
        library.parent.mkdir(parents=True, exist_ok=True)
        script = asset_guid(project, f"{RUNTIME}/PersonalityLibrary.cs")
        library.write_text(_library_asset(script), encoding="utf-8")
        changed.append(LIBRARY)
    files = render_files(project, layout)
    for rel, content in files.items():
        path = project / rel
        if path.exists() and _same(rel, content, path.read_bytes()):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        changed.append(rel)
    for rel in _stale(project, set(files)):
        (project / rel).unlink()
        changed.append(f"{rel} (removed)")
    changed += [p.relative_to(project).as_posix()
                for root in (PACKAGE, DEV) for p in ensure_metas(project, root)]
    return changed


def check(project: Path, layout: Layout | str = DEFAULT_LAYOUT) -> list[str]:
    """How the project's generated files differ from a fresh run (empty: up to date)."""
    project = _project_root(project)
    layout = load_layout(layout) if isinstance(layout, str) else layout
    problems = []
    files = render_files(project, layout)
    for rel, content in files.items():
        path = project / rel
        if not path.exists():
            problems.append(f"{rel}: missing")
        elif not _same(rel, content, path.read_bytes()):
            problems.append(f"{rel}: differs from the generator's output")
    problems += [f"{rel}: stale (not generated from this layout)"
                 for rel in _stale(project, set(files))]
    if not (project / LIBRARY).exists():
        problems.append(f"{LIBRARY}: missing")
    return problems
