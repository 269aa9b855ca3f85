"""The ``codellmtuner finetune`` command: train a PEFT adapter on a task's train split.

It shows a Rich progress bar fed by :func:`engine.finetune.finetune`'s progress reports,
then a summary ending with the candidate spelling that uses the adapter in a tuning run.
The ``--method`` choices are the engine's own table, so the parser imports
:mod:`engine.finetune`; that loads no machine-learning library (torch and peft load when
the command trains).
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from engine import (
    FINETUNE_METHODS,
    FineTuneProgress,
    FineTuneResult,
    finetune_adapter,
    get_task,
    split_validation,
)

DEFAULT_TRAIN_SIZE = 64
#: The fine-tuning methods ``--method`` accepts: the keys of :data:`engine.finetune.METHODS`.
METHOD_NAMES = tuple(FINETUNE_METHODS)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``finetune`` on ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser("finetune", help="train a PEFT adapter on a task's train split")
    p.add_argument("--task", default="humaneval", help="task name (default: humaneval)")
    p.add_argument("--dataset", help="a JSONL file of problems in the task's format")
    p.add_argument(
        "--model", "-m", default="smollm2",
        help="base model: smollm2 (bundled), a folder or a cached hub id",
    )  # fmt: skip
    p.add_argument(
        "--method", choices=METHOD_NAMES, default="lora",
        help="lora (default), ia3, prompt (prompt tuning), prefix (prefix tuning), qlora-8 "
        "and qlora-4 (LoRA on an 8-bit or 4-bit NF4 base)",
    )  # fmt: skip
    p.add_argument("--name", help="register the adapter under this name (default: METHOD-TASK)")
    p.add_argument("--output", metavar="DIR", help="write the adapter here instead")
    p.add_argument("--overwrite", action="store_true", help="replace an existing adapter")
    p.add_argument("--epochs", type=int, default=3, help="(default: 3)")
    p.add_argument("--batch-size", type=int, default=4, help="(default: 4)")
    p.add_argument(
        "--max-length", type=int, default=512,
        help="tokens of prompt + response; longer examples are cut (default: 512)",
    )  # fmt: skip
    p.add_argument(
        "--lr", type=float, metavar="RATE",
        help="Adafactor's learning rate (default: the method's: 3e-4 for LoRA, 3e-3 for IA3 "
        "and prompt tuning, 3e-2 for prefix tuning)",
    )  # fmt: skip
    p.add_argument(
        "--train-size", type=int, default=DEFAULT_TRAIN_SIZE, metavar="N",
        help="problems in the task's train split, the training data; tuning runs with the "
        f"adapter must pass the same --train-size (default: {DEFAULT_TRAIN_SIZE})",
    )  # fmt: skip
    p.add_argument(
        "--validation-fraction", type=float, default=0.125, metavar="F",
        help="share of the train split held out for validation (default: 0.125)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="a whole number >= 0 (default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    return p


def finetune(args: argparse.Namespace, console: Console) -> int:
    """Run ``finetune`` as ``args`` say; returns the exit status (0, or 130 on Ctrl-C with
    the best checkpoint so far kept). Errors the user can fix raise ``TunerError``."""
    task = get_task(args.task, dataset=args.dataset, n_train=args.train_size)
    problems = task.problems("train")
    if 0 < args.validation_fraction < 1 and len(problems) >= 2:  # else finetune says why
        train, validation = split_validation(problems, args.validation_fraction)
        console.print(
            f"fine-tuning [bold]{escape(args.model)}[/] with {args.method} on {task.name}: "
            f"{len(train)} training and {len(validation)} validation problems",
            highlight=False,
        )
    view = ProgressView(console)
    try:
        result = finetune_adapter(
            task, args.model, method=args.method, name=args.name, output=args.output,
            overwrite=args.overwrite, epochs=args.epochs, batch_size=args.batch_size,
            max_length=args.max_length, learning_rate=args.lr,
            validation_fraction=args.validation_fraction, seed=args.seed, device=args.device,
            on_progress=view,
        )  # fmt: skip
    except KeyboardInterrupt:
        view.stop()
        Console(stderr=True, soft_wrap=True).print(
            "stopped; the adapter folder keeps the best checkpoint saved so far", highlight=False
        )
        return 130
    view.stop()
    print_summary(console, result, args)
    return 0


class ProgressView:
    """A Rich progress bar for :class:`FineTuneProgress` reports: steps, the epoch's mean
    training loss, the latest validation loss, elapsed time."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} steps"),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.bar: Any = None

    def __call__(self, report: FineTuneProgress) -> None:
        if self.bar is None:
            self.progress.start()
            self.bar = self.progress.add_task("", total=report.total_steps, note="")
        what = "validating" if report.phase == "validate" else "training"
        notes = []
        if report.loss is not None:
            notes.append(f"loss {report.loss:.3f}")
        if report.validation_loss is not None:
            notes.append(f"val {report.validation_loss:.3f}")
        self.progress.update(
            self.bar, completed=report.step, total=report.total_steps,
            description=f"{what} epoch {report.epoch}", note="  ".join(notes),
        )  # fmt: skip

    def stop(self) -> None:
        self.progress.stop()


def print_summary(console: Console, result: FineTuneResult, args: argparse.Namespace) -> None:
    """The adapter, its size, the validation losses, the cost, and how to use it."""
    from tui.format import duration

    share = 100 * result.trainable_params / result.total_params if result.total_params else 0
    if result.best_epoch:
        improved = f"best after epoch {result.best_epoch} of {len(result.train_losses)}"
    else:
        improved = "no epoch improved on it: the folder holds the untrained adapter"
    memory = "CUDA allocated" if result.device.startswith("cuda") else "process peak RSS"
    lines = [
        ("adapter", str(result.path)),
        ("method", f"{result.method}, {result.trainable_params:,} trainable parameters "
                   f"({share:.2f}% of {result.total_params:,})"),
        ("val loss", f"{result.initial_validation_loss:.4f} -> "
                     f"{result.best_validation_loss:.4f} ({improved})"),
        ("cost", f"{duration(result.seconds)}, peak memory {result.peak_memory_mib:,.0f} MiB "
                 f"({memory})"),
    ]  # fmt: skip
    if result.truncated:
        examples = "example" if result.truncated == 1 else "examples"
        dropped = f", {result.dropped} of them dropped (the prompt alone fills it)"
        lines.append(
            ("truncated", f"{result.truncated} {examples} cut at {args.max_length} tokens"
                          + (dropped if result.dropped else ""))
        )  # fmt: skip
    for label, text in lines:
        console.print(f"  {label:<10}{escape(text)}", highlight=False)
    # One line whatever the width, so it can be copied as it is.
    console.print(f"use it: {escape(run_command(result, args))}", highlight=False, soft_wrap=True)


def candidate_spec(result: FineTuneResult, model: str) -> str:
    """``METHOD=MODEL+ADAPTER[:QUANT]``: the candidate that tunes ``model`` with the adapter
    (on the same quantized base for the qlora methods)."""
    spec = f"{result.method}={model}+{result.adapter}"
    return spec + (f":{result.quantization}" if result.quantization else "")


def run_command(result: FineTuneResult, args: argparse.Namespace) -> str:
    """The ``codellmtuner run`` line comparing the base model with the adapted one, on the
    same train size so its tune and holdout splits exclude the trained problems."""
    words = ["codellmtuner", "run", "--task", args.task]
    if args.dataset:
        words += ["--dataset", args.dataset]
    words += ["-c", args.model, "-c", candidate_spec(result, args.model)]
    words += ["--train-size", str(result.n_train)]
    return shlex.join(words)
