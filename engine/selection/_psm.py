"""Propensity-score matching: each candidate's mean over the parameters every candidate
reaches (stage 2's comparison on common support).

Each candidate's optimizer sampled the decoding space where *it* expected to do well, so
raw means mix "which model" with "which parameters it happened to try".
:func:`matched_means` removes that confounding: it models P(candidate | parameters),
imputes every candidate's score at every pooled parameter point from its nearest sample
on those propensities, and compares all candidates on the same, common set of points. The
ranking (:mod:`engine.selection._ranking`) centres each candidate's surface on that mean;
its intervals and P(best) come from the surface's posterior draws. The method, its
choices and a worked example are in ``docs/psm.md``.

The small pure functions (:func:`propensity_logits`, :func:`logistic_scores`,
:func:`logits_from_scores`, :func:`logit_distances`, :func:`match_weights`,
:func:`point_ids`, :func:`replicate_weights`) are the method's steps;
:func:`matched_means` only validates and composes them. :func:`balance` checks the result
the way matching studies report it: standardised mean differences of every covariate
before and after the same matching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from engine.errors import ConfigError
from engine.records import CandidateEstimate

# Distances this close count as a tie: identical parameter points (every greedy sample,
# say) get identical logits, so their outcomes are averaged rather than picked by order.
_TIE = 1e-9


# -- the method's steps (pure) -------------------------------------------------------------


def logits_from_scores(scores: np.ndarray) -> np.ndarray:
    """Per-class logits ``log(p_c / (1 - p_c))`` of the softmax of ``scores`` (n, k), k >= 2.

    Computed as ``s_c - logsumexp(s_others)``, which stays finite where ``p_c`` rounds to
    0 or 1 in floating point.

    >>> logits_from_scores(np.array([[0.0, math.log(2.0)]])).round(6).tolist()
    [[-0.693147, 0.693147]]
    """
    out = np.empty_like(scores, dtype=float)
    for c in range(scores.shape[1]):
        rest = np.delete(scores, c, axis=1)
        top = rest.max(axis=1)
        out[:, c] = scores[:, c] - top - np.log(np.exp(rest - top[:, None]).sum(axis=1))
    return out


def propensity_logits(covariates: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Logit of P(candidate c | x) for every sample and candidate: an (n, k) array.

    ``labels`` are integers ``0..k-1``, every one present. The model is scikit-learn's
    ``LogisticRegression()`` (C = 1, L2; binary for k = 2, multinomial above) on
    standardised covariates, fitted by :func:`logistic_scores`; the penalty keeps the
    logits finite under perfect separation. Constant columns carry no information about
    the candidate and are dropped; if none vary (or k = 1) every propensity is the same
    and all logits are 0, i.e. there is nothing to adjust for.
    """
    n = covariates.shape[0]
    varying = np.ptp(covariates, axis=0) > 1e-12 * np.maximum(1.0, np.abs(covariates).max(0))
    if k == 1 or not varying.any():
        return np.zeros((n, k))
    kept = covariates[:, varying]
    z = (kept - kept.mean(axis=0)) / kept.std(axis=0)  # what StandardScaler does
    return logits_from_scores(logistic_scores(z, labels, k))


