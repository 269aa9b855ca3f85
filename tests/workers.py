"""Workers with real processes, for the tests of runs with workers on either store."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from engine import Store, Tuner
from tests import ROOT
from tests.objectives import landscape

#: An objective the workers import: ``landscape`` after CODELLMTUNER_TEST_SLEEP seconds.
SLEEPY = "tests.objectives:sleepy_landscape"


def env(sleep: float, **extra: str) -> dict[str, str]:
    """The environment of a worker whose evaluations sleep ``sleep`` seconds."""
    return {**os.environ, "CODELLMTUNER_TEST_SLEEP": str(sleep), "PYTHONPATH": str(ROOT),
            **extra}  # fmt: skip


def worker(
    store: Path | str, run_id: str | None, *, lease: float = 2.0, sleep: float = 1.0, **extra: str
) -> subprocess.Popen:
    """``python -m engine.run.worker`` on ``store`` (serving ``run_id`` only, if given); its
    standard error is a pipe."""
    command = [sys.executable, "-m", "engine.run.worker", "--store", str(store),
               "--lease", str(lease)]  # fmt: skip
    if run_id is not None:
        command += ["--run", run_id]
    return subprocess.Popen(
        command, cwd=ROOT, env=env(sleep, **extra), stderr=subprocess.PIPE, text=True
    )


def in_thread(tuner: Tuner) -> tuple[threading.Thread, dict]:
    """Run ``tuner`` in a thread; the dict gets its ``result`` or ``error``."""
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = tuner.run()
        except BaseException as error:  # reported by the test
            out["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def wait_for(condition, timeout: float = 60.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def query(store: Path | str, sql: str, args: list | tuple = ()) -> list[tuple]:
    """Rows of ``sql`` (``?`` placeholders) on the store at ``store``, SQLite or PostgreSQL."""
    with contextlib.closing(Store(store)) as opened:
        return [tuple(row.values()) for row in opened._sql.query(sql, list(args))]


def check_once_each(db: Path, run_id: str, budget: int) -> None:
    """Every sample of the run committed once, every job done."""
    with contextlib.closing(Store(db)) as store:
        samples = store.samples(run_id)
    keys = Counter((s.candidate, s.stage, s.trial) for s in samples)
    assert all(n == 1 for n in keys.values()), keys
    assert len(samples) == budget
    assert query(db, "select distinct status from jobs where run_id = ?", [run_id]) == [("done",)]
    for sample in samples:  # each is what the objective says of its point
        assert sample.score == pytest.approx(landscape(sample.candidate, sample.params))
