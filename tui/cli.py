"""The ``codellmtuner`` command: run, resume, list, show and export runs."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from engine import DEFAULT_CANDIDATES, DEFAULT_TASK, EXPORT_FORMATS, OPTIONS, Option
from engine.errors import ConfigError
from tui import export as export_command
from tui import finetune as finetune_command

#: Set (to anything) to see the traceback of an internal error instead of one line.
DEBUG_ENV = "CODELLMTUNER_DEBUG"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``error: ...`` line, like the engine's
    (argparse's own prints the usage first); subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{message} (see: {self.prog} --help)")
        self.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="codellmtuner",
        description="Pick the code LLM and decoding parameters for one code task.",
    )
    parser.add_argument(
        "--store", dest="app_store", default="samples.db", metavar="STORE",
        help="the store the app opens when no COMMAND is given (default: samples.db)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.epilog = "Without a COMMAND, the app opens on its setup screen."

    run = sub.add_parser("run", help="start a tuning run")
    run.add_argument("--task", default=DEFAULT_TASK, help=f"task name (default: {DEFAULT_TASK})")
    run.add_argument(
        "--candidate", "-c", action="append", metavar="[NAME=]MODEL[+ADAPTER][@STYLE][:QUANT]",
        help="a candidate; repeat for several. MODEL: smollm2 (bundled), a folder or a "
        "cached hub id; ADAPTER: a PEFT adapter folder or a name from `codellmtuner "
        "finetune`; STYLE: chat, raw, fewshot-K (ICL), rag-K; QUANT: int8, nf4. Default: "
        + ", ".join(DEFAULT_CANDIDATES),
    )  # fmt: skip
    for option in OPTIONS:
        _add_option(run, option)
    run.add_argument("--space", metavar="FILE.toml", help="decoding ranges ([space] table)")
    run.add_argument(
        "--param", action="append", default=[], metavar="NAME=LOW:HIGH",
        help="override one range (or NAME=VALUE to fix it); repeatable",
    )  # fmt: skip
    run.add_argument("--run-id", help="name the run (default: a timestamp)")
    run.add_argument(
        "--headless", action="store_true",
        help="print progress instead of opening the app (automatic without a terminal)",
    )  # fmt: skip
    _store_flag(run)

    resume = sub.add_parser("resume", help="continue a stopped or killed run")
    resume.add_argument("run", metavar="RUN")
    resume.add_argument("--headless", action="store_true", help="print progress instead")
    _store_flag(resume)

    serve = sub.add_parser("serve", help="serve the app to a web browser (textual-serve)")
    serve.add_argument("--host", default="localhost")
    serve.add_argument("--port", type=int, default=8000)
    _store_flag(serve)

    for verb, help_text in (
        ("stop", "stop a running run after the sample in progress (resume continues it)"),
        ("pause", "pause a running run after the sample in progress"),
        ("unpause", "let a paused run go on"),
    ):
        control = sub.add_parser(verb, help=help_text)
        control.add_argument("run", metavar="RUN", help="run id, a unique prefix, or 'latest'")
        _store_flag(control)

    watch = sub.add_parser("watch", help="open the app on a run going on elsewhere")
    watch.add_argument("run", metavar="RUN", nargs="?", default="latest",
                       help="run id, a unique prefix, or 'latest' (default)")  # fmt: skip
    _store_flag(watch)

    tasks = sub.add_parser("tasks", help="list the tasks: data, split sizes and metrics")
    tasks.add_argument("task", metavar="TASK", nargs="?", help="only this task")
    tasks.add_argument("--dataset", help="check this JSONL file as the task's data")
    tasks.add_argument("--samples-per-problem", "-n", type=int, default=1, metavar="N")

    runs = sub.add_parser("runs", help="list the runs in the store")
    _store_flag(runs)

    show = sub.add_parser("show", help="a run's ranking, best parameters and held-out score")
    show.add_argument("run", metavar="RUN", help="run id, a unique prefix, or 'latest'")
    _store_flag(show)

    from engine import Worker

    Worker.add_arguments(sub.add_parser(
        "worker", help="evaluate the jobs of runs with --workers, on any host that reaches "
        "the store",
    ))  # fmt: skip

    export = export_command.add_parser(sub)
    _store_flag(export)
    finetune_command.add_parser(sub)
    return parser


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    """``option`` as a flag. Its text is read by :func:`_option_values`, as the form's
    fields are, so a bad value gets the engine's own message."""
    default = option.text(option.default) or option.none_means
    flags = [option.flag, *([option.short] if option.short else [])]
    parser.add_argument(
        *flags, dest=option.name, default=option.default, choices=option.choices or None,
        metavar=option.metavar, help=f"{option.help} (default: {default})",
    )  # fmt: skip


def _option_values(args: argparse.Namespace) -> dict[str, Any]:
    """Every run option of ``args``: the text of a given flag read, a default as it is."""
    given = {option: getattr(args, option.name) for option in OPTIONS}
    # argparse hands `--flag=--` over as [], taking the value for its `--` separator.
    given = {option: "--" if value == [] else value for option, value in given.items()}
    return {o.name: o.read(v, source=o.flag) if isinstance(v, str) else v for o, v in given.items()}


