"""The Docker sandbox: one long-lived container per benchmark run that only runs tests.

The container is started once with the sandbox root bind-mounted **read-only** at
``/mnt/root``, no network, memory and process limits, no capabilities, and an
unprivileged user. Each ``exec`` is a ``docker exec`` **as a user id of its own** (a fresh
uid from ``EXEC_UIDS``, the container user's group) of a small shell wrapper that

1. copies the workspace into a private folder (mode 700) on the container's ``/scratch``
   tmpfs, with the command's ``HOME``, ``TMPDIR`` and ``GOPATH`` inside it,
2. runs the command there under ``timeout`` (TERM, then KILL after a grace period, sent
   to the command's whole process group),
3. kills every process of its uid (``kill -9 -1``): whatever the command started, even
   what left the process group, the session or cleared its environment (``setsid env -i
   ...``), and nothing of another exec, whose uid differs,
4. deletes what its uid left in ``/tmp``, ``/var/tmp`` and ``/dev/shm``, and the private
   folder: nothing one command writes there is seen by a later test run or another task.

The shared build caches (Go, Cargo, ccache, jest) stay shared between execs, as the image
warmed them; the wrapper's ``umask 000`` keeps them writable for every exec uid.

The Docker SDK has no timeout for ``exec``, so the host also keeps a watchdog: if the
wrapper has not returned shortly after the timeout, the host kills the exec's processes
with a second ``docker exec`` and stops waiting.

Because the mount is read-only, nothing a test does can change a file on the host:
neither its own workspace nor another task's.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localcode.errors import DockerUnavailable, SandboxError
from localcode.harness.sandbox import ExecResult, OutputBuffer, Sandbox

if TYPE_CHECKING:
    import docker

CONTAINER_ROOT = "/mnt/root"
"""Where the sandbox root appears inside the container."""

SCRATCH = "/scratch"
"""The container's tmpfs for the private copies of workspaces."""

LABEL = "localcode.sandbox"
"""Label on every sandbox container (value: the host process id), to find leftovers."""

HOST_LABEL = "localcode.host"
"""Label on every sandbox container (value: the host name): process ids mean something only there."""

EXEC_UIDS = range(200_000, 300_000)
"""User ids given to execs in turn: each exec runs as a uid no other live exec has."""

# $1 workspace (container path)  $2 private copy  $3 timeout seconds  $4 kill grace  $5.. argv
_WRAPPER = r"""
exec 2>&1
src=$1 dst=$2 t=$3 grace=$4
shift 4
box=${dst%/*}
# Shared caches stay writable for the other exec uids; the private folder is mode 700.
umask 000
if ! { mkdir -p "$dst" "$box/tmp" "$box/home" && chmod 700 "$box" && cp -R "$src/." "$dst/" && chmod -R u+w "$dst"; }; then
    echo "localcode-exec: cannot copy the workspace"; exit 125
fi
export HOME="$box/home" TMPDIR="$box/tmp" GOPATH="$box/go"
cd "$dst" || exit 125
# timeout leads a process group of its own (its pid is the group id) holding the command
# and whatever it starts without leaving the group; at the timeout it signals that group.
timeout -k "$grace" "$t" "$@" </dev/null &
group=$!
wait "$group"
rc=$?
cd /
_lc_cleanup() {
    # This exec's uid is its own: kill(-1) reaches every process it started, wherever it
    # went (new session, cleared environment), never another exec's, never this shell.
    # kill is a shell builtin: it works even when a fork bomb has used up the pids limit.
    i=0
    while [ "$i" -lt 200 ] && kill -9 -1 2>/dev/null; do i=$((i + 1)); done
    find /tmp /var/tmp /dev/shm -xdev -mindepth 1 -user "$(id -u)" -prune -exec rm -rf {} + 2>/dev/null
    rm -rf "$box" 2>/dev/null
}
_lc_cleanup
exit $rc
"""

_KILLER = r"""
i=0
while [ "$i" -lt 200 ] && kill -9 -1 2>/dev/null; do i=$((i + 1)); done
find /tmp /var/tmp /dev/shm -xdev -mindepth 1 -user "$(id -u)" -prune -exec rm -rf {} + 2>/dev/null
rm -rf "/scratch/$1" 2>/dev/null
true
"""


def engine_url() -> str:
    """The Docker engine address the SDK uses (``DOCKER_HOST`` or the default socket)."""
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")


def import_docker_sdk() -> Any:
    """The Docker SDK module (``docker``), imported lazily so ``localcode --help`` stays fast.

    Raises:
        DockerUnavailable: the ``docker`` package is not installed.
    """
    try:
        import docker
    except ImportError:  # pragma: no cover - a core dependency
        raise DockerUnavailable("the docker Python package is missing: pip install docker") from None
    return docker


