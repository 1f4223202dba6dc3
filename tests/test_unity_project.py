"""The Unity project, checked without Unity (docs/unity_project.md, "What is checked here").

- C#: every script parses (tree-sitter's C# grammar) and compiles with Mono's `mcs`, one assembly
  per asmdef, against the reference declarations in tests/csharp_refs (cited, and only what the
  scripts use; tests/unity_csharp.py); the engine-free scripts run under Mono and move, end
  episodes and encode side-channel bytes as Python does. The package itself (package.json,
  asmdefs, the switcher's rules, a foreign agent): tests/test_unity_package.py.
- Files: the scene, materials, textures and build settings are the generator's output; every
  asset has a `.meta` with a unique GUID; every reference in the scene resolves.
- Meaning: the scene's spawns, pads, obstacles, coastline, camera rig, sensor, behaviour and
  decision rate equal the layout and the spec; shared C# constants equal agentalign.spec; the
  stand-in headless player declares what the Unity agent declares.
"""

from __future__ import annotations

import ast
import copy
import json
import math
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tree_sitter_c_sharp
from tree_sitter import Language, Node, Parser

from agentalign import spec
from agentalign.envs.layout import Layout, load_layout, parse_layout
from agentalign.unityproj import check, generate, paths
from agentalign.unityproj import scene as unity_scene
from agentalign.unityproj.assets import guid_for, needs_meta
from agentalign.unityproj.unity_yaml import (
    BUILTIN_EXTRA,
    MAIN_OBJECT,
    UnityObject,
    read_file,
    read_meta_guid,
    references,
)
from unity_csharp import run_harness

ROOT = Path(__file__).resolve().parents[1]
UNITY = ROOT / "unity_project"
PACKAGE = UNITY / paths.PACKAGE
SAMPLE = UNITY / paths.SAMPLE
DEV_EDITOR = UNITY / paths.DEV_EDITOR
OURS = (PACKAGE, UNITY / "Assets" / "AgentAlign")  # every file of ours in the Unity project
REFS = ROOT / "tests" / "csharp_refs"
FOREIGN = ROOT / "tests" / "csharp_foreign"
LAYOUT_JSON = ROOT / "python" / "agentalign" / "envs" / "layouts" / "jumppad_island.json"
BUILTIN_GUIDS = {BUILTIN_EXTRA, "0000000000000000f000000000000000"}
# Fields the ML-Agents Agent base class serializes into every agent component.
AGENT_BASE_FIELDS = {"agentParameters", "hasUpgradedFromAgentParameters", "MaxStep"}

# What the Unity editor leaves in a project it has opened (git-ignored): never copied.
EDITOR_CACHES = shutil.ignore_patterns("Library", "Temp", "Logs", "UserSettings", "Obj")
# Reference members the scripts use without naming them.
IMPLICITLY_USED = {"Dispose"}  # `using (var message = new OutgoingMessage())` calls it

CSHARP = Language(tree_sitter_c_sharp.language())


def ours(pattern: str) -> list[Path]:
    return sorted(p for root in OURS for p in root.rglob(pattern))


def csharp_files() -> list[Path]:
    return sorted([*ours("*.cs"), *REFS.rglob("*.cs"), *FOREIGN.glob("*.cs")])


def script(name: str) -> Path:
    """Our C# file `<name>.cs`, wherever it lives (package runtime, sample, editor)."""
    (path,) = [p for p in ours("*.cs") if p.stem == name]
    return path


def parse(path: Path) -> Node:
    return Parser(CSHARP).parse(path.read_bytes()).root_node


def walk(node: Node):
    yield node
    for child in node.children:
        yield from walk(child)


# -- C#: parse, compile, cite --------------------------------------------------------------------

@pytest.mark.parametrize("path", csharp_files(), ids=lambda p: p.name)
def test_csharp_parses(path):
    broken = [n for n in walk(parse(path)) if n.type == "ERROR" or n.is_missing]
    where = [f"line {n.start_point[0] + 1}: {n.text.decode()[:60]!r}" for n in broken]
    assert not broken, f"{path.relative_to(ROOT)} does not parse as C#: {where}"


def test_csharp_compiles_against_reference_api(csharp):
    """One assembly per asmdef, the development project's editor scripts, a foreign game's
    agent and the engine-free harness (tests/unity_csharp.py; a failure names mcs's error)."""
    for name in ("AgentAlign.Personalities", "AgentAlign.Personalities.Editor",
                 "AgentAlign.Samples.JumppadIsland", "AgentAlign.Personalities.Tests",
                 "AgentAlign.Personalities.Tests.Editor", "Assembly-CSharp-Editor",
                 "ForeignGame", "harness"):
        assert csharp[name].stat().st_size > 0, name


def test_every_script_is_compiled_and_editor_code_stays_in_editor():
    from unity_csharp import ENGINE_FREE, asmdefs

    compiled = {p for a in asmdefs() for p in a.sources()} | set(DEV_EDITOR.glob("*.cs"))
    assert set(ours("*.cs")) == compiled, "scripts outside every assembly"
    for a in asmdefs():
        if not a.editor_only:  # player code sees no UnityEditor
            for path in a.sources():
                assert "UnityEditor" not in path.read_text(), f"{path.name} uses the editor API"
    for path in ENGINE_FREE:
        text = path.read_text()
        assert "using UnityEngine" not in text and "using Unity." not in text, path.name


def _declarations(root: Node):
    kinds = {"class_declaration", "struct_declaration", "enum_declaration",
             "interface_declaration", "method_declaration", "property_declaration",
             "field_declaration", "event_field_declaration", "constructor_declaration",
             "indexer_declaration"}
    return [n for n in walk(root) if n.type in kinds]


def _declared_names(node: Node) -> list[str]:
    if node.type in ("field_declaration", "event_field_declaration"):
        return [d.child_by_field_name("name").text.decode()
                for d in walk(node) if d.type == "variable_declarator"]
    if node.type in ("constructor_declaration", "indexer_declaration"):
        return []  # named by their class
    return [node.child_by_field_name("name").text.decode()]