def logistic_scores(z: np.ndarray, labels: np.ndarray, k: int, c: float = 1.0) -> np.ndarray:
    """Decision scores (n, k) of ``sklearn.linear_model.LogisticRegression(C=c)`` fitted
    on ``(z, labels)``, found by Newton's method.

    Same model, same optimum (tested against scikit-learn): minimise ``c * sum(log-loss)
    + ||coef||^2 / 2`` with unpenalised intercepts; for k = 2 the binary model (class 0's
    score is 0), above it the symmetric multinomial one. Written out because
    :func:`matched_means` refits it 200 times per call, and scikit-learn's per-fit overhead was
    three quarters of that time; Newton needs about six steps on problems this small.
    """
    n, d = z.shape
    a = np.column_stack([z, np.ones(n)])  # the intercept is the last coefficient
    free = np.ones((d + 1, k), dtype=bool)
    if k == 2:
        free[:, 0] = False  # the binary model: class 0 is the reference
    else:
        free[-1, -1] = False  # a common shift of every intercept changes nothing: pin one
    free = free.ravel()
    penalty = np.ones((d + 1, 1))
    penalty[-1] = 0.0
    onehot = np.eye(k)[labels]
    outer = a[:, :, None] * a[:, None, :]
    coef = np.zeros((d + 1, k))
    objective = _logistic_objective(a, coef, onehot, penalty, c)
    for _ in range(100):
        p = _softmax(a @ coef)
        gradient = c * a.T @ (p - onehot) + penalty * coef
        curvature = p[:, :, None] * (np.eye(k)[None] - p[:, None, :])
        hessian = c * np.tensordot(curvature, outer, axes=(0, 0)).transpose(2, 0, 3, 1)
        hessian = hessian.reshape(coef.size, coef.size) + np.diag(np.repeat(penalty, k))
        step = np.zeros(coef.size)
        step[free] = np.linalg.solve(hessian[np.ix_(free, free)], gradient.ravel()[free])
        for _ in range(30):  # halve the step until the objective does not rise
            trial = coef - step.reshape(coef.shape)
            trial_objective = _logistic_objective(a, trial, onehot, penalty, c)
            if trial_objective <= objective + 1e-12 * abs(objective):
                break
            step /= 2
        coef, objective = trial, trial_objective
        if np.abs(step).max() < 1e-9:
            break
    return a @ coef


def _softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _logistic_objective(a, coef, onehot, penalty, c) -> float:
    scores = a @ coef
    top = scores.max(axis=1)
    log_norm = top + np.log(np.exp(scores - top[:, None]).sum(axis=1))
    log_loss = (log_norm - (scores * onehot).sum(axis=1)).sum()
    return float(c * log_loss + 0.5 * (penalty * coef**2).sum())


def logit_distances(logits: np.ndarray) -> np.ndarray:
    """(n, n) distances between samples' propensity-logit vectors (n, k), in standard
    deviations: ``sqrt(mean_c ((l_ic - l_jc) / sd_c) ** 2)`` over the logits that vary.

    For two candidates ``l_A = -l_B``, so this is ``|delta logit| / sd(logit)``, the scale
    of the usual caliper rule. With more, matching on every candidate's logit at once
    compares points by where they sit in the whole assignment model, not by one
    candidate's share alone (which can be equal at opposite ends of the space).

    >>> logit_distances(np.array([[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]])).round(3).tolist()
    [[0.0, 2.449, 1.225], [2.449, 0.0, 1.225], [1.225, 1.225, 0.0]]
    """
    sd = logits.std(axis=0)
    varying = sd > 0
    if not varying.any():  # a flat propensity: every point is as good a match as any
        return np.zeros((logits.shape[0], logits.shape[0]))
    z = logits[:, varying] / sd[varying]
    return np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).mean(axis=2))


def match_weights(distance: np.ndarray, caliper: float) -> np.ndarray:
    """Nearest-neighbour matching with replacement within a caliper, as an (m, r) matrix.

    ``distance`` is (m queries, r references). Row i spreads weight 1 evenly over the
    references nearest to query i (ties share it) if the nearest lies within ``caliper``
    (inclusive), and is all zero if not. So ``weights @ outcomes`` imputes each query's
    outcome, and ``weights.any(axis=1)`` says which queries found a match.

    >>> query, reference = np.array([0.0, 1.0, 5.0]), np.array([0.0, 0.9, 1.1])
    >>> match_weights(np.abs(query[:, None] - reference[None, :]), 0.5).tolist()
    [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 0.0]]
    """
    if distance.shape[1] == 0:
        return np.zeros(distance.shape)
    nearest = distance.min(axis=1, keepdims=True)
    chosen = (distance <= nearest + _TIE) & (nearest <= caliper)
    return chosen / np.maximum(chosen.sum(axis=1, keepdims=True), 1)


