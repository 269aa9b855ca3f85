"""Starting a run as a process of its own, so that it outlives the app.

The app records the run in the store (:meth:`engine.Tuner.save`) and starts
``codellmtuner resume RUN --headless`` in a new session: closing the app, the terminal
or the SSH connection leaves it running, the way a job under tmux or ``nohup`` does. The
app then follows it through the store like ``codellmtuner watch``, and pauses or stops
it with requests through the store.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from engine import Store
from engine.errors import TunerError, first_line


@dataclass
class LaunchedRun:
    """A run process this app started: ``log`` holds what it printed."""

    run_id: str
    process: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        """Whether the process has ended (and is reaped, so its pid is free again)."""
        return self.process.poll() is not None


def log_path(store_path: str, run_id: str) -> Path:
    """Where a launched run writes its output: ``STORE.logs/RUN.log`` beside the store,
    or for a PostgreSQL store ``DATABASE.logs/RUN.log`` in this working directory."""
    if Store.is_url(store_path):
        database = urlsplit(store_path).path.strip("/") or "postgres"
        return Path(f"{database}.logs").resolve() / f"{run_id}.log"
    store = Path(store_path).resolve()
    return store.parent / f"{store.name}.logs" / f"{run_id}.log"


def launch(run_id: str, store_path: str) -> LaunchedRun:
    """Start ``codellmtuner resume RUN --headless --store STORE`` in a new session, in
    this working directory (a run's relative paths, such as its dataset, mean the same
    there), with its output appended to :func:`log_path`.

    Raises:
        TunerError: the log cannot be written or the process cannot start; the run stays
            in the store, and the message says how to start it by hand.
    """
    log = log_path(store_path, run_id)
    store = store_path if Store.is_url(store_path) else str(Path(store_path).resolve())
    command = [sys.executable, "-m", "tui.commands", "resume", run_id, "--headless"]
    command += ["--store", store]
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
    except OSError as error:
        raise TunerError(
            f"cannot start run {run_id} in a process of its own ({first_line(error)}); start "
            f"it with `codellmtuner resume {run_id} --headless --store {store}`"
        ) from error
    return LaunchedRun(run_id, process, log)
