"""Scale-out: the wall time of one run with 1, 2 and 4 evaluation workers.

    python -m benchmarks.workers [--sleep 2] [--samples 40] [--workers 1 2 4]
        [--store postgresql://...] [--quick]

Every evaluation sleeps ``--sleep`` seconds (a model's sample, without the model), so the
work is the same whatever the machine's cores. Each row is one whole run of the real
engine through its store (three candidates, ``--samples`` samples, seed 0): with 1 the
run evaluates in its own process, as it does without workers; with N > 1 it starts N
worker processes (:mod:`engine.run.worker`) that claim its jobs with a lease. The store is
a fresh SQLite file per row, or the PostgreSQL database ``--store`` names (one run per
row). The speed-up is against the 1-worker row of the same invocation; the ideal is N,
less the start of the workers and the stage switch, where the run waits for the last
stage-1 samples before it chooses the winner. ``--quick`` is a seconds-long smoke test of
the harness.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

#: Importable by the workers: the evaluation is named by its path.
OBJECTIVE = "benchmarks.workers:sleeping"
CANDIDATES = ("a", "b", "c")


def sleeping(candidate: str, params: dict) -> float:
    """A smooth bump per candidate ("b" best) after ``BENCH_SLEEP`` seconds."""
    time.sleep(float(os.environ.get("BENCH_SLEEP", "2")))
    peak = {"a": 0.6, "b": 0.8, "c": 0.5}[candidate]
    return peak - 0.4 * (params["temperature"] - 0.7) ** 2


def measure(workers: int, args: argparse.Namespace) -> dict:
    """One run with ``workers`` workers: its wall time and what it committed."""
    from engine import Store, Tuner

    os.environ["BENCH_SLEEP"] = str(args.sleep)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or Path(tmp) / "samples.db"
        tuner = Tuner(objective=OBJECTIVE, candidates=list(CANDIDATES), budget=args.samples,
                      store=path, seed=0, workers=workers)  # fmt: skip
        start = time.perf_counter()
        result = tuner.run()
        seconds = time.perf_counter() - start
        store = Store(path)
        try:
            samples = store.samples(tuner.run_id)
        finally:
            store.close()
    keys = {(s.candidate, s.stage, s.trial) for s in samples}
    return {
        "workers": workers, "seconds": seconds, "samples": len(samples),
        "distinct": len(keys), "winner": result.best_candidate,
    }  # fmt: skip


def table(rows: list[dict], args: argparse.Namespace) -> Table:
    store = "PostgreSQL" if args.store else "SQLite"
    result = Table(
        title=f"one run, {args.samples} samples of {args.sleep:g} s each, 3 candidates, "
        f"{store} store: wall time by workers"
    )
    for column in ("workers", "wall s", "speed-up", "ideal", "samples", "once each", "winner"):
        result.add_column(column, justify="right")
    base = rows[0]["seconds"]
    for row in rows:
        result.add_row(
            str(row["workers"]), f"{row['seconds']:.1f}",
            f"{base / row['seconds']:.2f}x", f"{row['workers'] / rows[0]['workers']:.0f}x",
            str(row["samples"]), "yes" if row["distinct"] == row["samples"] else "NO",
            row["winner"],
        )  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers", description=__doc__)
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds per evaluation")
    parser.add_argument("--samples", type=int, default=40, help="the run's budget in samples")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--store", help="a postgresql:// database (default: SQLite files)")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.sleep, args.samples, args.workers = 0.05, 8, [1, 2]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # workers import OBJECTIVE
    rows = [measure(n, args) for n in args.workers]
    Console().print(table(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
