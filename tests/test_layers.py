"""The package's layers (pyproject.toml [tool.importlinter]) hold: no module imports from a layer
above its own, every top-level module is in a layer, and no package has an import cycle."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.fail("lint-imports is missing: pip install -e '.[test]' installs import-linter")
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
    assert "2 kept, 0 broken" in result.stdout


def test_a_module_importing_upwards_breaks_the_layers(tmp_path):
    """The contract can fail: a copy of the package where the rollout loop imports the
    pipeline is refused."""
    copy = tmp_path / "python"
    shutil.copytree(ROOT / "python", copy, ignore=shutil.ignore_patterns("__pycache__"))
    loop = copy / "agentalign" / "rollout" / "loop.py"
    loop.write_text(loop.read_text() + "\nfrom agentalign import pipeline  # noqa\n")
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    result = subprocess.run([lint, "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode != 0
    assert "agentalign.rollout.loop -> agentalign.pipeline" in result.stdout
