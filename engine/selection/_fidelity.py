"""Multi-fidelity over problems: score a configuration on a few problems first, and stop
it once it is unlikely to beat the best configuration known.

A sample's score is a mean over the run's N tuning problems, and most of a sample's cost
is generating for each of them. A configuration that fails problem after problem where
the incumbent passes has told us what it will score long before the N-th problem. So,
with fidelity ``"auto"``:

- **The problems have one order per run** (:func:`problem_order`, seeded), the same for
  every candidate and configuration, so any two samples are compared on the same
  problems: the comparison is *paired*.
- **A sample is scored chunk by chunk** (:func:`plan`): the chunks end at the rungs
  :func:`rungs` (4, 8, 16, ... problems, doubling up to N, as in successive halving
  with problems as the resource).
- **After each chunk but the last, a paired test** (:func:`stop_p_value`): the
  Wilcoxon signed-rank test of the configuration's per-problem scores against a
  reference's on the same problems, one-sided, as Optuna's ``WilcoxonPruner`` does. The
  reference is the better of the candidate's incumbent and the leading candidate's (in
  stage 3, the winner's own). Below :data:`STOP_LEVEL` the sample stops there.
- **A stopped sample is evidence, not waste**: it is stored with its fidelity (the share
  of problems scored), it costs that share of a samples budget, and the surrogate takes
  it with the noise of a mean over fewer problems. What it takes is not the plain mean
  of the problems scored, which is as far off as those few problems are easier or harder
  than the rest, but :func:`full_estimate`: that mean with each problem's effect
  (:func:`problem_effects`, learned from the samples that scored every problem) taken
  out, the two-way additive model ``score = configuration + problem``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.records import Sample

__all__ = [
    "FIDELITIES",
    "EarlyStop",
    "STOP_LEVEL",
    "full_estimate",
    "plan",
    "problem_effects",
    "problem_order",
    "rungs",
    "stop_p_value",
]

#: ``"auto"``: chunks and early stopping; ``"off"``: every sample scores every problem.
FIDELITIES = ("auto", "off")
#: One-sided p-value below which a configuration stops. Looser than ``WilcoxonPruner``'s
#: 0.1 because a stopped sample is kept as evidence, not thrown away as a pruned trial
#: is: a wrong stop costs only the precision of one sample, a right one saves most of
#: its tokens (docs/fidelity.md gives the levels measured).
STOP_LEVEL = 0.3
#: The fewest problems a configuration is scored on before it may stop. With n problems
#: that differ, the smallest one-sided signed-rank p is 1/2^n: 4 is the fewest that let a
#: stop be as sure as 0.1 (``WilcoxonPruner``'s level) when the evidence is that clear.
FIRST_RUNG = 4
#: The most looks a sample gets (chunks): each look may stop it, each chunk is a
#: ``generate`` call of its own.
MAX_RUNGS = 5


def problem_order(n: int, seed: int) -> list[int]:
    """The run's order of its ``n`` tuning problems (indices), shuffled by ``seed``:
    problems are scored in this order by every sample, so the first ``m`` are the same
    problems for every candidate.

    >>> sorted(problem_order(5, 0)) == list(range(5))
    True
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, n, 17]))
    return [int(i) for i in rng.permutation(n)]


def rungs(n: int) -> tuple[int, ...]:
    """The numbers of problems after which a sample is looked at: doubling from
    :data:`FIRST_RUNG` (or from ``n / 2^(MAX_RUNGS - 1)`` when that is more) to ``n``.

    >>> rungs(3), rungs(6), rungs(20), rungs(164)
    ((3,), (4, 6), (4, 8, 16, 20), (11, 22, 44, 88, 164))
    """
    first = max(FIRST_RUNG, math.ceil(n / 2 ** (MAX_RUNGS - 1)))
    looks = []
    while first < n:
        looks.append(first)
        first *= 2
    return (*looks, n)


def plan(n: int, seed: int, fidelity: str = "auto") -> list[list[int]]:
    """The chunks of problem indices a sample is scored in: the run's order cut at the
    :func:`rungs` (``"auto"``), or one chunk of every problem in that order (``"off"``)."""
    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity must be one of {FIDELITIES}, got {fidelity!r}")
    order = problem_order(n, seed)
    if fidelity == "off":
        return [order]
    ends = rungs(n)
    starts = (0, *ends[:-1])
    return [order[a:b] for a, b in zip(starts, ends, strict=True)]


