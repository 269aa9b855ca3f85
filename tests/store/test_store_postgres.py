"""The store on a real PostgreSQL server (tests/postgres.py), no mocks.

- Every method of the store's API does the same on SQLite and on PostgreSQL.
- Two processes taking jobs and committing their samples to one store at once lose
  nothing and take no job twice.
- A tuner's run, stopped and resumed, keeps its samples in PostgreSQL and matches the same
  run on SQLite.
- The server stopped for seconds in the middle of a sequence of writes: the writes wait,
  ``on_wait`` hears of it once, nothing is lost or written twice; past the timeout an
  operation fails with one line; a COMMIT whose answer is lost is not applied twice.
- A write waits for another's transaction up to the timeout, then is explained; a
  database holding another schema is refused.
- A server that is not there, a database or user that does not exist: one line, at once.
- The command line and the app take a URL wherever they took a store's file.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from engine import RunStarted, SampleRecorded, Tuner
from engine.errors import StoreError
from engine.records import Job, Sample
from engine.store import (
    LeaseLostError,
    Store,
    StoreLockedError,
    StoreUnreachableError,
    store_exists,
)
from engine.store._sql import WRITE_LOCK, redact
from engine.store._store import RunControl
from tests import ROOT
from tests.objectives import landscape
from tests.postgres import PostgresServer


def _sample(trial: int, run_id: str = "r1", candidate: str = "a", **kw) -> Sample:
    fields = {"params": {"temperature": 0.1 * trial}, "score": 0.5, "metrics": {"avg": 0.5}}
    return Sample(run_id=run_id, candidate=candidate, stage="sampling", trial=trial,
                  **{**fields, **kw})  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path) -> str:
    """Where a store goes: a new SQLite file, or a new database on the test server."""
    if request.param == "sqlite":
        return str(tmp_path / "s.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(location) -> Iterator[Store]:
    store = Store(location)
    yield store
    store.close()


# -- the API, on both -------------------------------------------------------------------------


def test_runs_samples_and_outcomes_round_trip(store):
    run = store.create_run("20260101-aaaa", budget=1.5, seed=3, config={"x": [1, 2]})
    assert (run.budget, run.seed, run.config, run.status) == (1.5, 3, {"x": [1, 2]}, "running")
    store.create_run("20260102-bbbb", budget=8, seed=0, config={})
    assert store.get_run("20260102-bbbb").budget == 8 and store.has_run("20260101-aaaa")
    assert store.get_run("20260101").id == "20260101-aaaa"
    assert store.get_run("latest").id == "20260102-bbbb"
    assert [r.id for r in store.runs()] == ["20260101-aaaa", "20260102-bbbb"]
    with pytest.raises(StoreError, match="matches several runs"):
        store.get_run("2026")
    with pytest.raises(StoreError, match="already exists"):
        store.create_run("20260101-aaaa", budget=4, seed=0, config={})

    # Outcomes come back in the order given, not the key's order; a bool is stored as 0/1.
    outcomes = [
        {"problem_id": "p2", "status": "passed", "passed": True, "fraction": 1.0,
         "metrics": {"bleu": 0.5}},
        {"problem_id": "p1", "status": "failed", "passed": False, "fraction": 0.25,
         "output": "Traceback ...", "replicate": 1},
    ]  # fmt: skip
    first = store.add_sample(_sample(0, "20260101-aaaa"), outcomes, stage="tuning")
    second = store.add_sample(_sample(1, "20260101-aaaa", problem_scores=(1.0, 0.0)))
    assert second.id > first.id > 0
    assert store.samples("20260101-aaaa") == [first, second]
    assert store.samples("20260101-aaaa", after=first.id) == [second]
    assert store.sample(second.id).problem_scores == (1.0, 0.0)
    got = store.outcomes(first.id)
    assert [(o["problem_id"], o["replicate"], o["passed"]) for o in got] == [
        ("p2", 0, 1), ("p1", 1, 0)
    ]  # fmt: skip
    assert got[0]["metrics"] == {"bleu": 0.5} and got[1]["output"] == "Traceback ..."
    assert store.get_run("20260101-aaaa").stage == "tuning"  # the sample's run fields
    with pytest.raises(StoreError, match="already has a sampling trial 0"):
        store.add_sample(_sample(0, "20260101-aaaa", score=0.9))
    assert [s.score for s in store.samples("20260101-aaaa")] == [0.5, 0.5]

    store.update_run("20260101-aaaa", status="finished", winner="a", result={"b": 1, "a": 2})
    done = store.get_run("20260101-aaaa")
    assert (done.status, done.winner, list(done.result)) == ("finished", "a", ["b", "a"])
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.update_run("nope", status="stopped")


def test_a_schema_4_store_gains_switch_seconds_and_keeps_its_samples(location):
    store = Store(location)
    store.create_run("r1", budget=4, seed=0, config={})
    kept = store.add_sample(_sample(0))
    store.close()
    _sql(location, "alter table samples drop column switch_seconds",
         "update meta set value = '4' where key = 'schema'")  # fmt: skip
    store = Store(location)  # upgraded on opening
    switched = store.add_sample(_sample(1, switch_seconds=2.5))
    assert store.samples("r1") == [kept, switched] and kept.switch_seconds == 0
    assert store.sample(switched.id).switch_seconds == 2.5
    store.close()


def _sql(location: str, *statements: str) -> None:
    """Run ``statements`` on the store at ``location`` behind its back."""
    if location.startswith("postgresql"):
        import psycopg

        with psycopg.connect(location) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    with contextlib.closing(sqlite3.connect(location)) as conn, conn:
        for statement in statements:
            conn.execute(statement)


def test_cache_rankings_messages_and_controls_round_trip(store):
    store.create_run("r1", budget=4, seed=0, config={})
    row = {"key": "k1", "model": "m", "problem_id": "p", "text": "x", "prompt_tokens": 3,
           "generated_tokens": 1}  # fmt: skip
    store.add_generations([row, {**row, "key": "k2", "text": "y"}])
    store.add_generations([{**row, "text": "changed"}, {**row, "key": "k3"}])  # k1: ignored
    cached = store.cached_generations(["k1", "k2", "k3", "k4"])
    assert sorted(cached) == ["k1", "k2", "k3"] and cached["k1"]["text"] == "x"
    assert len(store.cached_generations([f"k{i}" for i in range(1200)])) == 3  # in chunks
    saved = store.add_sample(_sample(0), [{"problem_id": "p", "generation": "k2"}])
    assert [c["text"] for c in store.completions(saved.id)] == ["y"]

    store.add_ranking("r1", 1, "sampling", [{"candidate": "a"}])
    store.add_ranking("r1", 2, "sampling", [{"candidate": "b"}])
    history = store.rankings("r1")
    assert [h["entries"] for h in history] == [[{"candidate": "a"}], [{"candidate": "b"}]]
    assert store.rankings("r1", after=history[0]["id"]) == history[1:]

    store.add_message("r1", "warning", "out of memory: fewer at once")
    store.add_message("r1", "info", "resumed")
    messages = store.messages("r1")
    assert [(m["level"], m["text"]) for m in messages][1] == ("info", "resumed")
    assert store.messages("r1", after=messages[0]["id"]) == messages[1:]

    assert store.control("r1").pid is None
    store.claim_run("r1", 1234, "host-a")
    store.request("r1", "pause")
    assert store.control("r1") == RunControl(1234, "host-a", "pause")
    store.claim_run("r1", 99, "host-b")  # a resumed run starts without the old request
    assert store.control("r1") == RunControl(99, "host-b", None)


def test_jobs_leases_and_workers_round_trip(store):
    store.create_run("r1", budget=4, seed=0, config={})
    jobs = [store.add_job(Job(run_id="r1", candidate=c, stage="tuning", trial=t, params={"t": t}))
            for c, t in (("a", 0), ("b", 0), ("a", 1))]  # fmt: skip
    assert [j.id for j in jobs] == sorted(j.id for j in jobs) and jobs[0].id is not None
    with pytest.raises(StoreError, match="already has a job for a tuning trial 0"):
        store.add_job(Job(run_id="r1", candidate="a", stage="tuning", trial=0, params={}))
    assert [j.key for j in store.jobs("r1")] == [("a", "tuning", 0), ("b", "tuning", 0),
                                                 ("a", "tuning", 1)]  # fmt: skip

    mine = store.claim_job("w1", lease=60, prefer=["b"])  # a job of the model it holds first
    assert (mine.candidate, mine.worker, mine.status, mine.attempts) == ("b", "w1", "claimed", 1)
    assert store.renew_lease(mine, 60)
    assert not store.renew_lease(replace(mine, worker="w9"), 60)  # not w9's job
    lapsed = store.claim_job("w2", lease=-1)  # its lease has run out at once
    assert lapsed.candidate == "a" and lapsed.trial == 0
    taken = store.claim_job("w3", lease=60)  # takes w2's lapsed job over
    assert (taken.id, taken.worker, taken.attempts) == (lapsed.id, "w3", 2)
    with pytest.raises(LeaseLostError, match="a tuning trial 0 was taken by another worker"):
        store.add_sample(_sample(0), job=lapsed)
    assert store.samples("r1") == []  # the lost job's sample is not recorded

    sample = Sample(run_id="r1", candidate="b", stage="tuning", trial=0, params={"t": 0},
                    score=0.7)  # fmt: skip
    store.add_sample(sample, job=mine)
    assert [j.key for j in store.jobs("r1", ["done"])] == [("b", "tuning", 0)]
    store.release_job(taken)  # back to pending, for another worker
    store.release_job(mine, error="too late")  # no longer claimed: nothing happens
    last = store.claim_job("w1", lease=60)
    store.release_job(last, error="out of memory")
    assert [(j.key, j.error) for j in store.jobs("r1", ["failed"])] == [
        (("a", "tuning", 0), "out of memory")  # the oldest pending job: the one given back
    ]  # fmt: skip
    store.retry_jobs("r1")
    assert [j.key for j in store.jobs("r1")] == [("a", "tuning", 0), ("a", "tuning", 1)]

    store.heartbeat("w1", host="host-a", pid=10, device="cuda:0")
    store.heartbeat("w1", job=last.id)
    store.heartbeat("w2", host="host-b", pid=11, device="cpu")
    workers = store.live_workers(within=60)
    assert [(w["id"], w["host"], w["job"]) for w in workers] == [
        ("w1", "host-a", last.id), ("w2", "host-b", None)
    ]  # fmt: skip
    store.remove_worker("w2")
    assert [w["id"] for w in store.live_workers(within=60)] == ["w1"]
    assert store.live_workers(within=-1) == []


def test_a_job_failed_by_its_attempts_is_not_claimed_again(store):
    store.create_run("r1", budget=4, seed=0, config={})
    store.add_job(Job(run_id="r1", candidate="a", stage="tuning", trial=0, params={}))
    for worker in ("w1", "w2", "w3"):  # each dies: the lease runs out
        assert store.claim_job(worker, lease=-1) is not None
    assert store.claim_job("w4", lease=60) is None
    (failed,) = store.jobs("r1", ["failed"])
    assert "stopped 3 times" in failed.error


def test_a_store_location_is_a_file_or_a_url(tmp_path, postgres_url):
    assert Store.is_url(postgres_url) and Store.is_url("POSTGRES://u@h/db")
    assert not Store.is_url(tmp_path / "postgresql.db")
    assert store_exists(postgres_url) and not store_exists(tmp_path / "s.db")
    assert not store_exists(":memory:") and not store_exists("x" * 5000)
    # The password never shows in messages (trust authentication ignores it here).
    secret = postgres_url.replace("postgres@", "postgres:hunter2@")
    store = Store(secret)
    assert store.path == postgres_url and "hunter2" not in store.path
    with pytest.raises(StoreError, match="no run 'x'") as caught:
        store.get_run("x")
    assert "hunter2" not in str(caught.value)
    store.close()
    assert redact("postgresql://u@h/db?password=x&sslmode=require") == (
        "postgresql://u@h/db?sslmode=require"
    )
    # The postgres:// spelling names the same database.
    again = Store(postgres_url.replace("postgresql://", "postgres://"))
    assert again.runs() == []
    again.close()


def test_text_the_server_cannot_hold_is_kept_readable(postgres_url):
    store = Store(postgres_url)
    store.create_run("r1", budget=4, seed=0, config={})
    saved = store.add_sample(_sample(0), [{"problem_id": "p", "output": "a\x00b"}])
    assert store.outcomes(saved.id)[0]["output"] == "a\ufffdb"  # PostgreSQL text has no NUL
    store.close()


def test_a_write_waits_for_another_then_is_explained(postgres_url):
    import psycopg  # here: without it, the SQLite half of this file still runs

    store = Store(postgres_url, timeout=0.5)
    store.create_run("r1", budget=4, seed=0, config={})
    with psycopg.connect(postgres_url) as other:  # another process's write, under way
        other.execute("select pg_advisory_xact_lock(%s)", [WRITE_LOCK])
        start = time.monotonic()
        with pytest.raises(StoreLockedError, match="is locked by another process; wait for"):
            store.add_message("r1", "info", "waits its turn")
        assert 0.5 <= time.monotonic() - start < 3
        assert store.get_run("r1").id == "r1"  # reads do not wait
    store.add_message("r1", "info", "its turn")  # the other transaction has ended
    assert [m["text"] for m in store.messages("r1")] == ["its turn"]
    store.close()


def test_a_database_holding_another_schema_is_refused(postgres_url):
    import psycopg

    Store(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("update meta set value = '99' where key = 'schema'")
    with pytest.raises(StoreError, match="holds a store of schema 99; this version"):
        Store(postgres_url)


# -- several processes --------------------------------------------------------------------------

# A worker process: takes jobs until there are none, commits each one's sample.
WORKER = """
import sys, time
from engine.records import Sample
from engine.store._store import Store
store, name, done = Store(sys.argv[1]), sys.argv[2], 0
while (job := store.claim_job(name, lease=60)) is not None:
    time.sleep(0.005)  # the evaluation
    outcomes = [{"problem_id": f"p{i}", "status": "passed", "passed": 1} for i in range(3)]
    store.add_sample(Sample(run_id=job.run_id, candidate=job.candidate, stage=job.stage,
                            trial=job.trial, params=job.params, score=0.5,
                            metrics={"worker": done}), outcomes, job=job)
    done += 1
