"""Sandboxed scoring speed: HumanEval's canonical solutions against a bare process spawn.

    python -m benchmarks.sandbox [--problems 164] [--workers 1 2] [--spawns 40] [--quick]

The floor is what one child process costs: ``python -c pass`` spawned bare (the same
interpreter), then the program ``pass`` run through :func:`engine.tasks.sandbox.execute` in
each mode that works here (``bwrap`` when bubblewrap passes its probe, ``process``).
Against it, the HumanEval task scores every problem's canonical solution (the dataset's
``canonical_solution``, carried as ``Problem.reference``, as a continuation of the
prompt) with 1 and 2 workers. Prints ms per problem (wall time / problems), problems
per second and the ratio to the bare spawn measured in the same run; every canonical
solution must pass (the count is printed). ``--quick`` is a seconds-long smoke test.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table


def spawn_seconds(run, times: int) -> float:
    """Median seconds of ``run()`` over ``times`` calls (after one warm-up call)."""
    run()
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def floors(times: int) -> list[dict]:
    """The bare spawn and the sandbox's own cost per mode, each ``{"name", "seconds"}``."""
    from engine.tasks import sandbox

    def bare() -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    rows = [{"name": "bare spawn: python -c pass", "seconds": spawn_seconds(bare, times)}]
    modes = ["bwrap", "process"] if sandbox.available_mode() == "bwrap" else ["process"]
    for mode in modes:

        def run(mode: str = mode) -> None:
            outcome = sandbox.execute("pass", timeout=10, mode=mode)
            if outcome.status != "passed":
                raise RuntimeError(f"sandbox {mode} failed to run pass: {outcome.stderr}")

        rows.append(
            {"name": f"sandbox.execute('pass'), {mode}", "seconds": spawn_seconds(run, times)}
        )
    return rows


def score_rows(count: int | None, workers: list[int]) -> list[dict]:
    """Score the canonical solutions with each worker count; one dict per count."""
    from engine import get_task
    from engine.tasks import sandbox

    rows, mode = [], sandbox.available_mode()
    for n in workers:
        task = get_task("humaneval", workers=n)
        problems = [p for split in ("train", "tune", "holdout") for p in task.problems(split)]
        problems = problems[:count] if count else problems
        start = time.perf_counter()
        outcomes = task.score(problems, [p.reference for p in problems], continuation=True)
        seconds = time.perf_counter() - start
        rows.append({
            "name": f"score canonical, {n} worker{'s' if n > 1 else ''}, {mode}",
            "seconds": seconds / len(problems), "problems": len(problems),
            "passed": sum(o.passed for o in outcomes),
            "failed": [o.problem_id for o in outcomes if not o.passed],
        })  # fmt: skip
    return rows


def table(rows: list[dict], spawns: int) -> Table:
    result = Table(title="sandboxed scoring vs a bare process spawn")
    columns = ("what", "ms each", "per second", "vs bare spawn", "passed")
    for column in columns:
        result.add_column(column, justify="left" if column == "what" else "right")
    bare = rows[0]["seconds"]
    for row in rows:
        passed = f"{row['passed']} of {row['problems']}" if "problems" in row else ""
        result.add_row(
            row["name"], f"{1000 * row['seconds']:.1f}", f"{1 / row['seconds']:.1f}",
            f"{row['seconds'] / bare:.2f}x", passed,
        )  # fmt: skip
    result.caption = (
        f"spawns: median of {spawns}; scoring: wall time / problems (with N workers, "
        "N problems run at once)"
    )
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=None, help="default: all 164")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--spawns", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="a fast smoke test of the harness")
    args = parser.parse_args(argv)
    if args.quick:
        args.problems, args.spawns = 4, 3

    console = Console(width=None if sys.stdout.isatty() else 200)  # piped: no cut cells
    start = time.perf_counter()
    rows = floors(args.spawns) + score_rows(args.problems, args.workers)
    console.print(table(rows, args.spawns))
    for row in rows:
        if "problems" in row:
            failed = ", ".join(row["failed"]) or "none"
            console.print(f"{row['name']}: {row['passed']} of {row['problems']} passed; "
                          f"failed: {failed}")  # fmt: skip
    console.print(f"total wall time {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
