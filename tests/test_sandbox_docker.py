"""DockerSandbox against a real engine: lifecycle, limits and hostile solutions.

No Docker mocks. Each hostile solution is Python (the most direct language) and runs
with a short test timeout; after each one the same container must still work and have
no process of it left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from localcode.errors import SandboxError
from localcode.harness.dataset import load_dataset
from localcode.harness.oracle import reference_files
from localcode.harness.runner import TestRunner
from localcode.harness.workspace import create_workspace, workspace_dir
from sandbox_util import container_processes, dataset_root, test_image

EXERCISE = "python/bowling"
MEMORY = "1g"
PIDS = 256


@pytest.fixture(scope="module")
def exercise():
    return load_dataset(dataset_root(), warn=False).by_id()[EXERCISE]


@pytest.fixture(scope="module")
def image():
    return test_image()


@pytest.fixture(scope="module")
def box(image, tmp_path_factory):
    from localcode.harness.docker_sandbox import DockerSandbox

    root = tmp_path_factory.mktemp("sandbox-root")
    with DockerSandbox(root, image, memory=MEMORY, pids_limit=PIDS) as sandbox:
        yield sandbox


def _workspace(box, exercise, name: str, solution: str | None):
    """A workspace for the exercise under the sandbox root; ``solution`` replaces the stub,
    None means the reference solution."""
    ws = create_workspace(exercise, box.root / name / exercise.language / exercise.name)
    if solution is None:
        for dest, src in reference_files(exercise).items():
            (ws / dest).write_bytes(src.read_bytes())
    else:
        (ws / exercise.solution_files[0]).write_text(textwrap.dedent(solution))
    return ws


def _no_leftovers(box) -> list[str]:
    deadline = time.monotonic() + 5
    procs = container_processes(box.container_id)
    while procs and time.monotonic() < deadline:
        time.sleep(0.2)
        procs = container_processes(box.container_id)
    return procs


def _snapshot(root: Path) -> dict[str, tuple[int, float, bytes]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (st.st_mode, st.st_mtime, p.read_bytes() if p.is_file() else b"")
    return out


pytestmark = pytest.mark.docker


def test_exec_basics_and_unprivileged_user(box):
    ws = box.root / "basics"
    ws.mkdir()
    (ws / "in.txt").write_text("hello\n")
    r = box.exec(["sh", "-c", "cat in.txt; id -u; echo err >&2; mkdir build; exit 7"], 30, ws)
    assert r.exit_code == 7 and not r.timed_out
    lines = r.output.split()
    assert lines[0] == "hello" and "err" in lines
    assert int(lines[1]) != 0, "tests must not run as root"
    assert sorted(p.name for p in ws.iterdir()) == ["in.txt"], "the workspace must stay untouched"
    assert box.ping() < 5


def test_reference_passes_and_stub_fails(box, exercise):
    runner = TestRunner(box, timeout=60)
    good = runner.run(exercise, _workspace(box, exercise, "ref", None))
    assert good.passed and good.exit_code == 0, good.output
    stub = create_workspace(exercise, box.root / "stub" / exercise.name)
    bad = runner.run(exercise, stub)
    assert not bad.passed and not bad.timed_out and bad.exit_code not in (0, None)
    assert "failed" in bad.output
    assert str(box.root) not in bad.output  # host paths cleaned for the prompt


def test_infinite_loop_times_out_and_the_next_run_works(box, exercise):
    ws = _workspace(box, exercise, "loop", "while True:\n    pass\n")
    start = time.monotonic()
    outcome = TestRunner(box, timeout=3).run(exercise, ws)
    elapsed = time.monotonic() - start
    assert outcome.timed_out and not outcome.passed and outcome.exit_code is None
    assert 3 <= outcome.duration_s < 12 and elapsed < 20
    assert "timed out" in outcome.output
    assert _no_leftovers(box) == []
    again = TestRunner(box, timeout=60).run(exercise, _workspace(box, exercise, "after-loop", None))
    assert again.passed, again.output


def test_memory_bomb_is_killed_and_the_sandbox_survives(box, exercise):
    bomb = """
        blocks = []
        while True:
            blocks.append(b"x" * (64 << 20))
    """
    outcome = TestRunner(box, timeout=60).run(exercise, _workspace(box, exercise, "membomb", bomb))
    assert not outcome.passed and not outcome.timed_out
    assert outcome.exit_code == 137, outcome.output  # SIGKILL from the cgroup's OOM killer
    assert "killed" in outcome.output
    assert _no_leftovers(box) == []
    assert box.exec(["true"], 10, box.root).exit_code == 0


def test_fork_bomb_hits_the_pids_limit_and_the_sandbox_survives(box):
    ws = box.root / "forkbomb"
    ws.mkdir()
    (ws / "bomb.py").write_text(
        textwrap.dedent(
            """
            import os, time
            reported = False
            while True:
                try:
                    os.fork()
                except OSError as err:
                    if not reported:
                        print("fork failed:", err, flush=True)
                        reported = True
                    time.sleep(0.05)
            """
        )
    )
    r = box.exec(["python3", "bomb.py"], 6, ws)
    assert r.timed_out
    assert "fork failed" in r.output and "Resource temporarily unavailable" in r.output
    assert _no_leftovers(box) == []
    assert box.exec(["sh", "-c", "echo alive"], 10, ws).output.strip() == "alive"


def test_network_is_blocked(box, exercise):
    solution = """
        import urllib.request
        urllib.request.urlopen("http://deb.debian.org/debian/", timeout=5)
    """
    outcome = TestRunner(box, timeout=60).run(exercise, _workspace(box, exercise, "net", solution))
    assert not outcome.passed
    assert "URLError" in outcome.output or "resolution" in outcome.output, outcome.output
    r = box.exec(["python3", "-c", "import os; print(sorted(os.listdir('/sys/class/net')))"], 10, box.root)
    assert r.output.strip() == "['lo']"


def test_writes_outside_the_workspace_are_impossible(box, exercise):
    own = _workspace(box, exercise, "writer", None)
    other = box.root / "other-task"
    other.mkdir()
    victim = other / "victim.txt"
    victim.write_text("precious\n")
    # World-writable on purpose: only the read-only mount may stop the writes.
    victim.chmod(0o666)
    other.chmod(0o777)
    before = _snapshot(box.root)
    mount = "/mnt/root"
    own_in_container = f"{mount}/{own.relative_to(box.root).as_posix()}"
    targets = [
        f"{mount}/other-task/victim.txt",
        f"{mount}/other-task/new.txt",
        f"{mount}/new.txt",
        f"{own_in_container}/{exercise.solution_files[0]}",
        str(victim),  # the host path means nothing inside the container
        "/etc/passwd",
        "/usr/local/bin/evil",
        "/opt/npm/node_modules/jest/package.json",
        "/root/evil",
    ]
    script = textwrap.dedent(
        f"""
        import json, os
        results = {{}}
        for target in {targets!r}:
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "a") as f:
                    f.write("pwned\\n")
                results[target] = "written"
            except OSError as err:
                results[target] = err.strerror
        print(json.dumps(results))
        """
    )
    (box.root / "writer-script").mkdir()
    (box.root / "writer-script" / "w.py").write_text(script)
    before["writer-script"] = None  # created just above, on purpose
    r = box.exec(["python3", "w.py"], 30, box.root / "writer-script")
    results = json.loads(r.output.strip().splitlines()[-1])
    for target, status in results.items():
        if target == str(victim):
            continue  # may land in the container's private /tmp; the host check below decides
        assert status != "written", f"{target} was writable from the sandbox"
    assert results[f"{mount}/other-task/victim.txt"] == "Read-only file system"
    assert results[f"{mount}/other-task/new.txt"] == "Read-only file system"
    after = _snapshot(box.root)
    for key in ("writer-script", "writer-script/w.py"):
        after.pop(key, None)
        before.pop(key, None)
    assert after == before, "the host file system changed"
    assert victim.read_text() == "precious\n"


def test_concurrent_execs(box):
    ws = box.root / "concurrent"
    ws.mkdir(exist_ok=True)
    results = []

    def one(i: int) -> None:
        results.append(box.exec(["sh", "-c", f"sleep 1; echo run-{i}"], 30, ws))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - start < 3.5
    assert sorted(r.output.strip() for r in results) == [f"run-{i}" for i in range(4)]
    assert all(r.exit_code == 0 for r in results)


def test_close_removes_the_container_and_refuses_more_work(image, tmp_path):
    from localcode.harness.docker_sandbox import DockerSandbox, docker_client

    box = DockerSandbox(tmp_path, image)
    cid = box.container_id
    assert docker_client().containers.get(cid).status == "running"
    box.close()
    box.close()
    assert not docker_client().containers.list(all=True, filters={"id": cid})
    with pytest.raises(SandboxError, match="closed"):
        box.exec(["true"], 5, tmp_path)


def test_ctrl_c_removes_the_container(image, tmp_path):
    (tmp_path / "ws").mkdir()
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from localcode.harness.docker_sandbox import DockerSandbox
        with DockerSandbox(Path({str(tmp_path)!r}), {image!r}) as box:
            print(box.container_id, flush=True)
            box.exec(["sleep", "60"], 120, Path({str(tmp_path / "ws")!r}))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    cid = proc.stdout.readline().strip()
    assert cid, proc.stderr.read() if proc.stderr else ""
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in (proc.stderr.read() if proc.stderr else "")
    from localcode.harness.docker_sandbox import docker_client

    assert not docker_client().containers.list(all=True, filters={"id": cid}), "container left behind"
