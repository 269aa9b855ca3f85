"""The sample store: the truth about every run, in one SQLite file (WAL) or, for workers on
several hosts, in one PostgreSQL database (``--store postgresql://user@host:port/db``).

Tables:

``runs``         one row per run: its settings (enough to resume it), status, stage, result
``samples``      one row per evaluation of (candidate, params): score, metrics and cost
``outcomes``     per-problem results of a sample (status, passed, fraction of tests, metrics),
                 one row per completion: ``replicate`` numbers a problem's completions
``generations``  the completion cache, keyed by (model, prompt, decoding, seed)
``rankings``     the ranking after each sample, to replay how it evolved
``messages``     warnings and notices of a run (OOM back-off, sandbox timeouts), for viewers
``controls``     the process running each run (pid, host) and what viewers ask of it
                 (pause, stop), read by the run between samples
``jobs``         samples a run's coordinator wants, claimed by workers with a lease
                 (:mod:`engine.run.worker`)
``workers``      the worker processes serving the store, each with its last heartbeat

A sample, its outcomes and its stage bookkeeping are written in one transaction, so a
process killed at any instant leaves either the whole sample or none of it.

Several processes may write one store at once (two runs, a run and a viewer, workers on
several hosts): every write transaction takes the store's write lock when it begins
(SQLite's ``BEGIN IMMEDIATE``; an advisory lock in PostgreSQL, :mod:`engine.store._sql`), so it
waits its turn for up to ``timeout`` seconds instead of failing on a lock upgrade, and
opening a store whose schema is current writes nothing. Every database failure leaves a
method as a :class:`StoreError` whose message says what to do; :class:`TransientStoreError`
(disk full, locked past the timeout, server away past the timeout) means the store is
intact and the same write may succeed later.

A PostgreSQL store waits out an outage of its server: an operation whose connection is lost
reconnects (every half second) and runs again, whole, for up to ``timeout`` seconds, then
raises :class:`StoreUnreachableError`; ``on_wait`` hears of the wait once per outage. A
write the loss interrupted was rolled back by the server, so running it again applies it
once. Only a COMMIT whose answer was lost leaves open whether it was made: running it again
then finds its own rows, which :meth:`Store.add_sample`, :meth:`Store.add_job` and
:meth:`Store.create_run` take as theirs where they hold the same values (any other
duplicate is the usual :class:`StoreError`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import sqlite_utils

from engine._faults import crash_point
from engine.errors import StoreError
from engine.records import SAMPLING, Job, Run, Sample
from engine.store._sql import (
    SCHEMA_NAMES,
    SCHEMA_VERSION,
    Database,
    Postgres,
    SQLite,
    StoreFullError,
    StoreLockedError,
    StoreUnreachableError,
    TransientStoreError,
    is_url,
    store_error,
)

__all__ = [
    "MAX_JOB_ATTEMPTS", "REQUESTS", "SCHEMA_NAMES", "SCHEMA_VERSION", "LeaseLostError",
    "RunControl", "Store", "StoreFullError", "StoreLockedError", "StoreUnreachableError",
    "TransientStoreError", "is_url", "new_run_id", "store_error", "store_exists",
]  # fmt: skip

#: Times a job is claimed before it is failed: a job that kills every worker that takes
#: it (out of memory, a crash in a native library) must stop the run, not loop forever.
MAX_JOB_ATTEMPTS = 3
#: Seconds between tries to reach a PostgreSQL server that went away.
RECONNECT_EVERY = 0.5


class LeaseLostError(StoreError):
    """A worker's job was taken by another worker (its lease ran out): its sample is not
    recorded, since the other worker's will be."""


#: What a viewer may ask of a run's process: pause, stop, or go on (None).
REQUESTS = ("pause", "stop", None)


@dataclass(frozen=True)
class RunControl:
    """The process that last claimed a run (``pid`` on ``host``; ``None`` if no process
    ever did) and the request waiting for it."""

    pid: int | None
    host: str | None
    request: str | None


P = ParamSpec("P")
T = TypeVar("T")


