"""A wheel built from the repository installs and runs outside the checkout.

Builds the wheel with ``python -m build`` (the ``test`` extra installs it), installs
it into a fresh virtualenv that may reuse the system's heavy dependencies
(``--system-site-packages``), and checks that ``localcode`` itself comes from the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    build_dir = tmp_path / "build-src"
    # Build from a copy of the tracked files so the checkout's build/ and egg-info stay untouched.
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        src = REPO / rel
        if not src.is_file():
            continue
        dst = build_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    # An isolated build fetches setuptools and wheel from PyPI (reachable on CI); the checkout's
    # own environment may lack `wheel`.
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(build_dir)], cwd=tmp_path)
    wheels = list(dist.glob("localcode-*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    for prefix in ("localcode/agents/", "localcode/prompts/", "localcode/docker/", "localcode/harness/",
                   "localcode/backends/"):
        assert any(n.startswith(prefix) for n in names), f"{prefix} is not in the wheel"
    assert "localcode/prompts/bench_try1.md" in names and "localcode/prompts/bench_retry.md" in names
    assert "localcode/docker/Dockerfile" in names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheels[0])], cwd=tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["LOCALCODE_HOME"] = str(tmp_path / "home")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = _run([str(py), "-c", "import localcode, localcode.harness.bench as b; print(localcode.__file__); "
                  "print(b.__file__)"], cwd=outside, env=env)
    for line in where.strip().splitlines():
        assert str(venv) in line and str(REPO) not in line, where
    assert "0.1.0" in _run([str(venv / "bin" / "localcode"), "--version"], cwd=outside, env=env)
    agents = _run([str(venv / "bin" / "localcode"), "agents", "--json"], cwd=outside, env=env)
    assert "oracle" in agents and "none" in agents
    help_text = _run([str(py), "-m", "localcode", "--help"], cwd=outside, env=env)
    assert "bench" in help_text and "setup" in help_text
    data = _run([str(py), "-c", "from localcode import paths; "
                 "print('\\n'.join(str(paths.package_dir(n)) for n in ('agents', 'prompts', 'docker')))"],
                cwd=outside, env=env)
    for line in data.strip().splitlines():
        assert line.startswith(str(venv)), data
        assert any(Path(line).iterdir()), line
    prompt = _run([str(py), "-c", "from localcode.harness.bench import retry_prompt; "
                   "from localcode.harness.dataset import Exercise; "
                   "print(retry_prompt(Exercise(language='python', name='x', path='.', instructions='', "
                   "solution_files=['x.py'], test_files=['x_test.py']), 'boom'))"], cwd=outside, env=env)
    assert "Fix the code in x.py to resolve the errors." in prompt
