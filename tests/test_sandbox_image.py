"""Building images through the Docker SDK: tagging by content hash, reuse, errors.

The build tests use tiny contexts on top of the already-built test image, so they take
seconds; the real docker/ folder is built by `localcode setup` (and by sandbox_util).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from localcode.errors import ImageBuildError
from localcode.harness.image import context_hash, docker_dir, image_tag, make_base_image


def test_context_hash_follows_content_and_ignores_python_files(tmp_path):
    ctx = tmp_path / "ctx"
    shutil.copytree(docker_dir(), ctx, ignore=shutil.ignore_patterns("__pycache__"))
    h = context_hash(ctx)
    assert h == context_hash(docker_dir())
    assert image_tag(ctx) == f"localcode-test:{h}"
    (ctx / "__pycache__").mkdir(exist_ok=True)
    (ctx / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (ctx / "build-ca").mkdir()
    (ctx / "build-ca" / "ca.crt").write_text("not part of the image identity")
    assert context_hash(ctx) == h
    script = ctx / "bin" / "localcode-test-cpp"
    script.write_text(script.read_text() + "\n# edited\n")
    assert context_hash(ctx) != h
    edited = context_hash(ctx)
    script.chmod(0o644)
    assert context_hash(ctx) == edited  # modes do not count: a wheel may drop them


def test_shipped_context_is_complete():
    ctx = docker_dir()
    for rel in ("Dockerfile", "npm/package.json", "npm/package-lock.json", "warm/warm.sh", "cpp/catch.hpp"):
        assert (ctx / rel).is_file(), rel


def test_missing_debootstrap_is_one_actionable_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ImageBuildError) as info:
        make_base_image(client=object(), progress=lambda line: None)  # fails before any engine call
    msg = str(info.value)
    assert "apt-get install debootstrap" in msg and "\n" not in msg


@pytest.mark.docker
def test_build_reuse_and_failure(tmp_path):
    from sandbox_util import test_image

    base = test_image()
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nCOPY build-ca/ /tmp/ca/\nRUN ls /tmp/ca > /tmp/ca.list\nLABEL test={tmp_path.name}\n"
    )
    lines: list[str] = []
    from localcode.harness.docker_sandbox import docker_client
    from localcode.harness.image import ensure_image

    client = docker_client()
    bundle = tmp_path / "bundle.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    tag = ensure_image(progress=lines.append, context=ctx, base_image=base, ca_bundle=bundle, client=client)
    try:
        assert tag == image_tag(ctx)
        assert any("Step" in line or "FROM" in line for line in lines), lines
        out = client.containers.run(tag, ["cat", "/tmp/ca.list"], remove=True).decode()
        assert out.strip() == "ca.crt"  # the CA bundle reached the build
        again: list[str] = []
        assert ensure_image(progress=again.append, context=ctx, base_image=base, client=client) == tag
        assert again == [], "an unchanged context must reuse the image"
    finally:
        client.images.remove(tag, force=True)

    (ctx / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo about to fail && false\n")
    with pytest.raises(ImageBuildError) as info:
        ensure_image(progress=lambda line: None, context=ctx, base_image=base, ca_bundle=False, client=client)
    msg = str(info.value)
    assert "\n" not in msg and "returned a non-zero code" in msg
