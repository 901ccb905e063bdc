#!/usr/bin/env bash
# Install everything localcode and its test suite need, on a Debian machine (root) or a Mac:
#   - a virtualenv in .venv with localcode and its extras (llama-cpp-python builds from source
#     the first time, ~7 minutes on 2 cores; pip caches the wheel);
#   - on Linux, the Docker engine (apt docker.io) started if it does not answer, and debootstrap;
#   - the test image (`localcode setup`), built once and reused while docker/ is unchanged.
# Idempotent: a second run only checks.  Usage: scripts/bootstrap.sh [--no-image]
set -euo pipefail
cd "$(dirname "$0")/.."
build_image=1
[ "${1:-}" = "--no-image" ] && build_image=0

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if [ "$(uname -s)" = "Linux" ]; then
  bash scripts/install-docker.sh
  sh scripts/install-chromium.sh  # headless Chromium for the HTML report tests
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
extras="gguf,serve,demo,test,coder,coder-small"
if python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then extras="$extras,mlx"; fi
extras="$extras,ray"  # bench --ray (tests start a local Ray cluster)
extras="$extras,report"  # matplotlib for the plots of `localcode report --html`
log "installing localcode[$extras] (llama-cpp-python compiles on first install)"
.venv/bin/python -m pip install --quiet --upgrade pip >&2
.venv/bin/python -m pip install --quiet -e ".[$extras]" >&2
# GGUF -> MLX conversion deps (CPU torch, transformers, gguf; OpenBLAS for mlx) for mlx/qwen2.5-coder-0.5b
case ",$extras," in *,mlx,*) bash scripts/make-mlx-coder.sh --deps-only ;; esac

# Chat templates and llama.cpp sources from the llama-cpp-python sdist (tests, benchmarks).
PATH="$PWD/.venv/bin:$PATH" bash scripts/fetch-llama-src.sh >/dev/null

if [ "$build_image" = 1 ]; then
  dataset="${LOCALCODE_DATASET:-}"
  if [ -z "$dataset" ] && [ -d ../shared/datasets/polyglot-benchmark ]; then
    dataset="$(cd ../shared/datasets/polyglot-benchmark && pwd)"
  fi
  ca=()
  [ -f /etc/ssl/certs/ca-certificates.crt ] && ca=(--ca-bundle /etc/ssl/certs/ca-certificates.crt)
  log "building the test image"
  if [ -n "$dataset" ]; then
    .venv/bin/localcode setup --dataset "$dataset" "${ca[@]}"
  else
    .venv/bin/localcode setup "${ca[@]}"
  fi
fi
log "ready: .venv/bin/localcode"
