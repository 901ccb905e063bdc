"""Kill-and-resume of ``localcode bench`` (issue 5): killing the process at any moment and
rerunning the same command finishes the run with no task lost or repeated and no
half-written file.

Two kinds of interruption:

- Real ``SIGKILL`` of a ``localcode bench`` process (nothing can clean up), at moments found
  by watching the run: while the sandbox starts, when ``run.json`` appears, while a test
  runs in the container, right after a task's result appears, and (with ``os.replace``
  stalled in the child) between a result's temporary file and its rename. The same command
  is then rerun to completion. The killed process's test container stays behind; the next
  run removes it.
- Deterministic injection in-process for moments a timed kill cannot hit on purpose: a
  ``KeyboardInterrupt`` between the temporary file and ``os.replace`` of a result, a real
  SIGINT to the main thread while a test runs, a ``KeyboardInterrupt`` inside an agent
  attempt, and a scripted model interrupted mid-conversation.

After every resume: each selected task has exactly one ``result.json`` that validates as a
``TaskResult``, no temporary file is left, ``stats.json`` agrees with the results, and the
results written before an interruption are byte-identical with the same mtime (never rerun).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from localcode.harness.dataset import Exercise, load_dataset
from localcode.harness.results import AIDER_RESULT_FILE, RESULT_FILE, STATS_FILE, WORKSPACES_DIR, RunInfo, TaskResult
from sandbox_util import dataset_root, test_image

PY_IDS = ["python/beer-song", "python/book-store", "python/bowling", "python/phone-number"]  # run order
GO_IDS = ["go/beer-song", "go/book-store", "go/bowling", "go/word-search"]


# --------------------------------------------------------------------------- checks
def result_files(run_dir: Path) -> dict[str, Path]:
    """Task id -> result.json of every task that has one."""
    return {p.parent.relative_to(run_dir).as_posix(): p for p in run_dir.glob(f"*/*/{RESULT_FILE}")
            if p.parent.parent.name != WORKSPACES_DIR}


def temp_files(run_dir: Path) -> list[Path]:
    """Temporary files outside the workspaces (what a crash mid-write leaves)."""
    ws = run_dir / WORKSPACES_DIR
    return [p for p in run_dir.rglob("*.tmp") if not p.is_relative_to(ws)]


def snapshot(run_dir: Path) -> dict[str, tuple[int, bytes]]:
    """Task id -> (mtime_ns, bytes) of its result.json."""
    return {tid: (p.stat().st_mtime_ns, p.read_bytes()) for tid, p in result_files(run_dir).items()}


def assert_results_valid(run_dir: Path) -> dict[str, TaskResult]:
    """Every result.json present is complete JSON of the result schema, with its Aider twin."""
    out = {}
    for tid, path in result_files(run_dir).items():
        text = path.read_text()
        json.loads(text)  # complete JSON, not a truncated write
        r = TaskResult.model_validate_json(text)
        assert r.id == tid and r.finished_at and r.tries, (tid, text[:300])
        language, name = tid.split("/", 1)
        aider = json.loads((run_dir / language / "exercises" / "practice" / name / AIDER_RESULT_FILE).read_text())
        assert aider["tests_outcomes"] == r.outcomes, tid
        out[tid] = r
    return out


def assert_unchanged(before: dict[str, tuple[int, bytes]], run_dir: Path) -> None:
    """Results that existed before are still there, same bytes, same mtime: never rerun."""
    now = snapshot(run_dir)
    for tid, (mtime, data) in before.items():
        assert tid in now, f"{tid} lost its result"
        assert now[tid] == (mtime, data), f"{tid} was rerun or rewritten"


def assert_run_complete(run_dir: Path, ids: list[str]) -> dict[str, TaskResult]:
    """Exactly one valid result per selected task, all passed on try 1, no temp file, stats agree."""
    results = assert_results_valid(run_dir)
    assert sorted(results) == sorted(ids)
    for tid, r in results.items():
        assert r.error is None and [t.passed for t in r.tries] == [True], (tid, r.error, r.tries[-1].test_output[-500:])
    assert temp_files(run_dir) == []
    info = RunInfo.model_validate_json((run_dir / "run.json").read_text())
    assert sorted(info.task_ids) == sorted(ids)
    stats = json.loads((run_dir / STATS_FILE).read_text())
    assert (stats["test_cases"], stats["completed_tests"], stats["missing_results"]) == (len(ids), len(ids), 0)
    assert stats["pass_rate_1"] == 100.0 and stats["infrastructure_errors"] == 0
    by_lang = Counter(tid.split("/")[0] for tid in ids)
    assert {k: v["cases"] for k, v in stats["per_language"].items()} == dict(by_lang)
    assert stats["tool_calls"].get("write_file", 0) == sum(r.usage.tool_calls.get("write_file", 0)
                                                           for r in results.values())
    return results


def exercises(ids: list[str]) -> list[Exercise]:
    by_id = {e.id: e for e in load_dataset(dataset_root()).exercises}
    return [by_id[i] for i in ids]


# --------------------------------------------------------------------------- in-process runs
def run_cli(argv: list[str]) -> int:
    from localcode.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    return int(e.value.code or 0)


def local_argv(ids: list[str], *extra: str) -> list[str]:
    """The bench command on the host's toolchains (python only: fast, no Docker)."""
    return ["bench", "--agent", "oracle", "-k", ",".join(ids), "--dataset", str(dataset_root()),
            "--sandbox", "local", "--jobs", "1", "--no-progress", "--run-name", "r", *extra]


