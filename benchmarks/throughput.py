"""Generation throughput on the bundled model: batch sizes, and length bucketing.

    python -m benchmarks.throughput [--prompts 8] [--max-new-tokens 64] [--batch-sizes 1 4 8]
        [--mix chat fewshot-2] [--mix-prompts 8] [--mix-batch 4] [--threads N] [--quick]

Greedy decoding on HumanEval prompts from the tuning split. Two tables:

1. Batch size: the same ``--style`` prompts generated one at a time and batched; every
   batch size generates the same completions (checked), so only the speed differs.
   Prints tokens/s and the ratio to batch size 1 measured in the same run.
2. Length bucketing: ``--mix-prompts`` prompts whose styles alternate through ``--mix``
   (by default short chat and long fewshot-2 prompts), generated ``--mix-batch`` at a
   time, once as the backend orders them (sorted by length, so similar lengths share a
   batch) and once in a shuffled order (fixed seed) cut into batches as they come. The
   unsorted batches are formed here and handed to the backend one at a time (a batch of
   ``--mix-batch`` prompts is one padded ``generate`` call whatever the backend's sort
   does inside it). Prints the padding each order costs (pad tokens / real prompt tokens,
   and decode slots of rows that already finished / generated tokens) and its speed
   against the sorted order.

``--quick`` is a seconds-long smoke test of the harness (raw + chat prompts, 4 tokens).
``--threads`` sets torch's CPU threads (on a CPU shared with other work, one thread can
be several times faster than oversubscribed OpenMP threads). ``--model`` takes any model
source the engine resolves (the tests use a tiny random model).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Padding:
    """What padding costs for prompts of ``lengths`` generated in ``batches`` (indices)."""

    real: int  # prompt tokens
    padded: int  # pad tokens added on the left to make each batch rectangular
    generated: int  # tokens really generated
    idle: int  # decode slots of rows that had already finished (their padding)

    @property
    def pad_ratio(self) -> float:
        return self.padded / self.real if self.real else 0.0

    @property
    def idle_ratio(self) -> float:
        return self.idle / self.generated if self.generated else 0.0


def padding(
    batches: Sequence[Sequence[int]], lengths: Sequence[int], generated: Sequence[int]
) -> Padding:
    """Pad tokens of left-padded ``batches`` of prompts of ``lengths`` that generated
    ``generated`` tokens each; a batch decodes until its longest row is done."""
    real = padded = made = idle = 0
    for rows in batches:
        width = max(lengths[i] for i in rows)
        steps = max(generated[i] for i in rows)
        real += sum(lengths[i] for i in rows)
        padded += sum(width - lengths[i] for i in rows)
        made += sum(generated[i] for i in rows)
        idle += sum(steps - generated[i] for i in rows)
    return Padding(real, padded, made, idle)


def chunks(order: Sequence[int], size: int) -> list[list[int]]:
    return [list(order[i : i + size]) for i in range(0, len(order), size)]


def mixed_prompts(task, problems, styles: Sequence[str], tokenizer) -> list[str]:
    """One prompt per problem, problem ``i`` in style ``styles[i % len(styles)]``."""
    from engine import build_prompts

    rendered = {s: build_prompts(task, problems, s, tokenizer) for s in dict.fromkeys(styles)}
    return [rendered[styles[i % len(styles)]][i] for i in range(len(problems))]


def batch_sizes_table(backend, prompts: list[str], kwargs: dict, sizes: list[int], style: str):
    table = Table(
        title=f"{len(prompts)} {style} prompts, greedy, {kwargs['max_new_tokens']} new tokens max"
    )
    for column in ("batch size", "seconds", "tokens", "tok/s", "vs batch 1"):
        table.add_column(column, justify="right")
    baseline = reference = None
    for size in sizes:
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
    return table


def bucketing_rows(backend, prompts: list[str], kwargs: dict, size: int, seed: int) -> list[dict]:
    """Generate ``prompts`` sorted by length (the backend's way) and in a shuffled order,
    ``size`` at a time; one dict per order with its padding and timing."""
    from engine import length_order

    backend.batch_size = size
    rows = []
    start = time.perf_counter()
    outputs = backend.generate(prompts, kwargs, seed=0)
    seconds = time.perf_counter() - start
    lengths = [o.prompt_tokens for o in outputs]
    sorted_batches = chunks(length_order(lengths), size)
    rows.append(("sorted by length (backend)", sorted_batches, outputs, seconds))

    shuffled = list(range(len(prompts)))
    random.Random(seed).shuffle(shuffled)
    batches = chunks(shuffled, size)
    by_index = {}
    start = time.perf_counter()
    for k, batch in enumerate(batches):  # one generate call = one padded batch, as formed here
        done = backend.generate([prompts[i] for i in batch], kwargs, seed=k)
        by_index.update(zip(batch, done, strict=True))
    seconds = time.perf_counter() - start
    outputs = [by_index[i] for i in range(len(prompts))]
    rows.append((f"shuffled (seed {seed})", batches, outputs, seconds))

    result = []
    for name, batches, outputs, seconds in rows:
        generated = [o.generated_tokens for o in outputs]
        result.append({
            "order": name, "batches": len(batches), "seconds": seconds,
            "padding": padding(batches, lengths, generated),
            "texts": [o.text for o in outputs],
        })  # fmt: skip
    return result


def bucketing_table(rows: list[dict], styles: Sequence[str], kwargs: dict, size: int) -> Table:
    table = Table(
        title=f"length bucketing: {len(rows[0]['texts'])} "
        f"prompts mixing {' + '.join(styles)}, batch {size}, greedy, "
        f"{kwargs['max_new_tokens']} new tokens max"
    )
    columns = ("order", "batches", "prompt tokens", "pad tokens", "pad / real", "idle decode")
    columns += ("seconds", "tok/s", "vs sorted")
    for column in columns:
        table.add_column(column, justify="left" if column == "order" else "right")
    baseline = rows[0]
    for row in rows:
        pad: Padding = row["padding"]
        rate = pad.generated / row["seconds"]
        same = "" if row["texts"] == baseline["texts"] else " (outputs differ)"
        table.add_row(
            row["order"], str(row["batches"]), str(pad.real), str(pad.padded),
            f"{pad.pad_ratio:.2f}", f"{pad.idle_ratio:.2f}", f"{row['seconds']:.1f}",
            f"{rate:.1f}", f"{row['seconds'] / baseline['seconds']:.2f}x time{same}",
        )  # fmt: skip
    table.caption = (
        "pad / real: left-padding tokens per real prompt token (prefill work on padding); "
        "idle decode: decode slots of rows already finished per generated token"
    )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--style", default="chat")
    parser.add_argument("--mix", nargs="+", default=["chat", "fewshot-2"])
    parser.add_argument("--mix-prompts", type=int, default=8)
    parser.add_argument("--mix-batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="of the shuffled order")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke test of the harness")
    args = parser.parse_args(argv)
    if args.quick:
        args.prompts, args.max_new_tokens, args.batch_sizes = 2, 4, [1, 2]
        args.mix, args.mix_prompts, args.mix_batch = ["raw", "chat"], 4, 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from engine import TransformersBackend, build_prompts, get_task, resolve_model

    console = Console(width=None if sys.stdout.isatty() else 200)  # piped: no cut cells
    start = time.perf_counter()
    task = get_task("humaneval")
    backend = TransformersBackend(resolve_model(args.model))
    problems = task.problems("tune")
    prompts = build_prompts(task, problems[: args.prompts], args.style, backend.tokenizer)
    kwargs = {"do_sample": False, "max_new_tokens": args.max_new_tokens}
    backend.generate(prompts[:1], {**kwargs, "max_new_tokens": 4}, seed=0)  # warm-up

    console.print(batch_sizes_table(backend, prompts, kwargs, args.batch_sizes, args.style))
    mixed = mixed_prompts(task, problems[: args.mix_prompts], args.mix, backend.tokenizer)
    rows = bucketing_rows(backend, mixed, kwargs, args.mix_batch, args.seed)
    console.print(bucketing_table(rows, args.mix, kwargs, args.mix_batch))
    import torch

    threads = torch.get_num_threads()
    console.print(f"torch threads {threads}, total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