def docker_client(timeout: float = 120.0) -> docker.DockerClient:
    """A connected Docker client.

    Raises:
        DockerUnavailable: the ``docker`` package is missing or no engine answers.
    """
    docker = import_docker_sdk()
    try:
        client = docker.from_env(timeout=timeout, max_pool_size=64)
        client.ping()
    except Exception as err:  # noqa: BLE001 - any failure here means "no engine"
        raise DockerUnavailable(
            f"Docker engine not reachable at {engine_url()}: start Docker Desktop or dockerd"
        ) from err
    return client


def _default_user() -> str:
    """The host's uid:gid, so the container can read what the host user can; root maps
    to ``nobody`` because the container never needs root."""
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        return "65534:65534"
    return f"{uid}:{gid}"


def _remove_container(client: Any, container_id: str) -> None:
    try:
        client.api.remove_container(container_id, force=True)
    except Exception:  # noqa: BLE001 - best effort at close / exit; already gone is fine
        pass


class DockerSandbox(Sandbox):
    """One container for a whole benchmark run; each ``exec`` is a ``docker exec``.

    Several ``exec`` calls may run at the same time (one thread each). The container is
    removed by ``close()``, by the context manager on any exception including Ctrl-C,
    and, as a last resort, when the object is garbage-collected or the interpreter exits.
    """

    def __init__(
        self,
        root: Path,
        image: str,
        *,
        memory: str = "4g",
        pids_limit: int = 4096,
        cpus: float | None = None,
        user: str | None = None,
        scratch_size: str = "2g",
        kill_grace_s: float = 2.0,
        watchdog_grace_s: float = 15.0,
        client: docker.DockerClient | None = None,
    ) -> None:
        """Start the container.

        Args:
            root: host folder with the task workspaces, mounted read-only.
            image: the test image (``ensure_image()`` returns it).
            memory: memory limit of the whole container (no swap), e.g. ``"4g"``.
            pids_limit: most processes and threads alive at once in the container.
            cpus: CPU limit (e.g. ``2.0``); None for no limit.
            user: ``uid:gid`` to run as; default the host user (``nobody`` for root). When
                it is not the host user, ``root`` gets o+rx so that user can enter it.
            scratch_size: size of the tmpfs holding the private workspace copies.
            kill_grace_s: seconds between SIGTERM and SIGKILL at a timeout.
            watchdog_grace_s: how long past the timeout the host waits for the exec.
            client: a Docker client to reuse (default: one from the environment).

        Raises:
            DockerUnavailable: no Docker engine answers.
            SandboxError: the container could not be started (e.g. the image is missing).
        """
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SandboxError(f"sandbox root {self.root} is not a folder: create it first")
        self.image = image
        self.user = user or _default_user()
        self._kill_grace_s = kill_grace_s
        self._watchdog_grace_s = watchdog_grace_s
        self._uids = itertools.cycle(EXEC_UIDS)
        # Execs run as uids of their own: they must be able to enter the mounted root.
        # Workspaces and test folders below are created readable by all.
        mode = self.root.stat().st_mode
        if mode & 0o005 != 0o005:
            self.root.chmod(mode | 0o005)
        self._client = client or docker_client()
        try:
            remove_stale_containers(self._client)  # left by a run that was killed (SIGKILL, power loss)
        except Exception:  # noqa: BLE001 - housekeeping must not stop a run
            pass
        self._closed = False
        self._lock = threading.Lock()
        name = f"localcode-sandbox-{uuid.uuid4().hex[:12]}"
        try:
            container = self._client.containers.run(
                image,
                command=["sleep", "infinity"],
                name=name,
                detach=True,
                init=True,  # a real PID 1 reaps orphans left by killed tests
                network_mode="none",
                mem_limit=memory,
                memswap_limit=memory,
                pids_limit=pids_limit,
                nano_cpus=int(cpus * 1e9) if cpus else None,
                user=self.user,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                volumes={str(self.root): {"bind": CONTAINER_ROOT, "mode": "ro"}},
                tmpfs={
                    SCRATCH: f"size={scratch_size},mode=1777,exec",
                    "/tmp": "size=1g,mode=1777,exec",
                },
                environment={"HOME": "/tmp"},
                labels={LABEL: str(os.getpid()), HOST_LABEL: socket.gethostname()},
                working_dir=SCRATCH,
            )
        except Exception as err:  # noqa: BLE001
            _remove_container(self._client, name)
            raise SandboxError(f"could not start the test container from {image}: {_one_line(err)}") from err
        self.container_id: str = container.id
        self.name = name
        self._finalizer = weakref.finalize(self, _remove_container, self._client, self.container_id)

    def _container_path(self, cwd: Path) -> str:
        rel = cwd.relative_to(self.root)
        return f"{CONTAINER_ROOT}/{rel.as_posix()}" if rel.parts else CONTAINER_ROOT

    def exec(
        self,
        argv: list[str],
        timeout: float,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> ExecResult:
        """Run ``argv`` in a private copy of ``cwd`` inside the container; see ``Sandbox.exec``.

        Raises:
            ValueError: ``cwd`` is not a folder under ``root``.
            SandboxError: the sandbox is closed, or the container or engine failed.
        """
        if self._closed:
            raise SandboxError("the Docker sandbox is closed: create a new one")
        cwd = self._check_cwd(cwd)
        exec_id = uuid.uuid4().hex[:16]
        scratch = f"{SCRATCH}/{exec_id}/{cwd.name}"
        environment = {**(env or {}), "LOCALCODE_EXEC_ID": exec_id}
        with self._lock:
            uid = next(self._uids)
        exec_user = f"{uid}:{self.user.split(':')[1] if ':' in self.user else uid}"
        cmd = [
            "sh", "-c", _WRAPPER, "localcode-exec",
            self._container_path(cwd), scratch, f"{timeout:g}", f"{self._kill_grace_s:g}",
            *argv,
        ]  # fmt: skip
        api = self._client.api
        buffer = OutputBuffer()
        errors: list[BaseException] = []
        start = time.monotonic()
        try:
            created = api.exec_create(
                self.container_id, cmd, user=exec_user, environment=environment, workdir="/"
            )
            stream = api.exec_start(created["Id"], stream=True, demux=False)
        except Exception as err:  # noqa: BLE001
            raise SandboxError(f"docker exec failed in {self.name}: {_one_line(err)}") from err

        def pump() -> None:
            try:
                for chunk in stream:
                    buffer.write(chunk)
            except BaseException as err:  # noqa: BLE001 - reported by the caller
                errors.append(err)

        reader = threading.Thread(target=pump, name=f"exec-{exec_id}", daemon=True)
        reader.start()
        reader.join(timeout + self._kill_grace_s + self._watchdog_grace_s)
        watchdog_fired = reader.is_alive()
        if watchdog_fired:
            self._kill_exec(exec_id, exec_user)
            reader.join(10)
        duration = time.monotonic() - start
        if errors and not watchdog_fired:
            raise SandboxError(f"docker exec failed in {self.name}: {_one_line(errors[0])}")

        exit_code: int | None = None
        if not watchdog_fired:
            try:
                exit_code = api.exec_inspect(created["Id"]).get("ExitCode")
            except Exception as err:  # noqa: BLE001
                raise SandboxError(f"docker exec inspect failed in {self.name}: {_one_line(err)}") from err
        if exit_code == 125 and "localcode-exec: cannot copy the workspace" in buffer.text():
            raise SandboxError(f"could not copy {cwd} into the container: {buffer.text().strip()[:300]}")
        # `timeout` exits 124 after SIGTERM worked, 137 (128+KILL) when SIGKILL was needed.
        timed_out = watchdog_fired or (exit_code in (124, 137) and duration >= timeout)
        output = buffer.text().replace(scratch, str(cwd)).replace(self._container_path(cwd), str(cwd))
        return ExecResult(
            exit_code=None if timed_out else exit_code,
            output=output,
            timed_out=timed_out,
            duration_s=duration,
        )

    def _kill_exec(self, exec_id: str, exec_user: str) -> None:
        """Kill every process of one exec, from a second exec as its uid (the host-side watchdog)."""
        try:
            api = self._client.api
            created = api.exec_create(
                self.container_id, ["sh", "-c", _KILLER, "localcode-kill", exec_id], user=exec_user
            )
            api.exec_start(created["Id"])
        except Exception:  # noqa: BLE001 - the container may be gone; close() removes it anyway
            pass

    def ping(self) -> float:
        """Seconds for a no-op ``docker exec`` round trip (``true``), the per-run overhead."""
        start = time.monotonic()
        api = self._client.api
        created = api.exec_create(self.container_id, ["true"], user=self.user)
        api.exec_start(created["Id"])
        return time.monotonic() - start

    def close(self) -> None:
        """Stop and remove the container. Idempotent; never raises."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._finalizer()

    def __repr__(self) -> str:
        return f"DockerSandbox(root={str(self.root)!r}, image={self.image!r}, name={self.name!r})"


def remove_stale_containers(client: docker.DockerClient | None = None) -> int:
    """Remove sandbox containers whose process on this host is gone (after a hard kill).

    Containers labelled with another host name are left alone: their process ids are not
    ours to check. Returns how many were removed.
    """
    client = client or docker_client()
    removed = 0
    here = socket.gethostname()
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        if c.labels.get(HOST_LABEL, here) != here:
            continue
        pid = int(c.labels.get(LABEL, "0") or 0)
        if pid and _pid_alive(pid):
            continue
        _remove_container(client, c.id)
        removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:400] or type(err).__name__


__all__ = ["HOST_LABEL", "LABEL", "DockerSandbox", "docker_client", "engine_url", "import_docker_sdk", "remove_stale_containers"]