def test_reference_declarations_cite_their_documentation():
    for path in sorted(REFS.glob("*.cs")):
        for node in _declarations(parse(path)):
            comments = []
            before = node.prev_sibling
            while before is not None and before.type == "comment":
                comments.append(before.text.decode())
                before = before.prev_sibling
            cited = any(re.search(r"https://docs\.(unity3d\.com|nunit\.org)/\S+\.html", c)
                        for c in comments)
            assert cited, (f"{path.name} line {node.start_point[0] + 1}: declaration without "
                           "a documentation URL comment above it")


def test_reference_declarations_are_only_what_the_scripts_use():
    script_names: set[str] = set()
    for path in [*ours("*.cs"), *FOREIGN.glob("*.cs")]:
        script_names |= {n.text.decode() for n in walk(parse(path)) if n.type == "identifier"}
    stub_roots = [parse(p) for p in sorted(REFS.glob("*.cs"))]
    mentions = Counter(n.text.decode() for root in stub_roots for n in walk(root)
                       if n.type == "identifier")
    declared = Counter()
    for root in stub_roots:
        for node in _declarations(root):
            declared.update(_declared_names(node))
        declared.update(n.child_by_field_name("name").text.decode() for n in walk(root)
                        if n.type == "enum_member_declaration")
    unused = []
    for name, count in declared.items():
        used = name in script_names or name.removesuffix("Attribute") in script_names
        used = used or name in IMPLICITLY_USED
        used = used or mentions[name] > count  # a type another declaration's signature needs
        if not used:
            unused.append(name)
    assert not unused, f"declared in tests/csharp_refs but used by no script: {sorted(unused)}"


# -- the C# island against the Python island ------------------------------------------------------

def _harness(csharp: dict[str, Path], commands: list[str]) -> list[str]:
    return run_harness(csharp["harness"], commands)


def _rules_commands(layout: Layout) -> list[str]:
    a = layout.agent
    cmds = [f"rules {a.radius!r} {a.move_speed!r} {a.turn_rate!r} {spec.MAX_DECISIONS}"]
    cmds += [f"coast {x!r} {y!r}" for x, y in layout.polygon]
    cmds += [f"obstacle {b.lo[0]!r} {b.lo[1]!r} {b.hi[0]!r} {b.hi[1]!r}" for b in layout.obstacles]
    cmds += [f"pad {p.position[0]!r} {p.position[1]!r} {p.radius!r}" for p in layout.pads]
    return cmds


def test_island_rules_move_and_end_episodes_as_the_python_island(csharp, layout):
    """Random episodes from starts near the pads, obstacles and coast: same states, step by step."""
    from agentalign.envs.island import IslandVectorEnv

    rng = np.random.default_rng(7)
    n = 48
    anchors = np.array([*(p.position for p in layout.pads), *(b.center for b in layout.obstacles),
                        *layout.polygon, *(s.position for s in layout.spawns)], dtype=float)
    starts = anchors[rng.integers(len(anchors), size=n)] + rng.normal(0, 2.5, size=(n, 2))
    inland = np.array(starts) * 0.9  # pull coast anchors inside
    starts = np.where(layout.is_on_island(starts[:, 0], starts[:, 1])[:, None], starts, inland)
    free = ~layout.in_obstacle(starts[:, 0], starts[:, 1], margin=layout.agent.radius)
    starts, n = starts[free], int(free.sum())
    headings = rng.uniform(0, 360, size=n)
    env = IslandVectorEnv(n, layout=layout, spawn_jitter=0.0)  # ended rows restart: unread
    env.reset(seed=0, options={"positions": starts, "headings": headings})
    # Mostly forward moves, so episodes reach pads, obstacles and the coast.
    moves = rng.choice(9, p=[0.05, 0.5, 0.1, 0.05, 0.03, 0.03, 0.03, 0.05, 0.16],
                       size=(spec.MAX_DECISIONS, n))
    turns = rng.choice(3, p=[0.6, 0.2, 0.2], size=(spec.MAX_DECISIONS, n))
    python: list[list[tuple]] = [[] for _ in range(n)]
    done = np.zeros(n, dtype=bool)
    for t in range(spec.MAX_DECISIONS):
        env.step(np.stack([moves[t], turns[t]], axis=1))
        for i in np.flatnonzero(~done):
            python[i].append((env.steps[i], env.positions[i, 0], env.positions[i, 1],
                              env.headings[i], int(env.outcomes[i])))
        done |= env.outcomes != spec.RUNNING
        if done.all():
            break
    commands = _rules_commands(layout)
    for i in range(n):
        actions = " ".join(f"{moves[t, i]},{turns[t, i]}" for t in range(spec.MAX_DECISIONS))
        x, y, heading = (repr(float(v)) for v in (starts[i, 0], starts[i, 1], headings[i]))
        commands.append(f"episode {x} {y} {heading} {actions}")
    lines = iter(_harness(csharp, commands))
    outcomes = Counter()
    for i in range(n):
        csharp = []
        for line in lines:
            if line == "end":
                break
            step, x, y, heading, outcome = line.split()
            csharp.append((int(step), float(x), float(y), float(heading), int(outcome)))
        coast = layout.distance_to_edge(np.array([r[1] for r in csharp]),
                                        np.array([r[2] for r in csharp]))
        # The Python island tests the raster cell under the agent, the C# the polygon itself:
        # they may disagree within a cell of the coast, and from there the episodes differ.
        for k, (py, cs) in enumerate(zip(python[i], csharp, strict=False)):
            assert py[0] == cs[0]
            np.testing.assert_allclose(py[1:4], cs[1:4], atol=1e-9, err_msg=f"episode {i}")
            if py[4] != cs[4]:
                assert coast[k] < layout.cell * 1.5, f"episode {i} step {k}: {py} vs {cs}"
                break
        else:
            assert len(python[i]) == len(csharp), f"episode {i} ended differently"
        outcomes[spec.outcome_name(csharp[-1][4])] += 1
    # The starts were chosen so that the comparison covers every way an episode ends.
    assert {"left", "middle", "right", "fell", "timeout"} <= set(outcomes), outcomes


