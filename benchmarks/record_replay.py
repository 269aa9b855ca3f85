"""Record real evaluations of the bundled model's candidates on HumanEval, for replay.

    python -m benchmarks.record_replay [--configs 30] [--problems 8] [--minutes M]

Every candidate (``smollm2`` zero-shot chat, ``smollm2@fewshot-2`` with two worked
examples, ``smollm2@raw`` plain completion) is evaluated at the shared default point and
then at random decoding configurations of the engine's default space, each on the same
first ``--problems`` HumanEval tune problems, with every problem's outcome (the fraction
of its tests passed, the task's ``avg_tests``) kept. The recording is an ordinary
``engine.Tuner`` run (random sampler, the whole budget in stage 1) in ``--store``, so a
stopped recording continues where it was (``--minutes`` stops it cleanly between
samples). It is then exported to ``--out`` (gzip JSON, a few KB), which
``benchmarks.strategies`` serves as the ``replay`` family
(``benchmarks/_strategies/replay.py``).

On 2 CPU cores the shipped recording (30 configurations, 8 problems) took 76 minutes:
per configuration 13-130 s for chat, 50-300 s for fewshot-2 and 4-60 s for raw.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine import SampleRecorded, Store, Tuner

CANDIDATES = ("smollm2", "smollm2@fewshot-2", "smollm2@raw")
RUN_ID = "replay-humaneval"
DEFAULT_OUT = Path(__file__).parent / "data" / "replay_humaneval_smollm2.json.gz"
DEFAULT_STORE = Path(__file__).parent / "data" / "replay-recording.db"


def record(
    store: Path,
    configs: int,
    problems: int,
    minutes: float | None = None,
    candidates: Sequence[str] = CANDIDATES,
) -> None:
    """Run (or continue) the recording run; stop after ``minutes`` if given."""
    tuner = Tuner(
        task="humaneval", candidates=list(candidates), budget=configs * len(candidates),
        stage1_fraction=1.0, eliminate=0.0,  # every candidate gets every configuration
        sampler="random", tune_size=problems, holdout_size=1,
        batch_size=problems,  # one generate call per evaluation
        store=store, run_id=RUN_ID, seed=0,
    )  # fmt: skip
    with contextlib.closing(Store(store)) as s:
        if s.has_run(RUN_ID):  # continue with the saved settings, whatever the flags say
            tuner = Tuner.resume(RUN_ID, store=store)

    def show(event: object) -> None:
        if isinstance(event, SampleRecorded):
            sample = event.sample
            print(f"{event.budget_used:>4.0f}/{event.budget:.0f} {sample.candidate:<14} "
                  f"score {sample.score:.3f} {sample.seconds:5.1f} s", flush=True)  # fmt: skip

    tuner.subscribe(show)
    timer = threading.Timer(minutes * 60, tuner.stop) if minutes else None
    if timer:
        timer.daemon = True  # a recording that ends first does not wait for it
        timer.start()
    try:
        tuner.run()
    finally:
        if timer:
            timer.cancel()


def export(store: Path, out: Path) -> dict[str, Any]:
    """The recorded stage-1 samples with per-problem outcomes, as written to ``out``."""
    with contextlib.closing(Store(store)) as s:
        run = s.get_run(RUN_ID)
        samples = s.samples(RUN_ID, stage="sampling")
        rows = []
        problem_ids: list[str] | None = None
        for sample in samples:
            outcomes = sorted(s.outcomes(sample.id), key=lambda o: o["problem_id"])
            ids = [o["problem_id"] for o in outcomes]
            problem_ids = problem_ids or ids
            if ids != problem_ids:
                raise SystemExit(f"sample {sample.id} scored other problems than the first")
            rows.append({
                "candidate": sample.candidate, "params": sample.params,
                "fraction": [round(o["fraction"], 4) for o in outcomes],
                "generated_tokens": sample.generated_tokens,
                "seconds": round(sample.seconds, 2),
            })  # fmt: skip
    data = {
        "task": "humaneval", "problems": problem_ids,
        "space": run.config["space"], "samples": rows,
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    return data


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=30, help="per candidate (default 30)")
    parser.add_argument("--problems", type=int, default=8, help="HumanEval tune problems")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this long")
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--export-only", action="store_true", help="only write --out")
    args = parser.parse_args(argv)
    args.store.parent.mkdir(parents=True, exist_ok=True)
    if not args.export_only:
        record(args.store, args.configs, args.problems, args.minutes)
    data = export(args.store, args.out)
    print(f"{len(data['samples'])} samples over {len(data['problems'] or [])} problems "
          f"-> {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
