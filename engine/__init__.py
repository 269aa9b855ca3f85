"""CodeLLMTuner's engine: choose a code LLM and its decoding parameters for one task.

The public surface::

    from engine import Tuner
    result = Tuner(objective=f, candidates=["a", "b"], budget=40).run()  # or "20000 tokens", "30m"
    result.best_candidate, result.best_params, result.ranking

Everything here works without the terminal app, and the app imports nothing else (but
:mod:`engine.errors`). Names load on first use, so a viewer that only folds events and
reads the store (``from engine import RunFollower``) pulls in neither Optuna nor torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it ("module:attribute" where the face renames it)
_FACE = {
    "Budget": "engine.budget",
    "format_amount": "engine.budget",
    "Candidate": "engine.candidates",
    "parse_candidate": "engine.candidates",
    "ConfigError": "engine.errors",
    "DatasetError": "engine.errors",
    "ModelLoadError": "engine.errors",
    "StoreError": "engine.errors",
    "TunerError": "engine.errors",
    **dict.fromkeys(
        (
            "Event",
            "Message",
            "RankingUpdated",
            "RunFailed",
            "RunFinished",
            "RunStarted",
            "SampleRecorded",
            "StageChanged",
            "Subscriber",
        ),
        "engine.events",
    ),  # fmt: skip
    "METADATA_FILE": "engine.adapters",
    "TransformersBackend": "engine.backends.transformers",
    "OpenAIBackend": "engine.backends.openai",
    "length_order": "engine.backends.transformers",
    "TaskEvaluator": "engine.evaluation",
    "load_model": "engine.models",
    "build_prompts": "engine.prompting",
    "MIN_SAMPLING_TEMPERATURE": "engine.space",
    "why_leader": "engine.stages",
    "sampler_seed": "engine.stages",
    "make_sampler": "engine._run:_make_sampler",
    "write_generation_config": "engine.export",
    "write_json": "engine.export",
    "EXPORT_FORMATS": "engine.export:FORMATS",
    **dict.fromkeys(
        (
            "HUMANEVAL_PROBLEMS",
            "HUMANEVAL_SAMPLES",
            "answer_sample",
            "humaneval_samples",
            "model_dir_of",
            "stored_candidate",
            "vllm_serve_command",
            "write_jsonl",
            "write_vllm",
        ),
        "engine.export",
    ),  # fmt: skip
    # `engine.finetune` is also a subpackage, which shadows a face name once imported
    "finetune_adapter": "engine.finetune:finetune",
    "FINETUNE_METHODS": "engine.finetune:METHODS",
    **dict.fromkeys(("FineTuneProgress", "FineTuneResult", "split_validation"), "engine.finetune"),
    "available_models": "engine.catalog",
    "resolve_device": "engine.models",
    "resolve_model": "engine.models",
    "RunFollower": "engine.follow",
    "Worker": "engine.worker",
    "dashboard_url": "engine.mirror",
    "worker_parser": "engine.worker",
    "serve_worker": "engine.worker:serve",
    "stored_answer": "engine.follow",
    "live_status": "engine.follow",
    "is_live": "engine.follow",
    "propensity": "engine.psm",
    "balance": "engine.psm",
    "Balance": "engine.psm",
    "CandidateEstimate": "engine.records",
    "CI_HIGH": "engine.records",
    "CI_LOW": "engine.records",
    "Run": "engine.records",
    "Sample": "engine.records",
    "TuneResult": "engine.records",
    **dict.fromkeys(
        ("DEFAULT_CANDIDATES", "DEFAULT_TASK", "OPTIONS", "Option", "RunSettings"),
        "engine.settings",
    ),
    "PARAM_NAMES": "engine.space",
    "SearchSpace": "engine.space",
    "generation_kwargs": "engine.space",
    **dict.fromkeys(
        ("BUDGET_STAGES", "HOLDOUT", "SAMPLING", "SELECTION", "STAGES", "TUNING"), "engine.stages"
    ),
    "answer_so_far": "engine.stages",
    "leader": "engine.stages",
    "Store": "engine.store",
    "TASKS": "engine.tasks",
    "get_task": "engine.tasks",
    "Tuner": "engine.tuner",
}

__all__ = [
    "METADATA_FILE",
    "MIN_SAMPLING_TEMPERATURE",
    "TaskEvaluator",
    "TransformersBackend",
    "OpenAIBackend",
    "build_prompts",
    "length_order",
    "load_model",
    "sampler_seed",
    "why_leader",
    "make_sampler",
    "FINETUNE_METHODS",
    "FineTuneProgress",
    "FineTuneResult",
    "finetune_adapter",
    "split_validation",
    "DEFAULT_CANDIDATES",
    "DEFAULT_TASK",
    "OPTIONS",
    "Option",
    "RunSettings",
    "BUDGET_STAGES",
    "Budget",
    "Candidate",
    "CandidateEstimate",
    "CI_HIGH",
    "CI_LOW",
    "ConfigError",
    "HOLDOUT",
    "SAMPLING",
    "SELECTION",
    "TUNING",
    "DatasetError",
    "Event",
    "Message",
    "ModelLoadError",
    "PARAM_NAMES",
    "RankingUpdated",
    "Run",
    "RunFailed",
    "RunFinished",
    "RunFollower",
    "RunStarted",
    "STAGES",
    "Sample",
    "SampleRecorded",
    "SearchSpace",
    "StageChanged",
    "Store",
    "StoreError",
    "Subscriber",
    "TASKS",
    "TuneResult",
    "Tuner",
    "TunerError",
    "answer_so_far",
    "available_models",
    "format_amount",
    "generation_kwargs",
    "get_task",
    "is_live",
    "leader",
    "live_status",
    "parse_candidate",
    "propensity",
    "balance",
    "Balance",
    "resolve_device",
    "resolve_model",
    "stored_answer",
    "write_generation_config",
    "write_json",
    "EXPORT_FORMATS",
    "HUMANEVAL_PROBLEMS",
    "HUMANEVAL_SAMPLES",
    "answer_sample",
    "humaneval_samples",
    "model_dir_of",
    "stored_candidate",
    "vllm_serve_command",
    "write_jsonl",
    "write_vllm",
    "Worker",
    "dashboard_url",
    "worker_parser",
    "serve_worker",
]


def __getattr__(name: str) -> Any:
    if name not in _FACE:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    module, _, attribute = _FACE[name].partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value  # the next access skips this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from engine._run import _make_sampler as make_sampler
    from engine.adapters import METADATA_FILE
    from engine.backends.openai import OpenAIBackend
    from engine.backends.transformers import TransformersBackend, length_order
    from engine.budget import Budget, format_amount
    from engine.candidates import Candidate, parse_candidate
    from engine.catalog import available_models
    from engine.errors import ConfigError, DatasetError, ModelLoadError, StoreError, TunerError
    from engine.evaluation import TaskEvaluator
    from engine.events import (
        Event,
        Message,
        RankingUpdated,
        RunFailed,
        RunFinished,
        RunStarted,
        SampleRecorded,
        StageChanged,
        Subscriber,
    )
    from engine.export import FORMATS as EXPORT_FORMATS
    from engine.export import (
        HUMANEVAL_PROBLEMS,
        HUMANEVAL_SAMPLES,
        answer_sample,
        humaneval_samples,
        model_dir_of,
        stored_candidate,
        vllm_serve_command,
        write_generation_config,
        write_json,
        write_jsonl,
        write_vllm,
    )
    from engine.finetune import METHODS as FINETUNE_METHODS
    from engine.finetune import FineTuneProgress, FineTuneResult, split_validation
    from engine.finetune import finetune as finetune_adapter
    from engine.follow import RunFollower, is_live, live_status, stored_answer
    from engine.mirror import dashboard_url
    from engine.models import load_model, resolve_device, resolve_model
    from engine.prompting import build_prompts
    from engine.psm import Balance, balance, propensity
    from engine.records import CI_HIGH, CI_LOW, CandidateEstimate, Run, Sample, TuneResult
    from engine.settings import DEFAULT_CANDIDATES, DEFAULT_TASK, OPTIONS, Option, RunSettings
    from engine.space import MIN_SAMPLING_TEMPERATURE, PARAM_NAMES, SearchSpace, generation_kwargs
    from engine.stages import (
        BUDGET_STAGES,
        HOLDOUT,
        SAMPLING,
        SELECTION,
        STAGES,
        TUNING,
        answer_so_far,
        leader,
        sampler_seed,
        why_leader,
    )
    from engine.store import Store
    from engine.tasks import TASKS, get_task
    from engine.tuner import Tuner
    from engine.worker import Worker, worker_parser
    from engine.worker import serve as serve_worker