def test_outcome_records_are_the_bytes_python_unpacks(csharp):
    rng = np.random.default_rng(1)
    records = [(int(rng.integers(-5, 10**6)), int(rng.integers(0, 101)),
                float(np.float32(rng.uniform(-40, 40))), float(np.float32(rng.uniform(-40, 40))),
                float(np.float32(rng.uniform(0, 360))), int(rng.integers(-1, 5)))
               for _ in range(7)]
    fields = " ".join(" ".join(repr(v) for v in r) for r in records)
    (one, empty) = _harness(csharp, [f"encode {fields}", "encode"])
    assert bytes.fromhex(one) == spec.pack_outcomes(records)
    assert spec.unpack_outcomes(bytes.fromhex(one)) == records
    assert bytes.fromhex(empty) == spec.pack_outcomes([])


def test_human_controls_map_to_the_spec_moves_and_turns(csharp):
    directions = {name: angle for name, angle in zip(spec.MOVE_NAMES, spec.MOVE_ANGLES,
                                                     strict=True) if angle is not None}
    commands = [f"stick {math.sin(math.radians(a))!r} {math.cos(math.radians(a))!r}"
                for a in directions.values()]
    commands += ["stick 0 0", "stick 0.2 0.3", "buttons 0 0", "buttons 1 0", "buttons 0 1",
                 "buttons 1 1"]
    answers = [int(a) for a in _harness(csharp, commands)]
    assert [spec.MOVE_NAMES[a] for a in answers[:8]] == list(directions)
    assert [spec.MOVE_NAMES[a] for a in answers[8:10]] == ["none", "none"]
    assert [spec.TURN_NAMES[a] for a in answers[10:]] == ["none", "left", "right", "none"]


# -- constants shared with Python ------------------------------------------------------------------

def csharp_constants(path: Path, class_name: str) -> dict[str, object]:
    """The literal-valued fields of a C# class (consts and static readonly arrays)."""
    root = parse(path)
    (cls,) = [n for n in walk(root) if n.type == "class_declaration"
              and n.child_by_field_name("name").text.decode() == class_name]
    values: dict[str, object] = {}
    for declarator in (n for n in walk(cls) if n.type == "variable_declarator"):
        name = declarator.child_by_field_name("name").text.decode()
        text = declarator.text.decode().split("=", 1)[1].strip()
        text = re.sub(r"(?<=\d)f\b", "", text.replace("double.NaN", "None"))
        values[name] = ast.literal_eval(text.replace("{", "[").replace("}", "]"))
    return values


def test_shared_constants_equal_the_python_spec(layout):
    cs = csharp_constants(script("SharedSpec"), "SharedSpec")
    assert (cs["ObsHeight"], cs["ObsWidth"], cs["ObsChannels"]) == spec.ObservationSpec().shape
    assert tuple(cs["ActionBranches"]) == spec.ACTION_BRANCHES
    assert (cs["MoveBranch"], cs["TurnBranch"]) == (0, 1)
    assert tuple(cs["MoveNames"]) == spec.MOVE_NAMES
    assert tuple(cs["MoveAngles"]) == spec.MOVE_ANGLES
    assert tuple(cs["TurnNames"]) == spec.TURN_NAMES
    assert tuple(cs["TurnSigns"]) == spec.TURN_SIGNS
    assert tuple(cs["Pads"]) == spec.PADS
    assert tuple(cs["Outcomes"]) == spec.OUTCOMES
    assert cs["OutcomeFell"] == spec.OUTCOME_CODES["fell"]
    assert cs["OutcomeTimeout"] == spec.OUTCOME_CODES["timeout"]
    assert cs["Running"] == spec.RUNNING
    assert cs["DecisionsPerSecond"] == spec.DECISIONS_PER_SECOND
    assert cs["MaxDecisions"] == spec.MAX_DECISIONS
    assert cs["BehaviorName"] == spec.BEHAVIOR_NAME
    assert cs["CameraSensorName"] == spec.CAMERA_SENSOR_NAME
    assert cs["TargetParameter"] == spec.TARGET_PARAMETER
    assert cs["NoTarget"] == spec.NO_TARGET
    assert cs["SeedParameter"] == spec.SEED_PARAMETER
    assert cs["SeedModulus"] == spec.SEED_MODULUS
    assert (cs["StartSpawnParameter"], cs["StartXParameter"], cs["StartYParameter"],
            cs["StartHeadingParameter"], cs["StartNone"]) == (
        spec.START_SPAWN_PARAMETER, spec.START_X_PARAMETER, spec.START_Y_PARAMETER,
        spec.START_HEADING_PARAMETER, spec.START_NONE)
    assert cs["OutcomeChannelId"] == spec.OUTCOME_CHANNEL_ID
    assert cs["OutcomeRecordFormat"] == spec.OUTCOME_RECORD_FORMAT
    import struct

    assert cs["OutcomeRecordBytes"] == struct.calcsize(spec.OUTCOME_RECORD_FORMAT)


def test_outcome_channel_writes_the_spec_record_in_order():
    """OutcomeRecords.Encode writes count then the fields in the order and types of the spec."""
    text = (script("OutcomeRecords")).read_text()
    record = csharp_struct_fields(script("OutcomeRecords"), "OutcomeRecord")
    writes = [w.split(".")[-1] for w in re.findall(r"writer\.Write\(([\w.]+)\)", text)]
    assert writes[0] == "Count" and writes[1:] == list(record), writes
    codes = {"int": "i", "float": "f"}
    assert "<" + "".join(codes[t] for t in record.values()) == spec.OUTCOME_RECORD_FORMAT
    channel = (script("OutcomeChannel")).read_text()
    assert "new Guid(SharedSpec.OutcomeChannelId)" in channel
    assert "SideChannelManager.RegisterSideChannel" in channel
    assert re.search(r"class OutcomeChannel\s*:\s*SideChannel", channel)


