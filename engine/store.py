"""The sample store: one SQLite file (WAL) that is the truth about every run.

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
                 (:mod:`engine.worker`)
``workers``      the worker processes serving the store, each with its last heartbeat

A sample, its outcomes and its stage bookkeeping are written in one transaction, so a
process killed at any instant leaves either the whole sample or none of it.

Several processes may write one file at once (two runs, a run and a viewer): every write
transaction takes the write lock when it begins (``BEGIN IMMEDIATE``), so it waits its turn
for up to ``timeout`` seconds instead of failing on a lock upgrade, and opening a store
whose schema is current writes nothing. Every SQLite failure leaves a method as a
:class:`StoreError` whose message says what to do; :class:`TransientStoreError` (disk full,
locked past the timeout) means the store is intact and the same write may succeed later.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
import secrets
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import sqlite_utils

from engine._faults import crash_point
from engine.errors import StoreError, first_line
from engine.records import Job, Run, Sample
from engine.stages import SAMPLING

#: 2: outcomes have a replicate number and per-problem metrics; 3: samples have a fidelity
#: and their per-problem scores (multi-fidelity, engine.fidelity); 4: jobs and workers
SCHEMA_VERSION = 4
#: What a store of the current schema holds (checked on opening, so a reader writes nothing).
SCHEMA_NAMES = frozenset({
    "meta", "runs", "samples", "outcomes", "generations", "rankings", "messages", "controls",
    "jobs", "workers", "idx_samples_run_id_candidate_stage_trial",
    "idx_rankings_run_id_n_samples", "idx_jobs_run_id_candidate_stage_trial",
})  # fmt: skip
#: Times a job is claimed before it is failed: a job that kills every worker that takes
#: it (out of memory, a crash in a native library) must stop the run, not loop forever.
MAX_JOB_ATTEMPTS = 3

# SQLite's primary result codes (https://sqlite.org/rescode.html)
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


class TransientStoreError(StoreError):
    """The store is intact but could not do this now; the same operation may succeed later."""


class StoreFullError(TransientStoreError):
    """The disk (or the store's page limit) is full: the write was not made."""


class StoreLockedError(TransientStoreError):
    """Another process held the store's lock for longer than the busy timeout."""


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


def _guarded(method: Callable[P, T]) -> Callable[P, T]:
    """Turn any SQLite failure of a :class:`Store` method into an explained StoreError."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except sqlite3.Error as error:
            raise store_error(args[0].path, error) from error  # type: ignore[attr-defined]
        except json.JSONDecodeError as error:  # a damaged row in a file SQLite still reads
            path = args[0].path  # type: ignore[attr-defined]
            raise StoreError(
                f"{path} is not a usable SQLite store (a damaged row: {error}); "
                "move it aside or pick --store"
            ) from error

    return wrapper


def new_run_id() -> str:
    """A sortable, readable id such as ``20261123-110501-3fa2``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class Store:
    """Access to a ``samples.db`` file (``":memory:"`` for a throwaway store).

    One ``Store`` per thread: SQLite connections must not cross threads. Several
    processes may use one file at once (WAL): a write waits up to ``timeout`` seconds
    for another process's write to finish, then raises :class:`StoreLockedError`.
    """

    def __init__(self, path: str | Path = "samples.db", *, timeout: float = 60.0) -> None:
        self.path = str(path)
        # Switching a new file to WAL takes an exclusive lock that SQLite may refuse at
        # once, without waiting, while another process opens the same new file: retry.
        deadline = time.monotonic() + timeout
        while True:
            conn = None
            try:
                conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
                self.db = sqlite_utils.Database(conn)
                if self.path != ":memory:":
                    self.db.enable_wal()
                if not self._schema_current():
                    self._create_tables()
                return
            except (sqlite3.Error, sqlite_utils.db.TransactionError) as error:
                if conn is not None:
                    conn.close()
                busy = "locked" in str(error) or "busy" in str(error)
                if not busy or time.monotonic() > deadline:
                    raise store_error(self.path, error) from error
                time.sleep(0.05 + random.random() * 0.05)

    def close(self) -> None:
        self.db.conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, holding the write lock from its start.

        ``BEGIN IMMEDIATE`` waits (busy timeout) for other writers; a deferred transaction
        that reads first would instead fail at once with "database is locked" when another
        process committed since its read. sqlite-utils calls inside nest as savepoints.
        """
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may have rolled back already (disk full)
                conn.execute("ROLLBACK")
            raise

    # -- schema ------------------------------------------------------------------------------

    def _schema_current(self) -> bool:
        names = {row[0] for row in self.db.execute("select name from sqlite_master")}
        if not SCHEMA_NAMES.issubset(names):
            return False
        row = self.db.execute("select value from meta where key = 'schema'").fetchone()
        return row is not None and row[0] == str(SCHEMA_VERSION)

    def _create_tables(self) -> None:
        db = self.db
        with self._write():
            db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
            db["meta"].insert({"key": "schema", "value": str(SCHEMA_VERSION)}, ignore=True)
            db["runs"].create(
                {
                    "id": str, "created_at": float, "updated_at": float, "status": str,
                    "stage": str, "budget": int, "seed": int, "config": str,
                    "winner": str, "result": str, "error": str,
                },
                pk="id", if_not_exists=True,
            )  # fmt: skip
            db["samples"].create(
                {
                    "id": int, "run_id": str, "candidate": str, "stage": str, "trial": int,
                    "params": str, "score": float, "metrics": str, "prompt_tokens": int,
                    "generated_tokens": int, "cached": int, "seconds": float,
                    "created_at": float, "fidelity": float, "problem_scores": str,
                },
                pk="id", if_not_exists=True,
            )  # fmt: skip
            self._upgrade_samples()
            db["outcomes"].create(
                {
                    "sample_id": int, "problem_id": str, "replicate": int, "status": str,
                    "passed": int, "fraction": float, "generation": str, "output": str,
                    "seconds": float, "metrics": str,
                },
                pk=("sample_id", "problem_id", "replicate"), if_not_exists=True,
            )  # fmt: skip
            self._upgrade_outcomes()
            db["generations"].create(
                {
                    "key": str, "model": str, "problem_id": str, "text": str,
                    "prompt_tokens": int, "generated_tokens": int, "created_at": float,
                },
                pk="key", if_not_exists=True,
            )  # fmt: skip
            db["rankings"].create(
                {"id": int, "run_id": str, "n_samples": int, "stage": str,
                 "created_at": float, "entries": str},
                pk="id", if_not_exists=True,
            )  # fmt: skip
            db["messages"].create(
                {"id": int, "run_id": str, "created_at": float, "level": str, "text": str},
                pk="id", if_not_exists=True,
            )  # fmt: skip
            db["controls"].create(
                {"run_id": str, "pid": int, "host": str, "request": str, "updated_at": float},
                pk="run_id", if_not_exists=True,
            )  # fmt: skip
            db["jobs"].create(
                {
                    "id": int, "run_id": str, "candidate": str, "stage": str, "trial": int,
                    "split": str, "params": str, "reference": int, "status": str,
                    "worker": str, "lease_until": float, "attempts": int, "error": str,
                    "created_at": float,
                },
                pk="id", if_not_exists=True,
            )  # fmt: skip
            db["workers"].create(
                {"id": str, "host": str, "pid": int, "device": str, "started_at": float,
                 "heartbeat": float, "job": int},
                pk="id", if_not_exists=True,
            )  # fmt: skip
            for table in ("samples", "jobs"):
                db[table].create_index(
                    ["run_id", "candidate", "stage", "trial"], unique=True, if_not_exists=True
                )
            db["rankings"].create_index(["run_id", "n_samples"], if_not_exists=True)
            db["meta"].upsert({"key": "schema", "value": str(SCHEMA_VERSION)}, pk="key")

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
                self.db["runs"].insert(row)
        except sqlite3.IntegrityError:
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
            self.db["runs"].update(run_id, {**fields, "updated_at": time.time()})

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
        if run_id == "latest":
            return self.db.query("select * from runs order by created_at desc limit 1")
        exact = list(self.db.query("select * from runs where id = ?", [run_id]))
        if exact:
            return exact
        return self.db.query(
            "select * from runs where id like ? order by created_at", [run_id + "%"]
        )

    @_guarded
    def has_run(self, run_id: str) -> bool:
        """Whether a run with exactly this id exists."""
        return self.db["runs"].count_where("id = ?", [run_id]) > 0

    @_guarded
    def runs(self) -> list[Run]:
        return [_run_from_row(r) for r in self.db.query("select * from runs order by created_at")]

    def _upgrade_outcomes(self) -> None:
        """Bring a schema-1 ``outcomes`` table (one row per problem) to schema 2."""
        table = self.db["outcomes"]
        if "replicate" in table.columns_dict:
            return
        table.add_column("replicate", int, not_null_default=0)
        table.add_column("metrics", str)
        table.transform(pk=("sample_id", "problem_id", "replicate"))
        self.db["meta"].upsert({"key": "schema", "value": str(SCHEMA_VERSION)}, pk="key")

    def _upgrade_samples(self) -> None:
        """Give a schema-2 ``samples`` table the fidelity columns: its samples scored every
        problem (fidelity 1), per-problem scores unknown."""
        table = self.db["samples"]
        if "fidelity" in table.columns_dict:
            return
        table.add_column("fidelity", float, not_null_default=1.0)
        table.add_column("problem_scores", str)
        self.db["meta"].upsert({"key": "schema", "value": str(SCHEMA_VERSION)}, pk="key")

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
                sample_id = self.db["samples"].insert(row).last_pk
                self.db["outcomes"].insert_all(_outcome_row(o, sample_id) for o in outcomes)
                if run_fields:
                    self.db["runs"].update(sample.run_id, {**run_fields, "updated_at": time.time()})
                crash_point("commit")
        except sqlite3.IntegrityError:
            raise StoreError(
                f"run {sample.run_id} already has {sample.candidate} {sample.stage} "
                f"trial {sample.trial}"
            ) from None
        return Sample(**{**asdict(sample), "id": sample_id, "created_at": row["created_at"]})

    def _finish_job(self, job: Job) -> None:
        row = self.db.execute("select status, worker from jobs where id = ?", [job.id]).fetchone()
        if row is None or tuple(row) != ("claimed", job.worker):
            raise LeaseLostError(
                f"{job.candidate} {job.stage} trial {job.trial} was taken by another worker"
            )
        self.db.execute("update jobs set status = 'done' where id = ?", [job.id])

    @_guarded
    def sample(self, sample_id: int) -> Sample:
        """The sample with id ``sample_id``."""
        row = next(iter(self.db.query("select * from samples where id = ?", [sample_id])), None)
        if row is None:
            raise StoreError(f"no sample {sample_id} in {self.path}")
        return _sample_from_row(row)

    @_guarded
    def samples(self, run_id: str, *, stage: str | None = None, after: int = 0) -> list[Sample]:
        """A run's samples in the order they were committed (those with an id greater
        than ``after``, for a reader that follows the run)."""
        sql = "select * from samples where run_id = ? and id > ?"
        args: list[Any] = [run_id, after]
        if stage is not None:
            sql += " and stage = ?"
            args.append(stage)
        return [_sample_from_row(r) for r in self.db.query(sql + " order by id", args)]

    @_guarded
    def outcomes(self, sample_id: int) -> list[dict[str, Any]]:
        """A sample's per-completion outcomes, in the order they were given."""
        rows = self.db.query(
            "select * from outcomes where sample_id = ? order by rowid", [sample_id]
        )
        return [{**r, "metrics": json.loads(r["metrics"] or "{}")} for r in rows]

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
            for row in self.db.query(f"select * from generations where key in ({marks})", chunk):
                found[row["key"]] = row
        return found

    @_guarded
    def add_generations(self, rows: Iterable[Mapping[str, Any]]) -> None:
        now = time.time()
        with self._write():
            self.db["generations"].insert_all(
                ({**dict(r), "created_at": now} for r in rows), ignore=True
            )

    # -- rankings ----------------------------------------------------------------------------

    @_guarded
    def add_ranking(self, run_id: str, n_samples: int, stage: str, entries: list[dict]) -> None:
        with self._write():
            self.db["rankings"].insert(
                {
                    "run_id": run_id, "n_samples": n_samples, "stage": stage,
                    "created_at": time.time(), "entries": json.dumps(entries),
                }
            )  # fmt: skip

    @_guarded
    def rankings(self, run_id: str, *, after: int = 0) -> list[dict[str, Any]]:
        """The ranking history of a run, oldest first (``entries`` decoded)."""
        rows = self.db.query(
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
            self.db["controls"].upsert({**row, "updated_at": time.time()}, pk="run_id")

    @_guarded
    def request(self, run_id: str, request: str | None) -> None:
        """Ask the process running ``run_id`` to ``"pause"`` or ``"stop"`` after the
        sample in progress, or (``None``) to go on; it reads this between samples."""
        if request not in REQUESTS:
            raise ValueError(f"unknown request {request!r}")
        row = {"run_id": run_id, "request": request, "updated_at": time.time()}
        with self._write():
            self.db["controls"].upsert(row, pk="run_id")

    @_guarded
    def control(self, run_id: str) -> RunControl:
        """Who runs ``run_id`` and what was asked of it."""
        row = self.db.execute(
            "select pid, host, request from controls where run_id = ?", [run_id]
        ).fetchone()
        return RunControl(*row) if row else RunControl(None, None, None)

    # -- jobs and workers --------------------------------------------------------------------

    @_guarded
    def add_job(self, job: Job) -> Job:
        """Write ``job`` for a worker to take; returns it with its id."""
        row = {**asdict(job), "params": json.dumps(job.params, sort_keys=True)}
        row.pop("id")
        try:
            with self._write():
                job_id = self.db["jobs"].insert({**row, "created_at": time.time()}).last_pk
        except sqlite3.IntegrityError:
            raise StoreError(
                f"run {job.run_id} already has a job for {job.candidate} {job.stage} "
                f"trial {job.trial}"
            ) from None
        return replace(job, id=job_id)

    @_guarded
    def jobs(self, run_id: str, statuses: Collection[str] = ("pending", "claimed")) -> list[Job]:
        """The run's jobs whose status is one of ``statuses``, oldest first."""
        marks = ",".join("?" * len(statuses))
        rows = self.db.query(
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
        with self._write():
            rows = list(self.db.query(sql + " order by jobs.id", args))
            for row in rows:
                if row["attempts"] >= MAX_JOB_ATTEMPTS:
                    error = (
                        f"{row['candidate']} {row['stage']} trial {row['trial']}: the worker "
                        f"evaluating it stopped {row['attempts']} times (killed, or out of memory)"
                    )
                    self.db.execute(
                        "update jobs set status = 'failed', error = ? where id = ?",
                        [error, row["id"]],
                    )
            rows = [r for r in rows if r["attempts"] < MAX_JOB_ATTEMPTS]
            if not rows:
                return None
            row = min(rows, key=lambda r: (r["candidate"] not in prefer, r["id"]))
            claim = {"status": "claimed", "worker": worker, "lease_until": now + lease,
                     "attempts": row["attempts"] + 1}  # fmt: skip
            self.db["jobs"].update(row["id"], claim)
        return _job_from_row({**row, **claim})

    @_guarded
    def renew_lease(self, job: Job, lease: float) -> bool:
        """Extend ``job``'s lease by ``lease`` seconds from now; ``False`` if its worker
        no longer holds it."""
        with self._write():
            cursor = self.db.execute(
                "update jobs set lease_until = ? "
                "where id = ? and worker = ? and status = 'claimed'",
                [time.time() + lease, job.id, job.worker],
            )
        return cursor.rowcount > 0

    @_guarded
    def release_job(self, job: Job, error: str | None = None) -> None:
        """Give ``job`` back for another worker to take, or fail it with ``error``; only
        while its worker holds it."""
        status = "pending" if error is None else "failed"
        with self._write():
            self.db.execute(
                "update jobs set status = ?, error = ?, worker = null, lease_until = 0 "
                "where id = ? and worker = ? and status = 'claimed'",
                [status, error, job.id, job.worker],
            )

    @_guarded
    def retry_jobs(self, run_id: str) -> None:
        """Give the run's failed jobs back for workers to take (a resumed run tries them
        again, as a run without workers would)."""
        with self._write():
            self.db.execute(
                "update jobs set status = 'pending', error = null, attempts = 0 "
                "where run_id = ? and status = 'failed'",
                [run_id],
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
            self.db["workers"].upsert(row, pk="id")

    @_guarded
    def remove_worker(self, worker: str) -> None:
        with self._write():
            self.db.execute("delete from workers where id = ?", [worker])

    @_guarded
    def live_workers(self, within: float) -> list[dict[str, Any]]:
        """The workers whose last heartbeat is less than ``within`` seconds old."""
        return list(
            self.db.query(
                "select * from workers where heartbeat >= ? order by started_at",
                [time.time() - within],
            )
        )

    # -- messages ----------------------------------------------------------------------------

    @_guarded
    def add_message(self, run_id: str, level: str, text: str) -> None:
        with self._write():
            self.db["messages"].insert(
                {"run_id": run_id, "created_at": time.time(), "level": level, "text": text}
            )

    @_guarded
    def messages(self, run_id: str, *, after: int = 0) -> list[dict[str, Any]]:
        """A run's messages with an id greater than ``after``, oldest first."""
        return list(
            self.db.query(
                "select * from messages where run_id = ? and id > ? order by id", [run_id, after]
            )
        )


def _run_from_row(row: Mapping[str, Any]) -> Run:
    return Run(
        id=row["id"], created_at=row["created_at"], status=row["status"], stage=row["stage"],
        budget=row["budget"], seed=row["seed"], config=json.loads(row["config"]),
        winner=row["winner"], result=json.loads(row["result"]) if row["result"] else None,
        error=row["error"],
    )  # fmt: skip


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


def store_error(path: str, error: Exception) -> StoreError:
    """The :class:`StoreError` (or subclass) that explains an SQLite failure on ``path``."""
    message = first_line(error)
    code = getattr(error, "sqlite_errorcode", -1) & 0xFF
    if code == _FULL or "disk is full" in message:
        return StoreFullError(f"{path}: disk full, the write was not made; free space on its disk")
    if code in (_BUSY, _LOCKED) or "locked" in message:
        return StoreLockedError(
            f"{path} is locked by another process; wait for it or pick another --store"
        )
    return StoreError(_explain(path, code, message))


def _explain(path: str, code: int, message: str) -> str:
    if code in (_CORRUPT, _NOTADB) or "not a database" in message or "malformed" in message:
        return f"{path} is not a usable SQLite store ({message}); move it aside or pick --store"
    if code == _CANTOPEN or "unable to open" in message:
        return f"cannot open store {path}: check the folder exists and is writable"
    if code == _READONLY or "readonly" in message:
        return f"store {path} is read-only ({message}); make it writable or pick another --store"
    if code == _IOERR:
        return f"store {path}: input/output error ({message}); check its disk"
    return f"store {path}: {message}"


def _outcome_row(outcome: Mapping[str, Any], sample_id: int) -> dict[str, Any]:
    row = {"replicate": 0, **outcome, "sample_id": sample_id}
    row["metrics"] = json.dumps(dict(row.get("metrics") or {}), sort_keys=True)
    return row
