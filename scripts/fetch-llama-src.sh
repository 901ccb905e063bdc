#!/usr/bin/env bash
# Unpack the llama-cpp-python source package (same version as installed) for tests and benchmarks:
# its vendored llama.cpp holds 70 real chat templates and the llama-bench / llama-server sources.
# Prints the folder. Reuses pip's cache, so it is cheap after the first time.
set -euo pipefail
version="${LLAMA_CPP_PYTHON_VERSION:-$(python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' 2>/dev/null || echo 0.3.36)}"
dest="${LOCALCODE_LLAMA_SRC:-$HOME/.cache/localcode-dev/llama-cpp-python-$version}"
if [ ! -d "$dest/vendor/llama.cpp/models/templates" ]; then
  tmp=$(mktemp -d)
  python -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$version" >&2
  mkdir -p "$(dirname "$dest")"
  tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
  rm -rf "$dest"
  mv "$tmp"/llama_cpp_python-"$version" "$dest"
  rm -rf "$tmp"
fi
echo "$dest"