def csharp_struct_fields(path: Path, name: str) -> dict[str, str]:
    root = parse(path)
    (node,) = [n for n in walk(root) if n.type in ("struct_declaration", "class_declaration")
               and n.child_by_field_name("name").text.decode() == name]
    fields = {}
    for declaration in (n for n in walk(node) if n.type == "field_declaration"):
        modifiers = {m.text.decode() for m in declaration.children if m.type == "modifier"}
        if "public" not in modifiers or modifiers & {"static", "const"}:
            continue
        variables = next(c for c in declaration.children if c.type == "variable_declaration")
        type_name = variables.child_by_field_name("type").text.decode()
        for d in (c for c in variables.children if c.type == "variable_declarator"):
            fields[d.child_by_field_name("name").text.decode()] = type_name
    return fields


def test_target_pad_and_spawn_seed_are_read_from_environment_parameters():
    agent = (script("JumppadAgent")).read_text()
    assert re.search(r"EnvironmentParameters\.GetWithDefault\(\s*SharedSpec\.TargetParameter,"
                     r"\s*SharedSpec\.NoTarget\)", agent)
    island = (script("Island")).read_text()
    assert "RegisterCallback(SharedSpec.SeedParameter" in island
    for name in ("StartSpawnParameter", "StartXParameter", "StartYParameter",
                 "StartHeadingParameter"):  # chosen starts (evaluate on --env unity)
        assert f"RegisterCallback(SharedSpec.{name}," in island
    # 10 decisions per second: one academy step per decision, 1/10 s per academy step.
    assert "Time.fixedDeltaTime = 1f / SharedSpec.DecisionsPerSecond;" in island


# -- the generated files -------------------------------------------------------------------------

def test_committed_scene_is_the_generator_output():
    assert check(UNITY) == []


def test_generator_rebuilds_the_committed_files_from_scratch(tmp_path):
    """Delete everything generated (and every .meta of ours but the ONNX importer's, which
    `agentalign unity-personalities` writes); regenerating gives it all back."""
    project = tmp_path / "unity_project"
    shutil.copytree(UNITY, project, ignore=EDITOR_CACHES)
    for folder in unity_scene.GENERATED_FOLDERS:
        shutil.rmtree(project / folder)
    metas = [p for root in (paths.PACKAGE, "Assets") for p in project.joinpath(root).rglob("*.meta")
             if not p.name.endswith(".onnx.meta")]
    for path in [*metas, project / unity_scene.SCENE, project / unity_scene.BUILD_SETTINGS]:
        path.unlink()
    changed = generate(project)
    assert unity_scene.SCENE in changed

    def assets(root: Path) -> set[Path]:
        files = {p.relative_to(root) for folder in (paths.PACKAGE, "Assets")
                 for p in (root / folder).rglob("*") if p.is_file()}
        return files | {Path(unity_scene.BUILD_SETTINGS)}

    committed, rebuilt = assets(UNITY), assets(project)
    assert rebuilt == committed
    for rel in sorted(committed):
        if rel.suffix == ".png":
            from PIL import Image

            with Image.open(UNITY / rel) as a, Image.open(project / rel) as b:
                assert a.tobytes() == b.tobytes(), rel
        else:
            assert (UNITY / rel).read_bytes() == (project / rel).read_bytes(), rel
    assert generate(project) == []  # nothing left to change
    # A missing personality library comes back empty (a filled one is never overwritten).
    (project / unity_scene.LIBRARY).unlink()
    assert generate(project) == [unity_scene.LIBRARY]
    (library,) = read_file(project / unity_scene.LIBRARY)
    assert library.fields["personalities"] == []


