"""How short a worker's lease can be: the time one renewal of it takes while other
workers commit samples as fast as they can.

    python -m benchmarks.lease [--renewals 200] [--busy 0 2 4] [--store postgresql://...]
        [--quick]

A worker renews the lease of the job it evaluates with each heartbeat
(:data:`engine.run.worker.HEARTBEAT`): the lease only has to outlast
a few renewal intervals and the slowest renewal. Each row times ``--renewals`` renewals
(``Store.renew_lease`` and ``Store.heartbeat``, as the worker's lease thread makes them)
while ``--busy`` other processes commit samples of 20 outcomes each, back to back, to
the same store: more than any run's workers do (they commit once per evaluation). The
row with no other process is the baseline. The store is a fresh SQLite file, or the
PostgreSQL database ``--store`` names. ``--quick`` is a seconds-long smoke test.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from engine.records import Job, Sample
from engine.store import Store

RUN = "lease-bench"
OUTCOMES = [{"problem_id": f"p{i}", "status": "passed", "passed": 1} for i in range(20)]


def commit_forever(location: str, name: str) -> None:
    """Commit samples of candidate ``name`` to ``location`` until the process is stopped."""
    store = Store(location)
    for trial in itertools.count():
        sample = Sample(run_id=RUN, candidate=name, stage="sampling", trial=trial,
                        params={"temperature": 0.5}, score=0.5)  # fmt: skip
        store.add_sample(sample, OUTCOMES)


def _committing(location: str, name: str) -> subprocess.Popen:
    """A process that runs :func:`commit_forever` (stopped with SIGTERM)."""
    code = f"from benchmarks.lease import commit_forever; commit_forever({location!r}, {name!r})"
    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen([sys.executable, "-c", code], cwd=root, stderr=subprocess.DEVNULL)


def renewals(location: str, busy: int, count: int) -> list[float]:
    """Seconds of each of ``count`` renewals while ``busy`` processes commit."""
    store = Store(location)
    job = store.add_job(Job(run_id=RUN, candidate=f"renewing-{busy}", stage="sampling",
                            trial=0, params={}))  # fmt: skip
    job = store.claim_job("renewer", lease=60, run_id=RUN)
    others = [_committing(location, f"busy-{busy}-{i}") for i in range(busy)]
    time.sleep(2.0 if busy else 0.0)  # the others are committing by now
    seconds = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            assert store.renew_lease(job, 60)
            store.heartbeat("renewer", job=job.id)
            seconds.append(time.perf_counter() - start)
            time.sleep(0.01)
    finally:
        for process in others:
            process.terminate()
            process.wait()
        store.release_job(job)
        store.close()
    return seconds


def table(location: str, args: argparse.Namespace, kind: str) -> Table:
    out = Table(title=f"one lease renewal (+ heartbeat), {kind} store, {args.renewals} renewals")
    for column in ("committing processes", "median ms", "p99 ms", "max ms"):
        out.add_column(column, justify="right")
    for busy in args.busy:
        ms = 1000 * np.asarray(renewals(location, busy, args.renewals))
        out.add_row(str(busy), f"{np.median(ms):.1f}", f"{np.quantile(ms, 0.99):.1f}",
                    f"{ms.max():.1f}")  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lease", description=__doc__)
    parser.add_argument("--renewals", type=int, default=200)
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--store", help="a postgresql:// database (default: an SQLite file)")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.renewals, args.busy = 10, [0, 1]
    with tempfile.TemporaryDirectory() as tmp:
        location = args.store or str(Path(tmp) / "samples.db")
        prepare(location)
        kind = "PostgreSQL" if args.store else "SQLite"
        Console().print(table(location, args, kind))
    return 0


def prepare(location: str) -> None:
    """Create the benchmark's run in the store at ``location`` unless it is there."""
    with contextlib.closing(Store(location)) as store:
        if not store.has_run(RUN):
            store.create_run(RUN, budget=1, seed=0, config={})


if __name__ == "__main__":
    raise SystemExit(main())
