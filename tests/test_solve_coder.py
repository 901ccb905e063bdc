"""``localcode solve`` with the real shipped coder (Qwen2.5-Coder-1.5B from PyPI parts), no scripted model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gguf, pytest.mark.slow]


def test_solve_with_qwen_coder_makes_the_test_pass(tmp_path: Path, coder_gguf: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "calc.py").write_text('def add(a, b):\n    """Return the sum of a and b."""\n    pass\n')
    (project / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n    assert add(-1, 1) == 0\n")
    env = {**os.environ, "LOCALCODE_HOME": str(tmp_path / "home")}
    env.pop("LOCALCODE_TEST_SCRIPT", None)
    proc = subprocess.run(
        [sys.executable, "-m", "localcode", "solve", "Implement add(a, b) in calc.py.",
         "--agent", "gguf/qwen2.5-coder-1.5b", "--json",
         # the file assembled once in the user's models cache (this test's LOCALCODE_HOME is empty)
         "--model", str(coder_gguf)],
        cwd=project, env=env, text=True, capture_output=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_calc.py"],
                           cwd=project, text=True, capture_output=True, timeout=120)
    assert tests.returncode == 0, (project / "calc.py").read_text() + "\n" + proc.stderr[-3000:]
