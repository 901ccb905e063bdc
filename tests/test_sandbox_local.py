"""LocalSandbox: the host-toolchain sandbox (no Docker). Real processes, short timeouts."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from localcode.errors import DockerUnavailable, SandboxError
from localcode.harness.sandbox import ExecResult, LocalSandbox, OutputBuffer


@pytest.fixture()
def box(tmp_path):
    root = tmp_path / "root"
    (root / "task").mkdir(parents=True)
    (root / "task" / "input.txt").write_text("hello\n")
    with LocalSandbox(root, cache_dir=tmp_path / "cache") as sandbox:
        yield sandbox


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its parent counts as gone
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def test_runs_in_a_copy_and_reports_exit_code_and_output(box):
    ws = box.root / "task"
    r = box.exec(["sh", "-c", "cat input.txt; echo oops >&2; mkdir build; echo x > input.txt; exit 3"], 10, ws)
    assert isinstance(r, ExecResult)
    assert r.exit_code == 3 and not r.timed_out
    assert "hello" in r.output and "oops" in r.output
    # the workspace is untouched: the command ran in a private copy
    assert sorted(p.name for p in ws.iterdir()) == ["input.txt"]
    assert (ws / "input.txt").read_text() == "hello\n"


def test_output_shows_the_workspace_path_not_the_copy(box):
    ws = box.root / "task"
    r = box.exec(["sh", "-c", "pwd"], 10, ws)
    assert r.output.strip() == str(ws.resolve())


def test_timeout_kills_the_whole_process_group(box, tmp_path):
    ws = box.root / "task"
    pidfile = tmp_path / "bg.pid"
    script = f"sleep 300 & echo $! > {pidfile}; {sys.executable} -c 'while True: pass'"
    start = time.monotonic()
    r = box.exec(["sh", "-c", script], 1.5, ws)
    elapsed = time.monotonic() - start
    assert r.timed_out and r.exit_code is None
    assert 1.4 <= r.duration_s < 10 and elapsed < 10
    bg = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(bg) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(bg), "a background process of the timed-out command survived"
    # and the sandbox still works
    assert box.exec(["true"], 5, ws).exit_code == 0


def test_background_leftovers_are_killed_after_a_normal_exit(box, tmp_path):
    ws = box.root / "task"
    pidfile = tmp_path / "bg.pid"
    r = box.exec(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; exit 0"], 10, ws)
    assert r.exit_code == 0 and not r.timed_out
    bg = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(bg) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(bg)


def test_cwd_outside_root_is_rejected(box, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(ValueError, match="not under the sandbox root"):
        box.exec(["true"], 5, outside)


def test_missing_tool_is_a_sandbox_error(box):
    with pytest.raises(SandboxError, match="no-such-tool-xyz is not installed"):
        box.exec(["no-such-tool-xyz"], 5, box.root / "task")


def test_closed_sandbox_refuses(tmp_path):
    (tmp_path / "t").mkdir()
    box = LocalSandbox(tmp_path)
    box.close()
    box.close()  # idempotent
    with pytest.raises(SandboxError, match="closed"):
        box.exec(["true"], 5, tmp_path / "t")


def test_huge_output_is_bounded(box):
    r = box.exec([sys.executable, "-c", "import sys\nfor i in range(400000): print('x' * 40, i)"], 30, box.root / "task")
    assert r.exit_code == 0
    assert len(r.output) < 1.1 * (1 << 20)
    assert "bytes of output omitted" in r.output
    assert r.output.rstrip().endswith("399999")


def test_output_buffer_keeps_head_and_tail():
    buf = OutputBuffer(limit=10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"qrst"):
        buf.write(chunk)
    text = buf.text()
    assert text.startswith("abcde") and text.endswith("pqrst")
    assert "10 bytes of output omitted" in text


def test_unreachable_engine_is_one_actionable_line(tmp_path, monkeypatch):
    from localcode.harness.docker_sandbox import DockerSandbox

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(DockerUnavailable) as info:
        DockerSandbox(tmp_path, "any-image")
    msg = str(info.value)
    assert msg == f"Docker engine not reachable at unix://{tmp_path}/no-docker.sock: start Docker Desktop or dockerd"
    assert "\n" not in msg and os.environ["DOCKER_HOST"].endswith("no-docker.sock")


def test_runner_with_the_local_sandbox_python(tmp_path):
    """The same TestRunner on host toolchains: pytest is on every machine that runs these tests."""
    from sandbox_util import dataset_root

    from localcode.harness.dataset import load_dataset
    from localcode.harness.oracle import reference_files
    from localcode.harness.runner import TestRunner
    from localcode.harness.workspace import create_workspace

    ex = load_dataset(dataset_root(), warn=False).by_id()["python/bowling"]
    with LocalSandbox(tmp_path, cache_dir=tmp_path / "cache") as box:
        runner = TestRunner(box, timeout=60)
        ref = create_workspace(ex, tmp_path / "ref" / ex.name)
        for dest, src in reference_files(ex).items():
            (ref / dest).write_bytes(src.read_bytes())
        good = runner.run(ex, ref)
        assert good.passed, good.output
        bad = runner.run(ex, create_workspace(ex, tmp_path / "stub" / ex.name))
        assert not bad.passed and bad.exit_code == 1 and "failed" in bad.output
        slow = create_workspace(ex, tmp_path / "slow" / ex.name)
        (slow / ex.solution_files[0]).write_text("while True:\n    pass\n")
        timed = TestRunner(box, timeout=2).run(ex, slow)
        assert timed.timed_out and not timed.passed and "timed out" in timed.output
