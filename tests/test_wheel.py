"""A wheel built from the repository installs into a plain venv and runs outside the checkout.

Builds the wheel with ``python -m build`` from a copy of the tracked files, installs it with
its base dependencies (and nothing else: no extras, no system site-packages, no editable
finder that imports ``importlib.util`` as a side effect) into a fresh virtualenv, and runs
the console script ``localcode`` and every subcommand's ``--help`` from another folder.
The build and an editable install of the same copy must print no setuptools warning.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

HELP_SECONDS = 0.6
"""The issue's start-up budget for ``localcode [COMMAND] --help``."""

# What setuptools prints when the data folders or the package layout are not declared the way
# it wants ("Package 'localcode.agents.gguf' is absent from the `packages` configuration",
# "Please be careful with folders in your working directory ...", deprecated license table).
SETUPTOOLS_WARNING = re.compile(r"SetuptoolsWarning|SetuptoolsDeprecationWarning|BuildBackendWarning|"
                                r"absent from the `packages`|Please be careful with folders")


def clean_env() -> dict[str, str]:
    """This environment without what would let the checkout leak into another venv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def copy_tracked_files(dest: Path) -> None:
    """Copy the checkout's files as git sees them (tracked, plus new files not ignored; symlinks stay
    symlinks), leaving build/, egg-info and other ignored output behind."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = raw.decode()
        src = REPO / rel
        dst = dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        elif src.is_file():
            dst.write_bytes(src.read_bytes())


def fastest_runs(commands: list[list[str]], cwd: Path, env: dict[str, str], budget: float,
                 max_rounds: int = 12) -> tuple[dict[str, float], int]:
    """The shortest wall time of each command (each run must exit 0), and the rounds it took.

    The minimum is the honest figure for start-up cost on a shared machine: other jobs can only
    make a run slower, never faster. Rounds run every command once, interleaved, and continue
    (a short pause between them) until each command has had a run within ``budget`` or
    ``max_rounds`` are done, so a burst of load from other jobs is waited out, not measured.
    """
    best = {" ".join(c): float("inf") for c in commands}
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        for argv in commands:
            t0 = time.perf_counter()
            out = _run(argv, cwd, env, timeout=120)
            best[" ".join(argv)] = min(best[" ".join(argv)], time.perf_counter() - t0)
            assert "Usage: localcode" in out, out
        if all(v < budget for v in best.values()):
            break
        time.sleep(2)
    return best, rounds


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    build_dir = tmp_path / "build-src"
    copy_tracked_files(build_dir)
    # An isolated build fetches setuptools and wheel from PyPI (reachable on CI).
    build_log = _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(build_dir)], cwd=tmp_path)
    assert not SETUPTOOLS_WARNING.search(build_log), build_log[-4000:]
    wheels = list(dist.glob("localcode-*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    for prefix in ("localcode/agents/gguf/", "localcode/agents/templates/", "localcode/prompts/",
                   "localcode/docker/", "localcode/harness/", "localcode/backends/"):
        assert any(n.startswith(prefix) for n in names), f"{prefix} is not in the wheel"
    assert "localcode/prompts/bench_try1.md" in names and "localcode/prompts/bench_retry.md" in names
    assert "localcode/docker/Dockerfile" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)

    # A plain venv: the wheel and its base dependencies, nothing else.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheels[0])], cwd=tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = clean_env()
    env["LOCALCODE_HOME"] = str(tmp_path / "home")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    localcode = str(venv / "bin" / "localcode")
    where = _run([str(py), "-c", "import localcode, localcode.harness.bench as b; print(localcode.__file__); "
                  "print(b.__file__)"], cwd=outside, env=env)
    for line in where.strip().splitlines():
        assert str(venv) in line and str(REPO) not in line, where

    # The console script itself (not `python -m`), every subcommand the wheel has, within the start-up budget.
    commands = _run([str(py), "-c", "from localcode.cli import COMMANDS; print(' '.join(sorted(COMMANDS)))"],
                    cwd=outside, env=env).split()
    assert {"agents", "bench", "serve", "setup", "solve"} <= set(commands), commands
    top = _run([localcode, "--help"], outside, env)
    for name in commands:
        assert name in top, top
    timings, rounds = fastest_runs([[localcode, *args, "--help"] for args in ([], *([n] for n in commands))],
                                   outside, env, HELP_SECONDS)
    shown = {k.replace(str(venv / "bin") + "/", ""): round(v, 3) for k, v in timings.items()}
    print(f"start-up, fastest of {rounds} round(s):", shown)
    slow = {k: v for k, v in shown.items() if v >= HELP_SECONDS}
    assert not slow, f"--help took {HELP_SECONDS} s or more in each of {rounds} rounds: {slow}"

    assert "0.1.0" in _run([localcode, "--version"], cwd=outside, env=env)
    agents = _run([localcode, "agents", "--json"], cwd=outside, env=env)
    assert "oracle" in agents and "none" in agents and "gguf/gemma-3-270m" in agents
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


@pytest.mark.slow
def test_editable_install_prints_no_setuptools_warning(tmp_path):
    src = tmp_path / "src"
    copy_tracked_files(src)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py = str(venv / "bin" / "python")
    _run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "pip"], cwd=tmp_path)
    log = _run([py, "-m", "pip", "install", "--disable-pip-version-check", "-e", str(src)], cwd=tmp_path)
    assert not SETUPTOOLS_WARNING.search(log), log[-4000:]
    # The editable install maps the whole package, backends and harness included, onto the copy.
    where = _run([py, "-c", "import localcode.backends.base as b, localcode.harness.dataset as d, localcode.paths as p; "
                  "print(b.__file__); print(d.__file__); print(p.package_dir('prompts'))"], cwd=tmp_path)
    for line in where.strip().splitlines():
        assert line.startswith(str(src)), where
