"""engine.selection._psm: known answers on synthetic data, edge cases, validation, the pure
steps.

The synthetic scenarios are seeded; each was checked over 200 seeds (see the note in
``docs/psm.md``) so the assertions below are not tuned to a lucky draw.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.selection import balance
from engine.selection._psm import (
    CandidateEstimate,
    logistic_scores,
    logit_distances,
    logits_from_scores,
    match_weights,
    matched_means,
    point_ids,
    propensity_logits,
    replicate_weights,
)

SEEDS = [0, 1, 2]


def _by_name(ranking: list[CandidateEstimate]) -> dict[str, CandidateEstimate]:
    return {e.candidate: e for e in ranking}


def confounded(seed, *, lifts=(0.0, 0.0), slope=0.5, sizes=(90, 45), noise=0.05):
    """Candidates sharing f(x) = 0.9 - slope * x0 - 0.1 * x1 (plus a per-candidate lift).

    Candidate i samples x0 from its own window, the first in the good (low x0) region and
    the last in the bad one, windows overlapping; x1 is uniform for all of them.
    """
    rng = np.random.default_rng(seed)
    k = len(sizes)
    starts = np.linspace(0.0, 0.3, k)
    xs, ts, ys = [], [], []
    for i, (n, lift, start) in enumerate(zip(sizes, lifts, starts, strict=True)):
        x = np.column_stack([rng.uniform(start, start + 0.7, n), rng.uniform(0, 1, n)])
        xs.append(x)
        ts += ["ABC"[i]] * n
        ys.append(0.9 - slope * x[:, 0] - 0.1 * x[:, 1] + lift + rng.normal(0, noise, n))
    return np.vstack(xs), ts, np.concatenate(ys)


def flat_vs_peaked(seed, n=100, noise=0.05):
    """A: 0.55 everywhere. B: 0.3, but 0.9 where 3/8 < x0 < 5/8 (mean 0.45). Both sample x
    uniformly."""
    rng = np.random.default_rng(seed)
    xa, xb = rng.uniform(0, 1, (n, 2)), rng.uniform(0, 1, (n, 2))
    ya = 0.55 + rng.normal(0, noise, n)
    yb = 0.3 + 0.6 * ((xb[:, 0] > 0.375) & (xb[:, 0] < 0.625)) + rng.normal(0, noise, n)
    return np.vstack([xa, xb]), ["A"] * n + ["B"] * n, np.concatenate([ya, yb])


# -- known answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_same_function_sampled_in_different_regions_ties(seed):
    x, t, y = confounded(seed)  # A (90 samples) in the good region, B (45) in the bad one
    a, b = (_by_name(matched_means(["A", "B"], x, t, y))[c] for c in "AB")
    raw_gap = a.raw_mean - b.raw_mean
    assert raw_gap > 0.08, "the naive comparison should favour A clearly"
    assert 0.3 < a.overlap < 1.0 and a.matched < a.n
    assert abs(a.adjusted_mean - b.adjusted_mean) < 0.4 * raw_gap
    assert (a.score, b.score) == (a.adjusted_mean, b.adjusted_mean)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_higher_average_wins_not_the_higher_peak(seed):
    x, t, y = flat_vs_peaked(seed)  # A flat at 0.55; B 0.9 on a quarter of x0, mean 0.45
    assert [e.candidate for e in matched_means(["A", "B"], x, t, y)] == ["A", "B"]


@pytest.mark.parametrize("seed", SEEDS)
def test_clearly_better_candidate_wins_despite_confounding(seed):
    # C is 0.2 better everywhere but sampled in the worst region: raw means rank it below A.
    x, t, y = confounded(seed, lifts=(0.0, 0.0, 0.2), slope=1.5, sizes=(40, 40, 40))
    ranking = matched_means(["A", "B", "C"], x, t, y)
    raw = _by_name(ranking)
    assert raw["C"].raw_mean < raw["A"].raw_mean
    assert ranking[0].candidate == "C", ranking


def test_more_samples_do_not_raise_the_matched_mean():
    # Same f and noise, A sampled four times as often. The raw max grows with the number
    # of draws and favours A (by about 0.05 here); the matched mean does not.
    mean_gaps, max_gaps = [], []
    for seed in range(100, 140):
        x, t, y = confounded(seed, sizes=(120, 30), slope=0.0, noise=0.1)
        by = _by_name(matched_means(["A", "B"], x, t, y))
        ta = np.array(t)
        mean_gaps.append(by["A"].score - by["B"].score)
        max_gaps.append(y[ta == "A"].max() - y[ta == "B"].max())
    assert np.mean(max_gaps) > 0.03
    assert abs(np.mean(mean_gaps)) < 0.025


# -- edge cases ------------------------------------------------------------------------------


def test_single_candidate_is_its_own_raw_estimate():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(20, 3)), rng.uniform(size=20)
    (e,) = matched_means(["A"], x, ["A"] * 20, y)
    assert e.adjusted_mean == pytest.approx(y.mean()) and e.raw_mean == pytest.approx(y.mean())
    assert e.score == e.adjusted_mean
    assert (e.n, e.matched, e.overlap) == (20, 20, 1.0)
    # the ranking's interval and P(best) come from its posterior draws, not from here
    assert math.isnan(e.ci_low) and math.isnan(e.ci_high) and math.isnan(e.prob_best)


def test_candidate_with_one_sample_and_one_with_none():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(size=(31, 2)), rng.uniform(size=31)
    ranking = matched_means(["A", "B", "C"], x, ["A"] * 30 + ["B"], y)
    by = _by_name(ranking)
    assert by["B"].n == 1 and math.isfinite(by["B"].score)
    assert ranking[-1].candidate == "C" and by["C"].n == 0 and math.isnan(by["C"].score)


def test_no_samples_at_all_gives_nan_estimates():
    ranking = matched_means(["A", "B"], [], [], [])
    assert [e.candidate for e in ranking] == ["A", "B"]
    assert all(e.n == 0 and math.isnan(e.score) for e in ranking)


def test_identical_covariates_mean_no_confounding():
    # Every sample greedy: the propensity is flat, so adjusted = raw mean.
    rng = np.random.default_rng(2)
    x = np.tile([0.0, 1.0, math.log(50), 1.0, math.log(256)], (30, 1))
    t = ["A"] * 10 + ["B"] * 20
    y = np.concatenate([rng.normal(0.4, 0.05, 10), rng.normal(0.5, 0.05, 20)])
    by = _by_name(matched_means(["A", "B"], x, t, y))
    for c, mask in (("A", slice(0, 10)), ("B", slice(10, 30))):
        assert by[c].adjusted_mean == pytest.approx(y[mask].mean())
        assert by[c].score == pytest.approx(y[mask].mean())
        assert by[c].overlap == 1.0 and by[c].matched == by[c].n


def test_perfect_separation_falls_back_to_raw_estimates():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(0, 0.3, 25), rng.uniform(0.7, 1, 25)])[:, None]
    t, y = ["A"] * 25 + ["B"] * 25, rng.uniform(size=50)
    for e in matched_means(["A", "B"], x, t, y):
        own = y[np.array(t) == e.candidate]
        assert e.overlap == 0.0 and e.matched == 0
        assert e.adjusted_mean == e.score == pytest.approx(own.mean())


def test_estimates_round_trip_through_json():
    x, t, y = confounded(5, sizes=(20, 20))
    for e in matched_means(["A", "B"], x, t, y):
        text = json.dumps(asdict(e))  # NaN (no interval here) is not equal to itself
        assert json.dumps(asdict(CandidateEstimate(**json.loads(text)))) == text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidates": []}, "at least one candidate"),
        ({"candidates": ["A", "A"]}, "unique; repeated: A"),
        ({"treatment": ["A", "Z", "A"]}, "not among the candidates: Z"),
        ({"treatment": ["A", "B"]}, "lengths differ"),
        ({"outcome": [0.1, math.nan, 0.2]}, "outcome has 1 NaN"),
        ({"covariates": [[0.0], [math.inf], [1.0]]}, "covariates have 1 NaN/inf"),
        ({"covariates": [0.0, 1.0, 2.0]}, "covariates must be 2-D"),
        ({"covariates": [[0.0], ["x"], [1.0]]}, "numeric"),
        ({"caliper": 0.0}, "caliper must be positive"),
    ],
)  # fmt: skip
def test_invalid_input_is_rejected_with_a_clear_message(kwargs, message):
    args = {
        "candidates": ["A", "B"], "covariates": [[0.0], [0.5], [1.0]],
        "treatment": ["A", "B", "A"], "outcome": [0.1, 0.2, 0.3], **kwargs,
    }  # fmt: skip
    data = ("candidates", "covariates", "treatment", "outcome")
    options = {k: args.pop(k) for k in list(args) if k not in data}
    with pytest.raises(ConfigError, match=message):
        matched_means(args["candidates"], args["covariates"], args["treatment"],
                      args["outcome"], **options)  # fmt: skip


# -- the pure steps, against values worked out by hand ------------------------------------


def test_match_weights_nearest_with_ties_and_caliper():
    # 0.0 -> 0.0 exactly; 1.0 is 0.1 from both 0.9 and 1.1 (tie: half each); 5.0 is 3.9
    # from its nearest, outside the caliper 0.5 (no match).
    query, reference = np.array([0.0, 1.0, 5.0]), np.array([0.0, 0.9, 1.1])
    w = match_weights(np.abs(query[:, None] - reference[None, :]), 0.5)
    np.testing.assert_allclose(w, [[1, 0, 0], [0, 0.5, 0.5], [0, 0, 0]])
    assert match_weights(np.array([[0.5, 0.7]]), 0.5).tolist() == [[1.0, 0.0]]  # inclusive
    assert match_weights(np.zeros((2, 0)), 1.0).shape == (2, 0)


def test_logit_distances_by_hand():
    # Two candidates: l_B = -l_A, sd 2 / 3 ** 0.5 -> the plain |delta logit| / sd.
    la = np.array([2.0, 0.0, -2.0])
    d = logit_distances(np.column_stack([la, -la]))
    np.testing.assert_allclose(d, np.abs(la[:, None] - la[None, :]) / la.std())
    # Three candidates: each column scaled by its own sd, then the root mean square.
    logits = np.array([[0.0, 0.0, 0.0], [2.0, 4.0, 0.0], [-2.0, -4.0, 0.0]])
    sd_a, sd_b = logits[:, 0].std(), logits[:, 1].std()  # the constant third is left out
    expected = np.sqrt(((2 / sd_a) ** 2 + (4 / sd_b) ** 2) / 2)
    assert logit_distances(logits)[0, 1] == pytest.approx(expected)
    assert not logit_distances(np.ones((3, 2))).any()  # flat: every pair is a match


def test_replicate_weights_average_identical_points():
    points = point_ids(np.array([[0.0, 1.0], [0.5, 1.0], [0.0, 1.0], [0.0, 2.0]]))
    assert points[0] == points[2] and len(set(points.tolist())) == 3
    np.testing.assert_allclose(
        replicate_weights(points),
        [[0.5, 0, 0.5, 0], [0, 1, 0, 0], [0.5, 0, 0.5, 0], [0, 0, 0, 1]],
    )
    assert point_ids(np.zeros((3, 0))).tolist() == [0, 0, 0]  # no covariates: one point


def test_logits_from_scores_by_hand():
    # softmax(0, ln 2) = (1/3, 2/3): logits ln(1/2), ln(2)
    np.testing.assert_allclose(logits_from_scores(np.array([[0.0, math.log(2)]])),
                               [[-math.log(2), math.log(2)]])  # fmt: skip
    # three equal scores: p = 1/3 each, logit ln((1/3) / (2/3)) = -ln 2
    np.testing.assert_allclose(logits_from_scores(np.zeros((1, 3))), [[-math.log(2)] * 3])
    # far past where p rounds to 1.0 the logit stays finite
    np.testing.assert_allclose(logits_from_scores(np.array([[0.0, 800.0]])), [[-800, 800]])


@pytest.mark.parametrize(("k", "shift"), [(2, 1.0), (3, 1.0), (4, 0.5), (2, 8.0), (3, 8.0)])
def test_logistic_scores_reproduce_scikit_learn(k, shift):
    # The Newton fit is scikit-learn's LogisticRegression(C=1), including the binary
    # parametrisation for two classes and near-perfect separation (shift 8).
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(6)
    labels = np.arange(60) % k
    x = rng.normal(size=(60, 3)) + shift * np.eye(k, 3)[labels]
    z = (x - x.mean(0)) / x.std(0)
    p = LogisticRegression(tol=1e-10, max_iter=10_000).fit(z, labels).predict_proba(z)
    np.testing.assert_allclose(logits_from_scores(logistic_scores(z, labels, k)),
                               np.log(p / (1 - p)), atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(propensity_logits(x, labels, k), np.log(p / (1 - p)), atol=1e-5)


def test_propensity_logits_ignore_constant_columns():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(40, 1))
    labels = (x[:, 0] + rng.normal(size=40) > 0).astype(int)
    padded = np.column_stack([np.full(40, 3.0), x, np.zeros(40)])
    np.testing.assert_allclose(propensity_logits(padded, labels, 2),
                               propensity_logits(x, labels, 2))  # fmt: skip
    assert not propensity_logits(padded[:, [0, 2]], labels, 2).any()  # nothing varies
    assert not propensity_logits(x, np.zeros(40, dtype=int), 1).any()  # one candidate


def test_worked_example_from_the_docs():
    # docs/psm.md walks through exactly these eight samples; keep the two in step.
    xa, xb = [0.0, 0.2, 0.4, 0.6], [0.45, 0.6, 0.8, 1.0]
    x = np.array(xa + xb)[:, None]
    y = 0.8 - 0.4 * x[:, 0]  # the same f for both, no noise
    a, b = (_by_name(matched_means(["A", "B"], x, ["A"] * 4 + ["B"] * 4, y))[c] for c in "AB")
    assert (a.raw_mean, b.raw_mean) == pytest.approx((0.68, 0.515))
    assert (a.overlap, a.matched, b.matched) == (0.5, 2, 2)
    assert (a.adjusted_mean, b.adjusted_mean) == pytest.approx((0.60, 0.59))


def test_propensity_rows_sum_to_one_and_separate_disjoint_samples():
    from engine.selection import propensity

    x = [[0.1], [0.2], [0.15], [0.9], [1.0], [0.95]]
    p = propensity(["a", "b", "idle"], x, ["a", "a", "a", "b", "b", "b"])
    assert p.shape == (6, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert (p[:3, 0] > 0.5).all() and (p[3:, 1] > 0.5).all()
    assert (p[:, 2] == 0).all()  # no samples, no probability


def test_propensity_is_uniform_when_samples_share_one_point():
    from engine.selection import propensity

    p = propensity(["a", "b"], [[0.5, 1.0]] * 4, ["a", "b", "a", "b"])
    np.testing.assert_allclose(p, 0.5)
    assert (propensity(["a"], [[0.1], [0.2]], ["a", "a"]) == 1.0).all()


# -- balance ---------------------------------------------------------------------------------


def test_balance_of_the_worked_example_by_hand():
    # docs/psm.md's eight samples. Before: means 0.3 and 0.7125, variances (n - 1)
    # 0.2 / 3 and 0.171875 / 3, so s* = sqrt((0.066667 + 0.057292) / 2) = 0.248956 and
    # SMD = -0.4125 / s* = -1.656918. After: the common points a3, a4, b1, b2 take A's
    # scores from a3 (twice) and a4 (twice), mean 0.5; B's from b1 and b2 (twice each),
    # mean 0.525; SMD = -0.025 / s* (the same s*) = -0.100419.
    x = np.array([0.0, 0.2, 0.4, 0.6, 0.45, 0.6, 0.8, 1.0])[:, None]
    result = balance(["A", "B"], x, ["A"] * 4 + ["B"] * 4, names=["x"])
    s = math.sqrt((0.2 / 3 + 0.171875 / 3) / 2)
    assert result.covariates == ("x",) and result.pairs == (("A", "B"),)
    assert result.pair_before[0][0] == pytest.approx(-0.4125 / s)
    assert result.pair_after[0][0] == pytest.approx(-0.025 / s)
    assert result.before == pytest.approx((1.656918,), abs=1e-6)
    assert result.after == pytest.approx((0.100419,), abs=1e-6)
    assert (result.n_samples, result.n_support, result.has_support) == (8, 4, True)
    assert result.summary() == (
        "balance: max |SMD| 1.66 before matching, 0.10 after (|SMD| < 0.1 is the usual "
        "bar), 4 of 8 samples on common support"
    )


def test_balance_of_identical_samples_is_zero_and_constant_columns_are_zero():
    grid = np.linspace(0, 1, 6)
    x = np.column_stack([np.tile(grid, 2), np.full(12, 0.7)])  # column 2: all greedy, say
    result = balance(["A", "B"], x, ["A"] * 6 + ["B"] * 6)
    assert result.covariates == ("x0", "x1")
    assert result.before == (0.0, 0.0) and result.after == (0.0, 0.0)
    assert result.n_support == 12


def test_matching_brings_a_confounded_design_below_the_usual_bar():
    # A samples [0, 0.6], B [0.4, 1.0] on the same grid: far apart before, alike on the
    # overlap the comparison keeps.
    x = np.concatenate([np.linspace(0, 0.6, 31), np.linspace(0.4, 1.0, 31)])[:, None]
    result = balance(["A", "B"], x, ["A"] * 31 + ["B"] * 31)
    assert result.before[0] > 1.0
    assert result.after[0] < 0.1
    assert 0 < result.n_support < 62


def test_balance_of_three_candidates_is_the_largest_pair_with_all_groups_pooled():
    # variances (n - 1): A 2, B 2, C 0, so s* = sqrt(4 / 3); means 1, 2, 4
    x = np.array([0.0, 2.0, 1.0, 3.0, 4.0, 4.0])[:, None]
    result = balance(["A", "B", "C", "idle"], x, ["A", "A", "B", "B", "C", "C"])
    s = math.sqrt(4 / 3)
    assert result.pairs == (("A", "B"), ("A", "C"), ("B", "C"))
    assert [p[0] for p in result.pair_before] == pytest.approx([-1 / s, -3 / s, -2 / s])
    assert result.before == pytest.approx((3 / s,))


def test_balance_without_spread_within_candidates_uses_the_overall_sd():
    x = np.array([0.0, 0.0, 1.0, 1.0])[:, None]  # each candidate constant, at its own value
    result = balance(["A", "B"], x, ["A", "A", "B", "B"])
    assert result.before == pytest.approx((1 / math.sqrt(1 / 3),))


def test_balance_without_common_support_says_so():
    x = np.array([0.0, 0.1, 0.2, 0.8, 0.9, 1.0])[:, None]
    result = balance(["A", "B"], x, ["A"] * 3 + ["B"] * 3)
    assert not result.has_support and result.n_support == 0
    assert math.isnan(result.after[0]) and math.isnan(result.max_after)
    assert result.before[0] > 1
    assert "no common support" in result.summary()


def test_balance_of_one_candidate_has_nothing_to_compare():
    result = balance(["A", "B"], [[0.1], [0.2]], ["A", "A"])
    assert result.pairs == () and result.before == (0.0,)
    assert "nothing to compare" in result.summary()


def test_balance_rejects_malformed_input():
    with pytest.raises(ConfigError, match="names"):
        balance(["A", "B"], [[0.1], [0.2]], ["A", "B"], names=["x", "y"])
    with pytest.raises(ConfigError, match="caliper"):
        balance(["A", "B"], [[0.1], [0.2]], ["A", "B"], caliper=0)
    with pytest.raises(ConfigError, match="not among"):
        balance(["A", "B"], [[0.1], [0.2]], ["A", "Z"])
