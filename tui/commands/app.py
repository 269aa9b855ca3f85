"""The commands that open the app: ``codellmtuner`` alone (the setup screen), ``watch`` (a
run going on elsewhere) and ``serve`` (the app in a web browser); and :func:`open_app`,
which ``run`` and ``resume`` use too, with what is said once the app is closed."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

from rich.console import Console

from engine.errors import ConfigError
from tui.commands.common import (
    add_store_flag,
    existing_store,
    interactive,
    print_error,
    store_hint,
)


def add_serve_parser(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="serve the app to a web browser (textual-serve)")
    serve.add_argument("--host", default="localhost")
    serve.add_argument("--port", type=int, default=8000)
    add_store_flag(serve)


def add_watch_parser(subparsers: Any) -> None:
    watch = subparsers.add_parser("watch", help="open the app on a run going on elsewhere")
    watch.add_argument("run", metavar="RUN", nargs="?", default="latest",
                       help="run id, a unique prefix, or 'latest' (default)")  # fmt: skip
    add_store_flag(watch)


def app(args: argparse.Namespace, console: Console) -> int:
    """No command: the app on its setup screen, on the store of the top-level ``--store``."""
    if not interactive():
        raise ConfigError("the app needs a terminal; use `codellmtuner run --headless`")
    args.store = args.app_store
    return open_app(args)


def watch(args: argparse.Namespace, console: Console) -> int:
    with existing_store(args.store) as store:
        store.get_run(args.run)  # an unknown run fails before the app opens
    if not interactive():
        raise ConfigError("watch needs a terminal; `codellmtuner show RUN` prints a run")
    return open_app(args, watch=args.run)


def serve(args: argparse.Namespace, console: Console) -> int:
    try:
        from textual_serve.server import Server
    except ImportError:
        raise ConfigError("serving needs textual-serve: pip install textual-serve") from None
    # Each browser tab runs its own app process: the same command a terminal would run.
    command = shlex.join([sys.executable, "-m", "tui.commands", "--store", args.store])
    console.print(f"serving the app on http://{args.host}:{args.port} (Ctrl-C stops)")
    Server(command, host=args.host, port=args.port, title="CodeLLMTuner").serve()
    return 0


def open_app(args: argparse.Namespace, **kwargs: Any) -> int:
    """Run the app on ``args.store`` (``kwargs`` go to :class:`CodeLLMTunerApp`) until it is
    closed; then finish a run it started in this process, or say how to reach one that goes
    on in a process of its own. Returns the exit status."""
    from tui.app import CodeLLMTunerApp
    from tui.run.sources import LiveRun

    app = CodeLLMTunerApp(args.store, **kwargs)
    app.run()
    live = app.live
    if isinstance(live, LiveRun):
        return _close_live_run(live)
    if live is not None:
        _say_where_the_run_goes_on(live.store_path, live.run_id)
    return 0


def _say_where_the_run_goes_on(store_path: str, run_id: str) -> None:
    from engine import is_live, live_status
    from tui.run.launch import log_path

    with existing_store(store_path) as store:
        status = live_status(store, store.get_run(run_id))
    hint = store_hint(store_path)
    if is_live(status) or status == "starting":
        print(f"run {run_id} goes on ({status}); follow it: codellmtuner watch {run_id}{hint}; "
              f"stop it: codellmtuner stop {run_id}{hint}; its output: "
              f"{log_path(store_path, run_id)}")  # fmt: skip
    elif status != "finished":
        print(f"run {run_id} is {status}; resume with: codellmtuner resume {run_id}{hint}")


def _close_live_run(live: Any) -> int:
    """An objective's run in this process: quitting stopped it after the sample in
    progress, which is committed before the command ends."""
    live.detach()
    if live.running:
        print("finishing the sample in progress so it is kept (Ctrl-C abandons it) ...")
        try:
            live.wait()
        except KeyboardInterrupt:
            os._exit(130)  # the engine thread cannot be interrupted; committed work is safe
    if live.error:
        print_error(str(live.error))
        return 2
    if not live.finished:
        print(f"resume with: codellmtuner resume {live.run_id}{store_hint(live.store_path)}")
    return 0
