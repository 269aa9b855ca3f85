"""The app in a real terminal: time to first frame, and key-to-redraw latency while the
engine generates, against the same app idle.

    python -m benchmarks.app_latency [--presses 30] [--budget 9]

Drives ``codellmtuner`` inside a detached tmux session (tmux must be installed): it
presses the tab keys ``1``/``2`` and polls the terminal until the new tab shows, so each
figure covers the whole path a user sees (key → app → terminal). The live phase runs the
default job on the bundled model, which the app starts as a process of its own (it
generates on the same cores while the keys are pressed, and ``s`` stops it through the
store); the idle phase opens the stopped run from the store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

SESSION = "codellmtuner-latency"
TAB_MARKERS = {"1": "score by sample", "2": "adjusted score over the run"}


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def wait_for(text: str, timeout: float) -> float:
    """Seconds until ``text`` is on screen; polls every millisecond or so."""
    start = time.perf_counter()
    while text not in screen():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{text!r} did not appear within {timeout}s")
        time.sleep(0.001)
    return time.perf_counter() - start


def launch(command: list[str], cwd: Path, size: tuple[int, int] = (100, 30)) -> float:
    """Start ``command`` in tmux; returns seconds to the first frame (the header)."""
    tmux("kill-session", "-t", SESSION)
    start = time.perf_counter()
    tmux("new-session", "-d", "-s", SESSION, "-x", str(size[0]), "-y", str(size[1]),
         "-c", str(cwd), " ".join(command))  # fmt: skip
    while "⭘" not in screen():  # the header's icon: the app has drawn a frame
        if time.perf_counter() - start > 30:
            raise TimeoutError("no frame within 30 s")
        time.sleep(0.001)
    return time.perf_counter() - start


def key_latencies(presses: int) -> list[float]:
    latencies = []
    for i in range(presses):
        key = "2" if i % 2 == 0 else "1"
        tmux("send-keys", "-t", SESSION, key)
        latencies.append(wait_for(TAB_MARKERS[key], timeout=10))
        time.sleep(0.15)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument("--budget", type=int, default=9)
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("error: this benchmark needs tmux (apt-get install tmux)")
    exe = str(Path(sys.executable).with_name("codellmtuner"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        frames = []
        for _ in range(5):  # the first launch may compile bytecode and warm the disk cache
            frames.append(launch([exe], cwd))
            wait_for("new run", timeout=30)
            tmux("send-keys", "-t", SESSION, "q")
            time.sleep(0.5)
        rows.append(("first frame, setup screen", frames))

        launch([exe, "run", "--budget", str(args.budget), "--run-id", "bench"], cwd)
        wait_for("sampling", timeout=120)
        time.sleep(5)  # past model loading: the engine is generating now
        rows.append(("key→redraw, generating", key_latencies(args.presses)))
        tmux("send-keys", "-t", SESSION, "s")
        wait_for("stopped", timeout=600)
        tmux("send-keys", "-t", SESSION, "q")
        time.sleep(1)

        launch([exe, "watch", "bench"], cwd)
        wait_for("stopped", timeout=30)
        rows.append(("key→redraw, idle", key_latencies(args.presses)))
        tmux("send-keys", "-t", SESSION, "q")
    tmux("kill-session", "-t", SESSION)

    table = Table(title=f"app latency in tmux ({os.cpu_count()} CPUs)")
    for column in ("what", "n", "median ms", "p95 ms", "max ms"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for name, values in rows:
        ms = sorted(v * 1000 for v in values)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        table.add_row(name, str(len(ms)), f"{statistics.median(ms):.0f}", f"{p95:.0f}",
                      f"{ms[-1]:.0f}")  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