def point_ids(covariates: np.ndarray) -> np.ndarray:
    """An integer per row of ``covariates``, equal for equal rows (the same parameters).

    >>> point_ids(np.array([[0.0, 1.0], [0.5, 1.0], [0.0, 1.0]])).tolist()
    [0, 1, 0]
    """
    if covariates.shape[1] == 0:
        return np.zeros(covariates.shape[0], dtype=int)
    return np.unique(covariates, axis=0, return_inverse=True)[1].ravel()


def replicate_weights(points: np.ndarray) -> np.ndarray:
    """(m, m) weights whose row i averages over the samples at the same point as sample i
    (``points`` as from :func:`point_ids`).

    >>> replicate_weights(np.array([0, 1, 0])).tolist()
    [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]]
    """
    same = points[:, None] == points[None, :]
    return same / same.sum(axis=1, keepdims=True)


# -- composing them ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fit:
    """One pass of the pipeline over k candidates (labels 0..k-1)."""

    mean: np.ndarray  # (k,) adjusted mean
    matched: np.ndarray  # (k,) distinct own samples used
    overlap: float


def _candidate_weights(distance, points, own, caliper: float) -> np.ndarray:
    """(n, n_c) weights imputing every pooled sample's score under one candidate.

    Other candidates' samples take their nearest sample of this candidate within the
    caliper. A sample of the candidate itself is observed at its point, so it takes its
    own score, averaged with exact replicates (every greedy sample, say): then all samples
    at one parameter point get the same imputed score, whoever drew them.
    """
    weights = match_weights(distance[:, own], caliper)
    weights[own] = replicate_weights(points[own])
    return weights


def _matching(x, points, labels, k: int, caliper: float) -> list[np.ndarray]:
    """Steps 1-3 of the pipeline: one :func:`_candidate_weights` matrix per candidate.

    A pooled sample is on common support where every candidate's row has a match
    (``w.any(axis=1)`` for all ``w``). :func:`_fit` imputes scores with these weights;
    :func:`balance` weighs covariates with the same ones.
    """
    distance = logit_distances(propensity_logits(x, labels, k))
    return [_candidate_weights(distance, points, labels == c, caliper) for c in range(k)]


def _fit(x, points, labels, y, k: int, caliper: float) -> _Fit:
    """Propensity -> matching -> common support -> per-candidate mean.

    ``x`` (n, d) covariates, ``points`` their :func:`point_ids`, ``labels`` 0..k-1 (all
    present), ``y`` scores.
    """
    weights = _matching(x, points, labels, k, caliper)
    imputed = np.column_stack([w @ y[labels == c] for c, w in enumerate(weights)])
    imputed[~np.column_stack([w.any(axis=1) for w in weights])] = np.nan
    support = ~np.isnan(imputed).any(axis=1)
    if not support.any():  # no parameter point every candidate reaches: raw estimates
        groups = [y[labels == c] for c in range(k)]
        return _Fit(
            mean=np.array([g.mean() for g in groups]),
            matched=np.zeros(k, dtype=int),
            overlap=0.0,
        )
    used = np.array([int(w[support].any(axis=0).sum()) for w in weights])
    common = imputed[support]
    return _Fit(
        mean=common.mean(axis=0),
        matched=used,
        overlap=float(support.mean()),
    )


# -- the public entry point ----------------------------------------------------------------