def sample_chunks(problems: int, seed: int, fidelity: str) -> list[list[int]] | None:
    """The chunks every sample of a run is scored in (:func:`plan`), by the run itself or
    by a worker; ``None`` where the score is no mean over problems."""
    return plan(problems, seed, fidelity) if problems else None


def stop_p_value(scores: Sequence[float], reference: Sequence[float]) -> float:
    """One-sided p-value that ``scores`` are no worse than ``reference`` on the same
    problems (paired, the Wilcoxon signed-rank test; tied problems are left out, as in
    Wilcoxon's original test). 1.0 when no problem differs.

    >>> stop_p_value([0, 0, 0, 0, 0], [1, 1, 1, 1, 1])  # 5 losses: 1/2^5
    0.03125
    """
    diffs = np.asarray(scores, float) - np.asarray(reference[: len(scores)], float)
    diffs = diffs[np.abs(diffs) > 1e-12]
    if len(diffs) == 0:
        return 1.0
    from scipy.stats import wilcoxon  # here: scipy.stats alone takes a second to import

    return float(wilcoxon(diffs, alternative="less", zero_method="wilcox").pvalue)


def problem_effects(complete: Sequence[Sequence[float]]) -> np.ndarray | None:
    """How much higher each problem (in the run's order) scores than a configuration's
    mean, averaged over ``complete``: the per-problem scores of samples that scored every
    problem. ``None`` without any.

    >>> problem_effects([[1, 0, 1, 0], [1, 1, 1, 1]]).tolist()
    [0.25, -0.25, 0.25, -0.25]
    """
    if not len(complete):
        return None
    scores = np.asarray(complete, dtype=float)
    return (scores - scores.mean(axis=1, keepdims=True)).mean(axis=0)


def full_estimate(scores: Sequence[float], effects: np.ndarray | None) -> float:
    """The score over every problem that a sample stopped after ``scores`` (its first
    problems in the run's order) is estimated at: their mean less their effects
    (:func:`problem_effects`; the plain mean without any).

    >>> full_estimate([1, 0], np.array([0.25, -0.25, 0.25, -0.25]))  # an easy, a hard one
    0.5
    """
    mean = float(np.mean(scores))
    if effects is None:
        return mean
    return mean - float(np.mean(effects[: len(scores)]))


def full_scores(
    samples: Sequence[Sample], bounds: tuple[float, float] | None = None
) -> list[float]:
    """Each sample's score over every problem: its own where it scored them all, else
    :func:`full_estimate` from the problem effects of the samples that did, kept within
    ``bounds`` (an estimate from a few problems' effects can leave a pass rate's range)."""
    effects = problem_effects(
        [s.problem_scores for s in samples if not s.partial and s.problem_scores]
    )
    scores = [full_estimate(s.problem_scores, effects) if s.partial else s.score for s in samples]
    return scores if bounds is None else [min(max(s, bounds[0]), bounds[1]) for s in scores]


class EarlyStop:
    """``keep_going`` of one sample (:meth:`Evaluator.evaluate`): whether its problem
    scores so far are not clearly worse than the ``reference`` sample's on the same
    problems (:func:`stop_p_value`)."""

    def __init__(self, reference: Sample | None) -> None:
        self.reference = reference
        self.p_value = 1.0

    def __call__(self, scores: Sequence[float]) -> bool:
        if self.reference is None:
            return True
        self.p_value = stop_p_value(scores, self.reference.problem_scores)
        return self.p_value >= STOP_LEVEL

    def why(self, sample: Sample) -> str:
        """One line: where ``sample`` stopped and on what evidence."""
        ref = self.reference
        assert ref is not None
        m = len(sample.problem_scores)
        total = round(m / sample.fidelity)
        level = sum(ref.problem_scores[:m]) / m
        whose = "its" if ref.candidate == sample.candidate else ref.candidate
        return (
            f"{sample.candidate} trial {sample.trial} stopped after {m}/{total} problems: "
            f"{sample.score:.3f} against {level:.3f} of {whose} trial {ref.trial} on the same "
            f"problems (signed-rank p = {self.p_value:.3f})"
        )