def repository_metas() -> list[Path]:
    """Every .meta file of the repository (tracked or new), wherever it is."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.meta"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout
        return sorted(ROOT / line for line in listed.splitlines() if (ROOT / line).exists())
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        return sorted(UNITY.rglob("*.meta"))


def test_every_asset_has_one_meta_and_guids_are_unique():
    """The sample lives once: no GUID appears twice anywhere in the repository (a copy of the
    sample elsewhere would repeat all of them)."""
    guids: dict[str, Path] = {}
    for meta in repository_metas():
        guid = read_meta_guid(meta)
        assert guid, f"{meta.relative_to(ROOT)} has no guid"
        assert guid not in guids, f"{meta} and {guids[guid]} share guid {guid}"
        guids[guid] = meta
    for root in (UNITY / "Assets", PACKAGE):
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(UNITY).as_posix()
            if path.suffix == ".meta":
                assert path.with_suffix("").exists(), f"orphan {rel}"
            elif needs_meta(rel):
                assert Path(f"{path}.meta").exists(), f"{rel} has no .meta"
            else:
                assert not Path(f"{path}.meta").exists(), f"{rel} needs no .meta"
    # Our files start from path-derived GUIDs, so a fresh clone and the generator agree.
    for meta in ours("*.meta"):
        rel = meta.with_suffix("").relative_to(UNITY).as_posix()
        assert read_meta_guid(meta) == guid_for(rel), (
            f"{meta.relative_to(UNITY)}: not the path-derived GUID; if nothing refers to it yet, "
            "delete the .meta and run agentalign unity-scene")


def our_guids(project: Path = UNITY) -> dict[str, Path]:
    metas = [p for root in ("Assets", paths.PACKAGE) for p in (project / root).rglob("*.meta")]
    return {read_meta_guid(p): p.with_suffix("") for p in metas}


def _kind_of(asset: Path) -> str:
    return {".cs": "script", ".mat": "material", ".png": "texture", ".shader": "shader",
            ".asset": "scriptable", ".json": "text", ".md": "text"}.get(asset.suffix, "other")


def _check_references(objects: list[UnityObject], where: str) -> None:
    local = {o.file_id for o in objects}
    guids = our_guids()
    mlagents = set(unity_scene.MLAGENTS_SCRIPTS.values())
    for obj in objects:
        for field, reference in references(obj.fields):
            file_id, guid = reference["fileID"], reference.get("guid")
            context = f"{where} &{obj.file_id} {obj.type_name}.{field}"
            if guid is None:
                assert file_id == 0 or file_id in local, f"{context}: no object &{file_id}"
            elif str(guid) in BUILTIN_GUIDS:
                assert reference["type"] == 0, context
            elif str(guid) in mlagents:
                assert (file_id, reference["type"]) == (MAIN_OBJECT["script"], 3), context
            else:
                assert str(guid) in guids, f"{context}: guid {guid} names no asset of the project"
                kind = _kind_of(guids[str(guid)])
                if kind != "other":  # e.g. an .onnx model: its importer chooses the file id
                    assert file_id == MAIN_OBJECT[kind], f"{context}: not the main object of {kind}"


@pytest.fixture(scope="module")
def scene_objects() -> list[UnityObject]:
    return read_file(UNITY / unity_scene.SCENE)


def test_every_reference_resolves(scene_objects):
    _check_references(scene_objects, "scene")
    for path in [*ours("*.mat"), *ours("*.asset"), UNITY / unity_scene.BUILD_SETTINGS]:
        _check_references(read_file(path), path.name)
    (settings,) = read_file(UNITY / unity_scene.BUILD_SETTINGS)
    (entry,) = settings.fields["m_Scenes"]
    # The development project builds the sample where the Package Manager imports it.
    assert entry["path"] == unity_scene.BUILD_SCENE and entry["enabled"] == 1
    assert entry["guid"] == read_meta_guid(UNITY / f"{unity_scene.SCENE}.meta")


def test_hierarchy_is_consistent(scene_objects):
    by_id = {o.file_id: o for o in scene_objects}
    assert len(by_id) == len(scene_objects), "duplicate file ids"
    transforms = [o for o in scene_objects if o.type_name == "Transform"]
    for obj in scene_objects:
        if obj.type_name == "GameObject":
            for entry in obj.fields["m_Component"]:
                component = by_id[entry["component"]["fileID"]]
                assert component.fields["m_GameObject"]["fileID"] == obj.file_id
            kinds = [by_id[e["component"]["fileID"]].type_name for e in obj.fields["m_Component"]]
            assert kinds[0] == "Transform" and kinds.count("Transform") == 1
        elif "m_GameObject" in obj.fields:
            owner = by_id[obj.fields["m_GameObject"]["fileID"]]
            assert {"component": {"fileID": obj.file_id}} in owner.fields["m_Component"]
    for t in transforms:
        for child in t.fields["m_Children"]:
            assert by_id[child["fileID"]].fields["m_Father"]["fileID"] == t.file_id
        father = t.fields["m_Father"]["fileID"]
        if father:
            assert {"fileID": t.file_id} in by_id[father].fields["m_Children"]
    (roots,) = [o for o in scene_objects if o.type_name == "SceneRoots"]
    assert {r["fileID"] for r in roots.fields["m_Roots"]} == {
        t.file_id for t in transforms if t.fields["m_Father"]["fileID"] == 0}


class Scene:
    """The scene by GameObject path: transforms, and components by type or script name."""

    def __init__(self, objects: list[UnityObject]):
        self.by_id = {o.file_id: o for o in objects}
        scripts = {guid: path.stem for guid, path in our_guids().items()}
        scripts |= {g: name for name, g in unity_scene.MLAGENTS_SCRIPTS.items()}
        self.paths: dict[int, str] = {}
        self.components: dict[str, dict[str, UnityObject]] = {}
        for go in (o for o in objects if o.type_name == "GameObject"):
            parts, current = [], go
            while True:
                parts.append(current.fields["m_Name"])
                transform = self.transform_of(current)
                father = transform.fields["m_Father"]["fileID"]
                if not father:
                    break
                current = self.by_id[self.by_id[father].fields["m_GameObject"]["fileID"]]
            path = "/".join(reversed(parts))
            assert path not in self.components, f"two GameObjects at {path}"
            self.paths[go.file_id] = path
            self.components[path] = {}
            for entry in go.fields["m_Component"]:
                c = self.by_id[entry["component"]["fileID"]]
                key = scripts[str(c.fields["m_Script"]["guid"])] if c.type_name == "MonoBehaviour" \
                    else c.type_name
                self.components[path][key] = c

    def transform_of(self, go: UnityObject) -> UnityObject:
        return self.by_id[go.fields["m_Component"][0]["component"]["fileID"]]

    def __getitem__(self, path: str) -> dict[str, UnityObject]:
        return self.components[path]

    def position(self, path: str) -> np.ndarray:
        p = self[path]["Transform"].fields["m_LocalPosition"]
        return np.array([p["x"], p["y"], p["z"]], dtype=float)

    def rotation(self, path: str) -> np.ndarray:
        q = self[path]["Transform"].fields["m_LocalRotation"]
        return np.array([q["x"], q["y"], q["z"], q["w"]], dtype=float)

    def scale(self, path: str) -> np.ndarray:
        s = self[path]["Transform"].fields["m_LocalScale"]
        return np.array([s["x"], s["y"], s["z"]], dtype=float)

    def path_of(self, reference: dict) -> str:
        component = self.by_id[reference["fileID"]]
        return self.paths[component.fields["m_GameObject"]["fileID"]]


def yaw(heading: float) -> np.ndarray:
    """Unity's rotation about its up axis by `heading` degrees (clockwise seen from above)."""
    h = math.radians(heading) / 2
    return np.array([0.0, math.sin(h), 0.0, math.cos(h)])


