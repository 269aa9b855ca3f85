"""Generation throughput on the bundled model: one prompt at a time vs batched.

    python -m benchmarks.throughput [--prompts 8] [--max-new-tokens 96] [--batch-sizes 1 4 8]

Greedy decoding on HumanEval chat prompts from the tuning split; every batch size
generates the same completions (checked), so only the speed differs. Prints tokens/s
and the ratio to batch size 1 measured in the same run.
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from engine.backends.transformers import TransformersBackend
from engine.models import resolve_model
from engine.prompting import build_prompts, parse_style
from engine.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--style", default="chat")
    args = parser.parse_args()

    task = get_task("humaneval")
    backend = TransformersBackend(resolve_model("smollm2"))
    problems = task.problems("tune")[: args.prompts]
    prompts = build_prompts(task, problems, parse_style(args.style), backend.tokenizer)
    kwargs = {"do_sample": False, "max_new_tokens": args.max_new_tokens}
    backend.generate(prompts[:1], {**kwargs, "max_new_tokens": 4}, seed=0)  # warm-up

    table = Table(
        title=f"{len(prompts)} {args.style} prompts, greedy, {args.max_new_tokens} new tokens max"
    )
    for column in ("batch size", "seconds", "tokens", "tok/s", "vs batch 1"):
        table.add_column(column, justify="right")
    baseline = reference = None
    for size in args.batch_sizes:
        backend.batch_size = size
        start = time.perf_counter()
        outputs = backend.generate(prompts, kwargs, seed=0)
        seconds = time.perf_counter() - start
        tokens = sum(o.generated_tokens for o in outputs)
        texts = [o.text for o in outputs]
        reference = reference or texts
        same = "" if texts == reference else " (outputs differ)"
        rate = tokens / seconds
        baseline = baseline or rate
        table.add_row(
            str(size), f"{seconds:.1f}", str(tokens), f"{rate:.1f}", f"{rate / baseline:.2f}x{same}"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
