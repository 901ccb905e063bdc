"""``localcode bench --ray`` on a real local Ray cluster (issue 14).

The cluster is what a user starts on two machines, here on one: ``ray start --head`` (with
``localcode_workers: 1``) plus a second node process (``ray start --address``, one CPU,
default placement), each with its own ``HOME``. Every test compares the cluster's results
with a one-process run of the same selection:

- the oracle and the ``none`` agent as a sweep (``--agent oracle --agent none``): one run
  folder per agent, results equal to the one-process sweep, both workers used;
- the scripted model through the Python API, with one worker killed (SIGKILL) mid-task in
  try 2: the task reruns from try 1 on the other worker, no result is lost or written
  twice, and the results equal the one-process run;
- the driver killed (SIGKILL) mid-run, then the same command: the run resumes, the results
  written before are untouched, each task has exactly one result;
- the demo GGUF with ``--model ~/demo.gguf``: the second node has no such file, says so in
  one line and gets no tasks; the results and conversations equal the one-process run.

The cluster lives in a temp folder of its own (``--temp-dir``); when the module ends, the
processes that name that folder, and only those, are stopped (other Ray clusters on the
machine are left alone, which ``ray stop`` would not do).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from localcode.harness.results import RESULT_FILE, WORKSPACES_DIR, ResultStore, RunInfo, TaskResult
from sandbox_util import dataset_root, test_image

TESTS = Path(__file__).resolve().parent
PY_IDS = ["python/beer-song", "python/bowling", "python/wordy", "python/transpose"]
JAVA_IDS = ["java/bowling", "java/wordy", "java/transpose", "java/house", "java/book-store", "java/twelve-days"]
# task -> the try on which the scripted agent writes the reference solution (None: never)
PLAN = {"python/bowling": 1, "python/wordy": 2, "python/transpose": None, "python/beer-song": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_pids(temp_dir: str) -> list[int]:
    """Processes of the test cluster: each names its temp folder on its command line."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if temp_dir in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _stop_cluster(temp_dir: str) -> None:
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
        for pid in _cluster_pids(temp_dir):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while _cluster_pids(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)


