"""The databases behind :class:`engine.store.Store`: an SQLite file or a PostgreSQL server.

The store writes its SQL once, in the dialect both understand (``?`` placeholders,
``insert ... on conflict``, ``order by rowid``); a :class:`Database` runs it on its
connection and offers the few operations whose SQL differs (an insert that returns the new
row's id, a write transaction, creating the schema) and what its driver's failures mean
(:meth:`Database.store_error`, :meth:`Database.lost`).

:class:`SQLite` is the store as it always was: one file in WAL mode, each write transaction
holding SQLite's write lock from its start (``BEGIN IMMEDIATE``). :class:`Postgres` gives
several hosts one store: every write transaction first takes one advisory lock of the
database, so writes run one at a time exactly as in SQLite. That keeps the guarantees
the store's methods were written against: a job is claimed by one worker only (its
check-then-update is not raced), and ids are handed out in commit order (a reader that
follows a run with ``id > last seen`` misses no row committed late with a smaller id).
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlite_utils

from engine.errors import StoreError, first_line

#: 2: outcomes have a replicate number and per-problem metrics; 3: samples have a fidelity
#: and their per-problem scores (multi-fidelity, engine.selection._fidelity); 4: jobs and workers;
#: 5: samples have the seconds spent switching models (engine.generation._residency)
SCHEMA_VERSION = 5

#: Each table's columns (Python types: str, int, float) and primary key. A table whose
#: primary key is an int ``id`` numbers its rows itself.
TABLES: dict[str, tuple[dict[str, type], str | tuple[str, ...]]] = {
    "meta": ({"key": str, "value": str}, "key"),
    "runs": (
        {
            "id": str, "created_at": float, "updated_at": float, "status": str,
            "stage": str, "budget": int, "seed": int, "config": str,
            "winner": str, "result": str, "error": str,
        },
        "id",
    ),
    "samples": (
        {
            "id": int, "run_id": str, "candidate": str, "stage": str, "trial": int,
            "params": str, "score": float, "metrics": str, "prompt_tokens": int,
            "generated_tokens": int, "cached": int, "seconds": float,
            "created_at": float, "fidelity": float, "problem_scores": str,
            "switch_seconds": float,
        },
        "id",
    ),
    "outcomes": (
        {
            "sample_id": int, "problem_id": str, "replicate": int, "status": str,
            "passed": int, "fraction": float, "generation": str, "output": str,
            "seconds": float, "metrics": str,
        },
        ("sample_id", "problem_id", "replicate"),
    ),
    "generations": (
        {
            "key": str, "model": str, "problem_id": str, "text": str,
            "prompt_tokens": int, "generated_tokens": int, "created_at": float,
        },
        "key",
    ),
    "rankings": (
        {"id": int, "run_id": str, "n_samples": int, "stage": str, "created_at": float,
         "entries": str},
        "id",
    ),
    "messages": (
        {"id": int, "run_id": str, "created_at": float, "level": str, "text": str}, "id"
    ),
    "controls": (
        {"run_id": str, "pid": int, "host": str, "request": str, "updated_at": float}, "run_id"
    ),
    "jobs": (
        {
            "id": int, "run_id": str, "candidate": str, "stage": str, "trial": int,
            "split": str, "params": str, "reference": int, "status": str,
            "worker": str, "lease_until": float, "attempts": int, "error": str,
            "created_at": float,
        },
        "id",
    ),
    "workers": (
        {"id": str, "host": str, "pid": int, "device": str, "started_at": float,
         "heartbeat": float, "job": int},
        "id",
    ),
}  # fmt: skip
#: (table, columns, unique): a run records each (candidate, stage, trial) once.
INDEXES = (
    ("samples", ("run_id", "candidate", "stage", "trial"), True),
    ("jobs", ("run_id", "candidate", "stage", "trial"), True),
    ("rankings", ("run_id", "n_samples"), False),
)
#: Tables whose rows the database numbers (an int primary key ``id``).
NUMBERED = frozenset(t for t, (cols, pk) in TABLES.items() if pk == "id" and cols["id"] is int)


def index_name(table: str, columns: Sequence[str]) -> str:
    """sqlite-utils' name for an index, which both dialects use."""
    return f"idx_{table}_{'_'.join(columns)}"


