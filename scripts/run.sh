#!/usr/bin/env bash
# The main job: install everything (scripts/bootstrap.sh), then benchmark an agent.
# Without arguments: the demo agent on one exercise per language, two tries.
# With arguments: they are passed to `localcode bench`, e.g.
#   scripts/run.sh --agent gguf/qwen3-coder-next-q4km --all
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -z "${LOCALCODE_DATASET:-}" ] && [ -d ../shared/datasets/polyglot-benchmark ]; then
  export LOCALCODE_DATASET="$(cd ../shared/datasets/polyglot-benchmark && pwd)"
fi
if [ "$#" -eq 0 ]; then
  set -- --agent gguf/gemma-3-270m -k cpp/all-your-base,go/bowling,java/bowling,javascript/bowling,python/bowling,rust/bowling --tries 2
fi
exec .venv/bin/localcode bench "$@"
