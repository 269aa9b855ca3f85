"""``codellmtuner run`` and ``resume``: a tuning run in the app, or printed where there is
no terminal (or with ``--headless``).

The run options (``--budget``, ``--eliminate``, ...) are :data:`engine.OPTIONS`, declared
once in ``engine/settings.py`` with their flags: the app's setup form offers the same ones
and reads them with the same :meth:`~engine.Option.read`.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from engine import DEFAULT_CANDIDATES, DEFAULT_TASK, OPTIONS, Option
from engine.errors import ConfigError
from tui.commands.app import open_app
from tui.commands.common import add_store_flag, existing_store, interactive, store_hint


def add_parsers(subparsers: Any) -> None:
    """Register ``run`` and ``resume``."""
    run = subparsers.add_parser("run", help="start a tuning run")
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
    add_store_flag(run)

    resume = subparsers.add_parser("resume", help="continue a stopped or killed run")
    resume.add_argument("run", metavar="RUN")
    resume.add_argument("--headless", action="store_true", help="print progress instead")
    add_store_flag(resume)


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    """``option`` as its flag (:attr:`Option.flag`). Its text is read by
    :func:`option_values`, as the form's fields are, so a bad value gets the engine's own
    message."""
    default = option.text(option.default) or option.none_means
    flags = [option.flag, *([option.short] if option.short else [])]
    parser.add_argument(
        *flags, dest=option.name, default=option.default, choices=option.choices or None,
        metavar=option.metavar, help=f"{option.help} (default: {default})",
    )  # fmt: skip


def option_values(args: argparse.Namespace) -> dict[str, Any]:
    """Every run option of ``args``: the text of a given flag read, a default as it is.
    Raises :class:`ConfigError` for a value the option does not accept."""
    given = {option: getattr(args, option.name) for option in OPTIONS}
    # argparse hands `--flag=--` over as [], taking the value for its `--` separator.
    given = {option: "--" if value == [] else value for option, value in given.items()}
    return {o.name: o.read(v, source=o.flag) if isinstance(v, str) else v for o, v in given.items()}


def run(args: argparse.Namespace, console: Console) -> int:
    from engine import SearchSpace, Tuner

    space = SearchSpace.from_toml(args.space) if args.space else None
    if args.param:
        space = SearchSpace.from_overrides(args.param, base=space)
    tuner = Tuner(
        task=args.task, candidates=args.candidate or list(DEFAULT_CANDIDATES), store=args.store,
        space=space, run_id=args.run_id, **option_values(args),
    )  # fmt: skip
    return _execute(tuner, args, console)


def resume(args: argparse.Namespace, console: Console) -> int:
    from engine import Tuner, is_live, live_status

    with existing_store(args.store) as store:
        run = store.get_run(args.run)
        status = live_status(store, run)
    if is_live(status) and (args.headless or not interactive()):
        raise ConfigError(
            f"run {run.id} is {status} in another process; follow it with `codellmtuner "
            f"watch {run.id}`, or stop it first (`codellmtuner stop {run.id}`)"
        )
    return _execute(Tuner.resume(run.id, store=args.store), args, console)


def _execute(tuner: Any, args: argparse.Namespace, console: Console) -> int:
    """Run ``tuner`` in the app, or printed on ``console``; Ctrl-C (or SIGTERM) stops it
    with every committed sample kept, and exit status 130."""
    if not args.headless and interactive():
        return open_app(args, tuner=tuner)
    from tui.headless import HeadlessView

    tuner.subscribe(HeadlessView(console))
    try:
        tuner.run()
    except KeyboardInterrupt:
        Console(stderr=True, soft_wrap=True).print(
            "stopped; every committed sample is kept. Resume with: "
            f"codellmtuner resume {tuner.run_id}" + store_hint(args.store),
            highlight=False,
        )
        return 130
    return 0