def _guarded(method: Callable[Concatenate[Store, P], T]) -> Callable[Concatenate[Store, P], T]:
    """Turn any database failure of a :class:`Store` method into an explained StoreError.

    When the connection to a PostgreSQL server is lost, the method runs again, whole, once
    the server answers again (:meth:`Store._wait_for_server`): a method makes at most one
    write transaction, which the server rolled back when the connection broke.
    """

    @functools.wraps(method)
    def wrapper(store: Store, /, *args: P.args, **kwargs: P.kwargs) -> T:
        db = store._sql
        db.commit_in_doubt = False
        deadline = None
        while True:
            try:
                return method(store, *args, **kwargs)
            except db.errors as error:
                if not db.lost(error):
                    raise db.store_error(error) from error
                if deadline is None:
                    deadline = time.monotonic() + store.timeout
                store._wait_for_server(deadline, error)
            except json.JSONDecodeError as error:  # a damaged row in a file SQLite still reads
                raise StoreError(
                    f"{store.path} is not a usable SQLite store (a damaged row: {error}); "
                    "move it aside or pick --store"
                ) from error

    return wrapper


def new_run_id() -> str:
    """A sortable, readable id such as ``20261123-110501-3fa2``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def store_exists(location: str | Path) -> bool:
    """Whether there is a store to read at ``location``: an SQLite file that exists, or any
    PostgreSQL URL (whether its server answers shows when it is opened); never
    ``":memory:"``."""
    location = str(location)
    if is_url(location):
        return True
    if location == ":memory:":
        return False
    try:
        return Path(location).exists()
    except OSError:  # a name too long for any file
        return False


class Store:
    """Access to a store: a ``samples.db`` file (``":memory:"`` for a throwaway store) or
    a ``postgresql://user[:password]@host[:port]/database`` URL (``postgres://`` too).

    One ``Store`` per thread: its connection must not cross threads. Several processes may
    use one store at once: a write waits up to ``timeout`` seconds for another process's
    write to finish, then raises :class:`StoreLockedError`. With PostgreSQL, an operation
    also waits up to ``timeout`` seconds for a server that went away to come back, calling
    ``on_wait`` with a one-line message when it starts waiting (once per outage), then
    raises :class:`StoreUnreachableError`; opening a store whose server is not there fails
    at once.

    ``path`` names the store in messages (a URL without its password); ``db`` is the
    sqlite-utils view of an SQLite store (absent for PostgreSQL).
    """

    db: sqlite_utils.Database
    #: Whether a location is a PostgreSQL URL, and whether a store is there to read
    #: (module functions, here for the callers that see only :class:`Store`).
    is_url = staticmethod(is_url)
    exists = staticmethod(store_exists)

    def __init__(
        self,
        location: str | Path = "samples.db",
        *,
        timeout: float = 60.0,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        location = str(location)
        self.timeout, self.on_wait = timeout, on_wait
        self._waiting = False  # on_wait was told of the outage going on
        self._sql: Database
        if is_url(location):
            self._sql = Postgres(location, timeout=timeout)
        else:
            self._sql = sqlite = SQLite(location, timeout=timeout)
            self.db = sqlite.db
        self.path = self._sql.path

    def close(self) -> None:
        self._sql.close()

    def _write(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction, holding the store's write lock from its start."""
        return self._sql.write()

    def _wait_for_server(self, deadline: float, error: Exception) -> None:
        """Reconnect to the PostgreSQL server of a lost connection: at once (a server that
        restarted answers), then every :data:`RECONNECT_EVERY` seconds until ``deadline``.

        Raises :class:`StoreUnreachableError` at the deadline, and the explained error of a
        server that answers but refuses (a database or user gone).
        """
        db = self._sql
        while True:
            try:
                db.reconnect()
                self._waiting = False
                return
            except db.errors as failure:
                if not db.reachable_later(failure):
                    raise db.store_error(failure) from failure
                error = failure
            if not self._waiting:
                self._waiting = True
                if self.on_wait is not None:
                    self.on_wait(
                        f"the store at {self.path} does not answer; "
                        f"waiting up to {self.timeout:g} s"
                    )
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreUnreachableError(
                    f"the store at {self.path} did not answer for {self.timeout:g} s "
                    f"({db.reason(error)}); check its PostgreSQL server is running"
                ) from error
            time.sleep(min(RECONNECT_EVERY, left))

    # -- runs --------------------------------------------------------------------------------

    @_guarded
    def create_run(self, run_id: str, *, budget: int | float, seed: int, config: Mapping) -> Run:
        now = time.time()
        row = {
            "id": run_id, "created_at": now, "updated_at": now, "status": "running",
            "stage": SAMPLING, "budget": budget, "seed": seed,
            "config": json.dumps(config, sort_keys=True),
        }  # fmt: skip
        try:
            with self._write():
                self._sql.insert("runs", row)
        except self._sql.integrity_error:
            if not self._made_before("runs", {"id": run_id}, row, ("budget", "seed", "config")):
                raise StoreError(f"a run named {run_id!r} already exists in {self.path}") from None
        return self.get_run(run_id)

    @_guarded
    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of a run (``result`` and ``config`` are stored as JSON)."""
        # Key order is kept: a result's metrics are in the task's order, default first.
        for key in ("result", "config"):
            if key in fields and fields[key] is not None:
                fields[key] = json.dumps(fields[key])
        with self._write():
            if not self._sql.update("runs", run_id, {**fields, "updated_at": time.time()}):
                raise StoreError(f"no run {run_id!r} in {self.path}")

    @_guarded
    def get_run(self, run_id: str) -> Run:
        """The run ``run_id``, or the unique run whose id starts with it, or ``"latest"``."""
        rows = list(self._match_runs(run_id))
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.path}; `codellmtuner runs` lists them")
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows[:5])
            raise StoreError(f"{run_id!r} matches several runs ({ids}); give more of the id")
        return _run_from_row(rows[0])

    def _match_runs(self, run_id: str) -> Iterable[dict]:
        query = self._sql.query
        if run_id == "latest":
            return query("select * from runs order by created_at desc limit 1")
        exact = query("select * from runs where id = ?", [run_id])
        if exact:
            return exact
        return query("select * from runs where id like ? order by created_at", [run_id + "%"])

    @_guarded
    def has_run(self, run_id: str) -> bool:
        """Whether a run with exactly this id exists."""
        return bool(self._sql.query("select 1 from runs where id = ?", [run_id]))

    @_guarded
    def runs(self) -> list[Run]:
        rows = self._sql.query("select * from runs order by created_at")
        return [_run_from_row(r) for r in rows]

    # -- samples -----------------------------------------------------------------------------

    @_guarded
    def add_sample(
        self,
        sample: Sample,
        outcomes: Sequence[Mapping[str, Any]] = (),
        *,
        job: Job | None = None,
        **run_fields: Any,
    ) -> Sample:
        """Commit a sample with its per-problem outcomes (and run fields) atomically; with
        the ``job`` it answers (claimed by ``job.worker``), that job is done in the same
        transaction.

        Raises :class:`StoreError` if the run already has this (candidate, stage, trial):
        a resumed run must never record a sample twice; :class:`LeaseLostError` if another
        worker has taken ``job``.
        """
        row = asdict(sample)
        row.pop("id")
        row.update(
            created_at=time.time(),
            params=json.dumps(sample.params, sort_keys=True),
            metrics=json.dumps(sample.metrics),  # in the task's order, default first
            problem_scores=json.dumps(list(sample.problem_scores)),
        )
        try:
            with self._write():
                if job is not None:
                    self._finish_job(job)
                sample_id = self._sql.insert("samples", row)
                self._sql.insert_all("outcomes", (_outcome_row(o, sample_id) for o in outcomes))
                if run_fields:
                    self._sql.update(
                        "runs", sample.run_id, {**run_fields, "updated_at": time.time()}
                    )
                crash_point("commit")
        except self._sql.integrity_error:
            key = {"run_id": sample.run_id, "candidate": sample.candidate,
                   "stage": sample.stage, "trial": sample.trial}  # fmt: skip
            same = ("params", "score", "metrics", "fidelity", "problem_scores")
            made = self._made_before("samples", key, row, same)
            if made is None:
                raise StoreError(
                    f"run {sample.run_id} already has {sample.candidate} {sample.stage} "
                    f"trial {sample.trial}"
                ) from None
            return _sample_from_row(made)
        return Sample(**{**asdict(sample), "id": sample_id, "created_at": row["created_at"]})

    def _made_before(
        self, table: str, key: Mapping[str, Any], row: Mapping[str, Any], same: Sequence[str]
    ) -> dict[str, Any] | None:
        """After a COMMIT whose answer the lost connection took (``commit_in_doubt``), the
        row of ``table`` with ``key`` if it holds ``row``'s values of the columns ``same``:
        the row that COMMIT made, found again by the write run once more. ``None``
        otherwise: a duplicate for the caller to refuse."""
        if not self._sql.commit_in_doubt:
            return None
        where = " and ".join(f"{column} = ?" for column in key)
        found = self._sql.query(f"select * from {table} where {where}", list(key.values()))
        if found and all(found[0][c] == row[c] for c in same):
            return found[0]
        return None

    def _finish_job(self, job: Job) -> None:
        rows = self._sql.query("select status, worker from jobs where id = ?", [job.id])
        state = (rows[0]["status"], rows[0]["worker"]) if rows else None
        if state == ("done", job.worker) and self._sql.commit_in_doubt:
            return  # this worker's own COMMIT made it, with its sample (add_sample finds it)
        if state != ("claimed", job.worker):
            raise LeaseLostError(
                f"{job.candidate} {job.stage} trial {job.trial} was taken by another worker"
            )
        self._sql.execute("update jobs set status = 'done' where id = ?", [job.id])

    @_guarded
    def sample(self, sample_id: int) -> Sample:
        """The sample with id ``sample_id``."""
        rows = self._sql.query("select * from samples where id = ?", [sample_id])
        if not rows:
            raise StoreError(f"no sample {sample_id} in {self.path}")
        return _sample_from_row(rows[0])

    @_guarded
    def samples(self, run_id: str, *, stage: str | None = None, after: int = 0) -> list[Sample]:
        """A run's samples in the order they were committed (those with an id greater
        than ``after``, for a reader that follows the run)."""
        sql = "select * from samples where run_id = ? and id > ?"
        args: list[Any] = [run_id, after]
        if stage is not None:
            sql += " and stage = ?"
            args.append(stage)
        return [_sample_from_row(r) for r in self._sql.query(sql + " order by id", args)]

    @_guarded
    def outcomes(self, sample_id: int) -> list[dict[str, Any]]:
        """A sample's per-completion outcomes, in the order they were given."""
        rows = self._sql.query(
            "select * from outcomes where sample_id = ? order by rowid", [sample_id]
        )
        # PostgreSQL's outcomes have a column "rowid" (engine.store._sql), SQLite's a hidden one.
        return [
            {**{k: v for k, v in r.items() if k != "rowid"},
             "metrics": json.loads(r["metrics"] or "{}")}
            for r in rows
        ]  # fmt: skip

    def completions(self, sample_id: int) -> list[dict[str, Any]]:
        """A sample's :meth:`outcomes`, each with the ``text`` of the completion it scored
        (its ``generation`` is the key of the completion cache)."""
        outcomes = self.outcomes(sample_id)
        texts = self.cached_generations([o["generation"] for o in outcomes])
        return [{**o, "text": texts.get(o["generation"], {}).get("text")} for o in outcomes]

    # -- completion cache --------------------------------------------------------------------

    @_guarded
    def cached_generations(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):  # SQLite caps the number of parameters
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for row in self._sql.query(f"select * from generations where key in ({marks})", chunk):
                found[row["key"]] = row
        return found

    @_guarded
    def add_generations(self, rows: Iterable[Mapping[str, Any]]) -> None:
        now = time.time()
        with self._write():
            self._sql.insert_all(
                "generations", ({**dict(r), "created_at": now} for r in rows), ignore=True
            )

    # -- rankings ----------------------------------------------------------------------------

    @_guarded
    def add_ranking(self, run_id: str, n_samples: int, stage: str, entries: list[dict]) -> None:
        with self._write():
            self._sql.insert(
                "rankings",
                {
                    "run_id": run_id, "n_samples": n_samples, "stage": stage,
                    "created_at": time.time(), "entries": json.dumps(entries),
                }
            )  # fmt: skip

    @_guarded
    def rankings(self, run_id: str, *, after: int = 0) -> list[dict[str, Any]]:
        """The ranking history of a run, oldest first (``entries`` decoded)."""
        rows = self._sql.query(
            "select * from rankings where run_id = ? and id > ? order by id", [run_id, after]
        )
        return [{**r, "entries": json.loads(r["entries"])} for r in rows]

    # -- the process of a run ---------------------------------------------------------------

    @_guarded
    def claim_run(self, run_id: str, pid: int, host: str) -> None:
        """Record that process ``pid`` on ``host`` runs ``run_id`` from now on. Requests
        made to an earlier process are dropped: a resumed run starts neither paused nor
        stopped."""
        row = {"run_id": run_id, "pid": pid, "host": host, "request": None}
        with self._write():
            self._sql.upsert("controls", {**row, "updated_at": time.time()}, pk="run_id")

    @_guarded
    def request(self, run_id: str, request: str | None) -> None:
        """Ask the process running ``run_id`` to ``"pause"`` or ``"stop"`` after the
        sample in progress, or (``None``) to go on; it reads this between samples."""
        if request not in REQUESTS:
            raise ValueError(f"unknown request {request!r}")
        row = {"run_id": run_id, "request": request, "updated_at": time.time()}
        with self._write():
            self._sql.upsert("controls", row, pk="run_id")

    @_guarded
    def control(self, run_id: str) -> RunControl:
        """Who runs ``run_id`` and what was asked of it."""
        rows = self._sql.query("select pid, host, request from controls where run_id = ?", [run_id])
        return RunControl(**rows[0]) if rows else RunControl(None, None, None)

    # -- jobs and workers --------------------------------------------------------------------

    @_guarded
    def add_job(self, job: Job) -> Job:
        """Write ``job`` for a worker to take; returns it with its id."""
        row = {**asdict(job), "params": json.dumps(job.params, sort_keys=True)}
        row.pop("id")
        try:
            with self._write():
                job_id = self._sql.insert("jobs", {**row, "created_at": time.time()})
        except self._sql.integrity_error:
            key = {"run_id": job.run_id, "candidate": job.candidate, "stage": job.stage,
                   "trial": job.trial}  # fmt: skip
            made = self._made_before("jobs", key, row, ("params", "split", "reference"))
            if made is None:
                raise StoreError(
                    f"run {job.run_id} already has a job for {job.candidate} {job.stage} "
                    f"trial {job.trial}"
                ) from None
            job_id = made["id"]
        return replace(job, id=job_id)

    @_guarded
    def jobs(self, run_id: str, statuses: Collection[str] = ("pending", "claimed")) -> list[Job]:
        """The run's jobs whose status is one of ``statuses``, oldest first."""
        marks = ",".join("?" * len(statuses))
        rows = self._sql.query(
            f"select * from jobs where run_id = ? and status in ({marks}) order by id",
            [run_id, *statuses],
        )
        return [_job_from_row(r) for r in rows]

    @_guarded
    def claim_job(
        self, worker: str, lease: float, *, run_id: str | None = None, prefer: Collection[str] = ()
    ) -> Job | None:
        """Take the oldest job of a running run (of ``run_id`` only, if given) that is
        pending or whose lease ran out, for ``lease`` seconds; a job of a candidate in
        ``prefer`` (whose model the worker holds) first. ``None`` if there is none.

        A job already claimed :data:`MAX_JOB_ATTEMPTS` times whose lease ran out is failed
        instead: every worker that took it died.
        """
        now = time.time()
        sql = (
            "select jobs.* from jobs join runs on runs.id = jobs.run_id "
            "where runs.status = 'running' and (jobs.status = 'pending' "
            "or (jobs.status = 'claimed' and jobs.lease_until < ?))"
        )
        args: list[Any] = [now]
        if run_id is not None:
            sql += " and jobs.run_id = ?"
            args.append(run_id)
        # Idle workers ask many times a second: look before taking the write lock.
        if not self._sql.query(sql + " limit 1", args):
            return None
        with self._write():
            rows = self._sql.query(sql + " order by jobs.id", args)
            for row in rows:
                if row["attempts"] >= MAX_JOB_ATTEMPTS:
                    self._sql.execute(
                        "update jobs set status = 'failed', error = ? where id = ?",
                        [abandoned(_job_from_row(row)), row["id"]],
                    )
            rows = [r for r in rows if r["attempts"] < MAX_JOB_ATTEMPTS]
            if not rows:
                return None
            row = min(rows, key=lambda r: (r["candidate"] not in prefer, r["id"]))
            claim = {"status": "claimed", "worker": worker, "lease_until": now + lease,
                     "attempts": row["attempts"] + 1}  # fmt: skip
            self._sql.update("jobs", row["id"], claim)
        return _job_from_row({**row, **claim})

    @_guarded
    def renew_lease(self, job: Job, lease: float) -> bool:
        """Extend ``job``'s lease by ``lease`` seconds from now; ``False`` if its worker
        no longer holds it."""
        with self._write():
            renewed = self._sql.execute(
                "update jobs set lease_until = ? "
                "where id = ? and worker = ? and status = 'claimed'",
                [time.time() + lease, job.id, job.worker],
            )
        return renewed > 0

    @_guarded
    def release_job(self, job: Job, error: str | None = None) -> None:
        """Give ``job`` back for another worker to take, or fail it with ``error``; only
        while its worker holds it."""
        status = "pending" if error is None else "failed"
        with self._write():
            self._sql.execute(
                "update jobs set status = ?, error = ?, worker = null, lease_until = 0 "
                "where id = ? and worker = ? and status = 'claimed'",
                [status, error, job.id, job.worker],
            )

    @_guarded
    def release_worker_jobs(self, worker: str) -> int:
        """Give back at once the jobs ``worker`` holds (it is known to be dead: a local
        worker whose process ended), rather than after their leases run out; returns how
        many. Their attempts still count against :data:`MAX_JOB_ATTEMPTS`."""
        with self._write():
            return self._sql.execute(
                "update jobs set status = 'pending', worker = null, lease_until = 0 "
                "where worker = ? and status = 'claimed'",
                [worker],
            )

    @_guarded
    def retry_jobs(self, run_id: str) -> None:
        """Give the run's failed jobs, and those abandoned by every worker that took them,
        back for workers to take (a resumed run tries them again, as a run without
        workers would)."""
        with self._write():
            self._sql.execute(
                "update jobs set status = 'pending', error = null, attempts = 0 "
                "where run_id = ? and (status = 'failed' or (status = 'claimed' "
                "and attempts >= ? and lease_until < ?))",
                [run_id, MAX_JOB_ATTEMPTS, time.time()],
            )

    @_guarded
    def heartbeat(self, worker: str, *, job: int | None = None, **fields: Any) -> None:
        """Record that ``worker`` is alive (working on ``job``); ``fields`` (``host``,
        ``pid``, ``device``) describe it when it starts."""
        now = time.time()
        row = {"id": worker, "heartbeat": now, "job": job, **fields}
        if fields:
            row["started_at"] = now
        with self._write():
            self._sql.upsert("workers", row, pk="id")

    @_guarded
    def remove_worker(self, worker: str) -> None:
        with self._write():
            self._sql.execute("delete from workers where id = ?", [worker])

    @_guarded
    def live_workers(self, within: float) -> list[dict[str, Any]]:
        """The workers whose last heartbeat is less than ``within`` seconds old."""
        return list(
            self._sql.query(
                "select * from workers where heartbeat >= ? order by started_at",
                [time.time() - within],
            )
        )

    # -- messages ----------------------------------------------------------------------------

    @_guarded
    def add_message(self, run_id: str, level: str, text: str) -> None:
        with self._write():
            self._sql.insert(
                "messages",
                {"run_id": run_id, "created_at": time.time(), "level": level, "text": text},
            )

    @_guarded
    def messages(self, run_id: str, *, after: int = 0) -> list[dict[str, Any]]:
        """A run's messages with an id greater than ``after``, oldest first."""
        return list(
            self._sql.query(
                "select * from messages where run_id = ? and id > ? order by id", [run_id, after]
            )
        )


