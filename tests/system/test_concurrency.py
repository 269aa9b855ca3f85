"""Concurrency on one samples.db: several runs writing at once, viewers reading meanwhile,
and a store locked by another process.

- Three objective runs and a tiny-model task run (through the CLI) write one store at
  once, from separate processes that open the new file together: every run finishes with
  its budget, no "database is locked" surfaces anywhere, and a follower polling the store
  meanwhile sees every sample of every run exactly once.
- The app watching a run (``codellmtuner watch``) while it and another run write ends with
  exactly the store's samples and no store error.
- Another process holding the write lock: readers go on, a write waits its timeout and is
  explained; during a run it costs that sample only.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine.run._tuner
from engine import Message, RunFinished, SampleRecorded, Store, Tuner, TuneResult
from engine.events import Event
from engine.run import RunFollower
from engine.store import StoreLockedError
from engine.store._store import Sample
from tests import ROOT
from tests.apphelpers import run_app, wait_until
from tests.objectives import landscape
from tui.app import CodeLLMTunerApp
from tui.run.screen import RunScreen

# A writer process: imports, says "ready", waits for the go file, then runs.
WRITER = """
import random, sys, time
from pathlib import Path
from engine import Tuner
from tests.objectives import landscape
path, run_id, seed, budget, pause, go = sys.argv[1:7]
rng = random.Random(seed)

def jittery(candidate, params):
    time.sleep(rng.uniform(0, float(pause)))  # commits of the runs interleave irregularly
    return landscape(candidate, params)

print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.01)
Tuner(objective=jittery, candidates=["a", "b", "c"], budget=int(budget), seed=int(seed),
      store=path, run_id=run_id).run()
"""


def _writer(path: Path, run_id: str, seed: int, budget: int, pause: float, go: Path):
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), run_id, str(seed), str(budget), str(pause),
         str(go)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout.readline().strip() == "ready", process.communicate()
    return process


@contextlib.contextmanager
def _killed_on_exit(processes: list[subprocess.Popen]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _follow(path: Path, run_ids: list[str], processes: list[subprocess.Popen]):
    """Poll a RunFollower per run until every writer has exited; the events of each run."""
    store = Store(path)
    followers: dict[str, RunFollower] = {}
    events: dict[str, list[Event]] = {run_id: [] for run_id in run_ids}
    deadline = time.monotonic() + 300
    while True:
        writing = any(p.poll() is None for p in processes)
        for run_id in run_ids:
            if run_id not in followers and store.has_run(run_id):
                followers[run_id] = RunFollower(store, run_id)
            if run_id in followers:
                events[run_id] += followers[run_id].poll()
        if not writing:  # this last poll came after every writer had exited
            return events
        assert time.monotonic() < deadline, "writers did not finish"
        time.sleep(0.02)


def _trials_are_contiguous(samples: list[Sample]) -> bool:
    """Each candidate's trials number 0, 1, 2, ... across stages 1 and 3 (held-out: 0)."""
    numbers: dict[tuple[str, bool], list[int]] = {}
    for s in samples:
        numbers.setdefault((s.candidate, s.stage == "holdout"), []).append(s.trial)
    return all(t == list(range(len(t))) for t in numbers.values())


