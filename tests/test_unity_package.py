"""The Unity side as a UPM package, checked without Unity (docs/unity_project.md).

package.json and the documents Unity's package layout asks for; every asmdef parses, names
assemblies that exist and keeps editor code in the editor; the switcher's rules run under Mono;
the development project imports the sample (never a second copy of it) and builds its scene by
GUID; the install line in the docs points at the package. The C# compiles per assembly in
tests/test_unity_project.py (one shared build, tests/unity_csharp.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agentalign import __version__
from agentalign.unityproj import paths
from agentalign.unityproj import scene as unity_scene
from agentalign.unityproj.unity_yaml import read_file, read_meta_guid
from unity_csharp import TEST_RUNNER, asmdefs, run_harness

ROOT = Path(__file__).resolve().parents[1]
UNITY = ROOT / "unity_project"
PACKAGE = UNITY / paths.PACKAGE
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$")
INSTALL = f"?path=unity_project/Packages/{paths.PACKAGE_NAME}"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((PACKAGE / "package.json").read_text())


def test_package_json_has_what_the_package_manager_reads(manifest):
    assert manifest["name"] == paths.PACKAGE_NAME == PACKAGE.name
    assert re.fullmatch(r"com\.[a-z0-9-]+\.[a-z0-9.-]+", manifest["name"])
    assert SEMVER.match(manifest["version"]) and manifest["version"] == paths.PACKAGE_VERSION
    assert manifest["displayName"] == paths.PACKAGE_DISPLAY_NAME
    assert len(manifest["description"]) > 80 and manifest["unity"] == "6000.0"
    deps = manifest["dependencies"]
    assert deps["com.unity.ml-agents"] == "4.0.0" and deps["com.unity.ai.inference"] == "2.2.1"
    assert all(SEMVER.match(v) for v in deps.values()), "exact versions, no ranges"
    assert {"com.unity.modules.imgui", "com.unity.modules.jsonserialize",
            "com.unity.modules.physics"} <= set(deps)
    assert manifest["author"]["name"] and manifest["license"] == "Apache-2.0"
    assert manifest["keywords"] and manifest["documentationUrl"].startswith("https://")
    (sample,) = manifest["samples"]
    assert sample["displayName"] == paths.SAMPLE_NAME and sample["description"]
    assert sample["path"].startswith("Samples~/") and (PACKAGE / sample["path"]).is_dir()
    assert f"{paths.PACKAGE}/{sample['path']}" == paths.SAMPLE


def test_package_documents_and_version_table(manifest):
    for name in ("README.md", "CHANGELOG.md", "LICENSE.md"):
        assert (PACKAGE / name).stat().st_size > 100, name
    assert f"## [{manifest['version']}]" in (PACKAGE / "CHANGELOG.md").read_text()
    docs = (PACKAGE / "Documentation~" / "index.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith(f"| {manifest['version']} |"))
    for needed in ("6000.0", manifest["dependencies"]["com.unity.ml-agents"],
                   manifest["dependencies"]["com.unity.ai.inference"], __version__):
        assert needed in row, (needed, row)
    assert INSTALL in (PACKAGE / "README.md").read_text() and INSTALL in docs


def test_every_asmdef_parses_and_names_assemblies_that_exist():
    defs = asmdefs()
    names = [a.name for a in defs]
    assert len(names) == len(set(names))
    known = set(names) | {"Unity.ML-Agents", "Unity.InferenceEngine"} | TEST_RUNNER
    for a in defs:
        assert a.path.name == f"{a.name}.asmdef", a.path
        assert set(a.data["references"]) <= known, (a.name, set(a.data["references"]) - known)
        assert a.sources(), f"{a.name} has no scripts"
    by_name = {a.name: a for a in defs}
    runtime = by_name["AgentAlign.Personalities"]
    assert runtime.path.parent == UNITY / paths.RUNTIME
    assert set(runtime.data["references"]) == {"Unity.ML-Agents", "Unity.InferenceEngine"}
    assert not runtime.editor_only and runtime.data["autoReferenced"]
    editor = by_name["AgentAlign.Personalities.Editor"]
    assert editor.path.parent == UNITY / paths.PACKAGE_EDITOR and editor.editor_only
    for name, folder in (("AgentAlign.Personalities.Tests.Editor", "Tests/Editor"),
                         ("AgentAlign.Personalities.Tests", "Tests/Runtime")):
        tests = by_name[name].data
        assert by_name[name].path.parent == PACKAGE / folder
        assert tests["autoReferenced"] is False
        assert tests["defineConstraints"] == ["UNITY_INCLUDE_TESTS"]
        assert tests["overrideReferences"]
        assert tests["precompiledReferences"] == ["nunit.framework.dll"]
        assert set(tests["references"]) >= TEST_RUNNER
    assert by_name["AgentAlign.Personalities.Tests.Editor"].editor_only
    sample = by_name["AgentAlign.Samples.JumppadIsland"]
    assert sample.path.parent == UNITY / paths.SAMPLE
    # Nothing of ours depends on the sample: a game without it compiles (tests/csharp_foreign).
    assert not any(sample.name in a.data["references"] for a in defs)


def test_runtime_holds_the_shared_parts_and_the_sample_the_island():
    runtime = {p.stem for p in (UNITY / paths.RUNTIME).glob("*.cs")}
    assert {"PersonalitySwitcher", "PersonalityLibrary", "OutcomeChannel", "OutcomeRecords",
            "SharedSpec"} <= runtime
    sample = {p.stem for p in (UNITY / paths.SAMPLE_SCRIPTS).glob("*.cs")}
    assert {"JumppadAgent", "Island", "IslandRules", "Jumppad", "Controls"} <= sample
    for path in (UNITY / paths.RUNTIME).glob("*.cs"):
        code = re.sub(r'"[^"\n]*"|//[^\n]*', "", path.read_text())  # code, not strings or comments
        for island_only in ("JumppadAgent", "IslandRules", "Island."):
            assert island_only not in code, f"{path.name} uses the sample's {island_only}"
    assert not (UNITY / "Assets" / "AgentAlign" / "Scripts").exists()


def _harness(csharp: dict[str, Path], commands: list[str]) -> list[str]:
    return run_harness(csharp["harness"], commands)


def _steps(line: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in step.split()) for step in line.split(" | ")]


def test_switcher_rules_under_mono(csharp):
    person, configured = -2, -1
    lines = _harness(csharp, [
        "cycle 3 - first next next next prev prev person next select:2 select:5",
        "cycle 4 1,2 first next next select:1 prev",
        "cycle 2 0,1 first next prev select:0",
        "cycle 0 - first next",
    ])
    assert _steps(lines[0]) == [(1, 0), (1, 1), (1, 2), (1, 0), (1, 2), (1, 1), (1, person),
                                (1, 0), (1, 2), (0, 2)]
    # Personalities that do not fit the agent are skipped and cannot be selected.
    assert _steps(lines[1]) == [(1, 0), (1, 3), (1, 0), (0, 0), (1, 3)]
    # None fits: the agent keeps playing as configured.
    assert _steps(lines[2]) == [(0, configured)] * 3 + [(0, configured)]
    assert _steps(lines[3]) == [(0, configured), (0, configured)]


def test_action_guard_and_fit_under_mono(csharp):
    guard, fits, grey, branches, no_card = _harness(csharp, [
        "guard -1 9 0 9 8 9 9 9 2 3 3 3",
        "fit 3,64,64 9,3 3 64 64 9,3",
        "fit 3,64,64 9,3 1 64 64 9,3",
        "fit 3,64,64 9,3 3 64 64 5",
        "fit - - 3 64 64 9,3",
    ])
    # -1 (the Inference Engine's Multinomial edge case) and 9, 3 (past the branch) become 0.
    assert guard.split() == ["0", "0", "8", "0", "2", "0", "3"]
    assert fits == "ok"
    assert "camera sensor gives 1x64x64" in grey
    assert "branches [9, 3]" in branches and "[5]" in branches
    assert "card" in no_card


def test_development_project_imports_the_sample_and_builds_it_by_guid(manifest):
    dev = (UNITY / paths.DEV_EDITOR / "DevProject.cs").read_text()
    scene_guid = read_meta_guid(UNITY / f"{unity_scene.SCENE}.meta")
    assert f'SceneGuid = "{scene_guid}"' in dev
    assert f'PackageName = "{manifest["name"]}"' in dev
    assert "Sample.FindByPackage" in dev and ".Import(" in dev
    code = re.sub(r"//[^\n]*", "", dev)
    assert "Assets/Samples" not in code, "the imported path is found by GUID, not spelled out"
    build = (UNITY / paths.DEV_EDITOR / "Build.cs").read_text()
    assert "DevProject.EnsureSampleImported" in build and "DevProject.ScenePath()" in build
    project = json.loads((UNITY / "Packages" / "manifest.json").read_text())
    assert manifest["name"] in project["testables"]
    assert project["dependencies"]["com.unity.ml-agents"] == manifest["dependencies"][
        "com.unity.ml-agents"]
    ignored = (UNITY / ".gitignore").read_text()
    assert "/Assets/Samples/" in ignored, "the imported copy of the sample must not be committed"
    # The build settings name the scene where the Package Manager imports it:
    # Assets/Samples/<package displayName>/<version>/<sample displayName>.
    (settings,) = read_file(UNITY / unity_scene.BUILD_SETTINGS)
    (entry,) = settings.fields["m_Scenes"]
    assert entry["path"] == (f"Assets/Samples/{manifest['displayName']}/{manifest['version']}/"
                             f"{manifest['samples'][0]['displayName']}/Scenes/JumppadIsland.unity")
    assert entry["guid"] == scene_guid


def test_the_scene_starts_with_a_personality_from_the_library_beside_the_models():
    objects = read_file(UNITY / unity_scene.SCENE)
    switcher = next(o for o in objects if o.type_name == "MonoBehaviour"
                    and "library" in o.fields and "agent" in o.fields)
    assert switcher.fields["startWithPersonality"] == 1
    library_guid = read_meta_guid(UNITY / f"{unity_scene.LIBRARY}.meta")
    assert switcher.fields["library"]["guid"] == library_guid
    assert Path(unity_scene.LIBRARY).parent.as_posix() == paths.SAMPLE_PERSONALITIES
    filler = (PACKAGE / "Editor" / "PersonalityLibraryFiller.cs").read_text()
    # Filled by path on import and on load, never from committed importer file ids.
    assert "OnPostprocessAllAssets" in filler and "InitializeOnLoadMethod" in filler
    assert "LoadAssetAtPath<ModelAsset>" in filler


def test_docs_carry_the_install_line():
    for doc in (ROOT / "README.md", ROOT / "docs" / "unity_project.md"):
        text = doc.read_text()
        assert INSTALL in text, f"{doc.relative_to(ROOT)} lacks the git URL install line"
    assert (ROOT / INSTALL.removeprefix("?path=")).is_dir()
