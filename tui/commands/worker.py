"""``codellmtuner worker``: evaluate the jobs of runs started with ``--workers``, on any host
that reaches the store. Its flags and its loop are the engine's :class:`engine.Worker`."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console


def add_parser(subparsers: Any) -> None:
    from engine import Worker

    Worker.add_arguments(subparsers.add_parser(
        "worker", help="evaluate the jobs of runs with --workers, on any host that reaches "
        "the store",
    ))  # fmt: skip


def worker(args: argparse.Namespace, console: Console) -> int:
    from engine import Worker

    # SIGTERM lets the worker finish its job; Ctrl-C hands the job back at once.
    Worker.serve(args)
    return 0
