"""Running one benchmark step in a fresh interpreter and reading its result back.

Peak memory is per process, so the memory benchmarks run each step in a new Python and
have it print ``MARKER + json`` as its last word.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_marked(command: list[str], marker: str) -> dict[str, Any]:
    """Run ``command`` from the repository root; the JSON object after the last stdout
    line that starts with ``marker``, or ``{"error": <its last stderr line>}``."""
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(marker):
            return json.loads(line[len(marker) :])
    return {"error": (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]}
