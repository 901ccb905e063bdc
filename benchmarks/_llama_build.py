"""Build ``llama-bench`` and ``llama-server`` from the llama.cpp vendored in llama-cpp-python's sdist.

The side-by-side benchmarks compare localcode's in-process path with llama.cpp's own tools,
so both must come from the same source and the same compiler flags: Release, CPU,
``GGML_NATIVE`` (what pip's build of llama-cpp-python uses by default), shared ggml
libraries. The build is cached under ``~/.cache/localcode-dev/llama-build/<version>`` and
happens once; later calls return the cached binaries.

    python benchmarks/_llama_build.py          # build (if needed) and print the bin folder
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = ("llama-bench", "llama-server")


def llama_version() -> str:
    """The installed llama-cpp-python version (the sdist to build from)."""
    return importlib.metadata.version("llama-cpp-python")


def source_dir() -> Path:
    """The unpacked sdist, fetched by ``scripts/fetch-llama-src.sh`` (cached)."""
    out = subprocess.run(["bash", str(REPO / "scripts" / "fetch-llama-src.sh")], check=True,
                         capture_output=True, text=True).stdout.strip()
    return Path(out.splitlines()[-1])


def build_dir() -> Path:
    """Where the cmake build lives."""
    return Path.home() / ".cache" / "localcode-dev" / "llama-build" / llama_version()


def binary(name: str) -> Path:
    """Path of a built tool; builds the tools first when missing."""
    path = build_dir() / "bin" / name
    if not path.exists():
        build()
    return path


def build(jobs: int | None = None) -> Path:
    """Configure and build the two targets; returns the ``bin`` folder."""
    src = source_dir() / "vendor" / "llama.cpp"
    out = build_dir()
    if all((out / "bin" / t).exists() for t in TARGETS):
        return out / "bin"
    jobs = jobs or os.cpu_count() or 2
    print(f"building {', '.join(TARGETS)} from {src} into {out} (once; takes minutes)", file=sys.stderr)
    subprocess.run(
        ["cmake", "-S", str(src), "-B", str(out), "-G", "Ninja",
         "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON",
         "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_UI=OFF",
         "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF",
         "-DGGML_METAL=OFF", "-DGGML_CUDA=OFF"],
        check=True, stdout=sys.stderr,
    )
    subprocess.run(["cmake", "--build", str(out), "--target", *TARGETS, "-j", str(jobs)],
                   check=True, stdout=sys.stderr)
    return out / "bin"


if __name__ == "__main__":
    print(build())