@pytest.mark.slow
def test_runs_writing_one_store_at_once_lose_nothing_and_a_follower_sees_each_sample_once(
    tmp_path, tiny_model_dir
):
    path = tmp_path / "samples.db"  # does not exist yet: the writers create it together
    go = tmp_path / "go"
    objective_runs = ["w0", "w1", "w2"]
    writers = [_writer(path, run_id, seed, 15, 0.02, go) for seed, run_id in
               enumerate(objective_runs)]  # fmt: skip
    cli = subprocess.Popen(
        [sys.executable, "-m", "tui.commands", "run", "--headless", "-c", f"tiny={tiny_model_dir}",
         "--budget", "3", "--problems", "1", "--holdout-problems", "1",
         "--param", "max_new_tokens=8:16", "--store", str(path), "--run-id", "cli"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    processes = [*writers, cli]
    with _killed_on_exit(processes):
        go.touch()
        events = _follow(path, [*objective_runs, "cli"], processes)
        outputs = [p.communicate(timeout=60) for p in processes]

    for process, (_out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
        assert "locked" not in err.lower() and "Traceback" not in err, err[-3000:]
    store = Store(path)
    for run_id, budget in [*((r, 15) for r in objective_runs), ("cli", 3)]:
        run = store.get_run(run_id)
        samples = store.samples(run_id)
        assert (run.status, run.error) == ("finished", None)
        assert sum(s.stage != "holdout" for s in samples) == budget
        assert _trials_are_contiguous(samples)
        assert len(store.rankings(run_id)) == budget  # one ranking per budget sample
        assert not any("lock" in m["text"] for m in store.messages(run_id))
        # The follower saw every committed sample once, in commit order, and the result.
        seen = [e.sample for e in events[run_id] if isinstance(e, SampleRecorded)]
        assert [s.id for s in seen] == [s.id for s in samples]
        assert seen == samples
        finished = [e for e in events[run_id] if isinstance(e, RunFinished)]
        assert [f.result for f in finished] == [TuneResult.from_dict(run.result)]
    # The objective runs really overlapped (they were released together) ...
    spans = [(min(s.created_at for s in store.samples(r)),
              max(s.created_at for s in store.samples(r))) for r in objective_runs]  # fmt: skip
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    # ... and sharing the store changed nothing: w1 is what it would have been alone.
    Tuner(objective=landscape, candidates=["a", "b", "c"], budget=15, seed=1,
          store=tmp_path / "alone.db", run_id="w1").run()  # fmt: skip
    alone = Store(tmp_path / "alone.db").samples("w1")
    assert [(s.candidate, s.trial, s.params, s.score) for s in store.samples("w1")] == [
        (s.candidate, s.trial, s.params, s.score) for s in alone
    ]


@pytest.mark.slow
def test_the_app_watching_a_run_ends_with_exactly_the_stores_samples(tmp_path):
    path = tmp_path / "samples.db"
    go = tmp_path / "go"
    writers = [_writer(path, "far", 0, 12, 0.15, go), _writer(path, "near", 1, 12, 0.15, go)]
    with _killed_on_exit(writers):
        go.touch()
        deadline = time.monotonic() + 60
        while not (path.exists() and Store(path).has_run("far")):
            assert time.monotonic() < deadline and writers[0].poll() is None
            time.sleep(0.05)
        app = CodeLLMTunerApp(str(path), watch="far")
        screen: dict[str, Any] = {}

        async def test(pilot):
            assert isinstance(app.screen, RunScreen)
            screen["state"] = app.screen.state
            await wait_until(pilot, lambda: app.screen.state.done, timeout=120)

        run_app(app, test)
        for writer in writers:
            _out, err = writer.communicate(timeout=120)
            assert writer.returncode == 0, err[-3000:]

    state = screen["state"]
    store = Store(path)
    assert [s.id for s in state.samples] == [s.id for s in store.samples("far")]
    assert len(state.samples) == 12
    assert state.result == TuneResult.from_dict(store.get_run("far").result)
    # sources.py reports a failed poll as a "reading the store" warning: there was none
    assert state.messages == []


# -- a store locked by another process ---------------------------------------------------------

# Holds the write lock (a writer in the middle of a transaction) until its stdin closes; with
# "exclusive", it also keeps every other connection out (``locking_mode = exclusive``).
HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "exclusive":
    db.execute("pragma locking_mode = exclusive")
    db.execute("begin exclusive")
    db.execute("commit")  # exclusive mode keeps the lock after the transaction
db.execute("begin immediate")
print("held", flush=True)
sys.stdin.read()
"""


class Holder:
    """A process holding ``path``'s lock from :meth:`start` until :meth:`release`."""

    def __init__(self, path: Path, mode: str = "write") -> None:
        self.path, self.mode = path, mode
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(self.path), self.mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout.readline().strip() == "held"

    def release(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture
def finished(tmp_path) -> Path:
    path = tmp_path / "samples.db"
    Tuner(objective=landscape, candidates=["a", "b"], budget=6, store=path, run_id="r").run()
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui.commands", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_a_store_another_process_is_writing_stays_readable_and_a_write_is_explained(finished):
    holder = Holder(finished)
    holder.start()
    try:
        store = Store(finished, timeout=0.5)  # opening a current store writes nothing
        assert len(store.samples("r")) == 6 and store.runs()[0].id == "r"
        assert sum(isinstance(e, SampleRecorded) for e in RunFollower(store, "r").poll()) == 6
        extra = Sample(run_id="r", candidate="a", stage="tuning", trial=9, params={}, score=0.1)
        with pytest.raises(StoreLockedError, match=r"is locked by another process; wait"):
            store.add_sample(extra)
        for command in (["runs"], ["show", "r"]):  # the CLI reads while the writer holds on
            done = _cli(*command, "--store", str(finished))
            assert done.returncode == 0 and "error" not in done.stderr, done
    finally:
        holder.release()
    store.add_sample(extra)  # the lock is free again: the same write goes through
    assert len(store.samples("r")) == 7


def test_a_store_held_exclusively_is_explained_on_opening(finished):
    holder = Holder(finished, mode="exclusive")
    holder.start()
    try:
        with pytest.raises(StoreLockedError) as raised:
            Store(finished, timeout=0.5)
        assert str(raised.value) == (
            f"{finished} is locked by another process; wait for it or pick another --store"
        )
    finally:
        holder.release()
    assert len(Store(finished, timeout=0.5).samples("r")) == 6


class QuickStore(Store):
    """A store that gives up on a lock after half a second instead of a minute."""

    def __init__(self, path: str, *, timeout: float = 0.5) -> None:
        super().__init__(path, timeout=timeout)


def test_a_lock_held_past_the_timeout_loses_one_sample_not_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(engine.run._tuner, "Store", QuickStore)
    path = tmp_path / "samples.db"
    holder = Holder(path)
    calls = 0

    def objective(candidate: str, params: dict) -> float:
        nonlocal calls
        calls += 1
        if calls == 5:  # another process takes the lock while the 5th sample is evaluated
            holder.start()
        if calls == 6:  # ... and lets go while it is taken again
            holder.release()
        return landscape(candidate, params)

    tuner = Tuner(objective=objective, candidates=["a", "b"], budget=10, seed=2, store=path,
                  run_id="locked")  # fmt: skip
    warnings: list[str] = []
    tuner.subscribe(lambda e: isinstance(e, Message) and warnings.append(e.text))
    try:
        result = tuner.run()
    finally:
        holder.release()

    (lost,) = [w for w in warnings if "was not recorded" in w]
    assert "is locked by another process" in lost
    assert result.n_samples == 10 and calls == 11
    Tuner(objective=landscape, candidates=["a", "b"], budget=10, seed=2,
          store=tmp_path / "alone.db", run_id="alone").run()  # fmt: skip
    got = [(s.candidate, s.trial, s.params, s.score) for s in Store(path).samples("locked")]
    alone = Store(tmp_path / "alone.db").samples("alone")
    assert got == [(s.candidate, s.trial, s.params, s.score) for s in alone]
