"""The pieces of the three stages that are pure decisions, kept apart to be tested alone.

Stage 1 (sampling) gives every candidate :data:`MIN_STAGE1_SAMPLES`, round-robin
(:func:`next_stage1_candidate`), then each further sample to the candidate top-two
Thompson sampling names from the ranking's posterior draws (:func:`top_two`), among
those not safely eliminated (:func:`safe_eliminations`). It ends when the selection is
settled (:func:`selection_settled`): the leader is the best with probability
:data:`SETTLED`, or stage 1 has spent its share of the budget. Stage 2 (selection) takes
the leader of the ranking (:func:`engine.selection.rank`). Stage 3 (tuning) spends the
rest of the budget on the winner's own study (:func:`budget_spent`), whatever the
budget's unit (samples, tokens or minutes: :class:`engine.budget.Budget`).

An eliminated candidate's samples still count in every ranking, so it can still be
selected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from engine.errors import ConfigError
from engine.records import BUDGET_STAGES, CandidateEstimate, Sample, TuneResult

#: Fewest stage-1 samples per candidate: the first is a shared default point, the rest
#: give the propensity model something to balance.
MIN_STAGE1_SAMPLES = 2
#: Samples every candidate gets, round-robin, before stage 1 follows the evidence, as
#: long as stage 1's share of the budget lasts: the shared default point and what its
#: optimizer proposes before it models anything (TPE's and the GP sampler's start-up
#: trials). With fewer, a candidate whose best region is away from the default has had
#: no chance to show it, and the model cannot know (docs/psm.md).
EXPLORE_EACH = 4
#: The share of a block's time one switch of models may take (:func:`switch_block`): small,
#: so that a run whose models cannot all be resident spends its time evaluating.
SWITCH_SHARE = 0.15
#: The longest block :func:`switch_block` sets: beyond it the allocation would follow the
#: schedule more than the evidence.
MAX_SWITCH_BLOCK = 8
#: The tail probability of the bounds behind an elimination (:func:`safe_eliminations`).
DEFAULT_ELIMINATION = 0.05
#: Stage 1 ends once the leader is the best with this probability (:func:`selection_settled`).
SETTLED = 0.9
#: Default posterior draws behind a ranking's intervals and P(best) (engine.selection._ranking).
DEFAULT_DRAWS = 256
#: Points spread over the space that stand for its unexplored configurations in every
#: ranking's draws of a candidate's maximum (engine.selection._ranking): enough that a
#: region of a few percent of the space holds one or two (a power of two, a Sobol set).
REFERENCE_POINTS = 64
#: How often top-two Thompson sampling samples the leader rather than the challenger
#: (Russo's beta; 1/2 is his recommended default and within a factor 2 of optimal).
TOP_TWO_LEADER = 0.5


def check_split(n_candidates: int, stage1_fraction: float, samples: int | None = None) -> None:
    """Raise :class:`ConfigError` unless the budget can be split at all: a budget of
    ``samples`` must give every candidate :data:`MIN_STAGE1_SAMPLES`."""
    if n_candidates < 1:
        raise ConfigError("at least one candidate is needed")
    if not 0 < stage1_fraction <= 1:
        raise ConfigError(f"stage-1 fraction must be in (0, 1], got {stage1_fraction}")
    least = MIN_STAGE1_SAMPLES * n_candidates
    if samples is not None and samples < least:
        raise ConfigError(
            f"budget {samples} is too small for {n_candidates} candidates: stage 1 needs "
            f"{MIN_STAGE1_SAMPLES} samples each, so use --budget {least} or more"
        )


def next_stage1_candidate(
    candidates: Sequence[str], counts: Mapping[str, int], per_candidate: int
) -> str | None:
    """Round-robin: the first candidate with the fewest samples, or None when all have
    ``per_candidate``. Deterministic, so a resumed run continues the same order."""
    pending = [c for c in candidates if counts.get(c, 0) < per_candidate]
    if not pending:
        return None
    return min(pending, key=lambda c: counts.get(c, 0))


def block_to_finish(order: Sequence[str], block: int, after: int = 0) -> str | None:
    """The candidate whose block of stage-1 samples is not finished: the last of
    ``order`` (the stage-1 samples' candidates, in the order they were committed) while
    it has fewer than ``block`` in a row, counting only the samples past each candidate's
    first ``after`` (a phase's blocks start afresh: those of the exploration, each
    candidate's first :data:`EXPLORE_EACH`, are not carried into those the evidence
    chooses). ``None`` with ``block`` 1 (every sample is chosen afresh) or once the block
    is done.

    >>> order = ["a", "a", "b", "b"]
    >>> block_to_finish(order, 3), block_to_finish(order, 2), block_to_finish(order, 3, after=2)
    ('b', None, None)
    >>> block_to_finish(order + ["b"], 3, after=2)
    'b'
    """
    if block <= 1:
        return None
    seen: dict[str, int] = {}
    for name in order:
        seen[name] = seen.get(name, 0) + 1
    last, streak = (order[-1], 0) if order else (None, 0)
    for name in reversed(order):
        if name != last or seen[name] <= after:
            break
        streak, seen[name] = streak + 1, seen[name] - 1
    return last if 0 < streak < block else None


def switch_block(switches: Sequence[float], evaluations: Sequence[float]) -> int:
    """Stage-1 samples a candidate gets in a row when its model had to be loaded again
    (``--switch-block auto``): 1 while no sample switched models (``switches`` is empty:
    they all fit), else the fewest ``b`` for which one switch of the mean ``switches``
    seconds takes at most :data:`SWITCH_SHARE` of a block of ``b`` evaluations of the mean
    ``evaluations`` seconds, ``s / (s + b e) <= share``, within 1..:data:`MAX_SWITCH_BLOCK`.

    >>> switch_block([], [30.0]), switch_block([20.0], [30.0]), switch_block([2.0], [30.0])
    (1, 4, 1)
    """
    if len(switches) == 0:
        return 1
    switch, evaluation = float(np.mean(switches)), float(np.mean(evaluations or [0.0]))
    if evaluation <= 0:
        return MAX_SWITCH_BLOCK
    block = math.ceil(switch * (1 - SWITCH_SHARE) / (SWITCH_SHARE * evaluation) - 1e-9)
    return int(min(MAX_SWITCH_BLOCK, max(1, block)))


def check_elimination(alpha: float) -> None:
    """Raise :class:`ConfigError` unless ``alpha`` is a tail probability below 1/2."""
    if not 0 <= alpha < 0.5:
        raise ConfigError(f"elimination level must be in [0, 0.5) (0 turns it off), got {alpha}")


def top_two(maxima: np.ndarray, active: Sequence[int], rng: np.random.Generator) -> int:
    """The candidate (a column of ``maxima``) that stage 1 samples next: top-two Thompson
    sampling (Russo 2016) over the posterior draws of each candidate's tuned score.

    One draw names a leader. Half the time the leader is sampled; otherwise the draws are
    searched, in a random order, for one led by another ``active`` candidate, the
    challenger, which is sampled. So evaluations go where the answer is still in
    doubt: to the likely best, to tune it, and to whoever could still beat it, in
    proportion to that chance. A candidate no draw puts first gets nothing.
    """
    columns = np.asarray(active, dtype=int)
    values = np.where(np.isnan(maxima[:, columns]), -np.inf, maxima[:, columns])
    leaders = columns[np.argmax(values, axis=1)]
    order = rng.permutation(len(leaders))
    first = int(leaders[order[0]])
    if rng.random() < TOP_TWO_LEADER:
        return first
    challengers = leaders[order][leaders[order] != first]
    return int(challengers[0]) if challengers.size else first


def safe_eliminations(maxima: np.ndarray, active: Sequence[int], alpha: float) -> list[int]:
    """The ``active`` candidates (columns of ``maxima``) that cannot be the best: the
    upper ``1 - alpha`` quantile of their tuned score is below the ``alpha`` quantile of
    the leader's (the candidate with the highest mean). ``alpha`` 0 eliminates none."""
    if not alpha or len(active) < 2:
        return []
    means = {c: float(np.mean(maxima[:, c])) for c in active}
    leader = max(active, key=lambda c: means[c])
    floor = float(np.quantile(maxima[:, leader], alpha))
    return [c for c in active if c != leader and np.quantile(maxima[:, c], 1 - alpha) < floor]


def selection_settled(prob_best: float, spent: float, target: float) -> bool:
    """Whether stage 1 is over: the leader is the best with probability
    :data:`SETTLED` or more, or stage 1 has spent its share ``target`` of the budget."""
    return prob_best >= SETTLED or spent >= target


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


def why_leader(ranking: Sequence[CandidateEstimate], winner: str | None = None) -> str:
    """One line on why the top of ``ranking`` leads, for the app and ``show``; once a
    ``winner`` is selected, on the winner, and on who leads now if the evidence since
    (stage 3 samples the winner alone) moved another candidate ahead.

    >>> a = CandidateEstimate("a", 0.62, 0.55, 0.68, 0.4, 0.4, 9, 5, prob_best=0.93)
    >>> b = CandidateEstimate("b", 0.48, 0.40, 0.55, 0.4, 0.4, 4, 4, prob_best=0.07)
    >>> why_leader([a, b])
    'a leads: tuned score 0.62 (0.55-0.68), P(best) 0.93; next b 0.48 (0.40-0.55)'
    >>> for part in why_leader([a, b], winner="b").split("; "):
    ...     print(part)
    b was selected and is tuned: tuned score 0.48 (0.40-0.55)
    a leads on all evidence now, 0.62 (0.55-0.68), P(best) 0.93
    """
    ranked = [e for e in ranking if e.n]
    if not ranked:
        return "no samples yet"
    top = ranked[0]
    if winner and winner != top.candidate:
        chosen = next((e for e in ranked if e.candidate == winner), None)
        if chosen is not None:
            return (f"{winner} was selected and is tuned: tuned score {_interval(chosen)}; "
                    f"{top.candidate} leads on all evidence now, {_interval(top)}, "
                    f"P(best) {top.prob_best:.2f}")  # fmt: skip
    line = f"{top.candidate} leads: tuned score {_interval(top)}, P(best) {top.prob_best:.2f}"
    if len(ranked) == 1:
        return line + (" (the only candidate with samples)" if len(ranking) > 1 else "")
    return f"{line}; next {ranked[1].candidate} {_interval(ranked[1])}"


def _interval(e: CandidateEstimate) -> str:
    return f"{e.score:.2f} ({e.ci_low:.2f}-{e.ci_high:.2f})"


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
    incumbent, its sample with the highest posterior mean (its best observed sample for a
    ranking that names none; the best sample of all when there is no ranking yet).

    The tuner answers with it when a run ends or stops, and every viewer (the follower,
    the app, ``show`` and ``export``) with it while a run is unfinished, so all of them
    name the same parameters at any point of a run. With no sample, ``best_params`` is
    empty and ``best_score`` NaN.
    """
    counted = [s for s in samples if s.stage in BUDGET_STAGES]
    name = leader(ranking, winner)
    own = [s for s in counted if s.candidate == name] if name else counted
    incumbent = next((e.incumbent for e in ranking if e.candidate == name), -1)
    chosen = [s for s in own if s.trial == incumbent]
    best = chosen[0] if chosen else own[best_sample_index([s.score for s in own])] if own else None
    return TuneResult(
        run_id=run_id,
        best_candidate=name or (best.candidate if best else ""),
        best_params=dict(best.params) if best else {},
        best_score=best.score if best else math.nan,
        ranking=tuple(ranking),
        holdout=holdout,
        n_samples=len(counted),
    )