def material_of(renderer: UnityObject, project: Path = UNITY) -> dict:
    (ref,) = renderer.fields["m_Materials"]
    (mat,) = read_file(our_guids(project)[str(ref["guid"])])
    props = mat.fields["m_SavedProperties"]
    floats = {k: v for item in props["m_Floats"] for k, v in item.items()}
    colours = {k: v for item in props["m_Colors"] for k, v in item.items()}
    textures = {k: v for item in props["m_TexEnvs"] for k, v in item.items()}
    return {"floats": floats, "colour": colours["_Color"], "texture": textures["_MainTex"],
            "queue": mat.fields["m_CustomRenderQueue"]}


def rgb(colour: dict) -> tuple[int, int, int]:
    return tuple(round(colour[c] * 255) for c in "rgb")


def assert_scene_matches_layout(objects: list[UnityObject], layout: Layout,
                                project: Path = UNITY) -> None:
    scene = Scene(objects)

    def material(path: str) -> dict:
        return material_of(scene[path]["MeshRenderer"], project)

    tol = dict(atol=1e-5)
    # The island: coastline, obstacles, pads, spawns on the Island component (IslandRules).
    island = scene["Island"]["Island"].fields
    np.testing.assert_allclose([(p["x"], p["y"]) for p in island["coastline"]], layout.polygon)
    np.testing.assert_allclose(
        [(r["x"], r["y"], r["x"] + r["width"], r["y"] + r["height"]) for r in island["obstacles"]],
        [(*b.lo, *b.hi) for b in layout.obstacles], **tol)
    assert island["spawnJitter"] == pytest.approx(unity_scene.SPAWN_JITTER)
    # Spawns: layout x, y -> Unity x, z; heading -> rotation about Unity's up axis.
    assert [scene.path_of(r) for r in island["spawns"]] == [
        f"Island/Spawns/{s.name}" for s in layout.spawns]
    for s in layout.spawns:
        path = f"Island/Spawns/{s.name}"
        np.testing.assert_allclose(scene.position(path), [s.position[0], 0, s.position[1]], **tol)
        np.testing.assert_allclose(scene.rotation(path), yaw(s.heading), **tol)
    # Pads: in outcome order, trigger volumes with the layout's centre and radius.
    assert [scene.path_of(r) for r in island["jumppads"]] == [
        f"Island/Jumppads/Jumppad {p.name}" for p in layout.pads]
    for index, pad in enumerate(layout.pads):
        path = f"Island/Jumppads/Jumppad {pad.name}"
        jumppad = scene[path]["Jumppad"].fields
        assert (jumppad["padIndex"], spec.PADS[index]) == (index, pad.name)
        assert jumppad["radius"] == pytest.approx(pad.radius)
        x, _, z = scene.position(path)
        np.testing.assert_allclose((x, z), pad.position, **tol)
        collider = scene[path]["MeshCollider"].fields
        assert (collider["m_IsTrigger"], collider["m_Convex"]) == (1, 1)
        np.testing.assert_allclose(scene.scale(path)[[0, 2]], 2 * pad.radius, **tol)
    # Obstacles: box colliders over the footprints (drawn flat, in the ground texture).
    for box in layout.obstacles:
        path = f"Island/Obstacles/{box.name}"
        size = scene[path]["BoxCollider"].fields["m_Size"]
        np.testing.assert_allclose((size["x"], size["z"]), box.size, **tol)
        x, _, z = scene.position(path)
        np.testing.assert_allclose((x, z), box.center, **tol)
        assert "MeshRenderer" not in scene[path]
    for mark in layout.landmarks:
        x, _, z = scene.position(f"Island/Landmarks/{mark.name}")
        np.testing.assert_allclose((x, z), mark.position, **tol)
    # Beacons: upright cylinders, diameter = width, in the item's palette colour.
    with_beacons = [c for c in (*layout.pads, *layout.landmarks) if c.beacon_height > 0]
    assert {p for p in scene.components if p.startswith("Island/Beacons/")} == {
        f"Island/Beacons/{c.name} beacon" for c in with_beacons}
    for item in with_beacons:
        path = f"Island/Beacons/{item.name} beacon"
        np.testing.assert_allclose(scene.position(path), [item.position[0], item.beacon_height / 2,
                                                          item.position[1]], **tol)
        np.testing.assert_allclose(scene.scale(path), [item.beacon_width, item.beacon_height / 2,
                                                       item.beacon_width], **tol)
        assert rgb(material(path)["colour"]) == layout.palette[
            item.colour]
    # Ground: the world rectangle, flat; water and ground cut where Python paints haze.
    (wx0, wy0), (wx1, wy1) = layout.world_min, layout.world_max
    np.testing.assert_allclose(scene.position("Island/Ground"),
                               [(wx0 + wx1) / 2, 0, (wy0 + wy1) / 2], **tol)
    np.testing.assert_allclose(scene.scale("Island/Ground")[:2], [wx1 - wx0, wy1 - wy0], **tol)
    flat = np.array([math.sin(math.pi / 4), 0, 0, math.cos(math.pi / 4)])
    np.testing.assert_allclose(scene.rotation("Island/Ground"), flat, **tol)
    pitch = math.radians(layout.camera.pitch)
    haze = layout.camera.far * math.cos(pitch) + layout.camera.height * math.sin(pitch)
    for path, colour in (("Island/Ground", (255, 255, 255)),
                         ("Island/Water", layout.palette["water"])):
        mat = material(path)
        assert mat["floats"]["_FarDepth"] == pytest.approx(haze, rel=1e-6)
        assert rgb(mat["colour"]) == colour
    # The agent: ML-Agents components, the spec's behaviour, 10 decisions per second.
    agent = scene["JumppadAgent"]
    behaviour = agent["BehaviorParameters"].fields
    brain = behaviour["m_BrainParameters"]
    branches = bytes.fromhex(brain["m_ActionSpec"]["BranchSizes"])
    assert tuple(np.frombuffer(branches, "<i4")) == spec.ACTION_BRANCHES
    assert brain["m_ActionSpec"]["m_NumContinuousActions"] == 0
    assert brain["VectorObservationSize"] == 0
    assert behaviour["m_BehaviorName"] == spec.BEHAVIOR_NAME and behaviour["TeamId"] == 0
    requester = agent["DecisionRequester"].fields
    assert requester["DecisionPeriod"] * unity_scene.FIXED_DELTA_TIME == pytest.approx(
        1 / spec.DECISIONS_PER_SECOND)
    assert requester["TakeActionsBetweenDecisions"] == 0
    fields = agent["JumppadAgent"].fields
    assert fields["MaxStep"] == 0  # episodes end on the agent's own decision count
    assert (fields["moveSpeed"], fields["turnRate"], fields["radius"]) == pytest.approx(
        (layout.agent.move_speed, layout.agent.turn_rate, layout.agent.radius))
    assert scene.path_of(fields["island"]) == "Island"
    assert agent["DemonstrationRecorder"].fields["Record"] == 0
    # The camera sensor: 64x64 RGB, PNG, the spec's name, the rig's camera.
    sensor = agent["CameraSensorComponent"].fields
    assert (sensor["m_Width"], sensor["m_Height"]) == (spec.OBS_WIDTH, spec.OBS_HEIGHT)
    assert (sensor["m_Grayscale"], sensor["m_Compression"], sensor["m_ObservationStacks"]) == (
        0, 1, 1)
    assert sensor["m_SensorName"] == spec.CAMERA_SENSOR_NAME
    assert scene.path_of(sensor["m_Camera"]) == "JumppadAgent/CameraRig"
    # The rig: `back` behind, `height` up, pitched down, the layout's vertical field of view.
    cam = layout.camera
    np.testing.assert_allclose(scene.position("JumppadAgent/CameraRig"), [0, cam.height,
                                                                          -cam.back], **tol)
    half = math.radians(cam.pitch) / 2
    np.testing.assert_allclose(scene.rotation("JumppadAgent/CameraRig"),
                               [math.sin(half), 0, 0, math.cos(half)], **tol)
    camera = scene["JumppadAgent/CameraRig"]["Camera"].fields
    assert camera["field of view"] == pytest.approx(cam.vertical_fov)
    assert camera["m_FOVAxisMode"] == 0  # vertical
    assert camera["m_ClearFlags"] == 2 and rgb(camera["m_BackGroundColor"]) == layout.palette[
        "haze"]
    assert camera["far clip plane"] > 2 * math.hypot(wx1 - wx0, wy1 - wy0)  # beacons: any range
    # The backdrop fills the vertical field of view exactly, one texel row per image row.
    backdrop = "JumppadAgent/CameraRig/Backdrop"
    distance = scene.position(backdrop)[2]
    assert scene.scale(backdrop)[1] == pytest.approx(
        2 * distance * math.tan(math.radians(cam.vertical_fov) / 2), rel=1e-6)
    backdrop_material = material(backdrop)
    assert backdrop_material["queue"] == 1000 and backdrop_material["floats"]["_ZTest"] == 8
    # The avatar: the embedded renderer's cylinder (radius, height), its top in the shade colour.
    a = layout.agent
    np.testing.assert_allclose(scene.scale("JumppadAgent/Avatar"),
                               [2 * a.radius, a.height / 2, 2 * a.radius], **tol)
    assert rgb(material("JumppadAgent/Avatar")["colour"]) == \
        layout.palette["avatar"]
    assert rgb(material("JumppadAgent/AvatarTop")["colour"]) == \
        layout.palette["avatar_shade"]
    # Personalities: the switcher drives this agent.
    switcher = scene["Personalities"]["PersonalitySwitcher"].fields
    assert scene.path_of(switcher["agent"]) == "JumppadAgent"