print(done)
"""


def test_two_processes_committing_to_one_store_lose_nothing(postgres_url):
    store = Store(postgres_url)
    store.create_run("r1", budget=200, seed=0, config={})
    for trial in range(150):
        store.add_job(Job(run_id="r1", candidate="ab"[trial % 2], stage="tuning", trial=trial,
                          params={"trial": trial}))  # fmt: skip
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, postgres_url, name], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("w1", "w2")
    ]  # fmt: skip
    results = [w.communicate(timeout=120) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err for _, err in results]
    counts = [int(out) for out, _ in results]
    assert sum(counts) == 150 and min(counts) > 0  # both worked, no job was taken twice
    samples = store.samples("r1")
    assert sorted(s.trial for s in samples) == list(range(150))
    assert all(s.params == {"trial": s.trial} for s in samples)
    assert all(len(store.outcomes(s.id)) == 3 for s in samples[::10])
    assert store.jobs("r1") == [] and len(store.jobs("r1", ["done"])) == 150
    store.close()


def test_a_tuner_run_stops_and_resumes_in_postgres_as_in_sqlite(postgres_url, tmp_path):
    kwargs = {"objective": landscape, "candidates": ["a", "b"], "budget": 8, "seed": 0}
    on_file = Tuner(**kwargs, store=tmp_path / "s.db", run_id="file").run()

    tuner = Tuner(**kwargs, store=postgres_url, run_id="pg")
    tuner.subscribe(lambda e: isinstance(e, SampleRecorded) and e.budget_used == 4 and tuner.stop())
    assert tuner.run().n_samples == 4
    assert Store(postgres_url).get_run("pg").status == "stopped"
    resumed = Tuner.resume("pg", store=postgres_url, objective=landscape)
    seen: list[int] = []
    resumed.subscribe(lambda e: isinstance(e, RunStarted) and seen.append(e.resumed_samples))
    result = resumed.run()

    assert seen == [4] and result.n_samples == 8
    assert (result.best_candidate, result.best_params) == (on_file.best_candidate,
                                                            on_file.best_params)  # fmt: skip
    stored = Store(postgres_url)
    assert stored.get_run("pg").status == "finished"
    points = lambda store, run: [(s.candidate, s.stage, s.params, s.score)  # noqa: E731
                                 for s in store.samples(run)]  # fmt: skip
    assert points(stored, "pg") == points(Store(tmp_path / "s.db"), "file")
    assert stored.rankings("pg")[-1]["n_samples"] == 8


# -- the server goes away -----------------------------------------------------------------------


def test_writes_wait_out_a_server_outage_and_lose_nothing(
    postgres_server: PostgresServer, postgres_url: str
):
    warnings: list[str] = []
    store = Store(postgres_url, timeout=60, on_wait=warnings.append)
    store.create_run("r1", budget=40, seed=0, config={})
    committed: list[int] = []
    longest = [0.0]
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for trial in range(40):
                start = time.monotonic()
                store.add_sample(_sample(trial), [{"problem_id": "p", "passed": 1}])
                store.add_message("r1", "info", f"sample {trial}")
                longest[0] = max(longest[0], time.monotonic() - start)
                committed.append(trial)
                time.sleep(0.05)
        except BaseException as error:  # noqa: BLE001 -- for the assertion below
            failures.append(error)

    writer = threading.Thread(target=write)
    writer.start()
    while len(committed) < 10 and writer.is_alive():
        time.sleep(0.01)
    postgres_server.stop()
    down = time.monotonic()
    time.sleep(6)
    postgres_server.start()
    back = time.monotonic() - down
    writer.join(timeout=60)
    assert not writer.is_alive() and failures == []

    print(f"\nserver down {back:.1f} s; the longest write took {longest[0]:.1f} s")
    assert len(warnings) == 1, warnings
    assert warnings[0] == f"the store at {store.path} does not answer; waiting up to 60 s"
    assert longest[0] > 5  # a write waited for the server ...
    assert [s.trial for s in store.samples("r1")] == list(range(40))  # ... and none is lost
    assert [m["text"] for m in store.messages("r1")] == [f"sample {t}" for t in range(40)]
    store.close()


def test_past_the_timeout_an_operation_fails_with_one_line(
    postgres_server: PostgresServer, postgres_url: str
):
    warnings: list[str] = []
    store = Store(postgres_url, timeout=1.5, on_wait=warnings.append)
    store.create_run("r1", budget=4, seed=0, config={})
    postgres_server.stop()
    try:
        start = time.monotonic()
        with pytest.raises(StoreUnreachableError) as caught:
            store.add_sample(_sample(0))
        waited = time.monotonic() - start
        message = str(caught.value)
        assert message == (
            f"the store at {store.path} did not answer for 1.5 s (Connection refused); "
            "check its PostgreSQL server is running"
        )
        assert 1.5 <= waited < 4, waited
        with pytest.raises(StoreUnreachableError):
            store.samples("r1")  # the same outage: no second warning
        assert len(warnings) == 1
    finally:
        postgres_server.start()
    assert store.samples("r1") == []  # the failed write left nothing
    store.add_sample(_sample(0))
    assert [s.trial for s in store.samples("r1")] == [0]
    postgres_server.stop()  # a new outage: a new warning
    try:
        with pytest.raises(StoreUnreachableError):
            store.has_run("r1")
    finally:
        postgres_server.start()
    assert len(warnings) == 2 and store.has_run("r1")
    store.close()


class CommitCutter:
    """A TCP proxy to the server that, once armed, lets the next COMMIT through, swallows
    the server's answer and cuts the connection: the commit is made, and its client never
    hears of it."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed, self.cut = threading.Event(), threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            cutting = threading.Event()
            threading.Thread(target=self._up, args=(client, server, cutting), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, cutting), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, cutting: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.armed.is_set() and b"commit\x00" in data:
                    self.armed.clear()
                    cutting.set()
                server.sendall(data)

    def _down(self, server: socket.socket, client: socket.socket, cutting: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if cutting.is_set():  # COMMIT's answer: drop it, and the connection
                    self.cut.set()
                    for s in (client, server):
                        s.shutdown(socket.SHUT_RDWR)
                    return
                client.sendall(data)

    def close(self) -> None:
        self.listener.close()


def test_a_commit_whose_answer_was_lost_is_not_applied_twice(
    postgres_server: PostgresServer, postgres_url: str
):
    cutter = CommitCutter(postgres_server.port)
    url = postgres_url.replace(f":{postgres_server.port}/", f":{cutter.port}/")
    warnings: list[str] = []
    store = Store(url, on_wait=warnings.append)
    store.create_run("r1", budget=4, seed=0, config={})
    job = store.add_job(Job(run_id="r1", candidate="a", stage="sampling", trial=0, params={}))
    job = store.claim_job("w1", lease=60)

    cutter.armed.set()
    saved = store.add_sample(_sample(0), [{"problem_id": "p", "passed": 1}], job=job)
    assert cutter.cut.is_set()  # the COMMIT was made and its answer lost, then retried
    assert store.samples("r1") == [saved] and len(store.outcomes(saved.id)) == 1
    assert [j.key for j in store.jobs("r1", ["done"])] == [job.key]
    cutter.armed.set()  # the same for a job and a run
    added = store.add_job(Job(run_id="r1", candidate="a", stage="sampling", trial=1, params={}))
    assert cutter.cut.is_set() and [j.id for j in store.jobs("r1")] == [added.id]
    cutter.cut.clear()
    cutter.armed.set()
    assert store.create_run("r2", budget=4, seed=1, config={"a": 1}).config == {"a": 1}
    assert cutter.cut.is_set() and [r.id for r in store.runs()] == ["r1", "r2"]
    assert warnings == []  # the server answered again at once
    # A duplicate that is not the lost commit's own row is refused as ever.
    with pytest.raises(StoreError, match="already has a sampling trial 0"):
        store.add_sample(_sample(0, score=0.9))
    store.close()
    cutter.close()


def test_a_server_that_is_not_there_fails_at_once_in_one_line(postgres_server: PostgresServer):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://postgres:pw@127.0.0.1:{port}/db"
    start = time.monotonic()
    with pytest.raises(StoreUnreachableError) as caught:
        Store(url)
    assert time.monotonic() - start < 2
    assert str(caught.value) == (
        f"cannot reach the store at postgresql://postgres@127.0.0.1:{port}/db (Connection "
        "refused); check its PostgreSQL server is running and accepts connections"
    )

    server = postgres_server
    cases = {
        server.url("nope"): 'database "nope" does not exist; create it (createdb) or fix the URL',
        server.url().replace("postgres@", "bob@"): 'role "bob" does not exist; fix the user',
        "postgresql://u@127.0.0.1:port/db": "bad store URL postgresql://u@127.0.0.1:port/db",
        "postgresql://u@host.invalid/db": "cannot find the host of the store",
    }  # fmt: skip
    for url, expected in cases.items():
        with pytest.raises(StoreError) as caught:
            Store(url)
        message = str(caught.value)
        assert expected in message and "\n" not in message, message
        assert not isinstance(caught.value, StoreUnreachableError), message


def test_the_command_line_and_the_app_take_a_url(postgres_url, tmp_path, monkeypatch, capsys):
    from tui.commands import main
    from tui.run.launch import log_path

    Tuner(objective=landscape, candidates=["a", "b"], budget=4, seed=0, store=postgres_url,
          run_id="cli-pg").run()  # fmt: skip
    secret = postgres_url.replace("postgres@", "postgres:hunter2@")
    assert main(["runs", "--store", secret]) == 0
    out = capsys.readouterr().out
    assert "cli-pg" in out and f"runs in {postgres_url}" in out and "hunter2" not in out
    assert main(["show", "cli-pg", "--store", postgres_url]) == 0
    assert "best:" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # a server's run logs go in the working directory
    database = postgres_url.rpartition("/")[2]
    assert log_path(postgres_url, "cli-pg") == tmp_path / f"{database}.logs" / "cli-pg.log"
