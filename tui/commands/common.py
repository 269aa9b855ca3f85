"""What several commands share: the ``--store`` flag, opening an existing store, the one-line
``error:`` message, and whether the app can open here."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.text import Text

#: The store every command opens unless given ``--store``.
DEFAULT_STORE = "samples.db"


def add_store_flag(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` the ``--store`` flag (``args.store``)."""
    parser.add_argument(
        "--store", default=DEFAULT_STORE,
        help="SQLite file or postgresql://USER@HOST:PORT/DB (default: samples.db)",
    )  # fmt: skip


def store_hint(store: str) -> str:
    """`` --store STORE`` for a command the user is told to run; empty for the default."""
    return "" if store == DEFAULT_STORE else f" --store {store}"


@contextlib.contextmanager
def existing_store(path: str) -> Iterator[Any]:
    """The store at ``path``, closed afterwards (a reader leaves no -wal or -shm file); a
    PostgreSQL URL is checked by opening it. Raises :class:`StoreError` where there is none,
    rather than create an empty one."""
    from engine import Store
    from engine.errors import StoreError

    if not Store.exists(path):
        raise StoreError(f"no store at {path}; run `codellmtuner run` first or pass --store")
    with contextlib.closing(Store(path)) as store:
        yield store


def interactive() -> bool:
    """Whether the app can open: stdin and stdout are a terminal, or the app is served."""
    # TEXTUAL_DRIVER is set by `codellmtuner serve`: the app then draws in a browser.
    return (sys.stdin.isatty() and sys.stdout.isatty()) or "TEXTUAL_DRIVER" in os.environ


def print_error(message: str) -> None:
    """``error: message`` on stderr, on one line whatever the message holds."""
    text = Text.assemble(("error:", "red"), " ", one_line(message))  # no markup, no emoji
    Console(stderr=True, soft_wrap=True).print(text, highlight=False)


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (``\\n``): a
    message quoting a user's path or value must stay one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