def matched_means(
    candidates: Sequence[str],
    covariates: ArrayLike,
    treatment: Sequence[str],
    outcome: ArrayLike,
    *,
    caliper: float = 0.2,
) -> list[CandidateEstimate]:
    """Each candidate's mean on common support, from samples drawn from different
    parameter distributions, best first.

    Args:
        candidates: Candidate names, unique; a name without samples is ranked last.
        covariates: (n, d) numeric decoding parameters of each sample, finite.
        treatment: The candidate of each sample (n names from ``candidates``).
        outcome: The score of each sample (n, finite; higher is better).
        caliper: Matching caliper in standard deviations of the propensity logits
            (0.2 is the usual rule; ``math.inf`` disables it); see :func:`logit_distances`.

    Returns:
        One :class:`CandidateEstimate` per candidate, sorted by ``score``, the adjusted
        mean (ties keep the order of ``candidates``); ``ci_low``, ``ci_high`` and
        ``prob_best`` are NaN: the ranking's come from its posterior draws.

    Raises:
        ConfigError: On malformed input (lengths, unknown names, NaN) or options.
    """
    names = _check_candidates(candidates)
    x, labels, y = _check_samples(names, covariates, treatment, outcome)
    if not caliper > 0:
        raise ConfigError(f"caliper must be positive (math.inf disables it), got {caliper}")
    counts = np.bincount(labels, minlength=len(names))
    active = np.flatnonzero(counts)  # candidates with samples, renumbered 0..k-1 below
    estimates = [_empty(name) for name in names]
    if active.size:
        compact = np.searchsorted(active, labels)
        fit = _fit(x, point_ids(x), compact, y, active.size, caliper)
        for j, c in enumerate(active):
            estimates[c] = replace(
                estimates[c], score=float(fit.mean[j]), adjusted_mean=float(fit.mean[j]),
                raw_mean=float(y[labels == c].mean()), n=int(counts[c]),
                matched=int(fit.matched[j]), overlap=fit.overlap,
            )  # fmt: skip
    order = sorted(range(len(names)), key=lambda i: sort_key(estimates[i].score, i))
    return [estimates[i] for i in order]


def propensity(
    candidates: Sequence[str], covariates: ArrayLike, treatment: Sequence[str]
) -> np.ndarray:
    """P(candidate | decoding parameters) of every sample: an (n, k) array, rows sum to 1.

    The propensity model :func:`matched_means` matches on, exposed so a viewer can show whether
    the candidates' samples overlap (where they do not, matching has no support).
    Candidates without samples get probability 0.
    """
    names = _check_candidates(candidates)
    x, labels, _ = _check_samples(names, covariates, treatment, np.zeros(len(list(treatment))))
    probs = np.zeros((len(labels), len(names)))
    active = np.flatnonzero(np.bincount(labels, minlength=len(names)))
    if active.size:
        compact = np.searchsorted(active, labels)
        logits = propensity_logits(x, compact, active.size)
        # logits are log(p / (1 - p)) per class: the sigmoid gives each p back
        probs[:, active] = 1.0 / (1.0 + np.exp(-logits))
        if active.size == 1:
            probs[:, active] = 1.0
    return probs


#: The usual bar for a balanced covariate: |SMD| below 0.1 (Austin, 2009; Stuart, 2010).
BALANCE_BAR = 0.1


@dataclass(frozen=True)
class Balance:
    """Covariate balance of :func:`matched_means`'s comparison, as :func:`balance` computes it.

    ``before`` and ``after`` hold, per covariate, the largest absolute standardised mean
    difference over all pairs of candidates, before matching and after it; ``pairs``
    names those pairs and ``pair_before``/``pair_after`` hold the signed SMD of each pair
    (first minus second), one tuple per pair in the order of ``covariates``. Without
    common support (``has_support`` False) every "after" value is NaN.
    """

    covariates: tuple[str, ...]
    before: tuple[float, ...]
    after: tuple[float, ...]
    pairs: tuple[tuple[str, str], ...]
    pair_before: tuple[tuple[float, ...], ...]
    pair_after: tuple[tuple[float, ...], ...]
    n_samples: int
    n_support: int  # pooled samples on common support: the points the comparison uses
    has_support: bool

    @property
    def max_before(self) -> float:
        return max(self.before, default=0.0)

    @property
    def max_after(self) -> float:
        return max(self.after, default=0.0) if self.has_support else math.nan

    def summary(self) -> str:
        """One line, e.g. ``balance: max |SMD| 0.84 before matching, 0.07 after (|SMD| <
        0.1 is the usual bar), 12 of 20 samples on common support``."""
        if not self.pairs:
            n = self.n_samples
            return f"balance: fewer than two candidates with samples, nothing to compare ({n})"
        head = f"balance: max |SMD| {self.max_before:.2f} before matching"
        if not self.has_support:
            return (
                f"{head}; no common support, so no matched comparison "
                f"(0 of {self.n_samples} samples)"
            )
        return (
            f"{head}, {self.max_after:.2f} after (|SMD| < {BALANCE_BAR} is the usual bar), "
            f"{self.n_support} of {self.n_samples} samples on common support"
        )


