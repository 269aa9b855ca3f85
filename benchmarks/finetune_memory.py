"""Fine-tuning cost per method on the bundled model: time, peak memory, validation loss.

    python -m benchmarks.finetune_memory [--methods lora qlora-8 qlora-4] [--train-size 16]
        [--max-length 256] [--batch-size 4] [--device auto] [--quick]

Each method trains one epoch on HumanEval's train split in a fresh process, so its peak
memory (resident set size on the CPU, allocated tensors on CUDA) is its own. Prints the
ratio of each peak to the first method's, measured in the same run, then the weights'
memory footprint of the base per quantization, which is what quantization saves before
activations, gradients and optimizer state. ``--quick`` is a smoke test of the harness.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks._fresh import run_marked
from engine import FINETUNE_METHODS as METHODS

MARKER = "FINETUNE-RESULT "
MIB = 1 << 20


def run_one(method: str, args: argparse.Namespace) -> dict:
    """Train ``method`` in this process; what the table needs."""
    from engine import METADATA_FILE, get_task
    from engine import finetune_adapter as finetune

    events: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        result = finetune(
            get_task("humaneval", n_train=args.train_size), "smollm2", method=method,
            epochs=1, batch_size=args.batch_size, max_length=args.max_length,
            output=Path(tmp) / "adapter", device=args.device,
            on_progress=lambda p: events.append((p.phase, p.elapsed)),
        )  # fmt: skip
        metadata = json.loads((result.path / METADATA_FILE).read_text())
    # The training steps alone: from the end of the initial validation to the last step.
    # Examples whose prompt fills max_length are dropped, so steps can be fewer than the
    # train ids suggest: count the steps taken.
    steps = [i for i, (phase, _) in enumerate(events) if phase == "train"]
    return {
        "method": method, "device": result.device, "trainable": result.trainable_params,
        "total": result.total_params, "seconds": result.seconds,
        "train_seconds": events[steps[-1]][1] - events[steps[0] - 1][1],
        "steps": len(steps), "planned": math.ceil(len(metadata["train_ids"]) / args.batch_size),
        "truncated": result.truncated, "peak_mib": result.peak_memory_mib,
        "initial": result.initial_validation_loss, "best": result.best_validation_loss,
    }  # fmt: skip


def measure(method: str, args: argparse.Namespace) -> dict:
    """``run_one`` in a fresh interpreter, or ``{"method", "error"}``.

    Linux carries the parent's peak RSS into a child's ``ru_maxrss`` across fork/exec, so
    the parent must stay small (no model loaded) until every method has run.
    """
    options = ["--train-size", args.train_size, "--max-length", args.max_length]
    options += ["--batch-size", args.batch_size, "--device", args.device]
    command = [sys.executable, "-m", "benchmarks.finetune_memory", "--one", method]
    result = run_marked(command + [str(o) for o in options], MARKER)
    return {"method": method, **result} if "error" in result else result


def footprints(methods: list[str], device: str) -> Table:
    """Weights' memory of the loaded base per quantization the methods use."""
    import gc

    from engine import load_model, resolve_model

    ref = resolve_model("smollm2")
    table = Table(title="base model weights, loaded")
    for column in ("quantization", "MiB", "vs none"):
        table.add_column(column, justify="right")
    baseline = None
    for kind in dict.fromkeys([None, *(METHODS[m].quantization for m in methods)]):
        model = load_model(ref, device=device, quantization=kind)[0]
        mib = model.get_memory_footprint() / MIB
        del model
        gc.collect()
        baseline = baseline or mib
        table.add_row(kind or "none", f"{mib:.1f}", f"{mib / baseline:.2f}x")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=None)
    parser.add_argument("--train-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="a fast smoke test of the harness")
    parser.add_argument("--one", choices=list(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(MARKER + json.dumps(run_one(args.one, args)), flush=True)
        return
    methods = args.methods or ["lora", "qlora-8", "qlora-4"]
    if args.quick:
        # 8 problems; HumanEval's chat prompts run 120-370 tokens, so no shorter max_length.
        args.train_size, args.max_length, methods = 8, 256, ["lora", "qlora-4"]

    console = Console(width=None if sys.stdout.isatty() else 200)  # piped: no cut cells
    start = time.perf_counter()
    rows = []
    for method in methods:
        with console.status(f"fine-tuning {method}"):
            rows.append(measure(method, args))
    table = Table(
        title=f"smollm2 on humaneval, n_train {args.train_size}, 1 epoch, "
        f"batch {args.batch_size}, max_length {args.max_length}"
    )
    columns = ("method", "device", "trainable params", "steps", "cut", "seconds", "s/step")
    columns += ("train s/step", "peak MiB", f"memory vs {methods[0]}", "validation loss")
    for column in columns:
        table.add_column(column, justify="left" if column == "method" else "right")
    baseline = rows[0].get("peak_mib")
    for row in rows:
        if "error" in row:
            table.add_row(row["method"], f"failed: {row['error']}")
            continue
        share = 100 * row["trainable"] / row["total"]
        steps = row["steps"]
        table.add_row(
            row["method"],
            row["device"],
            f"{row['trainable']:,} ({share:.2f}%)",
            f"{steps} of {row['planned']}",
            str(row["truncated"]),
            f"{row['seconds']:.1f}",
            f"{row['seconds'] / steps:.2f}",
            f"{row['train_seconds'] / steps:.2f}",
            f"{row['peak_mib']:.0f}",
            f"{row['peak_mib'] / baseline:.2f}x" if baseline else "",
            f"{row['initial']:.3f} → {row['best']:.3f}",
        )
    table.caption = (
        "steps: taken of ceil(train ids / batch); cut: examples truncated at max_length; "
        "s/step: whole run (load, 2 validations, saves); train s/step: the steps alone"
    )
    console.print(table)
    console.print(footprints(methods, args.device))
    console.print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