class CountingOracle:
    """Wraps the oracle: counts ``start`` per task, and can hook into an attempt."""

    def __init__(self, on_attempt: Callable[[Exercise, Path], None] | None = None) -> None:
        from localcode.harness.bench import OracleSolver

        self.inner = OracleSolver()
        self.name = "oracle"
        self.started: Counter[str] = Counter()
        self.on_attempt = on_attempt

    def start(self, exercise: Exercise, workspace: Path) -> Any:
        self.started[exercise.id] += 1
        session = self.inner.start(exercise, workspace)
        hook = self.on_attempt
        if hook is None:
            return session

        class Hooked:
            def attempt(self, prompt: str, try_index: int, deadline: float | None) -> Any:
                hook(exercise, workspace)
                return session.attempt(prompt, try_index, deadline)

            def close(self) -> None:
                session.close()

        return Hooked()

    def info(self) -> dict[str, Any]:
        return self.inner.info()

    def close(self) -> None:
        pass


def use_solver(monkeypatch: pytest.MonkeyPatch, solver: Any) -> None:
    import localcode.harness.bench as bench_mod

    monkeypatch.setattr(bench_mod, "make_solver", lambda spec, **kw: solver)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def resume_and_check(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], run_dir: Path,
                     ids: list[str], before: dict[str, tuple[int, bytes]]) -> CountingOracle:
    """Rerun the same command with a clean oracle: it finishes, reruns only what had no result, once."""
    solver = CountingOracle()
    use_solver(monkeypatch, solver)
    capsys.readouterr()
    assert run_cli(local_argv(ids)) == 0
    err = capsys.readouterr().err
    assert f"{len(ids) - len(before)} to run ({len(before)} already have results)" in err, err
    assert set(solver.started) == set(ids) - set(before)
    assert all(n == 1 for n in solver.started.values()), solver.started
    assert_unchanged(before, run_dir)
    assert_run_complete(run_dir, ids)
    return solver


