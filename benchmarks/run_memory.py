"""Peak memory of a small real tuning run on the bundled model, against its floors.

    python -m benchmarks.run_memory [--budget 4] [--tune-size 4] [--holdout-size 2]
        [--max-new-tokens 64] [--threads N] [--quick]

Each step runs in a fresh interpreter and reports its own peak resident set size: the
``VmHWM`` of ``/proc/self/status`` (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` where
there is no ``/proc``). Linux carries a parent's peak into a child's ``ru_maxrss`` across
fork and exec, so ``ru_maxrss`` is only right when the parent is small; ``VmHWM`` belongs
to the address space, which exec replaces, so it holds even from inside pytest:

1. python alone (``python -c``, nothing imported);
2. python with the engine imported (``engine``, the tuner, the transformers backend:
   torch and transformers);
3. the bundled model loaded (a ``TransformersBackend``), nothing generated: the float32
   safetensors weights are memory-mapped, so only the pages touched so far count;
4. the same plus one generated token (one forward pass touches every weight): the
   baseline of the ratios;
5. a whole run: ``Tuner(task="humaneval", candidates=["smollm2"], budget=...)`` with
   ``--tune-size`` problems and ``--holdout-size`` held out, ``max_new_tokens`` fixed at
   ``--max-new-tokens``, in a temporary store (generation, sandboxed scoring, PSM,
   holdout).

Prints each peak with its ratio to the warm model (step 4) and to the engine import
measured in the same run, and the difference to the warm model (what the run adds on top
of the weights). ``--quick`` is a smoke test of the harness (1 sample of 1 problem, 4 tokens).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks._fresh import run_marked

MARKER = "RUN-MEMORY-RESULT "
STEPS = ("python", "import", "load", "warm", "run")
NAMES = {
    "python": "python alone",
    "import": "python + engine import",
    "load": "model loaded",
    "warm": "model loaded + 1 token",
    "run": "tuning run",
}


def peak_mib() -> float:
    """This process's peak resident set size in MiB: VmHWM, else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bare_program() -> str:
    """``python -c`` source that prints the bare interpreter's peak (nothing imported
    besides what :func:`peak_mib` needs)."""
    import inspect

    source = inspect.getsource(peak_mib).replace(" -> float", "")
    return f"{source}\nimport json\nprint({MARKER!r} + json.dumps({{'peak_mib': peak_mib()}}))"


def run_one(step: str, args: argparse.Namespace) -> dict:
    """Do ``step`` in this process; its peak memory and what it did."""
    import tempfile

    from engine import TransformersBackend, Tuner, resolve_model  # noqa: F401 (the import is measured)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    detail = ""
    if step in ("load", "warm"):
        backend = TransformersBackend(resolve_model(args.model))
        detail = f"{sum(p.numel() for p in backend.model.parameters()):,} parameters"
        if step == "warm":  # one forward pass touches every weight
            backend.generate(["def f():"], {"do_sample": False, "max_new_tokens": 1}, seed=0)
    elif step == "run":
        from engine import Tuner

        with tempfile.TemporaryDirectory() as tmp:
            tuner = Tuner(
                task="humaneval", candidates=[args.model], budget=args.budget,
                tune_size=args.tune_size, holdout_size=args.holdout_size,
                space={"max_new_tokens": args.max_new_tokens}, store=Path(tmp) / "samples.db",
            )  # fmt: skip
            result = tuner.run()
        from tui.format import format_metrics  # after the run: it is not what is measured

        holdout = format_metrics(result.holdout or {}, limit=1)
        detail = f"{result.n_samples} samples; holdout {holdout or 'none'}"
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step": step, "peak_mib": peak_mib(), "maxrss_mib": maxrss, "detail": detail}


def measure(step: str, args: argparse.Namespace) -> dict:
    """``step`` in a fresh interpreter, or ``{"step", "error"}``."""
    if step == "python":
        command = [sys.executable, "-c", bare_program()]
    else:
        options = ["--model", args.model, "--budget", args.budget, "--tune-size", args.tune_size]
        options += ["--holdout-size", args.holdout_size, "--max-new-tokens", args.max_new_tokens]
        options += ["--threads", args.threads or 0]
        command = [sys.executable, "-m", "benchmarks.run_memory", "--one", step]
        command += [str(o) for o in options]
    start = time.perf_counter()
    result = run_marked(command, MARKER)
    seconds = time.perf_counter() - start
    if "error" in result:
        return {"step": step, **result}
    return {"step": step, "detail": "", **result, "seconds": seconds}


def table(rows: list[dict], args: argparse.Namespace) -> Table:
    result = Table(
        title=f"peak RSS: {args.model} on humaneval, budget {args.budget}, tune {args.tune_size}, "
        f"holdout {args.holdout_size}, {args.max_new_tokens} new tokens"
    )
    columns = ("step", "peak MiB", "vs model + 1 token", "vs engine import", "+ over model")
    columns += ("ru_maxrss MiB", "seconds", "detail")
    for column in columns:
        result.add_column(column, justify="left" if column in ("step", "detail") else "right")
    peaks = {r["step"]: r.get("peak_mib") for r in rows}
    load, imported = peaks.get("warm") or peaks.get("load"), peaks.get("import")
    for row in rows:
        if "error" in row:
            result.add_row(NAMES[row["step"]], f"failed: {row['error']}")
            continue
        mib = row["peak_mib"]
        result.add_row(
            NAMES[row["step"]], f"{mib:.0f}", f"{mib / load:.2f}x" if load else "",
            f"{mib / imported:.2f}x" if imported else "",
            f"{mib - load:+.0f}" if load else "",
            f"{row['maxrss_mib']:.0f}" if "maxrss_mib" in row else "",
            f"{row['seconds']:.1f}", row["detail"],
        )  # fmt: skip
    result.caption = (
        "each step in a fresh process; peak: VmHWM; ru_maxrss includes what the parent "
        "had at fork; seconds include interpreter start-up"
    )
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--budget", type=int, default=4)
    parser.add_argument("--tune-size", type=int, default=4)
    parser.add_argument("--holdout-size", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's)")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--quick", action="store_true", help="a fast smoke test of the harness")
    parser.add_argument("--one", choices=STEPS[1:], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(MARKER + json.dumps(run_one(args.one, args)), flush=True)
        return []
    if args.quick:
        # a samples budget gives each candidate at least 2 stage-1 samples
        args.budget, args.tune_size, args.holdout_size, args.max_new_tokens = 2, 1, 1, 4

    console = Console(width=None if sys.stdout.isatty() else 200)  # piped: no cut cells
    start = time.perf_counter()
    rows = []
    for step in args.steps:
        with console.status(f"measuring {NAMES[step]}"):
            rows.append(measure(step, args))
    console.print(table(rows, args))
    console.print(f"total wall time {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
