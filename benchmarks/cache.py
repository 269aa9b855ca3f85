"""The completion cache: evaluating a configuration again through the real engine.

    python -m benchmarks.cache [--problems 8] [--max-new-tokens 64] [--style chat]
        [--threads N] [--quick]

A :class:`~engine.evaluation.TaskEvaluator` on the bundled model is attached to a
temporary :class:`~engine.store.Store` and evaluates each configuration twice on the
first ``--problems`` HumanEval tuning problems: greedy decoding, then sampling with the
evaluator's (fixed) seed. The second evaluation of each must find every completion in
the cache and generate 0 tokens, leaving only sandboxed scoring; it must score the same.
Prints generated tokens, cached problems and seconds of each evaluation, with the ratio
of the second's time to the first's, measured in the same run (the model is loaded and
warmed up before the first). ``--quick`` is a seconds-long smoke test of the harness.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

SAMPLED = {"temperature": 0.7, "top_p": 0.95, "top_k": 50, "repetition_penalty": 1.0}


def measure(args: argparse.Namespace) -> list[dict]:
    """Each configuration evaluated twice; one dict per evaluation."""
    from engine import (
        SearchSpace,
        Store,
        TaskEvaluator,
        TransformersBackend,
        get_task,
        parse_candidate,
        resolve_model,
    )

    candidate = parse_candidate(f"{args.model}@{args.style}")
    evaluator = TaskEvaluator(
        get_task("humaneval"), [candidate], tune_size=args.problems, seed=args.seed,
        load_backend=lambda spec: TransformersBackend(resolve_model(spec.model)),
    )  # fmt: skip
    greedy = {**SearchSpace().default_params(), "max_new_tokens": args.max_new_tokens}
    sampled = {**greedy, **SAMPLED}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "samples.db")
        try:
            evaluator.attach(store)
            backend = evaluator.backend(candidate)  # loaded outside the timings
            backend.generate(["def f():"], {"do_sample": False, "max_new_tokens": 2}, seed=0)
            for config, params in (("greedy", greedy), (f"sampled, seed {args.seed}", sampled)):
                for attempt in ("first", "second"):
                    result = evaluator.evaluate(candidate.name, params, split="tune")
                    rows.append({
                        "config": config, "attempt": attempt, "seconds": result.seconds,
                        "generated": result.generated_tokens, "cached": result.cached,
                        "problems": len(result.outcomes), "score": result.score,
                        "metric": evaluator.metric,
                    })  # fmt: skip
        finally:
            store.close()
    return rows


def table(rows: list[dict], args: argparse.Namespace) -> Table:
    result = Table(
        title=f"completion cache: {args.model}@{args.style} on {rows[0]['problems']} HumanEval "
        f"problems, {args.max_new_tokens} new tokens max"
    )
    columns = ("config", "evaluation", "generated tokens", "cached problems", "seconds")
    columns += ("vs first", f"score ({rows[0]['metric']})")
    for column in columns:
        result.add_column(column, justify="left" if column == "config" else "right")
    first = None
    for row in rows:
        first = row if row["attempt"] == "first" else first
        same = "" if row["score"] == first["score"] else " (score differs)"
        result.add_row(
            row["config"], row["attempt"], str(row["generated"]),
            f"{row['cached']} of {row['problems']}", f"{row['seconds']:.1f}",
            f"{row['seconds'] / first['seconds']:.2f}x", f"{row['score']:.3f}{same}",
        )  # fmt: skip
    result.caption = "second evaluation: every completion from the cache, only scoring is left"
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--style", default="chat")
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="the evaluator's sampling seed")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke test of the harness")
    args = parser.parse_args(argv)
    if args.quick:
        args.problems, args.max_new_tokens = 2, 8
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    console = Console(width=None if sys.stdout.isatty() else 200)  # piped: no cut cells
    start = time.perf_counter()
    rows = measure(args)
    console.print(table(rows, args))
    second = [r["generated"] for r in rows if r["attempt"] == "second"]
    console.print(f"tokens generated by the second evaluations: {sum(second)} (must be 0)")
    console.print(f"total wall time {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()