def test_scene_matches_the_layout(scene_objects, layout):
    assert_scene_matches_layout(scene_objects, layout)


def test_textures_are_the_embedded_renderers_pictures(layout):
    from PIL import Image

    from agentalign.envs.render import IslandRenderer

    renderer = IslandRenderer(layout, spec.OBS_HEIGHT, spec.OBS_WIDTH)
    with Image.open(SAMPLE / "Textures" / "IslandGround.png") as image:
        ground = np.asarray(image.convert("RGB"))
    # North up, one pixel per raster cell; sample the texture where the renderer samples cells.
    rows, cols = ground.shape[:2]
    assert (rows, cols) == (round((layout.world_max[1] - layout.world_min[1]) / layout.cell),
                            round((layout.world_max[0] - layout.world_min[0]) / layout.cell))
    x = layout.world_min[0] + (np.arange(cols) + 0.5) * layout.cell
    y = layout.world_max[1] - (np.arange(rows) + 0.5) * layout.cell
    xx, yy = np.meshgrid(x, y)
    cells = renderer.cell_index(np.stack([xx.ravel(), yy.ravel()], axis=1))
    python = renderer.palette[renderer.raster_flat[cells]].reshape(rows, cols, 3)
    # The two rasters' cell grids may be offset by under a cell: compare by agreement.
    assert (python == ground).all(axis=2).mean() > 0.97
    for pad in layout.pads:  # a pad's centre, in its own colour
        col = int((pad.position[0] - layout.world_min[0]) / layout.cell)
        row = int((layout.world_max[1] - pad.position[1]) / layout.cell)
        assert tuple(ground[row, col]) == layout.palette[pad.colour]
    with Image.open(SAMPLE / "Textures" / "Backdrop.png") as image:
        backdrop = np.asarray(image.convert("RGB"))
    assert backdrop.shape[0] == spec.OBS_HEIGHT
    r0 = renderer.first_ground_row
    np.testing.assert_array_equal(backdrop[:r0, 0], renderer.background[:, 0])


