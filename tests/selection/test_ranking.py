"""The selection statistic: the math against known values, and the ranking on cases whose
answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from engine import SearchSpace
from engine.errors import ConfigError
from engine.selection import rank
from engine.selection._ranking import Learned, prob_best, refit_size
from engine.tasks.base import ProblemOutcome, problem_interval

SPACE = SearchSpace()


# -- the selection statistic -----------------------------------------------------------------


def test_refit_sizes_grow_by_about_a_fifth():
    sizes = sorted({refit_size(n) for n in range(1, 60)})
    assert sizes[:8] == [1, 2, 3, 4, 5, 6, 8, 10]
    assert all(b <= max(a + 1, 1.2 * a + 1) for a, b in zip(sizes, sizes[1:], strict=False))


def test_prob_best_shares_ties_and_ignores_missing_candidates():
    maxima = np.array([[1.0, 1.0, np.nan], [2.0, 1.0, np.nan]])
    assert prob_best(maxima).tolist() == [0.75, 0.25, 0.0]


def _points(temperatures, top_p=0.95):
    return [
        {"temperature": t, "repetition_penalty": 1.0, "max_new_tokens": 256}
        if t == 0
        else {"temperature": t, "top_p": top_p, "top_k": 50, "repetition_penalty": 1.0,
              "max_new_tokens": 256}
        for t in temperatures
    ]  # fmt: skip


def _rank(params, treatment, outcome, **kwargs):
    return rank(["a", "b"], [SPACE.unit(p) for p in params],
                [SPACE.covariates(p) for p in params], treatment, outcome, **kwargs)  # fmt: skip


def test_a_candidate_best_where_only_its_own_optimizer_looked_is_ranked_first():
    # The case that sank the matched comparison on common support: "b" is poor at the
    # shared default point (greedy) but excellent at high temperatures, where only its
    # own optimizer sampled; "a" is middling everywhere it was tried.
    a_temps = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.25, 0.35]
    b_temps = [0.0, 1.2, 1.3, 1.4, 1.25, 1.35, 1.45, 1.3]
    params = _points(a_temps) + _points(b_temps)
    treatment = ["a"] * 8 + ["b"] * 8
    rng = np.random.default_rng(0)
    outcome = (
        [0.5 + 0.02 * rng.standard_normal() for _ in a_temps]
        + [0.1]
        + [0.93 + 0.02 * rng.standard_normal() for _ in b_temps[1:]]
    )
    ranking = _rank(params, treatment, outcome)
    first = ranking.estimates[0]
    assert first.candidate == "b" and first.prob_best > 0.9
    assert first.ci_low <= first.score <= first.ci_high and first.score > 0.8
    # its incumbent is one of its hot samples, not the default point (trial 0)
    assert first.incumbent != 0 and first.incumbent_mean > 0.85


def test_a_region_nobody_sampled_is_not_known_to_be_worse():
    # "a" was sampled in one small region, at 0.6; "b" only there too, at 0.5. Over the
    # evaluated points alone b is beaten for sure, though nothing is known of either
    # anywhere else; over the reference points too, b keeps a chance, which its samples
    # all over the space, at 0.5 again, then take away.
    rng = np.random.default_rng(3)
    centre = np.array([0.3, 0.8, 0.5, 0.2, 0.6])

    def near(n):
        return [SPACE.from_unit(np.clip(centre + 0.05 * rng.standard_normal(5), 0, 1))
                for _ in range(n)]  # fmt: skip

    a = near(12)
    a_scores = list(0.6 + 0.02 * rng.standard_normal(12))
    unexplored = SPACE.reference_unit()

    def chance_of_b(b, b_scores, reference):
        params = a + b
        ranking = rank(["a", "b"], [SPACE.unit(p) for p in params],
                       [SPACE.covariates(p) for p in params], ["a"] * 12 + ["b"] * len(b),
                       a_scores + b_scores, reference=reference)  # fmt: skip
        return next(e.prob_best for e in ranking.estimates if e.candidate == "b")

    b = near(3)
    assert chance_of_b(b, [0.5] * 3, None) < 0.01
    assert chance_of_b(b, [0.5] * 3, unexplored) > 0.1
    everywhere = [SPACE.from_unit(u) for u in rng.random((16, 5))]
    assert chance_of_b(everywhere, list(0.5 + 0.02 * rng.standard_normal(16)), unexplored) < 0.05


def test_reference_points_must_be_points_of_the_space():
    params = _points([0.0, 0.5]) * 2
    with pytest.raises(ConfigError, match=r"reference must be \(r, 5\) unit points"):
        _rank(params, ["a", "a", "b", "b"], [0.1, 0.2, 0.3, 0.4], reference=np.zeros((4, 3)))


def test_a_pass_rate_is_ranked_within_its_range():
    # "b" passes nearly everything at its hot samples: the posterior of its maximum
    # reaches past 1, which no pass rate can; bounded, every figure stays in [0, 1].
    temps = [0.0, 1.2, 1.3, 1.4, 1.25, 1.35]
    params = _points(temps) + _points(temps)
    treatment = ["a"] * 6 + ["b"] * 6
    outcome = [0.02, 0.0, 0.05, 0.0, 0.03, 0.0] + [0.1, 0.98, 1.0, 0.97, 1.0, 0.99]
    free = _rank(params, treatment, outcome)
    assert free.estimates[0].ci_high > 1
    bounded = _rank(params, treatment, outcome, bounds=(0.0, 1.0))
    for e in bounded.estimates:
        assert 0 <= e.ci_low <= e.score <= e.ci_high <= 1 and 0 <= e.incumbent_mean <= 1
    assert np.nanmax(bounded.maxima) <= 1 and np.nanmin(bounded.maxima) >= 0
    assert [e.candidate for e in bounded.estimates] == ["b", "a"]


def test_the_incumbent_is_the_best_posterior_mean_not_the_luckiest_sample():
    # "a" has a lucky sample (0.9) alone among neighbours that score 0.3; the region of
    # its other samples is steadily at 0.6.
    temps = [0.5, 0.52, 0.54, 0.56, 0.58, 1.2, 1.21, 1.19, 1.22]
    scores = [0.6, 0.61, 0.59, 0.6, 0.6, 0.9, 0.3, 0.3, 0.3]
    params = _points(temps) + _points([0.0, 0.7])
    ranking = _rank(params, ["a"] * 9 + ["b"] * 2, scores + [0.2, 0.2])
    a = next(e for e in ranking.estimates if e.candidate == "a")
    assert temps[a.incumbent] < 1.0 and a.incumbent_mean < 0.7


def test_reused_hyperparameters_give_the_same_ranking_as_learned_afresh():
    rng = np.random.default_rng(3)
    temps = rng.uniform(0.05, 1.5, 24)
    params = _points(temps)
    treatment = ["a", "b"] * 12
    outcome = [1 - (t - 0.6) ** 2 + 0.02 * rng.standard_normal() for t in temps]
    fresh = _rank(params, treatment, outcome)
    earlier = _rank(params[:22], treatment[:22], outcome[:22])
    assert refit_size(22) == refit_size(24) == earlier.learned.size
    reused = _rank(params, treatment, outcome, learned=earlier.learned)
    assert [e.score for e in reused.estimates] == [e.score for e in fresh.estimates]
    assert isinstance(reused.learned, Learned)


def test_by_default_the_surfaces_are_centred_on_the_mean_of_all_scores():
    params = _points([0.0, 0.5, 1.0]) + _points([0.0, 0.5, 1.0])
    outcome = [0.2, 0.3, 0.2, 0.7, 0.8, 0.7]
    with_psm = _rank(params, ["a"] * 3 + ["b"] * 3, outcome, use_psm=True)
    without = _rank(params, ["a"] * 3 + ["b"] * 3, outcome)
    assert with_psm.model.prior_mean.tolist() != without.model.prior_mean.tolist()
    assert np.allclose(without.model.prior_mean, np.mean(outcome))
    assert with_psm.estimates[0].candidate == without.estimates[0].candidate == "b"


def test_a_proposal_is_a_point_of_the_space_and_repeats_with_its_seed():
    params = _points([0.0, 0.4, 0.8, 1.2]) + _points([0.0, 0.3])
    ranking = _rank(params, ["a"] * 4 + ["b"] * 2, [0.2, 0.5, 0.7, 0.4, 0.3, 0.4])
    reference = SPACE.random_unit(64, np.random.default_rng(0))
    first = ranking.propose(0, reference, np.random.default_rng(5))
    again = ranking.propose(0, reference, np.random.default_rng(5))
    assert first.tolist() == again.tolist() and ((first >= 0) & (first <= 1)).all()
    assert set(SPACE.from_unit(first)) <= set(params[1])


def test_a_priced_proposal_buys_gain_cheaply_while_the_budget_is_young():
    params = _points([0.0, 0.4, 0.8, 1.2]) + _points([0.0, 0.3])
    ranking = _rank(params, ["a"] * 4 + ["b"] * 2, [0.2, 0.5, 0.7, 0.4, 0.3, 0.4])
    reference = SPACE.random_unit(64, np.random.default_rng(0))
    cost = lambda x: np.exp(4 * x.sum(axis=1))  # noqa: E731 - e^4 per unit of each coordinate

    def proposals(**priced):
        return np.array([ranking.propose(0, reference, np.random.default_rng(s), **priced)
                         for s in range(30)])  # fmt: skip

    plain, cooled = proposals(), proposals(cost=cost, cooling=1.0)
    assert cost(cooled).mean() < 0.5 * cost(plain).mean()
    # At the end of the budget (cooling 0) the price no longer counts.
    assert proposals(cost=cost, cooling=0.0).tolist() == plain.tolist()


@pytest.mark.parametrize("draws", [0, 15, 2.5, True])
def test_too_few_draws_are_refused(draws):
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="draws must be a whole number >= 16"):
        _rank(_points([0.0]), ["a"], [0.5], draws=draws)


# -- the unit coordinates --------------------------------------------------------------------


def test_unit_coordinates_round_trip_through_the_space():
    for params in _points([0.0, 0.05, 0.7, 1.5], top_p=0.8):
        back = SPACE.from_unit(SPACE.unit(params))
        assert back.keys() == params.keys()
        assert all(back[k] == pytest.approx(v, rel=1e-9) for k, v in params.items())


def test_random_unit_points_are_half_greedy():
    points = SPACE.random_unit(400, np.random.default_rng(0))
    greedy = [SPACE.from_unit(u)["temperature"] == 0 for u in points]
    assert 0.4 < np.mean(greedy) < 0.6


# -- the held-out interval -------------------------------------------------------------------


def _outcome(problem: str, passed: bool) -> ProblemOutcome:
    return ProblemOutcome(problem, "passed" if passed else "failed", passed, float(passed))


def _pass_rate(outcomes) -> dict[str, float]:
    return {"pass": float(np.mean([o.passed for o in outcomes]))}


def test_the_problem_interval_resamples_whole_problems():
    same = [_outcome(f"p{i}", True) for i in range(10)]
    assert problem_interval(same, _pass_rate, "pass") == (1.0, 1.0)
    half = [_outcome(f"p{i}", i % 2 == 0) for i in range(40)]
    low, high = problem_interval(half, _pass_rate, "pass", draws=400)
    # a binomial proportion of 0.5 over 40 problems: 90% within about ±0.13
    assert low == pytest.approx(0.37, abs=0.05) and high == pytest.approx(0.63, abs=0.05)