def _run_from_row(row: Mapping[str, Any]) -> Run:
    return Run(
        id=row["id"], created_at=row["created_at"], status=row["status"], stage=row["stage"],
        budget=_whole(row["budget"]), seed=row["seed"], config=json.loads(row["config"]),
        winner=row["winner"], result=json.loads(row["result"]) if row["result"] else None,
        error=row["error"],
    )  # fmt: skip


def _whole(amount: int | float) -> int | float:
    """A whole number as an int, as SQLite's integer columns give it back (PostgreSQL keeps
    a budget in a float column, engine.store._sql)."""
    return int(amount) if isinstance(amount, float) and amount.is_integer() else amount


def abandoned(job: Job, now: float | None = None) -> str | None:
    """Why ``job`` can never be done, if every worker that took it died: one line."""
    now = time.time() if now is None else now
    if job.status != "claimed" or job.attempts < MAX_JOB_ATTEMPTS or job.lease_until >= now:
        return None
    return (
        f"{job.candidate} {job.stage} trial {job.trial}: the worker evaluating it stopped "
        f"{job.attempts} times (killed, or out of memory)"
    )


def _job_from_row(row: Mapping[str, Any]) -> Job:
    fields = {k: row[k] for k in Job.__dataclass_fields__}
    return Job(**{**fields, "params": json.loads(row["params"])})


def _sample_from_row(row: Mapping[str, Any]) -> Sample:
    return Sample(
        **{
            **row,
            "params": json.loads(row["params"]),
            "metrics": json.loads(row["metrics"]),
            "problem_scores": tuple(json.loads(row.get("problem_scores") or "[]")),
            "fidelity": 1.0 if row.get("fidelity") is None else row["fidelity"],
        }
    )


def _outcome_row(outcome: Mapping[str, Any], sample_id: int) -> dict[str, Any]:
    row = {"replicate": 0, **outcome, "sample_id": sample_id}
    row["metrics"] = json.dumps(dict(row.get("metrics") or {}), sort_keys=True)
    return row