def test_scene_serializes_only_fields_the_scripts_declare(scene_objects):
    scene = Scene(scene_objects)
    header = {"m_ObjectHideFlags", "m_CorrespondingSourceObject", "m_PrefabInstance",
              "m_PrefabAsset", "m_GameObject", "m_Enabled", "m_EditorHideFlags", "m_Script",
              "m_Name", "m_EditorClassIdentifier"}
    seen = set()
    for components in scene.components.values():
        for name, component in components.items():
            if component.type_name != "MonoBehaviour" or name in unity_scene.MLAGENTS_SCRIPTS:
                continue
            declared = set(csharp_struct_fields(script(name), name))
            if name == "JumppadAgent":
                declared |= AGENT_BASE_FIELDS
            assert set(component.fields) - header == declared, name
            seen.add(name)
    assert seen == {"Island", "Jumppad", "JumppadAgent", "PersonalitySwitcher"}
    (library,) = read_file(UNITY / unity_scene.LIBRARY)
    assert set(library.fields) - header == set(
        csharp_struct_fields(script("PersonalityLibrary"), "PersonalityLibrary"))


def test_a_changed_layout_gives_a_scene_that_follows_it(tmp_path):
    """The generator is general: move pads and spawns, drop a rock, and regenerate."""
    raw = json.loads(LAYOUT_JSON.read_text())
    changed = copy.deepcopy(raw)
    changed["jumppads"][0]["position"] = [-12.0, 10.0]
    changed["jumppads"][2]["radius"] = 2.0
    changed["spawns"][1] = {"name": "spawn_2", "position": [-1.0, -15.0], "heading": 30.0}
    changed["obstacles"] = changed["obstacles"][:-1]
    changed["camera"]["pitch"] = 20.0
    layout = parse_layout(changed, "changed")
    project = tmp_path / "unity_project"
    shutil.copytree(UNITY, project, ignore=EDITOR_CACHES)
    generate(project, layout)
    assert_scene_matches_layout(read_file(project / unity_scene.SCENE), layout, project)
    assert check(project, layout) == []
    assert check(project) != []  # and the committed layout no longer matches it


# -- the stand-in player, the build script, models -----------------------------------------------

def test_stand_in_player_declares_what_the_unity_agent_declares(scene_objects):
    from agentalign.envs import player

    scene = Scene(scene_objects)
    behaviour = scene["JumppadAgent"]["BehaviorParameters"].fields
    unity_behavior_id = f"{behaviour['m_BehaviorName']}?team={behaviour['TeamId']}"
    assert unity_behavior_id == player.BEHAVIOR_ID
    manifest = json.loads((UNITY / "Packages" / "manifest.json").read_text())
    assert manifest["dependencies"]["com.unity.ml-agents"] == player.PACKAGE_VERSION
    island_player = player.IslandPlayer(player.parse_args([]))
    brain = island_player.brain_parameters()
    assert tuple(brain.action_spec.discrete_branch_sizes) == spec.ACTION_BRANCHES
    assert brain.action_spec.num_continuous_actions == 0
    sensor = scene["JumppadAgent"]["CameraSensorComponent"].fields
    frame = np.zeros((sensor["m_Height"], sensor["m_Width"], 3), np.uint8)
    (observation,) = island_player.agent_info(1, frame).observations
    assert observation.name == sensor["m_SensorName"]
    assert list(observation.shape) == [3, sensor["m_Height"], sensor["m_Width"]]  # CHW, RGB
    assert observation.compression_type == sensor["m_Compression"]  # 1 = PNG in both


def test_an_exported_personality_fits_the_scenes_agent(scene_objects):
    """What `agentalign export` writes passes check-model against this agent's sensor and
    branches, as the Behavior Parameters inspector would check it (untrained weights)."""
    import torch

    from agentalign.export.contract import check_model, errors
    from agentalign.export.onnx import export_model
    from agentalign.models.policy import Policy, get_config

    agent = Scene(scene_objects)["JumppadAgent"]
    sensor = agent["CameraSensorComponent"].fields
    brain = agent["BehaviorParameters"].fields["m_BrainParameters"]
    branches = tuple(np.frombuffer(bytes.fromhex(brain["m_ActionSpec"]["BranchSizes"]), "<i4"))
    torch.manual_seed(0)
    model = export_model(Policy(get_config("tiny")))
    channels = 1 if sensor["m_Grayscale"] else 3
    findings = check_model(model, (channels, sensor["m_Height"], sensor["m_Width"]), branches)
    assert not errors(findings), findings


def test_personality_models_pass_check_model():
    from agentalign.export.contract import check_model, errors

    folder = UNITY / paths.SAMPLE_PERSONALITIES
    for model in sorted(folder.glob("*.onnx")):
        assert not errors(check_model(model)), model
        assert model.with_suffix(".json").exists(), f"{model.name} has no card"
    allowed = {".onnx", ".json", ".md", ".asset", ".meta"}
    assert {p.suffix for p in folder.iterdir()} <= allowed


def test_build_script_runs_the_documented_unity_command():
    script = ROOT / "build" / "build_unity.sh"
    text = script.read_text()
    for part in ("-batchmode", "-quit", "-projectPath",
                 "-executeMethod AgentAlign.Editor.DevProject.ImportSample",
                 "-executeMethod AgentAlign.Editor.Build.Linux", "-logFile -"):
        assert part in text, part
    assert script.stat().st_mode & 0o111, "build/build_unity.sh is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True)
    build = (DEV_EDITOR / "Build.cs").read_text()
    assert "BuildTarget.StandaloneLinux64" in build and "BuildPipeline.BuildPlayer" in build
    assert re.search(r"namespace AgentAlign\.Editor\b", build) and "static void Linux()" in build
    # The player lands in build/out/, which git ignores.
    assert "../build/out/" in build
    assert "build/out/" in (ROOT / ".gitignore").read_text()


def test_cli_regenerates_and_checks_the_scene(capsys):
    from agentalign.cli import main

    assert main(["unity-scene", "--project", str(UNITY), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["unity-scene", "--project", str(ROOT / "docs")]) == 2
    assert "not a Unity project" in capsys.readouterr().err


def test_layout_fixture_is_the_committed_layout(layout):
    assert layout.digest == load_layout(LAYOUT_JSON).digest