def test_interrupt_between_temp_file_and_rename_of_a_result(tmp_path, monkeypatch, capsys):
    """Ctrl-C after the temp file is complete but before ``os.replace``: no result, no temp file."""
    import localcode.harness.results as results_mod

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    ids = PY_IDS[:3]
    real_replace = os.replace
    seen: list[Path] = []
    interrupted: list[str] = []

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == RESULT_FILE and not interrupted:
            seen.append(Path(dst))
            if len(seen) == 2:
                # the temp file is complete and next to its target: the moment just before the rename
                assert Path(src).parent == Path(dst).parent and Path(src).name.endswith(".tmp")
                assert TaskResult.model_validate_json(Path(src).read_text()).id
                interrupted.append(Path(dst).parent.relative_to(tmp_path / "home" / "runs" / "r").as_posix())
                raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(results_mod.os, "replace", replace)
    solver = CountingOracle()
    use_solver(monkeypatch, solver)
    assert run_cli(local_argv(ids)) == 130
    monkeypatch.setattr(results_mod.os, "replace", real_replace)

    run_dir = tmp_path / "home" / "runs" / "r"
    assert interrupted and interrupted[0] not in result_files(run_dir)
    assert temp_files(run_dir) == []
    before = snapshot(run_dir)
    assert len(before) == 1 and interrupted[0] not in before
    assert_results_valid(run_dir)
    resume_and_check(monkeypatch, capsys, run_dir, ids, before)


def test_sigint_while_a_test_runs(tmp_path, monkeypatch, capsys):
    """A real SIGINT reaches the main thread while the second task's tests run on a pool thread."""
    from localcode.harness.sandbox import LocalSandbox

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    ids = PY_IDS[:3]
    run_dir = tmp_path / "home" / "runs" / "r"
    real_exec = LocalSandbox.exec
    calls: list[str] = []
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def exec_(self: Any, argv: list[str], timeout: float, cwd: Path, env: Any = None) -> Any:
        calls.append(Path(cwd).name)
        if len(calls) == 2:
            # the first task's result is on disk; this task's tests are in the workspace now
            wait_until(lambda: len(result_files(run_dir)) == 1, 20, "the first result")
            assert any(Path(cwd).glob("*_test.py"))
            signal.pthread_kill(main_thread, signal.SIGINT)
            time.sleep(0.2)
        return real_exec(self, argv, timeout, cwd, env)

    monkeypatch.setattr(LocalSandbox, "exec", exec_)
    use_solver(monkeypatch, CountingOracle())
    assert run_cli(local_argv(ids)) == 130
    # the interrupted test run still finishes on its pool thread; nothing records it
    for t in threading.enumerate():
        if t.name.startswith("localcode-test"):
            t.join(30)
    monkeypatch.setattr(LocalSandbox, "exec", real_exec)

    before = snapshot(run_dir)
    assert len(before) == 1 and calls[1] not in {k.split("/")[1] for k in before}
    assert temp_files(run_dir) == []
    resume_and_check(monkeypatch, capsys, run_dir, ids, before)


def test_interrupt_inside_an_agent_attempt(tmp_path, monkeypatch, capsys):
    """Ctrl-C while the agent of the third task has written half its files (the third task
    opens once the first one's result is written: jobs 1 keeps two tasks in flight)."""
    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    ids = PY_IDS[:3]
    run_dir = tmp_path / "home" / "runs" / "r"
    victim = ids[2]

    def hook(exercise: Exercise, workspace: Path) -> None:
        if exercise.id == victim:
            (workspace / exercise.solution_files[0]).write_text("half = (\n")
            raise KeyboardInterrupt

    solver = CountingOracle(on_attempt=hook)
    use_solver(monkeypatch, solver)
    assert run_cli(local_argv(ids)) == 130
    assert solver.started == Counter(ids)

    before = snapshot(run_dir)
    assert ids[0] in before and victim not in before and temp_files(run_dir) == []
    assert_results_valid(run_dir)
    resume_and_check(monkeypatch, capsys, run_dir, ids, before)
    # the rerun started from a fresh workspace: the half-written file is gone
    assert "half = (" not in (run_dir / WORKSPACES_DIR / victim / exercises([victim])[0].solution_files[0]).read_text()


