"""Which candidate is best once tuned, with how sure we are (stages 1 and 2).

A run wants the candidate whose score is highest *after its decoding parameters are
tuned*, which is the maximum of its score surface, not the mean or the upper tail of
what its optimizer happened to try. :func:`rank` estimates each candidate's maximum from
all of its samples:

1. **PSM compares like with like.** Each candidate's optimizer sampled where it
   expected to do well, so raw means mix "which model" with "which parameters it
   tried". The propensity-score matched comparison on common support
   (:mod:`engine.selection._psm`) gives each candidate's mean over the parameters every
   candidate reaches, reported beside the tuned score. With ``use_psm`` it also sets the
   prior mean ``m_c`` of the surrogate in proportion to the share of samples on the
   common support (:meth:`_Samples.prior_means`); by default every surface is centred on
   the mean of all scores, because the matched mean is a level on the common support
   and centring a whole surface on it would count the space only the candidate's own
   optimizer may reach as known. Samples off the common support are *not* dropped: the
   surrogate conditions on every sample.
2. **The surrogate models the surfaces** (:mod:`engine.selection._surrogate`): one GP over every
   sample with a surface the candidates share and one of each candidate's own.
3. **Posterior draws of each maximum.** Joint draws of a candidate's surface at every
   evaluated point, its own and the other candidates' (the configurations some
   optimizer found worth trying), and at a fixed set of ``reference`` points spread
   over the space (:meth:`engine.space.SearchSpace.reference_unit`), which stand for the
   configurations nobody has tried; the maximum of each draw is one draw of the tuned
   score. Their mean is the candidate's ``score``, their quantiles its interval, and the
   share of draws in which it is the highest its ``prob_best`` (Thompson sampling over
   maxima, as in Bandit-BO). Without the reference points a region nobody sampled
   would count as known to be no better than what was sampled, and a candidate whose
   best region no one has reached yet would look beaten for sure (docs/selection.md
   measures what that did to the stated P(best)). With them, an unexplored region
   keeps the uncertainty the model gives it: wide where a candidate has few samples of
   its own, narrow where its samples and the shape the candidates share pin it down.
   For a bounded metric (``bounds``) the draws are kept within its range, so a pass
   rate's unexplored corners cannot promise more than 1.

The same draws drive stage 1 (:func:`engine.selection.top_two`,
:func:`engine.selection.safe_eliminations`) and the switch to stage 3. The deployed
parameters are each candidate's *incumbent*: its sample with the highest posterior mean,
not its luckiest noisy score (which overstates what the parameters give: the winner's
curse).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from threadpoolctl import ThreadpoolController

from engine.errors import ConfigError
from engine.records import CandidateEstimate
from engine.selection._decisions import DEFAULT_DRAWS
from engine.selection._psm import matched_means, sort_key
from engine.selection._surrogate import Hyperparameters, Surrogate

#: Thompson proposals (:meth:`Ranking.propose`) look this close around this many of a
#: candidate's best samples, this many points each (unit coordinates).
LOCAL_STEP, LOCAL_CENTRES, LOCAL_POINTS = 0.1, 3, 32


@dataclass(frozen=True)
class Learned:
    """Hyperparameters learned on the first ``size`` samples (:func:`refit_size`)."""

    size: int
    hyper: Hyperparameters


@dataclass(frozen=True)
class Ranking:
    """What :func:`rank` found.

    Attributes:
        estimates: One :class:`CandidateEstimate` per candidate, best first.
        names: The candidates in the order of ``maxima``'s columns (as given to :func:`rank`).
        maxima: (draws, k) posterior draws of each candidate's tuned score; a candidate
            without samples has a NaN column.
    """

    estimates: tuple[CandidateEstimate, ...]
    names: tuple[str, ...]
    maxima: np.ndarray
    model: Surrogate | None = None
    samples: np.ndarray | None = None  # (n, d) unit coordinates the model conditions on
    labels: np.ndarray | None = None  # (n,) their candidates (indices of ``names``)
    learned: Learned | None = None  # the hyperparameters, for the next call to reuse

    def propose(
        self,
        c: int,
        reference: np.ndarray,
        rng: np.random.Generator,
        cost: Callable[[np.ndarray], np.ndarray] | None = None,
        cooling: float = 0.0,
    ) -> np.ndarray:
        """Where candidate ``c`` should be sampled next: Thompson sampling of its surface.

        One joint posterior draw at the ``reference`` points (n, d) and at
        :data:`LOCAL_POINTS` perturbations of each of the candidate's
        :data:`LOCAL_CENTRES` best samples (by posterior mean); the point where the draw
        is highest. Near good samples the draw refines them, far from every sample it
        explores in proportion to the chance of something better there, and the shape
        the candidates share steers a candidate with few samples of its own.

        With a ``cost`` per point (:class:`engine.selection.CostModel`) and ``cooling`` in
        (0, 1], the point is the one whose gain over the draw at the best sample is
        highest per ``cost ** cooling`` (cost-cooled Thompson sampling, as CArBO cools
        expected improvement per cost). Cooling goes from 1 at the start of a budget to
        0 at its end, so cheap points are preferred while there is budget to spend on
        more of them, and the best point whatever its cost at the end.
        """
        assert self.model is not None and self.samples is not None and self.labels is not None
        own = self.samples[self.labels == c]
        centres = own[np.argsort(-self.model.mean(c, own))[:LOCAL_CENTRES]]
        local = centres.repeat(LOCAL_POINTS, axis=0)
        local = np.clip(local + rng.normal(0.0, LOCAL_STEP, local.shape), 0.0, 1.0)
        if cost is None or cooling <= 0:
            points = np.vstack([reference, local])
            with _one_thread():
                return points[int(np.argmax(self.model.draw(c, points, 1, rng)[0]))]
        points = np.vstack([centres[:1], reference, local])
        with _one_thread():
            draw = self.model.draw(c, points, 1, rng)[0]
        # The best sample is only the baseline of the gains, never proposed again.
        gain, points = draw[1:] - draw[0], points[1:]
        if gain.max() <= 0:  # nothing beats the best sample in this draw: refine it
            return points[int(np.argmax(gain))]
        return points[int(np.argmax(gain / cost(points) ** cooling))]


def refit_size(n: int) -> int:
    """The number of samples whose hyperparameters serve a model of ``n`` samples.

    The hyperparameters are learned again on the first 1..6, 8, 10, 12, 15, 18, 22, ...
    samples (each point about 1.2 times the one before) and only conditioned on in
    between: learning them is most of the cost, and they change little from one sample
    to the next. A pure function of ``n``, so a resumed run refits where the
    uninterrupted one did.

    >>> [refit_size(n) for n in (5, 7, 9, 16, 100)]
    [5, 6, 8, 15, 84]
    """
    size = 1
    while True:
        following = max(size + 1, math.ceil(1.2 * size))
        if following > n:
            return size
        size = following


def rank(
    candidates: Sequence[str],
    unit: ArrayLike,
    covariates: ArrayLike,
    treatment: Sequence[str],
    outcome: ArrayLike,
    *,
    trials: Sequence[int] | None = None,
    known_noise: ArrayLike | None = None,
    fidelity: ArrayLike | None = None,
    use_psm: bool = False,
    draws: int = DEFAULT_DRAWS,
    confidence: float = 0.9,
    random_state: int = 0,
    learned: Learned | None = None,
    bounds: tuple[float, float] | None = None,
    reference: ArrayLike | None = None,
) -> Ranking:
    """Rank candidates by their estimated score once tuned, best first.

    Args:
        candidates: Candidate names, unique; a name without samples is ranked last.
        unit: (n, d) unit coordinates of each sample's parameters
            (:meth:`engine.space.SearchSpace.unit`), in commit order.
        covariates: (n, p) the same parameters as the propensity model takes them
            (:meth:`engine.space.SearchSpace.covariates`).
        treatment: The candidate of each sample.
        outcome: The score of each sample (higher is better), finite.
        trials: Each sample's trial number within its candidate (default: its position
            among the candidate's samples); the incumbent is named by it.
        known_noise: Each score's variance where known in advance (e.g. p(1 - p)/m for a
            mean over m problems); ``None``: learned from the data alone.
        fidelity: Each score's share of the problems it is a mean over, in (0, 1] (a
            sample stopped early: :mod:`engine.selection._fidelity`); ``None``: 1 for every one.
        use_psm: Centre each candidate's surface on its PSM-adjusted mean; ``False``
            (the default) centres every surface on the mean of all scores
            (docs/selection.md: the matched mean is a level on the common support, and
            centring a whole surface on it counts the unexplored space as known).
        draws: Posterior draws behind the interval and ``prob_best`` (at least 16).
        confidence: Coverage of the credible interval, in (0, 1).
        random_state: Seeds the draws.
        learned: What an earlier call learned (its ``Ranking.learned``), reused while it
            is what :func:`refit_size` asks for; the result is the same either way.
        bounds: Where every score lies (a pass rate's ``(0, 1)``): the draws of each
            maximum are kept within it, so the tuned score, its interval and the
            incumbent's mean are too. ``None``: unbounded.
        reference: (r, d) unit points that stand for the unexplored space: each draw of
            a candidate's maximum is over them as well as over every evaluated point
            (see the module docstring). ``None``: over the evaluated points alone.

    Raises:
        ConfigError: On malformed input or options.
    """
    names = list(candidates)
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 16:
        raise ConfigError(f"draws must be a whole number >= 16, got {draws!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    with _one_thread():
        samples = _Samples.of(names, unit, covariates, treatment, outcome, known_noise, fidelity)
        points = samples.unit
        if reference is not None and len(samples.y):
            reference = np.asarray(reference, dtype=float)
            if reference.ndim != 2 or reference.shape[1] != points.shape[1]:
                raise ConfigError(f"reference must be (r, {points.shape[1]}) unit points, "
                                  f"got shape {reference.shape}")  # fmt: skip
            points = np.vstack([points, reference])
        return _rank(samples, np.unique(points, axis=0), trials, use_psm, draws, confidence,
                     random_state, learned, bounds)  # fmt: skip


@dataclass(frozen=True)
class _Samples:
    """The samples as arrays, validated (by :func:`~engine.selection._psm.matched_means`,
    which also gives the matched comparison)."""

    names: list[str]
    unit: np.ndarray
    covariates: np.ndarray
    labels: np.ndarray
    y: np.ndarray
    known: np.ndarray | None
    fidelity: np.ndarray | None
    matched: dict[str, CandidateEstimate]

    @classmethod
    def of(cls, names, unit, covariates, treatment, outcome, known_noise,
           fidelity=None) -> _Samples:  # fmt: skip
        matched = matched_means(names, covariates, treatment, outcome)
        index = {name: i for i, name in enumerate(names)}
        known = None if known_noise is None else np.asarray(known_noise, dtype=float)
        if fidelity is not None:
            fidelity = np.asarray(fidelity, dtype=float)
            if fidelity.shape != (len(treatment),) or not np.all((fidelity > 0) & (fidelity <= 1)):
                raise ConfigError("fidelity must give each sample a share in (0, 1]")
        return cls(
            names, np.asarray(unit, dtype=float).reshape(len(treatment), -1),
            np.asarray(covariates, dtype=float).reshape(len(treatment), -1),
            np.array([index[t] for t in treatment], dtype=int), np.asarray(outcome, float),
            known, fidelity, {e.candidate: e for e in matched},
        )  # fmt: skip

    def first(self, size: int) -> _Samples:
        """The first ``size`` samples."""
        treatment = [self.names[c] for c in self.labels[:size]]
        known = None if self.known is None else self.known[:size]
        fidelity = None if self.fidelity is None else self.fidelity[:size]
        return _Samples.of(self.names, self.unit[:size], self.covariates[:size], treatment,
                           self.y[:size], known, fidelity)  # fmt: skip

    def prior_means(self, use_psm: bool) -> np.ndarray:
        """``m_c``: the mean of every score, moved by each candidate's PSM-adjusted
        difference from the others times the share of samples on common support (where
        there is none, or without PSM, every candidate's is the mean)."""
        overall = np.full(len(self.names), self.y.mean())
        matched = [self.matched[n] for n in self.names]
        if not use_psm or not all(e.n for e in matched):
            return overall
        adjusted = np.array([e.adjusted_mean for e in matched])
        return overall + matched[0].overlap * (adjusted - adjusted.mean())


def prob_best(maxima: np.ndarray) -> np.ndarray:
    """The share of draws (rows) in which each column is the highest; ties share a win,
    NaN columns never win.

    >>> prob_best(np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [3.0, 1.0]])).tolist()
    [0.625, 0.375]
    """
    values = np.where(np.isnan(maxima), -np.inf, maxima)
    best = values == values.max(axis=1, keepdims=True)
    return (best / best.sum(axis=1, keepdims=True)).mean(axis=0)


@functools.cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()  # finding the BLAS libraries takes milliseconds: once


def _one_thread():
    """Matrices this small are slower on several BLAS threads than on one, and far slower
    when other processes want the cores too."""
    return _controller().limit(limits=1, user_api="blas")


def _rank(samples: _Samples, points, trials, use_psm, draws, confidence, random_state,
          learned, bounds) -> Ranking:  # fmt: skip
    names, x_unit, labels, y = samples.names, samples.unit, samples.labels, samples.y
    k = len(names)
    maxima = np.full((draws, k), np.nan)
    incumbents: dict[int, tuple[int, float]] = {}
    if len(y):
        learned = _learn(samples, use_psm, learned)
        model = Surrogate(samples.prior_means(use_psm)).fit(
            x_unit, labels, y, samples.known, hyper=learned.hyper, fidelity=samples.fidelity
        )
        rng = np.random.default_rng(random_state)
        numbers = _trial_numbers(labels, trials)
        for c in np.unique(labels):
            own = labels == c
            maxima[:, c] = model.draw(c, points, draws, rng).max(axis=1)
            means = model.mean(c, x_unit[own])
            best = int(np.argmax(means))
            incumbents[c] = (int(numbers[own][best]), float(_within(means[best], bounds)))
    maxima = _within(maxima, bounds)
    chance = prob_best(maxima)
    by_name = samples.matched
    estimates = [
        _estimate(by_name[names[c]], maxima[:, c], chance[c], incumbents.get(c), confidence)
        for c in range(k)
    ]
    order = sorted(range(k), key=lambda c: sort_key(estimates[c].score, c))
    ranked = tuple(estimates[c] for c in order)
    if not len(y):
        return Ranking(ranked, tuple(names), maxima)
    return Ranking(ranked, tuple(names), maxima, model, x_unit, labels, learned)


def _learn(samples: _Samples, use_psm: bool, learned: Learned | None) -> Learned:
    """The hyperparameters of a model of these samples: learned on the first
    :func:`refit_size` of them alone (they are in commit order), so that reusing them
    from an earlier call and learning them afresh on resume give the same."""
    size = refit_size(len(samples.y))
    if learned is not None and learned.size == size:
        return learned
    first = samples.first(size)
    model = Surrogate(first.prior_means(use_psm)).fit(
        first.unit, first.labels, first.y, first.known, fidelity=first.fidelity
    )
    return Learned(size, model.hyper)


def _within(values, bounds: tuple[float, float] | None):
    """``values`` clipped to ``bounds`` (NaN stays NaN); unchanged without bounds."""
    return values if bounds is None else np.clip(values, *bounds)


def _trial_numbers(labels: np.ndarray, trials: Sequence[int] | None) -> np.ndarray:
    if trials is not None:
        return np.asarray(trials, dtype=int)
    numbers = np.empty(len(labels), dtype=int)
    for c in np.unique(labels):
        own = np.flatnonzero(labels == c)
        numbers[own] = np.arange(own.size)
    return numbers


def _estimate(matched, column, chance, incumbent, confidence) -> CandidateEstimate:
    """A candidate's line: its draws of the maximum (``column``) summarised, beside the
    PSM figures (``matched``, from :func:`~engine.selection._psm.matched_means`)."""
    if incumbent is None:
        return matched  # no samples: NaN estimates
    tail = (1 - confidence) / 2
    low, high = np.quantile(column, [tail, 1 - tail])
    return CandidateEstimate(
        candidate=matched.candidate,
        score=float(column.mean()),
        ci_low=float(low),
        ci_high=float(high),
        adjusted_mean=matched.adjusted_mean,
        raw_mean=matched.raw_mean,
        n=matched.n,
        matched=matched.matched,
        overlap=matched.overlap,
        prob_best=float(chance),
        incumbent=incumbent[0],
        incumbent_mean=incumbent[1],
    )
