"""A real PostgreSQL server on loopback for the store's tests.

:func:`postgres_server` (session scoped) runs ``initdb`` in a temporary folder (trust
authentication: only this machine's loopback reaches it) and starts the server on a free
port of 127.0.0.1, with its socket in that folder; :func:`postgres_url` hands each test a
database of its own on it. A test may stop and start the server (:meth:`PostgresServer.stop`,
:meth:`PostgresServer.start`) to make an outage; the next test finds it running again.

The server binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/N/bin``)
or from ``PATH``; without them, or without psycopg, the fixtures skip their tests and say
what to install. ``initdb`` and ``postgres`` refuse to run as root: as root, they run as the
``postgres`` system user (which the package creates).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

INSTALL = "install Debian's PostgreSQL server: apt-get install postgresql"


def server_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (the newest Debian version first)."""
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A PostgreSQL server of the test session, in a folder of its own under /tmp.

    The folder is not under pytest's tmp_path: as root that lies in a folder only root may
    enter, and the server runs as the ``postgres`` user.
    """

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.root = Path(tempfile.mkdtemp(prefix="codellmtuner-pg-"))
        self.data, self.sockets = self.root / "data", self.root / "sockets"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._names = itertools.count()
        self.as_root = os.geteuid() == 0
        if self.as_root:  # the server's user must own its folder
            shutil.chown(self.root, "postgres")
        self._run("mkdir", "-p", str(self.sockets))
        self._run(
            str(binaries / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        self.start()

    def _run(self, *command: str) -> None:
        if self.as_root:
            command = ("runuser", "-u", "postgres", "--", *command)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def start(self) -> None:
        """Start the server (on the same port) and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-o", options, "-w", "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        """Stop the server at once (``-m fast``: open connections are cut)."""
        self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"test{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"create database {name}")
        return self.url(name)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            if self.running:
                self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server for the session; skips without server binaries."""
    pytest.importorskip("psycopg", reason="PostgreSQL stores need psycopg (the test extra)")
    binaries = server_binaries()
    if binaries is None:
        pytest.skip(f"no PostgreSQL server binaries (initdb) found; {INSTALL}")
    server = PostgresServer(binaries)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of an empty database of its own on the session's server."""
    if not postgres_server.running:  # an earlier test stopped it and failed
        postgres_server.start()
    return postgres_server.create_database()