def balance(
    candidates: Sequence[str],
    covariates: ArrayLike,
    treatment: Sequence[str],
    *,
    caliper: float = 0.2,
    names: Sequence[str] | None = None,
) -> Balance:
    """Standardised mean differences of every covariate before and after matching.

    The usual check of a propensity-score design (MatchIt's ``summary``, cobalt's
    ``bal.tab``): did matching make the candidates' samples alike in the decoding
    parameters? For one covariate and two candidates a, b::

        SMD = (mean_a - mean_b) / s*,   s* = sqrt((var_a + var_b) / 2)

    with the unweighted sample variances (n - 1) of all of a's and all of b's samples
    (cobalt's default ``s.d.denom = "pooled"``). The *same* s* serves before and after
    matching (cobalt FAQ, "Why do you use the same standardization factor before and
    after adjustment?"), so a smaller SMD after matching means the means moved together,
    not that the spread grew.

    *After* is the comparison :func:`matched_means` makes: only the pooled samples on common
    support, where candidate c's covariates enter with the matching weights that impute
    c's score there (:func:`_candidate_weights`, the same matrices ``rank`` uses). A
    sample of c carries the total weight it gets over the common points, so c's weighted
    mean is the mean of the covariates of the samples its imputed scores come from.

    More than two candidates follow cobalt's multi-category treatments
    (``?bal.tab.multi``; ``pairwise = TRUE``, the default): every pair of candidates is
    a two-group comparison, the summary per covariate is the largest |SMD| over the
    pairs ("if the greatest observed imbalance is tolerable, then all other imbalances
    for that variable will be tolerable too"), and with ``s.d.denom = "pooled"`` the
    denominator pools *all* candidates, not only the pair: here
    ``s* = sqrt(mean over candidates of var_c)``, which is the formula above for two.

    Degenerate cases: a covariate equal in every sample (all greedy, say) has SMD 0. A
    candidate with a single sample contributes variance 0. If s* is 0 but the means
    differ (every candidate constant, at different values) s* falls back to the standard
    deviation of all pooled samples (cobalt's ``s.d.denom = "all"``), so the SMD stays
    finite. Candidates without samples are left out.

    Args:
        candidates, covariates, treatment, caliper: as for :func:`matched_means`.
        names: A name per covariate column (default ``x0``, ``x1``, ...).

    Raises:
        ConfigError: On malformed input, as :func:`matched_means`.
    """
    labels_in = list(treatment)
    cand = _check_candidates(candidates)
    x, labels, _ = _check_samples(cand, covariates, labels_in, np.zeros(len(labels_in)))
    if not caliper > 0:
        raise ConfigError(f"caliper must be positive (math.inf disables it), got {caliper}")
    d = x.shape[1]
    columns = tuple(f"x{j}" for j in range(d)) if names is None else tuple(map(str, names))
    if len(columns) != d:
        raise ConfigError(f"names has {len(columns)} entries for {d} covariate columns")
    active = np.flatnonzero(np.bincount(labels, minlength=len(cand)))
    k, n = active.size, x.shape[0]
    if k < 2:
        zeros = (0.0,) * d
        return Balance(columns, zeros, zeros, (), (), (), n, n, True)
    compact = np.searchsorted(active, labels)
    groups = [x[compact == c] for c in range(k)]
    scale = _smd_scale(x, groups)
    weights = _matching(x, point_ids(x), compact, k, caliper)
    support = np.column_stack([w.any(axis=1) for w in weights]).all(axis=1)
    raw = np.array([g.mean(axis=0) for g in groups])
    if support.any():
        # the weight each own sample carries over the common points (each row sums to 1)
        carried = [w[support].sum(axis=0) for w in weights]
        matched = np.array([u @ g / u.sum() for u, g in zip(carried, groups, strict=True)])
    else:
        matched = np.full((k, d), np.nan)
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    pair_before = np.array([_smd(raw[a] - raw[b], scale) for a, b in pairs])
    pair_after = np.array([_smd(matched[a] - matched[b], scale) for a, b in pairs])
    return Balance(
        covariates=columns,
        before=tuple(float(v) for v in np.abs(pair_before).max(axis=0)),
        after=tuple(float(v) for v in np.abs(pair_after).max(axis=0)),
        pairs=tuple((cand[active[a]], cand[active[b]]) for a, b in pairs),
        pair_before=tuple(tuple(float(v) for v in row) for row in pair_before),
        pair_after=tuple(tuple(float(v) for v in row) for row in pair_after),
        n_samples=n,
        n_support=int(support.sum()),
        has_support=bool(support.any()),
    )


