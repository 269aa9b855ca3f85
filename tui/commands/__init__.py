"""The ``codellmtuner`` command: :func:`main`, its parser and which function runs each
subcommand. Each subcommand lives in a module of its own, which declares its flags
(``add_parser``) and does its work (a function named after it, taking the parsed
arguments and the console, returning the exit status).
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from rich.console import Console

from tui.commands import app, control, export, finetune, run, show, worker
from tui.commands.common import DEFAULT_STORE, print_error
from tui.format import output_console

#: Set (to anything) to see the traceback of an internal error instead of one line.
DEBUG_ENV = "CODELLMTUNER_DEBUG"

#: What runs each subcommand; ``"app"`` is no subcommand at all.
COMMANDS: dict[str, Callable[[argparse.Namespace, Console], int]] = {
    "app": app.app,
    "run": run.run,
    "resume": run.resume,
    "serve": app.serve,
    "stop": control.control,
    "pause": control.control,
    "unpause": control.control,
    "watch": app.watch,
    "tasks": show.tasks,
    "runs": show.runs,
    "show": show.show,
    "worker": worker.worker,
    "export": export.export,
    "finetune": finetune.finetune,
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error: ...`` line, like the engine's
    (argparse's own prints the usage first); subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{message} (see: {self.prog} --help)")
        self.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand, listed by ``--help`` in the order added here."""
    parser = _Parser(
        prog="codellmtuner",
        description="Pick the code LLM and decoding parameters for one code task.",
    )
    parser.add_argument(
        "--store", dest="app_store", default=DEFAULT_STORE, metavar="STORE",
        help="the store the app opens when no COMMAND is given (default: samples.db)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.epilog = "Without a COMMAND, the app opens on its setup screen."
    run.add_parsers(sub)  # run, resume
    app.add_serve_parser(sub)
    control.add_parsers(sub)  # stop, pause, unpause
    app.add_watch_parser(sub)
    show.add_parsers(sub)  # tasks, runs, show
    worker.add_parser(sub)
    export.add_parser(sub)
    finetune.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``); returns the exit status:
    0; 2 with one ``error:`` line for anything the user can fix; 1 with one ``error:``
    line for an internal error (a bug); 130 when interrupted."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # bad arguments (2, one error line) or --help (0)
        return stop.code if isinstance(stop.code, int) else 2
    console = output_console()  # a log file gets one line per record
    # SIGTERM (kill, a scheduler's time limit) stops like Ctrl-C: committed samples stay.
    signal.signal(signal.SIGTERM, _interrupt)
    # SIGINT too: a shell starts background jobs with it ignored, and a `kill -INT` sent
    # on purpose should still stop the run cleanly.
    signal.signal(signal.SIGINT, _interrupt)
    from engine.errors import TunerError

    try:
        return COMMANDS[args.command or "app"](args, console)
    except TunerError as error:
        print_error(str(error))
        return 2
    except KeyboardInterrupt:
        Console(stderr=True, soft_wrap=True).print("interrupted", highlight=False)
        return 130
    except Exception as error:  # a bug: still one line, unless asked for the traceback
        if os.environ.get(DEBUG_ENV):
            raise
        lines = str(error).strip().splitlines()
        detail = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
        print_error(f"internal error ({detail}); {DEBUG_ENV}=1 shows the traceback")
        return 1


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
