#!/usr/bin/env bash
# Install what the tests need (scripts/bootstrap.sh), then run the whole suite:
# unit tests, the real Docker sandbox, the real demo GGUF in-process, mlx on the CPU,
# and the official openai client against `localcode serve`.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not docker" -x
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -z "${LOCALCODE_DATASET:-}" ] && [ -d ../shared/datasets/polyglot-benchmark ]; then
  export LOCALCODE_DATASET="$(cd ../shared/datasets/polyglot-benchmark && pwd)"
fi
exec .venv/bin/python -m pytest -q "$@"