def _smd_scale(x: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """(d,) denominators: sqrt of the mean within-candidate variance, else the pooled SD,
    else 1 (a constant covariate, whose mean differences are all 0 anyway)."""
    variances = np.array(
        [g.var(axis=0, ddof=1) if len(g) > 1 else np.zeros(x.shape[1]) for g in groups]
    )
    scale = np.sqrt(variances.mean(axis=0))
    overall = x.std(axis=0, ddof=1) if x.shape[0] > 1 else np.zeros(x.shape[1])
    scale = np.where(scale > _TIE, scale, overall)
    return np.where(scale > _TIE, scale, 1.0)


def _smd(difference: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Mean differences in units of ``scale``; those within rounding of 0 are 0, NaN stays."""
    return np.where(np.abs(difference) <= _TIE * np.maximum(1.0, scale), 0.0, difference / scale)


def sort_key(score: float, index: int) -> tuple[float, int]:
    """Best first, NaN last, ties in the candidates' order."""
    return (-score if not math.isnan(score) else math.inf, index)


def _empty(name: str) -> CandidateEstimate:
    nan = math.nan
    return CandidateEstimate(name, nan, nan, nan, nan, nan, 0, 0, nan, nan)


# -- validation ----------------------------------------------------------------------------


def _check_candidates(candidates: Sequence[str]) -> list[str]:
    names = list(candidates)
    if not names:
        raise ConfigError("rank needs at least one candidate name")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"candidate names must be unique; repeated: {', '.join(dupes)}")
    return names


def _check_samples(names, covariates, treatment, outcome):
    """Arrays (x float (n, d), labels int (n,), y float (n,)) or a ConfigError."""
    labels_in = list(treatment)
    n = len(labels_in)
    try:
        x = np.asarray(covariates, dtype=float)
        y = np.asarray(outcome, dtype=float)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"covariates and outcome must be numeric arrays ({error})") from None
    if n == 0 and x.size == 0:
        x = x.reshape(0, 0)
    if x.ndim != 2:
        raise ConfigError(f"covariates must be 2-D (samples x parameters), got shape {x.shape}")
    if y.ndim != 1:
        raise ConfigError(f"outcome must be 1-D, got shape {y.shape}")
    if not x.shape[0] == y.size == n:
        raise ConfigError(
            f"lengths differ: {x.shape[0]} covariate rows, {n} treatments, {y.size} outcomes"
        )
    if not np.isfinite(y).all():
        raise ConfigError(f"outcome has {int((~np.isfinite(y)).sum())} NaN/inf value(s)")
    if not np.isfinite(x).all():
        raise ConfigError(f"covariates have {int((~np.isfinite(x)).sum())} NaN/inf value(s)")
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted({str(t) for t in labels_in if t not in index})
    if unknown:
        raise ConfigError(f"treatment names not among the candidates: {', '.join(unknown)}")
    return x, np.array([index[t] for t in labels_in], dtype=int), y