#: What a store of the current schema holds (checked on opening, so a reader writes nothing).
SCHEMA_NAMES = frozenset({*TABLES, *(index_name(t, c) for t, c, _ in INDEXES)})


class TransientStoreError(StoreError):
    """The store is intact but could not do this now; the same operation may succeed later."""


class StoreFullError(TransientStoreError):
    """The disk (or the store's page limit) is full: the write was not made."""


class StoreLockedError(TransientStoreError):
    """Another process held the store's lock for longer than the busy timeout."""


class StoreUnreachableError(TransientStoreError):
    """The store's server did not answer (within the store's timeout, or when opened)."""


def is_url(location: object) -> bool:
    """Whether a store location names a PostgreSQL server (``postgresql://`` or
    ``postgres://``) rather than an SQLite file."""
    return str(location).lower().startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter), to
    show in messages."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.partition(':')[0]}@{host}"
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "password"])
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # an unreadable URL: psycopg's own message says what is wrong
        return url.partition("://")[0] + "://..."


class Database:
    """A store's connection to its database: what :class:`engine.store.Store` needs.

    SQL is given with ``?`` placeholders. ``errors`` are the driver's failures (a Store
    turns them into :class:`StoreError` with :meth:`store_error`); ``integrity_error`` is
    the one a unique index raises. ``commit_in_doubt`` is set when the connection was lost
    while a COMMIT was under way, so whether it was made is unknown (:meth:`lost`).
    """

    path: str
    errors: tuple[type[Exception], ...]
    integrity_error: type[Exception]
    commit_in_doubt = False

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        raise NotImplementedError

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def insert(self, table: str, row: Mapping[str, Any]) -> Any:
        """Insert ``row``; the id the database gave it (tables in :data:`NUMBERED`)."""
        raise NotImplementedError

    def write(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction: committed if the block ends normally, else rolled back;
        writes of all processes run one at a time."""
        raise NotImplementedError

    def lost(self, error: Exception) -> bool:
        """Whether ``error`` means the connection to the server is gone (reconnect and
        retry: the server rolled back any transaction it had open)."""
        return False

    def reconnect(self) -> None:
        """Open a new connection in place of a lost one."""
        raise NotImplementedError

    def reachable_later(self, error: Exception) -> bool:
        """Whether a failed :meth:`reconnect` may succeed later (the server is away), rather
        than needing a fix (a database or user gone)."""
        return False

    def reason(self, error: Exception) -> str:
        """What the driver says went wrong, in a few words."""
        return first_line(error)

    def store_error(self, error: Exception) -> StoreError:
        """The :class:`StoreError` (or subclass) that explains a failure of the driver."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- the SQL both dialects share ---------------------------------------------------------

    def insert_all(
        self, table: str, rows: Iterable[Mapping[str, Any]], *, ignore: bool = False
    ) -> None:
        """Insert ``rows`` (a column missing from a row is null); with ``ignore``, a row
        whose key is already there is skipped instead of failing."""
        given = [dict(r) for r in rows]
        if not given:
            return
        columns = list(dict.fromkeys(c for r in given for c in r))
        sql = _insert_sql(table, columns) + (" on conflict do nothing" if ignore else "")
        self.execute_many(sql, [[r.get(c) for c in columns] for r in given])

    def upsert(self, table: str, row: Mapping[str, Any], pk: str) -> None:
        """Insert ``row``, or set its columns on the row with the same ``pk``."""
        columns = list(row)
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c != pk)
        conflict = f"do update set {updates}" if updates else "do nothing"
        self.execute(
            f'{_insert_sql(table, columns)} on conflict ("{pk}") {conflict}', list(row.values())
        )

    def update(self, table: str, key: Any, fields: Mapping[str, Any]) -> int:
        """Set ``fields`` on the row whose ``id`` is ``key``; the number of rows changed."""
        sets = ", ".join(f'"{c}" = ?' for c in fields)
        return self.execute(f'update {table} set {sets} where "id" = ?', [*fields.values(), key])


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f"insert into {table} ({names}) values ({', '.join('?' * len(columns))})"


