"""``codellmtuner tasks``, ``runs`` and ``show``: what there is to tune on, the runs in a
store, and one run's ranking, best parameters and held-out score."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine import EXPORT_FORMATS
from engine.errors import ConfigError
from tui.commands.common import add_store_flag, existing_store

#: The splits of a task, in the order ``tasks`` lists their sizes.
SPLITS = ("train", "tune", "holdout")


def add_parsers(subparsers: Any) -> None:
    """Register ``tasks``, ``runs`` and ``show``."""
    tasks = subparsers.add_parser("tasks", help="list the tasks: data, split sizes and metrics")
    tasks.add_argument("task", metavar="TASK", nargs="?", help="only this task")
    tasks.add_argument("--dataset", help="check this JSONL file as the task's data")
    tasks.add_argument("--samples-per-problem", "-n", type=int, default=1, metavar="N")

    runs = subparsers.add_parser("runs", help="list the runs in the store")
    add_store_flag(runs)

    show = subparsers.add_parser("show", help="a run's ranking, best parameters and held-out score")
    show.add_argument("run", metavar="RUN", help="run id, a unique prefix, or 'latest'")
    add_store_flag(show)


def tasks(args: argparse.Namespace, console: Console) -> int:
    from engine import TASKS, get_task

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


def runs(args: argparse.Namespace, console: Console) -> int:
    from engine import RunSpec, live_status
    from tui.format import budget_used

    with existing_store(args.store) as store:
        table = Table(title=f"runs in {store.path}", title_justify="left")  # no password
        table.add_column("run", no_wrap=True)  # the id is what the user copies
        for column in ("status", "stage", "task", "candidates", "budget", "winner"):
            table.add_column(column, no_wrap=column == "budget")  # "3.2/30 minutes" whole
        for run in store.runs():
            spec = RunSpec.of_run(run)
            table.add_row(
                run.id, live_status(store, run), run.stage,
                spec.task or "objective", ", ".join(spec.names),
                budget_used(store, run), run.winner or "",
            )  # fmt: skip
        console.print(table)
    return 0


def show(args: argparse.Namespace, console: Console) -> int:
    from engine import dashboard_url

    with existing_store(args.store) as store:
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
    used = budget_used(store, run, explain=True)
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
