"""Ctrl-C is prompt: a real SIGINT to a real ``localcode`` process ends it within 2 s with
status 130, whatever it is doing, and what finished stays written; a second Ctrl-C exits at once.

Scenarios: a hanging test in ``bench`` (the test's process group is killed), a long prompt
evaluation of the demo GGUF in ``solve`` and in ``serve`` (llama.cpp's abort callback stops it
between graph nodes; before, Python saw the interrupt only after the whole batch, ~35 s here).
The 2 s is the issue's bound, measured from the signal to the process's exit; the stop itself
measured ~0.05 s (``benchmarks/interrupt_latency.py``), so the margin is process teardown.
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
from pathlib import Path

import httpx
import pytest

LIMIT_S = 2.0
"""The issue's bound from Ctrl-C to exit."""

LONG_PROMPT = "Implement the function described below.\n\n" + " ".join(
    f"line{i} of the specification says the function must return {i} when given {i * 3};" for i in range(230))
"""About 6,000 tokens for the demo model: a prompt evaluation of many seconds on a CI CPU."""


class Proc:
    """A ``localcode`` subprocess whose stderr lines are collected as they come."""

    def __init__(self, args: list[str], home: Path, cwd: Path) -> None:
        env = dict(os.environ, LOCALCODE_HOME=str(home), PYTHONUNBUFFERED="1")
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        self.p = subprocess.Popen([sys.executable, "-m", "localcode", *args], cwd=cwd, env=env, text=True,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, what: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.p.poll() is not None:
                time.sleep(0.2)
                pytest.fail(f"localcode ended ({self.p.returncode}) before {what}:\n" + "\n".join(self.lines[-30:]))
            if time.monotonic() > deadline:
                self.p.kill()
                pytest.fail(f"no {what} within {timeout} s:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.05)

    def wait_for_line(self, text: str, timeout: float = 300) -> None:
        self.wait_for(lambda: any(text in ln for ln in self.lines), repr(text), timeout)

    def interrupt(self) -> tuple[int, float]:
        """Send SIGINT; (exit status, seconds from the signal to the exit)."""
        t0 = time.monotonic()
        self.p.send_signal(signal.SIGINT)
        try:
            rc = self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            pytest.fail("still running 60 s after Ctrl-C:\n" + "\n".join(self.lines[-30:]))
        seconds = time.monotonic() - t0
        self._reader.join(5)
        return rc, seconds


# ---------------------------------------------------------------- the handler itself

SECOND_CTRL_C = """
import os, signal, sys, time
from localcode import interrupt
with interrupt.handling():
    try:
        time.sleep(30)
    except KeyboardInterrupt:
        assert interrupt.requested() and interrupt.abort_callback(None) is True
        print("first", flush=True)
        time.sleep(30)  # a slow cleanup: the second Ctrl-C must not wait for it
print("not reached", flush=True)
"""


def test_second_ctrl_c_exits_at_once(tmp_path: Path) -> None:
    p = subprocess.Popen([sys.executable, "-c", SECOND_CTRL_C], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=tmp_path)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    assert p.stdout is not None and p.stdout.readline().strip() == "first"
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    rc = p.wait(30)
    assert rc == 130 and time.monotonic() - t0 < LIMIT_S
    assert "interrupted again" in p.stderr.read()


def test_handling_restores_the_handler_and_clears_the_request() -> None:
    from localcode import interrupt

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with interrupt.handling():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert signal.getsignal(signal.SIGINT) is before and not interrupt.requested()


# ---------------------------------------------------------------- bench: a hanging test

def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (killed, waiting to be reaped by its new parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _exercise(root: Path, name: str, test_body: str) -> None:
    ex = root / "python" / "exercises" / "practice" / name
    (ex / ".meta").mkdir(parents=True)
    (ex / ".docs").mkdir()
    mod = name.replace("-", "_")
    (ex / ".docs" / "instructions.md").write_text(f"# {name}\n\nMake the tests pass.\n")
    (ex / f"{mod}.py").write_text("def answer():\n    pass\n")
    (ex / ".meta" / "example.py").write_text("def answer():\n    return 42\n")
    (ex / f"{mod}_test.py").write_text(f"from {mod} import answer\n\n\ndef test_answer():\n{test_body}")
    (ex / ".meta" / "config.json").write_text(json.dumps({"files": {
        "solution": [f"{mod}.py"], "test": [f"{mod}_test.py"], "example": [".meta/example.py"]}}))


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_bench_ctrl_c_during_a_hanging_test(tmp_path: Path, sandbox: str) -> None:
    started = tmp_path / "started"  # the hanging test touches it (local: writes its pid)
    dataset = tmp_path / "dataset"
    _exercise(dataset, "aaa-quick", "    assert answer() == 42\n")
    if sandbox == "local":
        _exercise(dataset, "zzz-hang", f"    import os, time\n    open({str(started)!r}, 'w').write(str(os.getpid()))\n"
                                       "    time.sleep(600)\n")
    else:  # the container sees only the workspaces: the test prints, and the run's try log is watched
        _exercise(dataset, "zzz-hang", "    import time\n    print('hanging', flush=True)\n    time.sleep(600)\n")
    home = tmp_path / "home"
    proc = Proc(["bench", "--agent", "oracle", "--dataset", str(dataset), "-k", "aaa-quick,zzz-hang",
                 "--sandbox", sandbox, "--jobs", "1", "--tries", "1", "--no-progress", "--run-name", "ctrl-c"],
                home, tmp_path)
    run = home / "runs" / "ctrl-c"
    if sandbox == "local":
        proc.wait_for(started.exists, "the hanging test to start", timeout=300)
    else:
        proc.wait_for(lambda: any("aaa-quick" in p.parent.name for p in run.rglob("result.json")),
                      "the quick task's result", timeout=300)
        time.sleep(3)  # the hanging test's docker exec is running now
    rc, seconds = proc.interrupt()
    assert rc == 130, proc.lines[-20:]
    assert seconds < LIMIT_S, f"exit took {seconds:.2f} s after Ctrl-C"
    assert proc.lines[-1] == "interrupted"
    time.sleep(0.2)
    if sandbox == "local":
        assert not _running(int(started.read_text())), "the test's process group was killed"
    else:
        from localcode.harness.docker_sandbox import LABEL, docker_client

        mine = [c for c in docker_client().containers.list(filters={"label": f"{LABEL}={proc.p.pid}"})]
        assert not mine, "the test container (and the hanging test in it) was removed"
    written = {p.parent.name for p in run.rglob("result.json")}
    assert any("aaa-quick" in w for w in written), f"the finished task's result is missing: {written}"
    assert not any("zzz-hang" in w for w in written), "a half-done task has no result"


# ---------------------------------------------------------------- the demo GGUF in a long prefill

def _demo_home(tmp_path: Path, demo_gguf: Path) -> Path:
    """LOCALCODE_HOME with the shipped demo config pointed at the assembled file (context 8192)."""
    from localcode import paths

    home = tmp_path / "home"
    (home / "agents" / "gguf").mkdir(parents=True)
    cfg = json.loads((paths.package_dir("agents") / "gguf" / "gemma-3-270m.json").read_text())
    cfg["server_config"].update(model_path=str(demo_gguf), context_window=8192)
    (home / "agents" / "gguf" / "demo-long.json").write_text(json.dumps(cfg))
    return home


@pytest.mark.gguf
@pytest.mark.slow
def test_solve_ctrl_c_during_a_long_prompt_evaluation(tmp_path: Path, demo_gguf: Path) -> None:
    home = _demo_home(tmp_path, demo_gguf)
    work = tmp_path / "work"
    work.mkdir()
    (work / "task.md").write_text(LONG_PROMPT)
    proc = Proc(["-vv", "solve", "--agent", "gguf/demo-long", "-f", str(work / "task.md"), "--workdir", str(work)],
                home, work)
    proc.wait_for_line("evaluating", timeout=300)
    time.sleep(0.5)  # well inside the evaluation (many seconds long)
    rc, seconds = proc.interrupt()
    assert rc == 130, proc.lines[-20:]
    assert seconds < LIMIT_S, f"exit took {seconds:.2f} s after Ctrl-C"
    assert any("cancelled" in ln for ln in proc.lines) and proc.lines[-1] == "interrupted"
    assert list((home / "sessions").rglob("*")), "the session (what finished) is kept"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.gguf
@pytest.mark.slow
def test_serve_ctrl_c_during_a_long_prompt_evaluation(tmp_path: Path, demo_gguf: Path) -> None:
    home = _demo_home(tmp_path, demo_gguf)
    port = _free_port()
    proc = Proc(["-vv", "serve", "--agent", "gguf/demo-long", "--port", str(port)], home, tmp_path)
    proc.wait_for_line("serving", timeout=300)
    answers: list[object] = []

    def ask() -> None:
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120,
                           json={"model": "anything", "messages": [{"role": "user", "content": LONG_PROMPT}],
                                 "max_tokens": 8})
            answers.append(r.status_code)
        except httpx.HTTPError as e:
            answers.append(e)

    client = threading.Thread(target=ask, daemon=True)
    client.start()
    proc.wait_for_line("evaluating", timeout=120)
    time.sleep(0.5)
    rc, seconds = proc.interrupt()
    assert rc == 130, proc.lines[-20:]
    assert seconds < LIMIT_S, f"exit took {seconds:.2f} s after Ctrl-C"
    client.join(10)
    assert answers and answers[0] != 200, answers  # refused (503 shutting down) or cut off, never a made-up answer


# ---------------------------------------------------------------- an image build

BUILD = """
import sys
from pathlib import Path
from localcode import interrupt
from localcode.harness.docker_sandbox import docker_client
from localcode.harness.image import ensure_image, resolve_base_image

say = lambda s: print(s, file=sys.stderr, flush=True)
base = resolve_base_image(docker_client(), say)
try:
    with interrupt.handling():  # as the CLI runs every command
        ensure_image(context=Path(sys.argv[1]), base_image=base, ca_bundle=False, progress=say)
except KeyboardInterrupt:
    say("interrupted")
    sys.exit(130)
"""


@pytest.mark.docker
@pytest.mark.slow
def test_ctrl_c_during_an_image_build(tmp_path: Path) -> None:
    from localcode.harness.docker_sandbox import docker_client

    context = tmp_path / "context"
    context.mkdir()
    # A nonce: an earlier build of this step that ran to the end must not be a cache hit now.
    (context / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"
                                        f"RUN sleep 300 # localcode-interrupt-test {os.urandom(6).hex()}\n")
    p = subprocess.Popen([sys.executable, "-c", BUILD, str(context)], stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: [lines.append(ln.rstrip()) for ln in p.stderr or []], daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not any("Running in" in ln for ln in lines):
        assert p.poll() is None and time.monotonic() < deadline, lines[-20:]
        time.sleep(0.1)
    building = [ln.split()[-1] for ln in lines if "Running in" in ln][-1]
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    rc = p.wait(60)
    seconds = time.monotonic() - t0
    assert rc == 130 and seconds < LIMIT_S, (rc, seconds, lines[-5:])
    client = docker_client()
    deadline = time.monotonic() + 20
    while any(c.id.startswith(building) for c in client.containers.list()):
        assert time.monotonic() < deadline, "the engine kept running the interrupted build step"
        time.sleep(0.5)
