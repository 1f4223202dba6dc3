"""Compile the Unity side's C# as Unity would, one assembly per asmdef, with Mono's `mcs`.

Each assembly definition is compiled from the scripts under its folder (sub-folders with an
asmdef of their own excluded) against exactly the assemblies it names: ours by their asmdef
name, the engine's from the reference declarations in tests/csharp_refs. So an asmdef that
forgets a reference, a runtime script that uses the editor API, or a test that needs a type its
assembly cannot see, fails here as it would in the editor. Scripts outside any asmdef (the
development project's Assets/AgentAlign/Editor) compile as Unity's predefined editor assembly,
which sees every auto-referenced assembly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNITY = ROOT / "unity_project"
REFS = ROOT / "tests" / "csharp_refs"
NO_MCS = "mono C# compiler (mcs) not installed: apt-get install mono-mcs"
STUBS = "-nowarn:67,169,649"  # unused events and fields are normal in declarations

# The engine's assemblies, as asmdefs name them -> their reference declarations.
ENGINE = {"UnityEngine": "UnityEngine.cs", "Unity.InferenceEngine": "InferenceEngine.cs",
          "Unity.ML-Agents": "MLAgents.cs", "UnityEditor": "UnityEditor.cs"}
ENGINE_DEPS = {"Unity.InferenceEngine": ["UnityEngine"],
               "Unity.ML-Agents": ["UnityEngine", "Unity.InferenceEngine"],
               "UnityEditor": ["UnityEngine"]}
# Test Framework assemblies a test asmdef names; our tests use plain NUnit only, so nothing of
# theirs needs declaring, but the names must be the real ones.
TEST_RUNNER = {"UnityEngine.TestRunner", "UnityEditor.TestRunner"}
PACKAGE = UNITY / "Packages" / "com.agentalign.personalities"
SAMPLE_SCRIPTS = PACKAGE / "Samples~" / "JumppadIsland" / "Scripts"
# Scripts that use no engine API: compiled with the console harness and run under Mono.
ENGINE_FREE = [PACKAGE / "Runtime" / f"{n}.cs" for n in (
    "SharedSpec", "OutcomeRecords", "PersonalityCycle", "ActionGuard", "PersonalityFit")]
ENGINE_FREE += [SAMPLE_SCRIPTS / f"{n}.cs" for n in ("IslandRules", "Controls")]
# A game's own agent, using the package with nothing of the sample (issue: "use it in your own
# game"): compiled against the Runtime assembly alone.
FOREIGN = ROOT / "tests" / "csharp_foreign"


@dataclass(frozen=True)
class Asmdef:
    path: Path
    data: dict

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def editor_only(self) -> bool:
        return self.data.get("includePlatforms") == ["Editor"]

    def sources(self) -> list[Path]:
        folder = self.path.parent
        nested = {p.parent for p in folder.rglob("*.asmdef")} - {folder}
        return sorted(p for p in folder.rglob("*.cs")
                      if not any(n in p.parents for n in nested))


def asmdefs() -> list[Asmdef]:
    return [Asmdef(p, json.loads(p.read_text())) for p in sorted(UNITY.rglob("*.asmdef"))]


def _mcs(*args: str, cwd: Path) -> None:
    result = subprocess.run(["mcs", "-langversion:7.2", *args], cwd=cwd, capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"mcs {' '.join(args)}:\n{result.stdout}{result.stderr}")


def _library(out: Path, name: str, sources: list[Path], refs: list[str], *extra: str) -> Path:
    dll = out / f"{name}.dll"
    _mcs("-target:library", *extra, *(f"-r:{out / r}.dll" for r in refs), f"-out:{dll}",
         *map(str, sources), cwd=out)
    return dll


def build(out: Path) -> dict[str, Path]:
    """Every assembly of the Unity side (and the engine's stand-ins), name -> dll."""
    if shutil.which("mcs") is None:
        raise FileNotFoundError(NO_MCS)
    built: dict[str, Path] = {}
    for name in ("UnityEngine", "Unity.InferenceEngine", "Unity.ML-Agents", "UnityEditor"):
        built[name] = _library(out, name, [REFS / ENGINE[name]], ENGINE_DEPS.get(name, []), STUBS)
    built["nunit.framework"] = _library(out, "nunit.framework", [REFS / "NUnit.cs"], [], STUBS)
    # The engine-free scripts need no engine assembly at all: a console harness.
    harness = out / "harness.exe"
    _mcs("-warnaserror", f"-out:{harness}", str(REFS / "harness" / "IslandHarness.cs"),
         *map(str, ENGINE_FREE), cwd=out)
    built["harness"] = harness
    defs = asmdefs()
    pending = {a.name: a for a in defs}
    while pending:  # in dependency order
        ready = [a for a in pending.values() if all(
            r in built or r in TEST_RUNNER for r in a.data.get("references", []))]
        if not ready:
            raise AssertionError("asmdefs reference assemblies that do not exist: "
                                 f"{sorted(pending)}")
        for a in ready:
            refs = ["UnityEngine", *(r for r in a.data.get("references", []) if r in built)]
            refs += ["UnityEditor"] if a.editor_only else []
            refs += [p.removesuffix(".dll") for p in a.data.get("precompiledReferences", [])]
            built[a.name] = _library(out, a.name, a.sources(), refs, "-warnaserror")
            del pending[a.name]
    # The development project's editor scripts: Unity's predefined Assembly-CSharp-Editor.
    auto = [a.name for a in defs if a.data.get("autoReferenced", True)]
    built["Assembly-CSharp-Editor"] = _library(
        out, "Assembly-CSharp-Editor", sorted((UNITY / "Assets").rglob("*.cs")),
        ["UnityEngine", "Unity.InferenceEngine", "Unity.ML-Agents", "UnityEditor", *auto],
        "-warnaserror")
    built["ForeignGame"] = _library(
        out, "ForeignGame", sorted(FOREIGN.glob("*.cs")),
        ["UnityEngine", "Unity.InferenceEngine", "Unity.ML-Agents", "AgentAlign.Personalities"],
        "-warnaserror")
    return built


def run_harness(harness: Path, commands: list[str]) -> list[str]:
    """The engine-free console harness's answers to `commands` (one per line), under Mono."""
    import pytest

    if shutil.which("mono") is None:
        pytest.skip("Mono runtime (mono) not installed: apt-get install mono-runtime")
    result = subprocess.run(["mono", str(harness)], input="\n".join(commands),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()
