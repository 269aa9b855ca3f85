"""CodeLLMTuner's engine: choose a code LLM and its decoding parameters for one task.

The public surface::

    from engine import Tuner
    result = Tuner(objective=f, candidates=["a", "b"], budget=40).run()  # or "20000 tokens", "30m"
    result.best_candidate, result.best_params, result.ranking

Everything here works without the terminal app, and the app imports nothing else (but
:mod:`engine.errors`). The face is the imports below; names load on first use
(:mod:`engine._lazy`), so a viewer that only folds events and reads the store
(``from engine import RunFollower``) pulls in neither Optuna nor torch.

The packages, one concept each: :mod:`engine.run` (the tuner, the stage machine, workers),
:mod:`engine.selection` (the ranking, P(best) and the stages' decisions),
:mod:`engine.store`, :mod:`engine.evaluation`, :mod:`engine.generation` (candidates,
models, prompts, backends), :mod:`engine.tasks`, :mod:`engine.finetune`; and the nouns
every one of them shares: :mod:`engine.records`, :mod:`engine.events`,
:mod:`engine.settings`, :mod:`engine.space`, :mod:`engine.budget`, :mod:`engine.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import attach

if TYPE_CHECKING:
    from engine.budget import Budget, format_amount
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
    from engine.generation import (
        METADATA_FILE,
        Candidate,
        available_models,
        build_prompts,
        load_model,
        parse_candidate,
        resolve_device,
        resolve_model,
    )
    from engine.generation.backends.openai import OpenAIBackend
    from engine.generation.backends.transformers import TransformersBackend, length_order
    from engine.records import (
        BUDGET_STAGES,
        CI_HIGH,
        CI_LOW,
        HOLDOUT,
        SAMPLING,
        SELECTION,
        STAGES,
        TUNING,
        CandidateEstimate,
        Run,
        Sample,
        TuneResult,
    )
    from engine.run import (
        RunFollower,
        Tuner,
        Worker,
        is_live,
        live_status,
        stored_answer,
        stored_balance,
    )
    from engine.selection import Balance, answer_so_far, balance, leader, propensity, why_leader
    from engine.settings import DEFAULT_CANDIDATES, DEFAULT_TASK, OPTIONS, Option, RunSettings
    from engine.space import MIN_SAMPLING_TEMPERATURE, PARAM_NAMES, SearchSpace, generation_kwargs
    from engine.spec import RunSpec
    from engine.store import Store, dashboard_url
    from engine.tasks import TASKS, get_task

__getattr__, __dir__, __all__ = attach(__name__, __file__)
