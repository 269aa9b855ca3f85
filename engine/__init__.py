"""CodeLLMTuner's engine: choose a code LLM and its decoding parameters for one task.

The public surface::

    from engine import Tuner
    result = Tuner(objective=f, candidates=["a", "b"], budget=40).run()  # or "20000 tokens", "30m"
    result.best_candidate, result.best_params, result.ranking

Everything here works without the terminal app.
"""

from engine.budget import Budget
from engine.candidates import Candidate, parse_candidate
from engine.errors import ConfigError, DatasetError, ModelLoadError, StoreError, TunerError
from engine.events import (
    Event,
    Message,
    RankingUpdated,
    RunFailed,
    RunFinished,
    RunStarted,
    SampleRecorded,
    StageChanged,
)
from engine.psm import CandidateEstimate
from engine.space import SearchSpace, generation_kwargs
from engine.store import Run, Sample, Store
from engine.tuner import Tuner, TuneResult

__all__ = [
    "Budget",
    "Candidate",
    "CandidateEstimate",
    "ConfigError",
    "DatasetError",
    "Event",
    "Message",
    "ModelLoadError",
    "RankingUpdated",
    "Run",
    "RunFailed",
    "RunFinished",
    "RunStarted",
    "Sample",
    "SampleRecorded",
    "SearchSpace",
    "StageChanged",
    "Store",
    "StoreError",
    "TuneResult",
    "Tuner",
    "TunerError",
    "generation_kwargs",
    "parse_candidate",
]
