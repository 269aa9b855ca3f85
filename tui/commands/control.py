"""``codellmtuner stop``, ``pause`` and ``unpause``: a request a run going on in another
process reads between samples (the sample in progress is finished and kept)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from engine.errors import ConfigError
from tui.commands.common import add_store_flag, existing_store

#: Each command, its help, and the request it leaves in the store (``None`` clears it).
_REQUESTS = {
    "stop": ("stop a running run after the sample in progress (resume continues it)", "stop"),
    "pause": ("pause a running run after the sample in progress", "pause"),
    "unpause": ("let a paused run go on", None),
}


def add_parsers(subparsers: Any) -> None:
    """Register ``stop``, ``pause`` and ``unpause``."""
    for verb, (help_text, _) in _REQUESTS.items():
        control = subparsers.add_parser(verb, help=help_text)
        control.add_argument("run", metavar="RUN", help="run id, a unique prefix, or 'latest'")
        add_store_flag(control)


def control(args: argparse.Namespace, console: Console) -> int:
    """Leave ``args.command``'s request for run ``args.run``; a run that is not going on
    has nothing to stop, pause or unpause (:class:`ConfigError`)."""
    from engine import is_live, live_status

    request = _REQUESTS[args.command][1]
    with existing_store(args.store) as store:
        run = store.get_run(args.run)
        status = live_status(store, run)
        if not is_live(status):
            raise ConfigError(f"run {run.id} is {status}: there is nothing to {args.command}")
        store.request(run.id, request)
    console.print(f"asked run {run.id} to {args.command} after the sample in progress")
    return 0
