"""The nouns of a run, shared by the engine, the store and every viewer.

A :class:`Sample` is one evaluation; a :class:`Run` is a run's row in the store; a
:class:`CandidateEstimate` is one candidate's line of a ranking; a :class:`TuneResult` is
the answer of a run (what it returns, stores when it finishes and viewers show). This
module imports nothing heavy, so a viewer that only reads the store pulls in neither
Optuna nor torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "BUDGET_STAGES", "HOLDOUT", "SAMPLING", "SELECTION", "STAGES", "TUNING",
    "CandidateEstimate", "Job", "Run", "Sample", "TuneResult",
]  # fmt: skip

#: The stages of a run: stage 1 samples every candidate, stage 2 selects one, stage 3
#: tunes it, and the winner is scored once on held-out problems.
SAMPLING, SELECTION, TUNING, HOLDOUT = "sampling", "selection", "tuning", "holdout"
#: The stages of a run, in order.
STAGES = (SAMPLING, SELECTION, TUNING, HOLDOUT)
#: The stages whose samples the budget pays for; the held-out score is extra.
BUDGET_STAGES = (SAMPLING, TUNING)


#: Suffixes of the held-out metrics that bound the objective's 90% interval
#: (``"avg_tests ci_low"``, ``"avg_tests ci_high"``).
CI_LOW, CI_HIGH = " ci_low", " ci_high"


@dataclass(frozen=True)
class Sample:
    """One evaluation of a candidate at a point of the decoding space.

    ``stage`` is ``"sampling"`` (stage 1), ``"tuning"`` (stage 3) or ``"holdout"`` (the
    final score on the held-out split, outside the budget). ``trial`` numbers a
    candidate's samples 0, 1, 2, ... within the run. ``fidelity`` is the share of the
    run's tuning problems the score is a mean over (below 1: the sample was stopped early,
    :mod:`engine.selection._fidelity`), ``problem_scores`` the score of each of those
    problems in the run's problem order (empty where the evaluator has no problems).
    ``seconds`` is the evaluation's wall time, ``switch_seconds`` the part of it spent
    switching models (a load that evicted another model, or of one evicted before): what
    moving between candidates that cannot all be resident cost
    (:mod:`engine.generation._residency`).
    """

    run_id: str
    candidate: str
    stage: str
    trial: int
    params: dict[str, Any]
    score: float
    metrics: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    cached: int = 0
    seconds: float = 0.0
    fidelity: float = 1.0
    problem_scores: tuple[float, ...] = ()
    switch_seconds: float = 0.0
    id: int | None = None
    created_at: float = 0.0

    @property
    def partial(self) -> bool:
        """Whether the sample was stopped before it scored every tuning problem."""
        return self.fidelity < 1


@dataclass(frozen=True)
class Job:
    """A sample a run's coordinator wants, written to the store for a worker to take.

    ``split`` is what it scores (``"tune"`` or ``"holdout"``); ``reference`` is the id of
    the sample it must keep up with to go on scoring problems (:mod:`engine.selection._fidelity`),
    ``None`` to score every problem. ``status`` goes ``pending`` -> ``claimed`` (by
    ``worker``, until ``lease_until``) -> ``done`` or ``failed`` (``error`` says why); a
    claim whose lease ran out is taken by the next worker that asks.
    """

    run_id: str
    candidate: str
    stage: str
    trial: int
    params: dict[str, Any]
    split: str = "tune"
    reference: int | None = None
    status: str = "pending"
    worker: str | None = None
    lease_until: float = 0.0
    attempts: int = 0
    error: str | None = None
    id: int | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        """(candidate, stage, trial): what names the sample it becomes."""
        return (self.candidate, self.stage, self.trial)


@dataclass(frozen=True)
class Run:
    """A run's row: ``config`` holds everything needed to resume it, read by
    :meth:`engine.spec.RunSpec.of_run`."""

    id: str
    created_at: float
    status: str
    stage: str
    budget: int | float  # the amount; its unit is in the config (engine.spec.RunSpec.of_run)
    seed: int
    config: dict[str, Any]
    winner: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class CandidateEstimate:
    """One candidate's standing in a ranking (:func:`engine.selection.rank`). Every field
    is a plain ``str``, ``float`` or ``int``, so ``dataclasses.asdict`` round-trips
    through JSON.

    Attributes:
        candidate: The candidate's name.
        score: The estimated score of the candidate once tuned: the posterior mean of its
            maximum over the decoding space (higher is better); the ranking sorts by it.
        ci_low: Lower end of the credible interval of ``score``.
        ci_high: Upper end of that interval.
        adjusted_mean: Expected score over the parameters every candidate reaches (the
            PSM matched comparison on common support).
        raw_mean: Plain mean of the candidate's own scores.
        n: The candidate's samples.
        matched: Its distinct samples that the matched set uses.
        overlap: Fraction of pooled samples on common support (the same for every
            candidate). ``0.0`` means there is none: ``adjusted_mean`` then fell back to
            the candidate's raw mean and ``matched`` is 0.
        prob_best: Posterior probability that this candidate is the best once tuned.
        incumbent: The trial number of the candidate's sample with the highest posterior
            mean: the parameters it would be deployed with (-1 without samples).
        incumbent_mean: The posterior mean score at the incumbent's parameters.

    A candidate without samples has ``n == 0`` and NaN estimates and is ranked last. The
    fields from ``overlap`` on have defaults, so an estimate built by hand (a front end's
    test, say) needs only the first eight.
    """

    candidate: str
    score: float
    ci_low: float
    ci_high: float
    adjusted_mean: float
    raw_mean: float
    n: int
    matched: int
    overlap: float = 1.0
    prob_best: float = math.nan
    incumbent: int = -1
    incumbent_mean: float = math.nan


@dataclass(frozen=True)
class TuneResult:
    """The answer of a run.

    ``best_params`` are the winner's best decoding parameters seen while tuning and
    ``best_score`` their tuning score; ``holdout`` holds the metrics of those parameters
    on the held-out split (task runs only), the unbiased figure to report.
    """

    run_id: str
    best_candidate: str
    best_params: dict[str, Any]
    best_score: float
    ranking: tuple[CandidateEstimate, ...]
    holdout: dict[str, float] | None
    n_samples: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ranking"] = [asdict(e) for e in self.ranking]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TuneResult:
        """The result :meth:`to_dict` wrote (as a finished run stores it)."""
        ranking = tuple(CandidateEstimate(**e) for e in data.get("ranking", []))
        return cls(**{**data, "ranking": ranking})
