"""docs/api.md's example script runs as written and prints what it says."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_api_page_script_runs(tmp_path):
    page = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    script = next(b for b in blocks if "collect.run" in b)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env={"OMP_NUM_THREADS": "1",
                                                         "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "corpus: 40 episodes" in result.stdout and "pre-trained: loss" in result.stdout
    assert "'any_pad'" in result.stdout
    assert (tmp_path / "runs" / "api-demo" / "eval" / "results.json").exists()
    again = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0 and "already finished" in again.stdout  # nothing trained twice
    for block in blocks:  # the other snippets run too
        if block is not script:
            exec(compile(block, "docs/api.md", "exec"), {})
