"""Building the test image (``docker/``) through the Docker SDK.

The image is tagged ``localcode-test:<hash of the docker/ folder>``: an unchanged
folder reuses the image, any edit builds a new one.

Its base is ``debian:trixie-slim`` when Docker Hub can be reached or the image is
already present. Where Docker Hub cannot be reached, ``ensure_image`` makes the base
itself: ``debootstrap --variant=minbase trixie`` from Debian's mirror, then
``docker import`` as ``localcode-base:trixie`` (needs root and the ``debootstrap``
package). A CA bundle can be passed into the build (``ca_bundle``) so npm trusts a
TLS-intercepting proxy; by default the host's bundle is used when it exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localcode.errors import DockerUnavailable, ImageBuildError
from localcode.harness.docker_sandbox import docker_client, import_docker_sdk

if TYPE_CHECKING:
    import docker

IMAGE_REPOSITORY = "localcode-test"
UPSTREAM_BASE = "debian:trixie-slim"
LOCAL_BASE = "localcode-base:trixie"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

Progress = Callable[[str], None]
"""Receives one line of build progress at a time."""

_IGNORED_NAMES = {"__pycache__", "__init__.py", "build-ca", ".DS_Store"}


def docker_dir() -> Path:
    """The ``docker/`` folder shipped with the package (the build context)."""
    from localcode.paths import package_dir

    return package_dir("docker")


def _context_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _IGNORED_NAMES or part.endswith(".pyc") for part in rel.parts):
            continue
        if path.is_file():
            yield path


def context_hash(root: Path | None = None) -> str:
    """A short hash of the build context's file names and contents.

    File modes are left out: an installed wheel may not keep them, and the Dockerfile
    sets the modes it needs.
    """
    root = root or docker_dir()
    digest = hashlib.sha256()
    for path in _context_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def image_tag(root: Path | None = None) -> str:
    """``localcode-test:<hash>`` for the given (default: the shipped) ``docker/`` folder."""
    return f"{IMAGE_REPOSITORY}:{context_hash(root)}"


def default_ca_bundle() -> Path | None:
    """The CA bundle to trust during the build: ``$LOCALCODE_CA_BUNDLE``, else the host's."""
    env = os.environ.get("LOCALCODE_CA_BUNDLE")
    if env:
        return Path(env) if env.lower() not in ("", "none", "0", "false") else None
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.is_file() else None


def _stderr_progress() -> Progress:
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    return lambda line: console.print(line, markup=False)


def _image_exists(client: docker.DockerClient, name: str) -> bool:
    errors = import_docker_sdk().errors
    try:
        client.images.get(name)
        return True
    except errors.ImageNotFound:
        return False


def ensure_image(
    *,
    progress: Progress | None = None,
    ca_bundle: Path | None | bool = True,
    base_image: str | None = None,
    rebuild: bool = False,
    context: Path | None = None,
    client: docker.DockerClient | None = None,
) -> str:
    """Return the tag of the test image, building it (and its base) when missing.

    Args:
        progress: receives progress lines (default: printed on stderr).
        ca_bundle: a CA bundle file to trust while installing npm packages; ``True``
            means ``default_ca_bundle()``, ``False``/``None`` means none.
        base_image: use this base instead of finding one (``$LOCALCODE_BASE_IMAGE`` too).
        rebuild: build again from scratch (no layer cache) even if the tagged image exists.
        context: the build context (default: the shipped ``docker/`` folder).
        client: a Docker client to reuse.

    Raises:
        DockerUnavailable: no Docker engine answers.
        ImageBuildError: the base image or the test image could not be built.
    """
    progress = progress or _stderr_progress()
    client = client or docker_client(timeout=3600)  # a silent build step may take long
    context = context or docker_dir()
    tag = image_tag(context)
    if not rebuild and _image_exists(client, tag):
        return tag
    base = base_image or os.environ.get("LOCALCODE_BASE_IMAGE") or resolve_base_image(client, progress)
    bundle = default_ca_bundle() if ca_bundle is True else (ca_bundle or None)
    if bundle is not None and not Path(bundle).is_file():
        raise ImageBuildError(f"CA bundle {bundle} does not exist: pass an existing file or none")
    progress(f"building the test image {tag} from {base} (several minutes the first time)")
    start = time.monotonic()
    _build(client, context, tag, base, bundle, progress, no_cache=rebuild)
    progress(f"built {tag} in {time.monotonic() - start:.0f} s")
    return tag