# --------------------------------------------------------------------------- a scripted model
def reference_policy(exs: list[Exercise], interrupt: set[str] | None = None) -> Callable[..., Any]:
    """A scripted model's response as a function of the conversation: read every solution
    file, write each reference file (one ``write`` call per turn), then ``finish``.

    The task is recognised by its try-1 prompt. For tasks in ``interrupt`` the model first
    writes garbage over the solution, then raises KeyboardInterrupt on its next call.
    """
    from localcode.harness.bench import first_prompt
    from localcode.harness.oracle import reference_files

    by_prompt = {first_prompt(e): e for e in exs}
    interrupt = set(interrupt or ())

    def respond(messages: list[dict[str, Any]], tools: Any) -> dict[str, Any]:
        ex = by_prompt[messages[1]["content"]]
        step = sum(1 for m in messages[2:] if m.get("role") == "assistant")
        plan: list[tuple[str, dict[str, Any]]] = [("read", {"path": p}) for p in ex.solution_files]
        if ex.id in interrupt:
            plan.append(("write", {"path": ex.solution_files[0], "content": "garbage from the killed run\n"}))
            if step == len(plan):
                interrupt.discard(ex.id)
                raise KeyboardInterrupt
        plan += [("write", {"path": d, "content": s.read_text()}) for d, s in reference_files(ex).items()]
        plan.append(("finish", {"status": "done", "summary": "wrote the reference solution"}))
        name, args = plan[step]
        return {"tool_calls": [{"name": name, "arguments": args}]}

    return respond


