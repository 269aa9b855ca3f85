"""A run in another process obeys pause and stop requests made through the store, and
``runs`` tells whether its process is alive."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import Store, live_status
from tests import ROOT
from tui.commands import main


def _start_writer(path: Path, budget: int = 60) -> subprocess.Popen:
    """An objective run of ~0.15 s a sample in a process of its own."""
    script = (
        "from engine import Tuner\n"
        "from tests.objectives import slow_landscape\n"
        f"Tuner(objective=slow_landscape, candidates=['a', 'b'], budget={budget},"
        f" store={str(path)!r}, run_id='far').run()\n"
    )
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)


def _wait(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {predicate}"
        time.sleep(0.05)


def _samples(path: Path) -> int:
    store = Store(path)
    try:
        return len(store.samples("far"))
    finally:
        store.close()


@pytest.mark.slow
def test_a_run_pauses_goes_on_and_stops_on_request(tmp_path, capsys):
    path = tmp_path / "samples.db"
    writer = _start_writer(path)
    try:
        _wait(lambda: path.exists() and _samples(path) >= 2)
        store = Store(path)
        assert live_status(store, store.get_run("far")) == "running"
        assert store.control("far").pid == writer.pid

        assert main(["pause", "far", "--store", str(path)]) == 0
        assert live_status(store, store.get_run("far")) == "paused"
        time.sleep(1.0)  # the sample in progress ends, then nothing more is taken
        held = len(store.samples("far"))
        time.sleep(1.0)
        assert len(store.samples("far")) == held and writer.poll() is None

        assert main(["unpause", "far", "--store", str(path)]) == 0
        _wait(lambda: len(store.samples("far")) > held)

        assert main(["stop", "far", "--store", str(path)]) == 0
        assert writer.wait(timeout=60) == 0
        assert store.get_run("far").status == "stopped"
        assert len(store.samples("far")) < 60
        messages = [m["text"] for m in store.messages("far")]
        assert "paused on request" in messages and "going on" in messages
        # Nothing left to stop: one clear line.
        assert main(["stop", "far", "--store", str(path)]) == 2
        assert "run far is stopped: there is nothing to stop" in capsys.readouterr().err
    finally:
        writer.kill()


@pytest.mark.slow
def test_a_killed_run_shows_as_interrupted_and_a_resumed_one_starts_unpaused(tmp_path):
    path = tmp_path / "samples.db"
    writer = _start_writer(path)
    try:
        _wait(lambda: path.exists() and _samples(path) >= 2)
        store = Store(path)
        store.request("far", "pause")
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        run = store.get_run("far")
        assert run.status == "running" and live_status(store, run) == "interrupted"
        # A process that claims the run again drops the old request.
        store.claim_run("far", os.getpid(), store.control("far").host)
        assert store.control("far").request is None
        assert live_status(store, run) == "running"  # this process is alive
    finally:
        writer.kill()


def test_a_run_no_process_has_claimed_is_starting(tmp_path):
    from engine import Tuner

    path = tmp_path / "samples.db"
    Tuner(task="humaneval", candidates=["smollm2"], store=path, run_id="saved").save()
    store = Store(path)
    assert live_status(store, store.get_run("saved")) == "starting"
    assert store.get_run("saved").config["tune_size"] == 6


def test_a_run_that_cannot_be_launched_says_how_to_start_it(tmp_path):
    from engine.errors import TunerError
    from tui.run.launch import launch, log_path

    store = tmp_path / "samples.db"
    log_path(str(store), "r").parent.write_text("a file where the log folder goes")
    with pytest.raises(TunerError, match="start it with `codellmtuner resume r --headless"):
        launch("r", str(store))