def _build(
    client: docker.DockerClient,
    context: Path,
    tag: str,
    base: str,
    bundle: Path | None,
    progress: Progress,
    *,
    no_cache: bool = False,
) -> None:
    with tempfile.TemporaryDirectory(prefix="localcode-image-") as tmp:
        ctx = Path(tmp) / "context"
        shutil.copytree(context, ctx, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build-ca"))
        (ctx / "build-ca").mkdir()
        if bundle is not None:
            shutil.copyfile(bundle, ctx / "build-ca" / "ca.crt")
        else:
            (ctx / "build-ca" / ".none").write_text("")
        log: list[str] = []
        try:
            for event in client.api.build(
                path=str(ctx),
                tag=tag,
                buildargs={"BASE_IMAGE": base},
                rm=True,
                forcerm=True,
                pull=False,
                nocache=no_cache,
                decode=True,
                labels={"localcode.context-hash": tag.split(":", 1)[1]},
            ):
                _report(event, log, progress)
        except ImageBuildError:
            raise
        except Exception as err:  # noqa: BLE001 - engine errors during the build
            raise ImageBuildError(f"building {tag} failed: {_one_line(err)}") from err
        if not _image_exists(client, tag):
            raise ImageBuildError(f"building {tag} finished without an image: {_tail(log)}")


def _report(event: dict[str, Any], log: list[str], progress: Progress) -> None:
    if "error" in event:
        detail = event.get("errorDetail", {}).get("message") or event["error"]
        raise ImageBuildError(f"building the test image failed: {_one_line(detail)} ({_tail(log)})")
    text = event.get("stream") or event.get("status") or ""
    for line in text.splitlines():
        line = line.rstrip()
        if line:
            log.append(line)
            del log[:-50]
            progress(line)


def _tail(log: list[str]) -> str:
    last = [line for line in log[-5:] if line.strip()]
    return " | ".join(last)[-300:] or "no output"


def resolve_base_image(client: docker.DockerClient, progress: Progress, pull_timeout: float = 20.0) -> str:
    """The base image to build on: ``debian:trixie-slim`` if present or pullable,
    else ``localcode-base:trixie`` (made with debootstrap when missing).

    Raises:
        ImageBuildError: Docker Hub is unreachable and the base cannot be made.
    """
    if _image_exists(client, UPSTREAM_BASE):
        return UPSTREAM_BASE
    if _image_exists(client, LOCAL_BASE):
        return LOCAL_BASE
    progress(f"pulling {UPSTREAM_BASE} (giving up after {pull_timeout:.0f} s)")
    if _try_pull(UPSTREAM_BASE, pull_timeout):
        return UPSTREAM_BASE
    progress(f"Docker Hub cannot be reached: making {LOCAL_BASE} with debootstrap")
    return make_base_image(client, progress=progress)


def _try_pull(image: str, timeout: float) -> bool:
    """Pull ``image`` in a thread; False when it fails or does not finish in time."""
    outcome: list[bool] = []

    def pull() -> None:
        try:
            c = docker_client(timeout=timeout)
            repo, _, tag = image.partition(":")
            c.images.pull(repo, tag=tag or "latest")
            outcome.append(True)
        except Exception:  # noqa: BLE001 - unreachable registry, DNS, auth: all "no"
            outcome.append(False)

    worker = threading.Thread(target=pull, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(outcome and outcome[0])


def make_base_image(
    client: docker.DockerClient | None = None,
    *,
    progress: Progress | None = None,
    suite: str = "trixie",
    mirror: str = DEBIAN_MIRROR,
    tag: str = LOCAL_BASE,
) -> str:
    """Make a minimal Debian base image with debootstrap and ``docker import``; returns ``tag``.

    Raises:
        ImageBuildError: debootstrap is missing, not root, or debootstrap/import failed.
    """
    progress = progress or _stderr_progress()
    client = client or docker_client(timeout=3600)  # a silent build step may take long
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageBuildError(
            "debootstrap is not installed (needed because Docker Hub cannot be reached): "
            "apt-get install debootstrap, or docker pull debian:trixie-slim"
        )
    if os.geteuid() != 0:
        raise ImageBuildError(
            "making the base image with debootstrap needs root: run `sudo localcode setup` once, "
            "or docker pull debian:trixie-slim"
        )
    with tempfile.TemporaryDirectory(prefix="localcode-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run_logged(
            [debootstrap, "--variant=minbase", suite, str(rootfs), mirror],
            progress,
            f"debootstrap of Debian {suite} from {mirror} failed",
        )
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tarball = Path(tmp) / "rootfs.tar"
        _run_logged(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], progress, "packing the base image failed")
        progress(f"importing {tag}")
        repo, _, version = tag.partition(":")
        try:
            client.api.import_image_from_file(str(tarball), repository=repo, tag=version or "latest")
        except Exception as err:  # noqa: BLE001
            raise ImageBuildError(f"docker import of the base image failed: {_one_line(err)}") from err
    if not _image_exists(client, tag):
        raise ImageBuildError(f"docker import did not create {tag}: check `docker images`")
    return tag


def _run_logged(argv: list[str], progress: Progress, failure: str) -> None:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    last: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            progress(line)
            last = [*last[-4:], line]
    if proc.wait() != 0:
        raise ImageBuildError(f"{failure}: {' | '.join(last)[-300:]}")


def _one_line(err: object) -> str:
    return " ".join(str(err).split())[:400]


__all__ = [
    "DockerUnavailable",
    "ImageBuildError",
    "context_hash",
    "default_ca_bundle",
    "docker_dir",
    "ensure_image",
    "image_tag",
    "make_base_image",
    "resolve_base_image",
]
