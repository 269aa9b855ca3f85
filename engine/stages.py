"""The pieces of the three stages that are pure decisions, kept apart to be tested alone.

Stage 1 (sampling) gives every candidate the same number of samples, interleaved so each
candidate has evidence early. Stage 2 (selection) ranks candidates with
:func:`engine.psm.rank` on those samples. Stage 3 (tuning) spends the rest of the budget
on the winner's own study.

Early elimination (on by default) drops a candidate from stage 1 once, after a finished
round, its bootstrap probability of being the best falls below a threshold
(:func:`to_eliminate`); its remaining stage-1 share goes to stage 3. Its samples still
count in every ranking, so it can still be selected.

A budget of samples is split in advance (:func:`plan_budget`). A budget of tokens or
minutes (:class:`engine.budget.Budget`) cannot be: stage 1 goes round-robin until its
share of the cost is spent and the round is finished (:func:`next_cost_stage1_candidate`,
:func:`stage1_complete`), and stage 3 until the whole budget is (:func:`budget_spent`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engine.errors import ConfigError
from engine.records import CandidateEstimate, Sample, TuneResult

SAMPLING, SELECTION, TUNING, HOLDOUT = "sampling", "selection", "tuning", "holdout"
#: The stages of a run, in order.
STAGES = (SAMPLING, SELECTION, TUNING, HOLDOUT)
#: The stages whose samples the budget pays for; the held-out score is extra.
BUDGET_STAGES = (SAMPLING, TUNING)

#: Fewest stage-1 samples per candidate: the first is a shared default point, the rest
#: give the propensity model something to balance.
MIN_STAGE1_SAMPLES = 2
#: Early elimination looks at the ranking after this many rounds at the earliest: with
#: fewer, a candidate's bootstrap resamples one or two points and ``prob_best`` is noise.
ELIMINATION_ROUND = 3
#: Bootstrap draws behind an elimination decision (resolution 1 / draws of ``prob_best``).
ELIMINATION_DRAWS = 200
#: The default elimination threshold of P(best). ``benchmarks.strategies`` measured it
#: neutral over all families, better where a candidate is clearly out (the replay of real
#: evaluations included) and worse where the best peak shows late (docs/benchmarks.md).
DEFAULT_ELIMINATION = 0.05


@dataclass(frozen=True)
class BudgetPlan:
    """How a budget of samples is split: ``per_candidate`` each in stage 1, the rest
    (``tuning``) on the winner."""

    budget: int
    n_candidates: int
    per_candidate: int

    @property
    def sampling(self) -> int:
        return self.per_candidate * self.n_candidates

    @property
    def tuning(self) -> int:
        return self.budget - self.sampling


def check_split(n_candidates: int, stage1_fraction: float) -> None:
    """Raise :class:`ConfigError` unless the budget can be split at all."""
    if n_candidates < 1:
        raise ConfigError("at least one candidate is needed")
    if not 0 < stage1_fraction <= 1:
        raise ConfigError(f"stage-1 fraction must be in (0, 1], got {stage1_fraction}")


def plan_budget(budget: int, n_candidates: int, stage1_fraction: float = 0.5) -> BudgetPlan:
    """Split ``budget`` samples: about ``stage1_fraction`` of it on stage 1.

    >>> plan_budget(30, 3)
    BudgetPlan(budget=30, n_candidates=3, per_candidate=5)
    """
    check_split(n_candidates, stage1_fraction)
    least = MIN_STAGE1_SAMPLES * n_candidates
    if budget < least:
        raise ConfigError(
            f"budget {budget} is too small for {n_candidates} candidates: stage 1 needs "
            f"{MIN_STAGE1_SAMPLES} samples each, so use --budget {least} or more"
        )
    per = max(MIN_STAGE1_SAMPLES, math.floor(stage1_fraction * budget / n_candidates))
    return BudgetPlan(budget, n_candidates, min(per, budget // n_candidates))


def next_stage1_candidate(
    candidates: Sequence[str], counts: Mapping[str, int], per_candidate: int
) -> str | None:
    """Round-robin: the first candidate with the fewest samples, or None when all have
    ``per_candidate``. Deterministic, so a resumed run continues the same order."""
    pending = [c for c in candidates if counts.get(c, 0) < per_candidate]
    if not pending:
        return None
    return min(pending, key=lambda c: counts.get(c, 0))


def stage1_complete(counts: Sequence[int], spent: float, target: float) -> bool:
    """Whether stage 1 of a cost (tokens or minutes) budget is over: every candidate has
    at least :data:`MIN_STAGE1_SAMPLES`, all have the same number (the round is finished)
    and ``spent`` (the cost of the committed budget samples) has reached ``target``."""
    if not counts:
        return True
    least = min(counts)
    return least >= MIN_STAGE1_SAMPLES and least == max(counts) and spent >= target


def next_cost_stage1_candidate(
    candidates: Sequence[str], counts: Mapping[str, int], spent: float, target: float
) -> str | None:
    """The next stage-1 candidate under a cost budget, or None when stage 1 is complete.

    The same round-robin as :func:`next_stage1_candidate`: a lagging candidate catches up
    first, and a new round starts only while ``spent < target``.
    """
    numbers = [counts.get(c, 0) for c in candidates]
    if stage1_complete(numbers, spent, target):
        return None
    top = max(numbers)
    rounds = top + 1 if min(numbers) == top else top
    return next_stage1_candidate(candidates, counts, max(MIN_STAGE1_SAMPLES, rounds))


def check_elimination(threshold: float) -> None:
    """Raise :class:`ConfigError` unless ``threshold`` is a probability below 1/2."""
    if not 0 <= threshold < 0.5:
        raise ConfigError(
            f"elimination threshold must be in [0, 0.5) (0 turns it off), got {threshold}"
        )


def to_eliminate(
    ranking: Sequence[CandidateEstimate], active: Sequence[str], threshold: float
) -> list[str]:
    """The ``active`` candidates to drop from stage 1: those whose bootstrap probability
    of being the best is below ``threshold``. The leader is never dropped, and NaN
    (a ranking without bootstrap) drops nothing."""
    leader = ranking[0].candidate
    return [
        e.candidate
        for e in ranking
        if e.candidate in active and e.candidate != leader and e.prob_best < threshold
    ]


def budget_spent(spent: float, amount: float) -> bool:
    """Whether a budget of ``amount`` is used up after spending ``spent`` (same unit)."""
    return spent >= amount


def sampler_seed(run_seed: int, candidate_index: int, trial: int) -> int:
    """A seed for one ask of one candidate's optimizer.

    Reseeding every ask (instead of carrying one RNG through the run) makes a resumed
    run propose exactly what the uninterrupted run would have.
    """
    state = np.random.SeedSequence([run_seed, candidate_index, trial]).generate_state(1)
    return int(state[0])


def best_sample_index(scores: Sequence[float]) -> int:
    """Index of the highest score; ties go to the earliest sample."""
    if not scores:
        raise ValueError("no scores")
    return int(np.argmax(np.asarray(scores, dtype=float)))


def leader(ranking: Sequence[CandidateEstimate], winner: str | None = None) -> str | None:
    """The candidate a run answers with: the winner once stage 2 has selected one, else
    the top of the latest ranking (``None`` before any candidate has a sample)."""
    if winner:
        return winner
    return ranking[0].candidate if ranking and ranking[0].n else None


def answer_so_far(
    run_id: str,
    samples: Iterable[Sample],
    ranking: Sequence[CandidateEstimate],
    *,
    winner: str | None = None,
    holdout: dict[str, float] | None = None,
) -> TuneResult:
    """The answer of a run from the samples it has committed: the :func:`leader`'s
    best budget sample (the best sample of all when there is no ranking yet).

    The tuner answers with it when a run ends or stops, and every viewer (the follower,
    the app, ``show`` and ``export``) with it while a run is unfinished, so all of them
    name the same parameters at any point of a run. With no sample, ``best_params`` is
    empty and ``best_score`` NaN.
    """
    counted = [s for s in samples if s.stage in BUDGET_STAGES]
    name = leader(ranking, winner)
    own = [s for s in counted if s.candidate == name] if name else counted
    best = own[best_sample_index([s.score for s in own])] if own else None
    return TuneResult(
        run_id=run_id,
        best_candidate=name or (best.candidate if best else ""),
        best_params=dict(best.params) if best else {},
        best_score=best.score if best else math.nan,
        ranking=tuple(ranking),
        holdout=holdout,
        n_samples=len(counted),
    )
