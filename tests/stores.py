"""A store read by the tests while another process's run writes it."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path


def committed_samples(db: Path) -> int:
    """Samples committed so far, read while the run writes (0 before the store exists)."""
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
            return conn.execute("select count(*) from samples").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