def test_scripted_model_interrupted_mid_conversation_restarts_the_task(tmp_path, monkeypatch, capsys):
    """A model agent interrupted after a write resumes the task from scratch: try 1, a fresh
    workspace, a fresh conversation, and logs and usage of the new run only."""
    import localcode.backends.loader as loader
    from localcode.backends.scripted import ScriptedChatModel
    from localcode.harness.bench import first_prompt
    from localcode.harness.oracle import reference_files

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "home"))
    ids = PY_IDS[:3]
    exs = exercises(ids)
    # the third task: it opens once the first task's result is written (jobs 1: two tasks in flight)
    victim = exs[2]
    agent = tmp_path / "scripted.json"
    agent.write_text(json.dumps({"name": "scripted", "tools": ["read", "write", "finish"], "max_turns": 12}))
    models: list[ScriptedChatModel] = []

    def load_model(config: Any) -> ScriptedChatModel:
        model = ScriptedChatModel([reference_policy(exs, {victim.id} if not models else None)] * 200)
        models.append(model)
        return model

    monkeypatch.setattr(loader, "load_model", load_model)
    argv = ["bench", "--agent", str(agent), "-k", ",".join(ids), "--dataset", str(dataset_root()),
            "--sandbox", "local", "--jobs", "1", "--no-progress", "--run-name", "r"]
    assert run_cli(argv) == 130
    run_dir = tmp_path / "home" / "runs" / "r"
    before = snapshot(run_dir)
    assert victim.id not in before and exs[0].id in before and temp_files(run_dir) == []
    stub = victim.path / victim.solution_files[0]
    assert (run_dir / WORKSPACES_DIR / victim.id / victim.solution_files[0]).read_text() == \
        "garbage from the killed run\n"

    capsys.readouterr()
    assert run_cli(argv) == 0
    assert_unchanged(before, run_dir)
    results = assert_results_valid(run_dir)
    assert sorted(results) == sorted(ids) and temp_files(run_dir) == []
    mine = [r["messages"] for r in models[1].requests if r["messages"][1]["content"] == first_prompt(victim)]
    n_reads, n_writes = len(victim.solution_files), len(reference_files(victim))
    assert len(mine) == n_reads + n_writes + 1
    # a fresh conversation: system + the try-1 prompt, nothing of the killed run
    assert [m["role"] for m in mine[0]] == ["system", "user"]
    # a fresh workspace: the first read shows the stub, not the killed run's garbage
    first_read = next(m for m in mine[1] if m.get("role") == "tool")
    assert "garbage" not in first_read["content"] and stub.read_text().splitlines()[0].strip() in first_read["content"]

    r = results[victim.id]
    assert r.error is None and [t.index for t in r.tries] == [1] and r.tries[0].passed
    assert r.tries[0].usage.tool_calls == {"read": n_reads, "write": n_writes, "finish": 1}
    assert r.tries[0].usage.model_calls == n_reads + n_writes + 1
    # the task's logs hold the resumed run only
    log_dir = run_dir / victim.id
    events = [json.loads(line) for line in (log_dir / "try-1.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events].count("session_start") == 1
    assert "garbage" not in (log_dir / "try-1.jsonl").read_text()
    raw = json.loads((log_dir / "try-1.raw.json").read_text())
    assert "garbage" not in json.dumps(raw["messages"])


# --------------------------------------------------------------------------- real SIGKILL
def cli_cmd(ids: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "localcode", "bench", "--agent", "oracle", "-k", ",".join(ids),
            "--dataset", str(dataset_root()), "--no-progress", *extra]


def start(cmd: list[str], home: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with ``LOCALCODE_HOME=home``; its output goes to a log file in ``cwd``."""
    env = dict(os.environ, LOCALCODE_HOME=str(home))
    log_path = cwd / f"bench-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def log_tail(proc: subprocess.Popen[bytes]) -> str:
    return proc.log_path.read_text(errors="replace")[-3000:]  # type: ignore[attr-defined]


def kill_when(proc: subprocess.Popen[bytes], predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``predicate`` holds; fail if it ends first."""
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}:\n{log_tail(proc)}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def run_dirs(home: Path) -> list[Path]:
    runs = home / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def the_run(home: Path) -> Path | None:
    """The run folder that holds run.json (at most one may)."""
    with_info = [p for p in run_dirs(home) if (p / "run.json").is_file()]
    assert len(with_info) <= 1, with_info
    return with_info[0] if with_info else None


def containers_of(pid: int) -> list[Any]:
    from localcode.harness.docker_sandbox import LABEL, docker_client

    return docker_client().containers.list(all=True, filters={"label": f"{LABEL}={pid}"})


def a_test_runs(pid: int) -> bool:
    """A ``docker exec`` of a test runs in the container of process ``pid``."""
    for c in containers_of(pid):
        try:
            rows = c.top()["Processes"] or []
        except Exception:  # the container is starting or going
            continue
        if any("localcode-exec" in " ".join(row) for row in rows):
            return True
    return False


@pytest.mark.docker
def test_sigkill_at_several_moments_then_the_same_command_resumes(tmp_path):
    """Real SIGKILLs of `localcode bench --agent oracle --jobs 2` over python and go tasks."""
    home = tmp_path / "home"
    ids = PY_IDS + GO_IDS
    cmd = cli_cmd(ids, "--jobs", "2", "--image", test_image())
    kept: dict[str, tuple[int, bytes]] = {}
    killed: list[int] = []

    def after_kill(proc: subprocess.Popen[bytes]) -> None:
        killed.append(proc.pid)
        run = the_run(home)
        if run is None:
            return
        assert_results_valid(run)  # whatever exists is whole
        assert_unchanged(kept, run)  # nothing finished earlier was touched
        kept.update(snapshot(run))

    # 1. while the sandbox starts: the run folder exists, run.json not yet
    proc = start(cmd, home, tmp_path)
    kill_when(proc, lambda: any((p / WORKSPACES_DIR).is_dir() for p in run_dirs(home)), "the run folder")
    after_kill(proc)
    assert all(not result_files(p) for p in run_dirs(home))

    # 2. when run.json appears (sandbox up, nothing finished yet); its container leaks
    proc = start(cmd, home, tmp_path)
    kill_when(proc, lambda: the_run(home) is not None and bool(containers_of(proc.pid)), "run.json")
    after_kill(proc)
    assert containers_of(killed[-1]), "a SIGKILLed run leaves its container behind (the next run removes it)"

    # 3. right after a task's result appears
    run = the_run(home)
    assert run is not None
    proc = start(cmd, home, tmp_path)
    have = len(kept)
    kill_when(proc, lambda: len(result_files(run)) > have, "a new result")
    after_kill(proc)
    # the new run removed the containers of the runs killed before it
    assert not any(containers_of(pid) for pid in killed[:-1])

    # 4. while a test runs in the container, after this process finished a task
    proc = start(cmd, home, tmp_path)
    have = len(kept)
    kill_when(proc, lambda: len(result_files(run)) > have and a_test_runs(proc.pid), "a test run in progress")
    after_kill(proc)
    assert len(kept) < len(ids), "the run finished before the last kill: select more tasks"

    # 5. the same command runs to completion
    proc = start(cmd, home, tmp_path)
    assert proc.wait(300) == 0, log_tail(proc)
    assert_unchanged(kept, run)
    assert_run_complete(run, ids)
    # only the run folder killed before run.json existed is left without results
    assert [p for p in run_dirs(home) if p != run and any(p.rglob("*.json"))] == []
    # no container of any of these processes is left
    assert not any(containers_of(pid) for pid in [*killed, proc.pid])


def test_sigkill_between_temp_file_and_rename_leaves_nothing_after_resume(tmp_path):
    """A SIGKILL while the second result's temp file is complete but not renamed: the temp file
    stays on disk; the resumed run removes it and writes that task's result once."""
    home = tmp_path / "home"
    ids = PY_IDS[:3]
    marker = tmp_path / "stalled"
    cmd = cli_cmd(ids, "--sandbox", "local", "--jobs", "1", "--run-name", "r")
    stall = (
        "import os, sys, time\n"
        "real = os.replace\n"
        "count = [0]\n"
        "def replace(src, dst):\n"
        f"    if os.path.basename(dst) == {RESULT_FILE!r}:\n"
        "        count[0] += 1\n"
        "        if count[0] == 2:\n"
        f"            open({str(marker)!r}, 'w').write(str(src))\n"
        "            time.sleep(600)\n"
        "    real(src, dst)\n"
        "os.replace = replace\n"
        "from localcode.cli import main\n"
        "sys.argv = ['localcode', *sys.argv[1:]]\n"
        "main(sys.argv[1:])\n"
    )
    proc = start([sys.executable, "-c", stall, *cmd[3:]], home, tmp_path)
    kill_when(proc, marker.exists, "the stalled rename", timeout=120)
    run_dir = home / "runs" / "r"
    tmp = Path(marker.read_text())
    assert tmp.is_file() and temp_files(run_dir) == [tmp]
    stalled_task = tmp.parent.relative_to(run_dir).as_posix()
    before = snapshot(run_dir)
    assert len(before) == 1 and stalled_task not in before

    proc = start(cmd, home, tmp_path)
    assert proc.wait(300) == 0, log_tail(proc)
    assert_unchanged(before, run_dir)
    assert_run_complete(run_dir, ids)


# --------------------------------------------------------------------------- stale containers
@pytest.mark.docker
def test_a_new_sandbox_removes_containers_of_dead_processes_only(tmp_path):
    """Containers left by a dead localcode process on this host go; those of a live process or
    another host stay."""
    from localcode.harness.docker_sandbox import HOST_LABEL, LABEL, DockerSandbox, docker_client

    client = docker_client()
    image = test_image()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = socket.gethostname()
    labels = {
        "dead": {LABEL: str(dead.pid), HOST_LABEL: here},
        "alive": {LABEL: str(os.getpid()), HOST_LABEL: here},
        "elsewhere": {LABEL: str(dead.pid), HOST_LABEL: f"not-{here}"},
    }
    made = {k: client.containers.create(image, ["sleep", "infinity"], labels=v, name=f"lc-stale-{k}-{os.getpid()}")
            for k, v in labels.items()}
    try:
        root = tmp_path / "root"
        root.mkdir()
        with DockerSandbox(root, image) as box:
            labels_of_box = client.containers.get(box.container_id).labels
            assert labels_of_box[LABEL] == str(os.getpid()) and labels_of_box[HOST_LABEL] == here
            left = {c.id for c in client.containers.list(all=True, filters={"label": LABEL})}
            assert made["dead"].id not in left
            assert made["alive"].id in left and made["elsewhere"].id in left
    finally:
        for c in made.values():
            try:
                c.remove(force=True)
            except Exception:
                pass