def _store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", default="samples.db",
        help="SQLite file or postgresql://USER@HOST:PORT/DB (default: samples.db)",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``); returns the exit status:
    0; 2 with one ``error:`` line for anything the user can fix; 1 with one ``error:``
    line for an internal error (a bug); 130 when interrupted."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # bad arguments (2, one error line) or --help (0)
        return stop.code if isinstance(stop.code, int) else 2
    console = Console()
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


def print_error(message: str) -> None:
    """``error: message`` on stderr, on one line whatever the message holds."""
    text = Text.assemble(("error:", "red"), " ", one_line(message))  # no markup, no emoji
    Console(stderr=True, soft_wrap=True).print(text, highlight=False)


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (``\\n``): a
    message quoting a user's path or value must stay one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run(args: argparse.Namespace, console: Console) -> int:
    from engine import SearchSpace, Tuner

    space = SearchSpace.from_toml(args.space) if args.space else None
    if args.param:
        space = SearchSpace.from_overrides(args.param, base=space)
    tuner = Tuner(
        task=args.task, candidates=args.candidate or list(DEFAULT_CANDIDATES), store=args.store,
        space=space, run_id=args.run_id, **_option_values(args),
    )  # fmt: skip
    return _execute(tuner, args, console)


def _resume(args: argparse.Namespace, console: Console) -> int:
    from engine import Tuner, is_live, live_status

    with _existing_store(args.store) as store:
        run = store.get_run(args.run)
        status = live_status(store, run)
    if is_live(status) and (args.headless or not _interactive()):
        raise ConfigError(
            f"run {run.id} is {status} in another process; follow it with `codellmtuner "
            f"watch {run.id}`, or stop it first (`codellmtuner stop {run.id}`)"
        )
    return _execute(Tuner.resume(run.id, store=args.store), args, console)


def _control(args: argparse.Namespace, console: Console) -> int:
    """``stop``, ``pause`` and ``unpause``: a request the run's process reads between
    samples."""
    from engine import is_live, live_status

    request = {"stop": "stop", "pause": "pause", "unpause": None}[args.command]
    with _existing_store(args.store) as store:
        run = store.get_run(args.run)
        status = live_status(store, run)
        if not is_live(status):
            raise ConfigError(f"run {run.id} is {status}: there is nothing to {args.command}")
        store.request(run.id, request)
    console.print(f"asked run {run.id} to {args.command} after the sample in progress")
    return 0


def _execute(tuner: Any, args: argparse.Namespace, console: Console) -> int:
    if not args.headless and _interactive():
        return _open_app(args, tuner=tuner)
    from tui.headless import HeadlessView

    tuner.subscribe(HeadlessView(console))
    try:
        tuner.run()
    except KeyboardInterrupt:
        Console(stderr=True, soft_wrap=True).print(
            "stopped; every committed sample is kept. Resume with: "
            f"codellmtuner resume {tuner.run_id}" + _store_hint(args.store),
            highlight=False,
        )
        return 130
    return 0


def _interactive() -> bool:
    # TEXTUAL_DRIVER is set by `codellmtuner serve`: the app then draws in a browser.
    return (sys.stdin.isatty() and sys.stdout.isatty()) or "TEXTUAL_DRIVER" in os.environ


def _app(args: argparse.Namespace, console: Console) -> int:
    if not _interactive():
        raise ConfigError("the app needs a terminal; use `codellmtuner run --headless`")
    args.store = args.app_store
    return _open_app(args)


def _watch(args: argparse.Namespace, console: Console) -> int:
    with _existing_store(args.store) as store:
        store.get_run(args.run)  # an unknown run fails before the app opens
    if not _interactive():
        raise ConfigError("watch needs a terminal; `codellmtuner show RUN` prints a run")
    return _open_app(args, watch=args.run)


def _serve(args: argparse.Namespace, console: Console) -> int:
    import shlex

    try:
        from textual_serve.server import Server
    except ImportError:
        raise ConfigError("serving needs textual-serve: pip install textual-serve") from None
    # Each browser tab runs its own app process: the same command a terminal would run.
    command = shlex.join([sys.executable, "-m", "tui.cli", "--store", args.store])
    console.print(f"serving the app on http://{args.host}:{args.port} (Ctrl-C stops)")
    Server(command, host=args.host, port=args.port, title="CodeLLMTuner").serve()
    return 0


def _open_app(args: argparse.Namespace, **kwargs: Any) -> int:
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

    with _existing_store(store_path) as store:
        status = live_status(store, store.get_run(run_id))
    hint = _store_hint(store_path)
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
        print(f"resume with: codellmtuner resume {live.run_id}{_store_hint(live.store_path)}")
    return 0


def _store_hint(store: str) -> str:
    return "" if store == "samples.db" else f" --store {store}"


