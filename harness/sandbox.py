"""Sandboxes run test commands against a workspace with a hard timeout.

A sandbox sees one host folder, ``root``; task workspaces are sub-folders of it.
``exec`` runs a command in a private, throw-away copy of a workspace: the command
reads the workspace's files, but whatever it writes (build folders, caches, edits)
is discarded afterwards. A test run therefore never changes a workspace, never sees
the leftovers of an earlier run, and concurrent runs never interfere.

Two implementations:

- ``DockerSandbox`` (``localcode.harness.docker_sandbox``): one long-lived container,
  no network, memory and process limits. The default for benchmarks.
- ``LocalSandbox`` (here): the host's own toolchains, for machines without Docker
  (``--sandbox local``). It isolates nothing but the workspace copy and the timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel

from localcode.errors import SandboxError

DEFAULT_OUTPUT_LIMIT = 1 << 20
"""Bytes of output a sandbox keeps from one command (half from the start, half from the end)."""


class ExecResult(BaseModel):
    """What one command run in a sandbox did."""

    exit_code: int | None
    """The command's exit status; None when it was killed at the timeout without one."""
    output: str
    """stdout and stderr, interleaved as written; paths of the private copy are shown as
    paths under the ``cwd`` given to ``exec``. Very long output keeps its start and end."""
    timed_out: bool
    """The command was still running at the timeout and was killed."""
    duration_s: float
    """Wall-clock seconds from start to exit or kill."""


class OutputBuffer:
    """Collects a command's output, keeping at most ``limit`` bytes: the head and the tail.

    Thread-safe enough for one writer and one reader after the writer finished.
    """

    def __init__(self, limit: int = DEFAULT_OUTPUT_LIMIT) -> None:
        self._limit = limit
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped = 0

    def write(self, data: bytes) -> None:
        """Add a chunk of output."""
        half = self._limit // 2
        room = half - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if not data:
            return
        self._tail += data
        if len(self._tail) > half:
            cut = len(self._tail) - half
            self._dropped += cut
            del self._tail[:cut]

    def text(self) -> str:
        """The kept output as text (invalid UTF-8 replaced)."""
        body = bytes(self._head)
        if self._dropped:
            body += f"\n[... {self._dropped} bytes of output omitted ...]\n".encode()
        body += bytes(self._tail)
        return body.decode("utf-8", errors="replace")