def _ray(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    ray = Path(sys.executable).parent / "ray"
    return subprocess.run([str(ray), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A two-node Ray cluster on this machine: ``(address, home of the head, home of the second node)``."""
    try:
        import ray  # noqa: F401
    except ImportError:
        pytest.fail("Ray is missing: pip install 'localcode[ray]' (scripts/bootstrap.sh installs it)")
    base = tmp_path_factory.mktemp("ray")
    home_a, home_b = base / "home-head", base / "home-node"
    home_a.mkdir()
    home_b.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
               RAY_USAGE_STATS_ENABLED="0", LOCALCODE_DATASET=str(dataset_root()))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp_dir = tempfile.mkdtemp(prefix="lcray-", dir="/tmp")  # short: Ray's socket paths live below it
    head = _ray("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}",
                '--resources={"localcode_workers": 1}', env={**env, "HOME": str(home_a)})
    try:
        assert head.returncode == 0, head.stdout[-2000:] + head.stderr[-2000:]
        node = _ray("start", f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                    f"--temp-dir={temp_dir}", env={**env, "HOME": str(home_b)})
        assert node.returncode == 0, node.stdout[-2000:] + node.stderr[-2000:]
        deadline = time.monotonic() + 60
        while True:
            status = _ray("status", f"--address={address}", env=env, timeout=60)
            if status.stdout.count("node_") >= 2 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert status.stdout.count("node_") >= 2, status.stdout[-2000:]
        yield address, home_a, home_b
    finally:
        _stop_cluster(temp_dir)
        left = _cluster_pids(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"test cluster processes still running: {left}"


def _bench(args: list[str], home: Path, *, user_home: Path | None = None,
           popen: bool = False) -> Any:
    env = dict(os.environ, LOCALCODE_HOME=str(home), LOCALCODE_DATASET=str(dataset_root()), RAY_USAGE_STATS_ENABLED="0")
    if user_home is not None:
        env["HOME"] = str(user_home)
    argv = [sys.executable, "-m", "localcode", "bench", *args, "--image", test_image(), "--no-progress"]
    if popen:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)


def _results(run_dir: Path) -> dict[str, TaskResult]:
    return {r.id: r for r in ResultStore(run_dir).results()}


def _essence(r: TaskResult) -> tuple:
    """What must not depend on where a task ran: outcome per try, errors, the agent's calls and tokens."""
    return (r.error, r.outcomes, [(t.stop_reason, t.timed_out, t.error, t.usage.tool_calls, t.usage.tool_errors,
                                   t.usage.completion_tokens, t.usage.model_calls) for t in r.tries])


def _assert_equal_runs(cluster: Path, local: Path, ids: list[str]) -> dict[str, TaskResult]:
    a, b = _results(cluster), _results(local)
    assert sorted(a) == sorted(b) == sorted(ids)
    for tid in ids:
        assert _essence(a[tid]) == _essence(b[tid]), tid
    assert not list(cluster.rglob("*.tmp"))
    return a


def _workers(run_dir: Path) -> list[dict[str, Any]]:
    return RunInfo.model_validate_json((run_dir / "run.json").read_text()).agent_info["ray"]["workers"]


@pytest.mark.docker
@pytest.mark.slow
def test_sweep_on_the_cluster_equals_one_process(ray_cluster, tmp_path):
    address, _, _ = ray_cluster
    common = ["--agent", "oracle", "--agent", "none", "-k", ",".join(PY_IDS), "--tries", "2", "--jobs", "1", "--json"]
    local = _bench([*common, "--results-dir", str(tmp_path / "local")], tmp_path / "home")
    assert local.returncode == 0, local.stderr[-3000:]
    cluster = _bench([*common, "--results-dir", str(tmp_path / "cluster"), "--ray", address], tmp_path / "home")
    assert cluster.returncode == 0, cluster.stderr[-3000:]

    summary = json.loads(cluster.stdout)
    assert [row["agent"] for row in summary] == ["oracle", "none"]
    assert summary[0]["stats"]["pass_rate_1"] == 100.0 and summary[1]["stats"]["pass_rate_2"] == 0.0
    for agent in ("oracle", "none"):
        run = tmp_path / "cluster" / agent
        results = _assert_equal_runs(run, tmp_path / "local" / agent, PY_IDS)
        assert all(r.passed == (agent == "oracle") for r in results.values())
        workers = _workers(run)
        assert len(workers) == 2 and all(w["tasks"] >= 1 for w in workers), workers
        assert sum(w["tasks"] for w in workers) == len(PY_IDS)
        assert json.loads((run / "stats.json").read_text())["completed_tests"] == len(PY_IDS)
    assert "tasks/min" in cluster.stderr


@pytest.mark.docker
@pytest.mark.slow
def test_a_killed_worker_reruns_its_task_from_try_1(ray_cluster, tmp_path):
    from localcode.harness.bench import BenchOptions, BenchRunner
    from localcode.harness.dataset import dataset_identity, load_dataset
    from localcode.harness.docker_sandbox import DockerSandbox
    from localcode.harness.ray_runner import WorkerSpec, run_on_cluster
    from localcode.harness.results import DatasetInfo
    from localcode.harness.runner import TestRunner
    from ray_support import scripted_solver

    address, _, _ = ray_cluster
    by_id = load_dataset(dataset_root()).by_id()
    exercises = [by_id[i] for i in PLAN]
    options = BenchOptions(tries=2, jobs=1)

    # one process
    local = ResultStore(tmp_path / "local")
    local.workspaces_dir.mkdir(parents=True)
    solver = scripted_solver(PLAN, 2)
    with DockerSandbox(local.workspaces_dir, test_image()) as box:
        solver.bind(box, local.run_dir)
        BenchRunner(solver=solver, runner=TestRunner(box, timeout=120), store=local, options=options).run(exercises)

    # the cluster, with python/wordy stalling once at the start of try 2
    control = tmp_path / "control"
    control.mkdir()
    (control / "stall-python--wordy").write_text("")
    root = dataset_root()
    commit, chash = dataset_identity(root)
    info = RunInfo(run_name="cluster", created_at="now", command_line=["test"], localcode_version="0", agent="scripted",
                   dataset=DatasetInfo(path=str(root), commit=commit, content_hash=chash), sandbox="docker",
                   tries=2, test_timeout_s=120, task_ids=list(PLAN))
    spec = WorkerSpec(agent="scripted", solver_factory=functools.partial(scripted_solver, PLAN, 2, str(control),
                                                                         {"python/wordy": 2}),
                      dataset_path=str(root), dataset_identity=(commit, chash), image=test_image(),
                      test_timeout_s=120, options=options)
    store = ResultStore(tmp_path / "cluster")
    killed: list[int] = []

    def killer() -> None:
        marker = control / "stalled-python--wordy"
        deadline = time.monotonic() + 600
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.2)  # the pid is written right after the file appears
        if marker.exists():
            pid = int(marker.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    report = run_on_cluster(address=address, store=store, run_info=info, exercises=exercises, spec=spec,
                            show_progress=False)
    thread.join(timeout=5)

    assert killed, "the stalled worker was never seen"
    assert report.lost_tasks >= 1
    results = _assert_equal_runs(store.run_dir, local.run_dir, list(PLAN))
    wordy = results["python/wordy"]
    assert [t.index for t in wordy.tries] == [1, 2] and wordy.passed_on_try == 2
    # the logs are those of the rerun that finished, one set per try
    logs = sorted(p.name for p in (store.run_dir / "python" / "wordy").glob("try-*.jsonl"))
    assert logs == ["try-1.jsonl", "try-2.jsonl"]
    workers = _workers(store.run_dir)
    assert [w["died"] for w in workers].count(True) == 1 and [w["pid"] for w in workers if w["died"]] == killed
    assert sum(w["tasks"] for w in workers) == len(PLAN)
    assert len(list(store.run_dir.glob(f"*/*/{RESULT_FILE}"))) == len(PLAN)


@pytest.mark.docker
@pytest.mark.slow
def test_a_killed_driver_resumes_with_the_same_command(ray_cluster, tmp_path):
    address, _, _ = ray_cluster
    run_dir = tmp_path / "run"
    argv = ["--agent", "oracle", "-k", ",".join(JAVA_IDS), "--tries", "1", "--jobs", "1",
            "--results-dir", str(run_dir), "--ray", address]
    proc = _bench(argv, tmp_path / "home", popen=True)
    try:
        deadline = time.monotonic() + 900
        while not list(run_dir.glob(f"*/*/{RESULT_FILE}")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.glob(f"*/*/{RESULT_FILE}")
              if p.parent.parent.name != WORKSPACES_DIR}
    assert 1 <= len(before) < len(JAVA_IDS), (len(before), err[-2000:])

    again = _bench(argv, tmp_path / "home")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(JAVA_IDS) - len(before)} to run" in again.stderr
    results = _results(run_dir)
    assert sorted(results) == sorted(JAVA_IDS)
    assert all(r.error is None and r.outcomes == [True] for r in results.values()), \
        {k: r.tries[-1].test_output[-300:] for k, r in results.items() if not r.passed}
    for path, (mtime, data) in before.items():
        assert (path.stat().st_mtime_ns, path.read_bytes()) == (mtime, data), path
    assert not list(run_dir.rglob("*.tmp"))
    assert json.loads((run_dir / "stats.json").read_text())["completed_tests"] == len(JAVA_IDS)


@pytest.mark.docker
@pytest.mark.gguf
@pytest.mark.slow
def test_demo_gguf_on_the_cluster_equals_one_process(ray_cluster, tmp_path, demo_gguf):
    address, home_a, home_b = ray_cluster
    (home_a / "demo.gguf").unlink(missing_ok=True)
    (home_a / "demo.gguf").symlink_to(demo_gguf)
    ids = PY_IDS[:1]  # the demo model is slow on a loaded machine; one task shows the equality
    common = ["--agent", "gguf/gemma-3-270m", "--model", "~/demo.gguf", "-k", ",".join(ids), "--tries", "2",
              "--jobs", "1", "--agent-args", "max_turns=2 max_tokens=48"]
    local = _bench([*common, "--results-dir", str(tmp_path / "local")], tmp_path / "home", user_home=home_a)
    assert local.returncode == 0, local.stderr[-3000:]
    cluster = _bench([*common, "--results-dir", str(tmp_path / "cluster"), "--ray", address], tmp_path / "home",
                     user_home=home_a)
    assert cluster.returncode == 0, cluster.stderr[-3000:]

    # the second node has no ~/demo.gguf: one line, and its tasks went to the head's worker
    lines = [line for line in cluster.stderr.splitlines() if "cannot run gguf/gemma-3-270m" in line]
    assert len(lines) == 1 and str(home_b / "demo.gguf") in lines[0], cluster.stderr[-3000:]
    workers = _workers(tmp_path / "cluster")
    assert len(workers) == 1 and workers[0]["tasks"] == len(ids)
    results = _assert_equal_runs(tmp_path / "cluster", tmp_path / "local", ids)
    info = json.loads((tmp_path / "cluster" / "run.json").read_text())
    local_info = json.loads((tmp_path / "local" / "run.json").read_text())
    assert info["agent_info"]["model"]["sha256"] == local_info["agent_info"]["model"]["sha256"]
    for tid, r in results.items():
        assert [t.index for t in r.tries] == [1, 2] and r.tries[0].usage.model_calls >= 1, tid
        for n in (1, 2):
            rel = Path(tid) / f"try-{n}.raw.json"
            convs = [json.loads((tmp_path / run / rel).read_text())["messages"] for run in ("cluster", "local")]
            for messages in convs:
                for m in messages:
                    m.pop("tool_call_id", None)
                    for c in m.get("tool_calls") or []:
                        c.pop("id", None)
            assert convs[0] == convs[1], (tid, n)