def _tasks(args: argparse.Namespace, console: Console) -> int:
    from engine import TASKS, get_task

    SPLITS = ("train", "tune", "holdout")
    if args.dataset and not args.task:
        raise ConfigError("--dataset needs a TASK: codellmtuner tasks TASK --dataset FILE")
    for name in [args.task] if args.task else list(TASKS):
        task = get_task(name, dataset=args.dataset, samples_per_problem=args.samples_per_problem)
        sizes = " · ".join(f"{split} {len(task.problems(split))}" for split in SPLITS)
        metrics = ", ".join([f"{task.metrics[0]} (default)", *task.metrics[1:]])
        console.print(f"[bold]{task.name}[/]  {task.description}", highlight=False)
        for label, text in (("data", task.source), ("splits", sizes), ("metrics", metrics)):
            console.print(f"  {label:<9}{text}", highlight=False)
        if task.skipped:
            left_out = ", ".join(f"{count} {why}" for why, count in task.skipped.items())
            console.print(f"  {'left out':<9}{left_out}", highlight=False)
    return 0


def _runs(args: argparse.Namespace, console: Console) -> int:
    with _existing_store(args.store) as store:
        _print_runs(store, args, console)
    return 0


def _print_runs(store: Any, args: argparse.Namespace, console: Console) -> None:
    from engine import RunSpec, live_status
    from tui.format import budget_used

    table = Table(title=f"runs in {store.path}", title_justify="left")  # without a password
    table.add_column("run", no_wrap=True)  # the id is what the user copies
    for column in ("status", "stage", "task", "candidates", "budget", "winner"):
        table.add_column(column, no_wrap=column == "budget")  # "3.2/30 minutes" in one piece
    for run in store.runs():
        spec = RunSpec.of_run(run)
        table.add_row(
            run.id, live_status(store, run), run.stage,
            spec.task or "objective", ", ".join(spec.names),
            budget_used(store, run), run.winner or "",
        )  # fmt: skip
    console.print(table)


def _show(args: argparse.Namespace, console: Console) -> int:
    from engine import dashboard_url

    with _existing_store(args.store) as store:
        _print_run(store, args.run, console)
        run_id = store.get_run(args.run).id
    formats = "|".join(EXPORT_FORMATS)
    console.print(
        f"export: codellmtuner export {run_id} --format {formats} -o DIR\n"
        f"optuna-dashboard {dashboard_url(args.store)} shows one study per candidate",
        style="dim", soft_wrap=True, markup=False, highlight=False,
    )  # fmt: skip
    return 0


def _print_run(store: Any, run_id: str, console: Console) -> None:
    from engine import stored_answer, stored_balance
    from tui.format import budget_used, format_metrics, format_params
    from tui.headless import balance_table, ranking_table

    run = store.get_run(run_id)
    used = budget_used(store, run)
    console.print(f"[bold]run {run.id}[/] {run.status}, stage {run.stage}, "
                  f"{used}, seed {run.seed}")  # fmt: skip
    if run.error:
        console.print(f"[red]error:[/] {escape(run.error)}")
    answer = stored_answer(store, run.id)  # its ranking is the run's latest
    if answer.ranking:
        title = f"ranking after {answer.n_samples}"
        console.print(ranking_table(answer.ranking, title, winner=answer.best_candidate))
        balance = stored_balance(store, run.id)
        if balance is not None:
            console.print(balance_table(balance))
            console.print(balance.summary(), soft_wrap=True, markup=False)
    if answer.n_samples:
        console.print(f"best: [bold]{answer.best_candidate}[/] "
                      f"{format_params(answer.best_params)} "
                      f"(tuning score {answer.best_score:.3f})")  # fmt: skip
        if answer.holdout:
            console.print(f"held-out: {format_metrics(answer.holdout)}")


def _export(args: argparse.Namespace, console: Console) -> int:
    with _existing_store(args.store) as store:
        return export_command.command(args, console, store)


@contextlib.contextmanager
def _existing_store(path: str) -> Iterator[Any]:
    """The store at ``path``, closed afterwards (a reader leaves no -wal or -shm file); a
    PostgreSQL URL is checked by opening it."""
    from engine import Store
    from engine.errors import StoreError

    if not Store.exists(path):
        raise StoreError(f"no store at {path}; run `codellmtuner run` first or pass --store")
    with contextlib.closing(Store(path)) as store:
        yield store


def _worker(args: argparse.Namespace, console: Console) -> int:
    from engine import Worker

    # SIGTERM lets the worker finish its job; Ctrl-C hands the job back at once.
    Worker.serve(args)
    return 0


COMMANDS = {
    "finetune": finetune_command.command,
    "worker": _worker,
    "app": _app,
    "serve": _serve,
    "watch": _watch,
    "run": _run,
    "resume": _resume,
    "stop": _control,
    "pause": _control,
    "unpause": _control,
    "tasks": _tasks,
    "runs": _runs,
    "show": _show,
    "export": _export,
}


if __name__ == "__main__":
    sys.exit(main())