# -- SQLite --------------------------------------------------------------------------------------

# SQLite's primary result codes (https://sqlite.org/rescode.html)
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


class SQLite(Database):
    """An SQLite file in WAL mode (``":memory:"`` for a throwaway store); ``db`` is its
    sqlite-utils view, which the schema upgrades (and tests) use."""

    errors = (sqlite3.Error,)
    integrity_error = sqlite3.IntegrityError

    def __init__(self, path: str, *, timeout: float) -> None:
        self.path = path
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

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self.db.conn.execute(sql, list(args)).rowcount

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.db.conn.executemany(sql, rows)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, list(args)))

    def insert(self, table: str, row: Mapping[str, Any]) -> Any:
        return self.db.conn.execute(_insert_sql(table, list(row)), list(row.values())).lastrowid

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` waits (busy timeout) for other writers; a deferred transaction
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

    def store_error(self, error: Exception) -> StoreError:
        return store_error(self.path, error)

    # -- schema ------------------------------------------------------------------------------

    def _schema_current(self) -> bool:
        names = {row[0] for row in self.db.execute("select name from sqlite_master")}
        if not SCHEMA_NAMES.issubset(names):
            return False
        row = self.db.execute("select value from meta where key = 'schema'").fetchone()
        return row is not None and row[0] == str(SCHEMA_VERSION)

    def _create_tables(self) -> None:
        db = self.db
        with self.write():
            db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
            db["meta"].insert({"key": "schema", "value": str(SCHEMA_VERSION)}, ignore=True)
            for table, (columns, pk) in TABLES.items():
                db[table].create(columns, pk=pk, if_not_exists=True)
                if table == "samples":
                    self._upgrade_samples()
                elif table == "outcomes":
                    self._upgrade_outcomes()
            for table, columns, unique in INDEXES:
                db[table].create_index(list(columns), unique=unique, if_not_exists=True)
            db["meta"].upsert({"key": "schema", "value": str(SCHEMA_VERSION)}, pk="key")

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
        """Give an older ``samples`` table the columns it lacks: a schema-2 one's samples
        scored every problem (fidelity 1), per-problem scores unknown; before schema 5 no
        sample switched models (every candidate stayed loaded)."""
        table = self.db["samples"]
        columns = table.columns_dict
        if "fidelity" not in columns:
            table.add_column("fidelity", float, not_null_default=1.0)
            table.add_column("problem_scores", str)
        if "switch_seconds" not in columns:
            table.add_column("switch_seconds", float, not_null_default=0.0)
        self.db["meta"].upsert({"key": "schema", "value": str(SCHEMA_VERSION)}, pk="key")


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


# -- PostgreSQL ----------------------------------------------------------------------------------

#: The advisory lock every write transaction takes first ("CodeLLMT"; advisory locks are
#: per database, so stores in other databases of the server do not wait for it).
WRITE_LOCK = 0x436F64654C4C4D54
#: Seconds the first connection may take: a store whose server is not there fails at once.
OPEN_TIMEOUT = 5
#: Seconds each reconnection may take while waiting out an outage (libpq's least is 2).
RECONNECT_TIMEOUT = 2
_PG_TYPES = {str: "text", int: "bigint", float: "double precision"}
#: Columns of SQLite's integer affinity that hold fractions too, which keeps them: a budget
#: of minutes (engine.budget) may be 1.5. A whole number reads back as an int in both.
_PG_FRACTIONAL = {("runs", "budget")}
#: SQLSTATEs of a server that is going away or not yet there (its connection is lost).
_GONE = frozenset({"57P01", "57P02", "57P03"})
_FORM = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


def _pg_column(table: str, name: str, kind: type) -> str:
    """A column of :data:`TABLES` in PostgreSQL's DDL."""
    if table in NUMBERED and name == "id":
        return '"id" bigint generated by default as identity primary key'
    return f'"{name}" {_PG_TYPES[float if (table, name) in _PG_FRACTIONAL else kind]}'


class Postgres(Database):
    """A database on a PostgreSQL server, over one psycopg connection.

    The connection is in autocommit mode, so a read sees everything committed before it
    and holds no transaction open; :meth:`write` opens one explicitly. ``timeout`` bounds
    how long a write waits for the write lock (then :class:`StoreLockedError`).

    PostgreSQL's text cannot hold a NUL character: one in a value is stored as U+FFFD.
    """

    def __init__(self, url: str, *, timeout: float) -> None:
        self.url, self.path, self.timeout = url, redact(url), timeout
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                f"the store {self.path} is a PostgreSQL database, which needs psycopg: "
                "pip install 'codellmtuner[postgres]'"
            ) from None
        self._psycopg = psycopg
        self.errors = (psycopg.Error,)
        self.integrity_error = psycopg.IntegrityError
        self.conn: Any = None
        try:
            self._connect(OPEN_TIMEOUT)
            self._ensure_schema()
        except psycopg.Error as error:
            self.close()
            raise self.store_error(error) from error

    def _connect(self, connect_timeout: float) -> None:
        from psycopg.rows import dict_row

        self.conn = self._psycopg.connect(
            self.url, autocommit=True, row_factory=dict_row, application_name="codellmtuner",
            connect_timeout=max(2, round(connect_timeout)),
            # A host that vanishes (no reset, no answer) is noticed in about 25 s, not hours.
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
        )  # fmt: skip
        # PostgreSQL reads 0 as "wait forever": wait at least a millisecond's worth.
        lock_timeout = f"{max(1, round(self.timeout * 1000))}ms"
        self.conn.execute("select set_config('lock_timeout', %s, false)", [lock_timeout])

    def reconnect(self) -> None:
        self.close()
        self._connect(RECONNECT_TIMEOUT)

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def _args(self, args: Iterable[Any]) -> list[Any]:
        # psycopg sends a bool as a boolean, which a bigint column refuses; SQLite stores 0/1.
        return [
            int(a) if isinstance(a, bool)
            else a.replace("\x00", "\ufffd") if isinstance(a, str) else a
            for a in args
        ]  # fmt: skip

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self.conn.execute(self._sql(sql), self._args(args)).rowcount

    def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(self._sql(sql), [self._args(r) for r in rows])

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.conn.execute(self._sql(sql), self._args(args)).fetchall()

    def insert(self, table: str, row: Mapping[str, Any]) -> Any:
        sql = _insert_sql(table, list(row)) + (' returning "id"' if table in NUMBERED else "")
        cursor = self.conn.execute(self._sql(sql), self._args(row.values()))
        return cursor.fetchone()["id"] if table in NUMBERED else None

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        conn = self.conn
        conn.execute("begin")
        try:
            # Writes take turns, as in SQLite (see the module's docstring); the lock is
            # released when the transaction ends, after its rows are visible.
            conn.execute("select pg_advisory_xact_lock(%s)", [WRITE_LOCK])
            yield
        except BaseException:
            if not conn.broken:
                with contextlib.suppress(self._psycopg.Error):
                    conn.execute("rollback")
            raise
        try:
            conn.execute("commit")
        except self._psycopg.Error as error:
            # The server may have committed before the connection broke: a retry may
            # find its own rows there (engine.store.Store.add_sample tells them apart).
            if self.lost(error):
                self.commit_in_doubt = True
            raise

    def lost(self, error: Exception) -> bool:
        if not isinstance(error, self._psycopg.OperationalError):
            return False
        if self.conn is None or self.conn.broken or self.conn.closed:
            return True
        state = error.sqlstate
        return state is None or state.startswith("08") or state in _GONE

    def _ensure_schema(self) -> None:
        """Create the tables of :data:`TABLES` unless they are there; a store of schema 4
        (PostgreSQL stores began there) gains the columns of schema 5."""
        names = {
            r["name"]
            for r in self.query(
                "select tablename as name from pg_tables where schemaname = current_schema() "
                "union select indexname from pg_indexes where schemaname = current_schema()"
            )
        }
        if "meta" in names:
            row = self.query("select value from meta where key = 'schema'")
            if row and row[0]["value"] == "4":
                self._upgrade_from_4()
                row = [{"value": str(SCHEMA_VERSION)}]
            if row and row[0]["value"] != str(SCHEMA_VERSION):
                raise StoreError(
                    f"{self.path} holds a store of schema {row[0]['value']}; this version "
                    f"of codellmtuner reads schema {SCHEMA_VERSION}: pick another database"
                )
            if SCHEMA_NAMES.issubset(names) and row:
                return
        with self.write():  # the write lock: two processes opening a new store take turns
            for table, (columns, pk) in TABLES.items():
                lines = [_pg_column(table, name, kind) for name, kind in columns.items()]
                if table not in NUMBERED:
                    keys = (pk,) if isinstance(pk, str) else pk
                    lines.append(f"primary key ({', '.join(keys)})")
                if table == "outcomes":
                    # PostgreSQL has no rowid: this column numbers outcomes in the order
                    # they were given, so "order by rowid" means the same in both dialects.
                    lines.append('"rowid" bigint generated always as identity')
                self.execute(f"create table if not exists {table} ({', '.join(lines)})")
            for table, columns, unique in INDEXES:
                kind = "unique index" if unique else "index"
                name = index_name(table, columns)
                self.execute(
                    f"create {kind} if not exists {name} on {table} ({', '.join(columns)})"
                )
            self.upsert("meta", {"key": "schema", "value": str(SCHEMA_VERSION)}, pk="key")

    def _upgrade_from_4(self) -> None:
        """Schema 5: before it no sample switched models (every candidate stayed loaded)."""
        with self.write():
            self.execute(
                "alter table samples add column if not exists switch_seconds "
                "double precision not null default 0"
            )
            self.upsert("meta", {"key": "schema", "value": str(SCHEMA_VERSION)}, pk="key")

    def reason(self, error: Exception) -> str:
        detail = first_line(error)
        if "failed: " in detail:  # libpq: "connection to server at ... failed: WHY"
            detail = detail.rpartition("failed: ")[2]
        return detail.removeprefix("FATAL:").strip()

    def store_error(self, error: Exception) -> StoreError:
        detail = self.reason(error)
        state = getattr(error, "sqlstate", None) or ""
        path = self.path
        if self.conn is None or self.conn.closed or self.lost(error):
            return self._connect_error(detail)
        if state == "55P03":
            return StoreLockedError(
                f"{path} is locked by another process; wait for it or pick another --store"
            )
        if state == "53100":
            return StoreFullError(
                f"{path}: the server's disk is full, the write was not made; free space on it"
            )
        if state.startswith(("53", "40")):  # out of resources; a serialization failure
            return TransientStoreError(f"{path}: {detail}; the same write may succeed later")
        if state == "25006":
            return StoreError(f"store {path} is read-only ({detail}); point --store at the primary")
        if state == "42501":
            return StoreError(f"the user of {path} may not use its tables ({detail}); grant it")
        if state.startswith("42"):
            return StoreError(f"{path} is not a usable store ({detail}); pick another database")
        return StoreError(f"store {path}: {detail}")

    def _connect_error(self, detail: str) -> StoreError:
        """A failure to connect, or a connection lost: what to fix, or that the server is
        not there (:class:`StoreUnreachableError`)."""
        text, path = detail.lower(), self.path
        if "database" in text and "does not exist" in text:
            return StoreError(
                f"cannot open the store {path}: {detail}; create it (createdb) or fix the URL"
            )
        if any(w in text for w in ("role", "authentication", "password", "pg_hba", "permission")):
            return StoreError(
                f"cannot log in to the store {path}: {detail}; fix the user or password in "
                "the URL, or the server's pg_hba.conf"
            )
        if "resolve host" in text or "translate host name" in text:
            return StoreError(f"cannot find the host of the store {path} ({detail}); fix the URL")
        if "invalid" in text or "uri" in text or "missing" in text:
            return StoreError(f"bad store URL {path}: {detail}; write it as {_FORM}")
        return StoreUnreachableError(
            f"cannot reach the store at {path} ({detail}); check its PostgreSQL server is "
            "running and accepts connections"
        )

    def reachable_later(self, error: Exception) -> bool:
        return isinstance(self.store_error(error), StoreUnreachableError)
