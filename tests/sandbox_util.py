"""Helpers shared by the Docker sandbox and runner tests (not a test module)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def dataset_root() -> Path:
    """The polyglot benchmark copy used by tests (``$LOCALCODE_TEST_DATASET`` overrides)."""
    for candidate in (
        os.environ.get("LOCALCODE_TEST_DATASET"),
        REPO.parent / "shared" / "datasets" / "polyglot-benchmark",
        "/work/shared/datasets/polyglot-benchmark",
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    pytest.fail("the polyglot benchmark copy is missing: set LOCALCODE_TEST_DATASET")


def test_image() -> str:
    """The test image (``$LOCALCODE_TEST_IMAGE``, else ``ensure_image()``, which builds it
    once, in minutes, when missing). Fails clearly without Docker."""
    from localcode.errors import SandboxError
    from localcode.harness.image import ensure_image

    if os.environ.get("LOCALCODE_TEST_IMAGE"):
        return os.environ["LOCALCODE_TEST_IMAGE"]
    try:
        return ensure_image(progress=lambda line: print(line, file=sys.stderr))
    except SandboxError as err:
        pytest.fail(f"the Docker test image is unavailable: {err}")


test_image.__test__ = False  # type: ignore[attr-defined]


def container_processes(container_id: str) -> list[str]:
    """Command lines of every process in the container but its own (init, sleep) and this probe."""
    from localcode.harness.docker_sandbox import docker_client

    probe = (
        'for p in /proc/[0-9]*; do n=${p#/proc/}; [ "$n" = 1 ] && continue; [ "$n" = $$ ] && continue; '
        'c=$(tr "\\0" " " < $p/cmdline 2>/dev/null); [ -n "$c" ] && echo "$n $c"; done'
    )
    result = docker_client().containers.get(container_id).exec_run(["sh", "-c", probe])
    lines = result.output.decode(errors="replace").splitlines()
    # PID 1 is docker-init; its child `sleep infinity` is the container's own command.
    return [
        line
        for line in lines
        if line.split(" ", 1)[-1].strip() != "sleep infinity" and "/proc/[0-9]" not in line
    ]


def write_files(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
