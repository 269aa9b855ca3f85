"""Generation throughput on the bundled model: backends, batch sizes, and length bucketing.

    python -m benchmarks.throughput [--prompts 32] [--max-new-tokens 128]
        [--batch-sizes 1 4 8 16 32] [--concurrency 1 4 8] [--no-server]
        [--mix chat fewshot-2] [--mix-prompts 8] [--mix-batch 4] [--threads N] [--quick]

Greedy decoding on HumanEval chat prompts from the tuning split. Two tables:

1. Backends: the same prompts through every backend available here, in tokens/s, with
   the ratio to one prompt at a time (transformers, batch 1) measured in the same run:
   transformers in process at each ``--batch-sizes``; ``transformers serve`` (with
   continuous batching) through the server backend at each ``--concurrency``; vLLM in
   process where it is installed and CUDA is there. Every row must generate the same
   completions as the first (checked: a row that does not says so). Beside each row, the
   physical bound of a memory-bound decode: the memory bandwidth (measured here with a
   large ``numpy`` copy) over the bytes each step reads (the weights, once per batch),
   times the rows decoding together.
2. Length bucketing: ``--mix-prompts`` prompts whose styles alternate through ``--mix``
   (by default short chat and long fewshot-2 prompts), generated ``--mix-batch`` at a
   time, once as the backend orders them (sorted by length, so similar lengths share a
   batch) and once in a shuffled order (fixed seed) cut into batches as they come. Prints
   the padding each order costs and its speed against the sorted order.

``--quick`` is a seconds-long smoke test of the harness (4 tokens, no server).
``--threads`` sets torch's CPU threads. ``--model`` takes any model source the engine
resolves (the tests use a tiny random model).
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Row:
    """One way of generating the benchmark's prompts, and what it took."""

    backend: str
    width: int  # prompts in flight together: the batch size, or requests in flight
    seconds: float
    tokens: int
    texts: list[str]


def memory_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Bytes per second a large ``numpy`` copy moves (read plus write), the best of
    ``repeats``: what a memory-bound decode step can read at most."""
    import numpy as np

    source = np.ones(megabytes * 2**20 // 8)
    target = np.empty_like(source)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best


def memory_bound(bandwidth: float, weight_bytes: int, width: int) -> float:
    """Tokens/s of a decode that reads every weight once per step for ``width`` rows.

    >>> memory_bound(10e9, 500_000_000, 4)
    80.0
    """
    return width * bandwidth / weight_bytes


def timed(backend: str, width: int, generate) -> Row:
    start = time.perf_counter()
    outputs = generate()
    seconds = time.perf_counter() - start
    tokens = sum(o.generated_tokens for o in outputs)
    return Row(backend, width, seconds, tokens, [o.text for o in outputs])


def backends_table(rows: list[Row], bandwidth: float, weight_bytes: int, title: str) -> Table:
    table = Table(title=title)
    columns = ("backend", "batch / in flight", "seconds", "tokens", "tok/s", "vs one at a time")
    for column in (*columns, "memory bound tok/s"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    baseline = rows[0]
    base_rate = baseline.tokens / baseline.seconds
    for row in rows:
        rate = row.tokens / row.seconds
        same = "" if row.texts == baseline.texts else " (outputs differ)"
        table.add_row(
            row.backend, str(row.width), f"{row.seconds:.1f}", str(row.tokens), f"{rate:.1f}",
            f"{rate / base_rate:.2f}x{same}",
            f"{memory_bound(bandwidth, weight_bytes, row.width):.0f}",
        )  # fmt: skip
    table.caption = (
        f"memory bandwidth {bandwidth / 1e9:.1f} GB/s (numpy copy), weights "
        f"{weight_bytes / 2**20:.0f} MiB read per decode step; the bound ignores the KV "
        "cache and the prefill, which is compute-bound"
    )
    return table


def transformers_rows(backend, prompts: list[str], kwargs: dict, sizes: list[int]) -> list[Row]:
    rows = []
    for size in sizes:
        backend.batch_size = size
        rows.append(timed("transformers", size, lambda: backend.generate(prompts, kwargs, seed=0)))
    return rows


def server_rows(model_dir, messages: list, kwargs: dict, widths: list[int], log) -> list[Row]:
    """The prompts (as chat messages: the server renders its template) through
    ``transformers serve`` with continuous batching, at each number of requests in flight."""
    from engine.generation.backends.openai import OpenAIBackend
    from tests.servers import transformers_serve

    served = transformers_serve(model_dir, log, continuous_batching=True)
    try:
        rows = []
        for width in widths:
            client = OpenAIBackend(served.url, served.model, concurrency=width)
            generate = functools.partial(client.generate, messages, kwargs, seed=0)
            rows.append(timed("server (transformers serve)", width, generate))
        return rows
    finally:
        served.stop()


def vllm_rows(ref, prompts: list[str], kwargs: dict) -> list[Row]:
    """vLLM in process, all prompts handed over at once (it schedules its own batches)."""
    import torch

    from engine.generation.backends.vllm import VLLMBackend, vllm_available

    if not (vllm_available() and torch.cuda.is_available()):
        return []
    backend = VLLMBackend(ref)
    return [timed("vllm", len(prompts), lambda: backend.generate(prompts, kwargs, seed=0))]


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
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--no-server", action="store_true", help="skip transformers serve")
    parser.add_argument("--mix", nargs="+", default=["chat", "fewshot-2"])
    parser.add_argument("--mix-prompts", type=int, default=8)
    parser.add_argument("--mix-batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="of the shuffled order")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke test of the harness")
    args = parser.parse_args(argv)
    if args.quick:
        args.prompts, args.max_new_tokens, args.batch_sizes = 2, 4, [1, 2]
        args.mix, args.mix_prompts, args.mix_batch, args.no_server = ["raw", "chat"], 4, 2, True
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from engine import TransformersBackend, build_prompts, get_task, resolve_model

    console = Console(width=None if sys.stdout.isatty() else 200)  # piped: no cut cells
    start = time.perf_counter()
    task = get_task("humaneval")
    ref = resolve_model(args.model)
    backend = TransformersBackend(ref, device="cpu")
    problems = task.problems("tune")[: args.prompts]
    prompts = build_prompts(task, problems, "chat", backend.tokenizer)
    kwargs = {"do_sample": False, "max_new_tokens": args.max_new_tokens, "repetition_penalty": 1.0}
    backend.generate(prompts[:1], {**kwargs, "max_new_tokens": 4}, seed=0)  # warm-up

    rows = transformers_rows(backend, prompts, kwargs, args.batch_sizes)
    rows += vllm_rows(ref, prompts, kwargs)
    if not args.no_server:
        messages = build_prompts(task, problems, "chat", None, as_messages=True)
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "serve.log"
            rows += server_rows(ref.path, messages, kwargs, args.concurrency, log)
    weight_bytes = sum(p.numel() * p.element_size() for p in backend.model.parameters())
    title = (f"{len(prompts)} chat prompts, greedy, {args.max_new_tokens} new tokens max, "
             f"{torch.get_num_threads()} torch threads")  # fmt: skip
    console.print(backends_table(rows, memory_bandwidth(), weight_bytes, title))
    mixed = mixed_prompts(task, problems[: args.mix_prompts], args.mix, backend.tokenizer)
    buckets = bucketing_rows(backend, mixed, kwargs, args.mix_batch, args.seed)
    console.print(bucketing_table(buckets, args.mix, kwargs, args.mix_batch))
    console.print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