class Sandbox(ABC):
    """Runs commands against workspaces under ``root`` with a hard timeout.

    Use as a context manager, or call ``close()``: both are safe to repeat.
    """

    root: Path
    """The host folder the sandbox sees; task workspaces are sub-folders of it."""

    @abstractmethod
    def exec(
        self,
        argv: list[str],
        timeout: float,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> ExecResult:
        """Run ``argv`` in a private copy of the host folder ``cwd`` (which is under ``root``).

        The copy is deleted afterwards, with every process the command started. At
        ``timeout`` seconds the whole process group is killed and the result has
        ``timed_out=True``. ``env`` adds to (or overrides) the sandbox's environment.
        A failing command is a normal result (non-zero ``exit_code``), never an exception.

        Raises:
            ValueError: ``cwd`` is not a folder under ``root``.
            SandboxError: the sandbox itself failed (the container is gone, a tool is
                missing on the host, the engine stopped answering). An infrastructure
                failure, never a test failure.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the sandbox (stop and remove its container). Idempotent; never raises."""

    def _check_cwd(self, cwd: Path) -> Path:
        cwd = Path(cwd).resolve()
        try:
            cwd.relative_to(self.root)
        except ValueError:
            raise ValueError(f"{cwd} is not under the sandbox root {self.root}") from None
        if not cwd.is_dir():
            raise ValueError(f"{cwd} is not a folder")
        return cwd

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _tools_dir() -> Path:
    """``docker/bin`` of the installed package: the per-language test scripts."""
    from localcode.paths import package_dir

    return package_dir("docker") / "bin"


def _copy_workspace(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` with every copied file and folder writable by its owner."""
    shutil.copytree(src, dst, symlinks=True)
    for dirpath, dirnames, filenames in os.walk(dst):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o200)
    dst.chmod(dst.stat().st_mode | 0o200)


class LocalSandbox(Sandbox):
    """Runs commands with the host's toolchains, for machines without Docker.

    No network, memory or process limits: only the workspace copy and the timeout
    (the command gets its own process group, killed as a whole). The per-language
    scripts of ``docker/bin`` are put first on ``PATH``; Rust builds share one target
    folder under ``cache_dir`` so crates compile once. JavaScript needs the jest
    toolchain installed once (``npm ci`` in ``docker/npm``) and
    ``LOCALCODE_NODE_MODULES`` pointing at its ``node_modules``; Java needs Debian's
    ``junit5`` (or ``JUNIT_CONSOLE`` naming a JUnit console launcher jar).
    """

    def __init__(self, root: Path, *, cache_dir: Path | None = None, kill_grace_s: float = 2.0) -> None:
        """Args:
        root: the host folder holding the task workspaces.
        cache_dir: where shared build caches go (default: localcode's cache dir).
        kill_grace_s: seconds between SIGTERM and SIGKILL at the timeout.
        """
        from localcode import paths

        self.root = Path(root).resolve()
        self._cache_dir = Path(cache_dir) if cache_dir else paths.cache_dir() / "local-sandbox"
        self._kill_grace_s = kill_grace_s
        self._closed = False
        self._live: set[int] = set()
        """Process groups of the commands running now (killed by ``close``)."""

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{_tools_dir()}{os.pathsep}{env.get('PATH', '')}"
        env.setdefault("CARGO_TARGET_DIR", str(self._cache_dir / "cargo-target"))
        env.setdefault("NPM_CONFIG_UPDATE_NOTIFIER", "false")
        env.setdefault("CARGO_TERM_COLOR", "never")
        if extra:
            env.update(extra)
        return env

    def exec(
        self,
        argv: list[str],
        timeout: float,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> ExecResult:
        """Run ``argv`` in a temporary copy of ``cwd``; see ``Sandbox.exec``.

        Raises:
            ValueError: ``cwd`` is not a folder under ``root``.
            SandboxError: the sandbox is closed, or ``argv[0]`` is not installed on the host.
        """
        if self._closed:
            raise SandboxError("the local sandbox is closed: create a new one")
        cwd = self._check_cwd(cwd)
        full_env = self._env(env)
        exe = shutil.which(argv[0], path=full_env["PATH"])
        script = _tools_dir() / argv[0]
        if exe is None and script.is_file():
            exe = "sh"  # a test script whose exec bit an installation dropped
            argv = [exe, str(script), *argv[1:]]
        if exe is None:
            raise SandboxError(
                f"{argv[0]} is not installed on this machine: install it, or use the Docker sandbox"
            )
        with tempfile.TemporaryDirectory(prefix="localcode-run-") as tmp:
            scratch = Path(tmp) / cwd.name
            _copy_workspace(cwd, scratch)
            result = self._run([exe, *argv[1:]], timeout, scratch, full_env)
        output = result.output.replace(str(scratch), str(cwd))
        return result.model_copy(update={"output": output})

    def _run(self, argv: list[str], timeout: float, cwd: Path, env: dict[str, str]) -> ExecResult:
        return run_process_group(argv, timeout, cwd, env, kill_grace_s=self._kill_grace_s, live=self._live)

    def close(self) -> None:
        """Kill the process groups of commands still running (their ``exec`` returns at once, e.g.
        after Ctrl-C); later ``exec`` calls raise ``SandboxError``. Idempotent; never raises."""
        self._closed = True
        for pgid in list(self._live):
            _killpg(pgid, signal.SIGKILL)


def run_process_group(argv: list[str], timeout: float, cwd: Path, env: dict[str, str], *,
                      kill_grace_s: float = 2.0, output_limit: int | None = None,
                      live: set[int] | None = None) -> ExecResult:
    """Run ``argv`` on this machine in a process group of its own; stdout and stderr interleaved.

    At ``timeout`` the group gets SIGTERM, then SIGKILL after ``kill_grace_s``; on every path
    (Ctrl-C included) whatever the command left running in the background is killed too (it
    would hold the output pipe open and outlive the caller). ``live`` holds the group's id
    while it runs, so another thread can kill it.
    """
    buffer = OutputBuffer() if output_limit is None else OutputBuffer(output_limit)
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, killed as a whole
    )
    assert proc.stdout is not None
    stream = proc.stdout
    if live is not None:
        live.add(proc.pid)

    def pump() -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            buffer.write(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=kill_grace_s)
        except subprocess.TimeoutExpired:
            pass
    finally:
        _killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if live is not None:
            live.discard(proc.pid)
    duration = time.monotonic() - start
    reader.join(timeout=5)
    stream.close()
    return ExecResult(
        exit_code=None if timed_out else proc.returncode,
        output=buffer.text(),
        timed_out=timed_out,
        duration_s=duration,
    )


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
