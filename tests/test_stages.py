import math

import pytest

from engine.errors import ConfigError
from engine.records import CandidateEstimate, Sample
from engine.stages import (
    MIN_STAGE1_SAMPLES,
    answer_so_far,
    best_sample_index,
    budget_spent,
    check_elimination,
    check_split,
    leader,
    next_cost_stage1_candidate,
    next_stage1_candidate,
    plan_budget,
    sampler_seed,
    stage1_complete,
    to_eliminate,
)


@pytest.mark.parametrize(
    ("budget", "k", "fraction", "per"),
    [(30, 3, 0.5, 5), (12, 3, 0.5, 2), (6, 3, 0.5, 2), (30, 3, 1.0, 10), (31, 3, 1.0, 10),
     (100, 2, 0.3, 15)],
)  # fmt: skip
def test_plan_budget_splits_stage_one_evenly(budget, k, fraction, per):
    plan = plan_budget(budget, k, fraction)
    assert plan.per_candidate == per
    assert plan.sampling + plan.tuning == budget and plan.tuning >= 0


def test_plan_budget_rejects_budgets_too_small_to_compare():
    with pytest.raises(ConfigError, match="use --budget 6 or more"):
        plan_budget(5, 3)
    with pytest.raises(ConfigError, match="fraction"):
        plan_budget(10, 2, 0.0)


def test_round_robin_gives_every_candidate_evidence_early():
    names = ["a", "b", "c"]
    counts = {n: 0 for n in names}
    order = []
    while (name := next_stage1_candidate(names, counts, 2)) is not None:
        order.append(name)
        counts[name] += 1
    assert order == ["a", "b", "c", "a", "b", "c"]
    # resuming with uneven counts catches the lagging candidate up first
    assert next_stage1_candidate(names, {"a": 2, "b": 1, "c": 2}, 3) == "b"


def test_sampler_seed_is_deterministic_and_distinct():
    assert sampler_seed(0, 1, 2) == sampler_seed(0, 1, 2)
    seeds = {sampler_seed(s, c, t) for s in range(2) for c in range(3) for t in range(5)}
    assert len(seeds) == 30


def test_best_sample_prefers_the_earliest_of_ties():
    assert best_sample_index([0.1, 0.5, 0.5, 0.2]) == 1


def test_stage1_of_a_cost_budget_needs_the_minimum_equal_counts_and_the_target():
    least = MIN_STAGE1_SAMPLES
    assert not stage1_complete([least - 1] * 3, spent=1e9, target=10)  # too few each
    assert not stage1_complete([least + 1, least, least], spent=1e9, target=10)  # mid-round
    assert not stage1_complete([least] * 3, spent=9.9, target=10)  # target not reached
    assert stage1_complete([least] * 3, spent=10, target=10)
    assert stage1_complete([least + 3] * 2, spent=12.5, target=10)


def _cost_stage1(names, costs, target):
    """Drive next_cost_stage1_candidate the way the tuner does, with fixed sample costs."""
    counts = {n: 0 for n in names}
    order, spent = [], 0.0
    while (name := next_cost_stage1_candidate(names, counts, spent, target)) is not None:
        order.append(name)
        counts[name] += 1
        spent += costs[name]
    return order, counts, spent


def test_cost_stage1_goes_round_robin_and_finishes_the_round():
    names = ["a", "b", "c"]
    # each round costs 30; after 4 rounds 120 >= 100: the 4th round is finished, no 5th
    order, counts, spent = _cost_stage1(names, {"a": 10, "b": 10, "c": 10}, target=100)
    assert order == names * 4 and spent == 120
    # the target is reached inside a round (a: 100): b and c still get their turn
    order, counts, spent = _cost_stage1(names, {"a": 100, "b": 1, "c": 1}, target=150)
    assert order == names * 2 and set(counts.values()) == {2}
    # a cheap target still gives everyone the minimum
    order, counts, _ = _cost_stage1(names, {"a": 50, "b": 50, "c": 50}, target=1)
    assert counts == dict.fromkeys(names, MIN_STAGE1_SAMPLES)


def test_cost_stage1_resumed_with_uneven_counts_catches_up_first():
    names = ["a", "b", "c"]
    assert next_cost_stage1_candidate(names, {"a": 3, "b": 2, "c": 2}, 1e9, 10) == "b"
    assert next_cost_stage1_candidate(names, {"a": 3, "b": 3, "c": 3}, 1e9, 10) is None
    assert next_cost_stage1_candidate(names, {"a": 3, "b": 3, "c": 3}, 5, 10) == "a"


def test_budget_spent_and_split_checks():
    assert not budget_spent(99.9, 100) and budget_spent(100, 100) and budget_spent(130, 100)
    check_split(2, 1.0)
    with pytest.raises(ConfigError, match="at least one candidate"):
        check_split(0, 0.5)
    with pytest.raises(ConfigError, match="fraction"):
        check_split(2, 1.5)


def _estimate(name: str, score: float, prob_best: float) -> CandidateEstimate:
    return CandidateEstimate(name, score, 0.0, 1.0, score, score, 5, 5, prob_best=prob_best)


def test_to_eliminate_drops_unlikely_active_candidates_but_never_the_leader():
    ranking = [_estimate("a", 0.9, 0.02), _estimate("b", 0.8, 0.96), _estimate("c", 0.5, 0.02),
               _estimate("d", 0.4, 0.0)]  # fmt: skip
    # "a" leads on the point estimate; "d" was eliminated before and is not active
    assert to_eliminate(ranking, ["a", "b", "c"], 0.05) == ["c"]
    assert to_eliminate(ranking, ["a", "b", "c"], 0.01) == []
    nan = [_estimate("a", 0.9, math.nan), _estimate("b", 0.1, math.nan)]
    assert to_eliminate(nan, ["a", "b"], 0.4) == []


@pytest.mark.parametrize("threshold", [-0.01, 0.5, math.nan])
def test_check_elimination_refuses_thresholds_outside_0_to_a_half(threshold):
    with pytest.raises(ConfigError, match="elimination threshold"):
        check_elimination(threshold)
    check_elimination(0.0)
    check_elimination(0.2)


# -- the answer of a run ---------------------------------------------------------------------


def _scored(candidate: str, trial: int, score: float, stage: str = "sampling") -> Sample:
    return Sample("r", candidate, stage, trial, {"temperature": trial / 10}, score)


def _ranked(*names: str) -> list[CandidateEstimate]:
    return [CandidateEstimate(n, 1.0 - i / 10, 0, 0, 0, 0, 2, 2) for i, n in enumerate(names)]


SAMPLES = [
    _scored("a", 0, 0.9),  # the best sample of all, but "a" does not lead the ranking
    _scored("b", 0, 0.5),
    _scored("b", 1, 0.7),
    _scored("b", 2, 0.7),  # a tie: the earlier sample is the answer
    _scored("b", 3, 0.99, stage="holdout"),  # outside the budget: never the answer
    _scored("c", 0, 0.6),
]


def test_the_answer_is_the_leaders_best_budget_sample():
    answer = answer_so_far("r", SAMPLES, _ranked("b", "a", "c"))
    assert (answer.best_candidate, answer.best_score) == ("b", 0.7)
    assert answer.best_params == {"temperature": 0.1} and answer.n_samples == 5
    assert answer.holdout is None and [e.candidate for e in answer.ranking] == ["b", "a", "c"]


def test_the_selected_winner_answers_whatever_the_ranking_says_later():
    answer = answer_so_far("r", SAMPLES, _ranked("a", "b"), winner="c", holdout={"x": 1.0})
    assert (answer.best_candidate, answer.best_score, answer.holdout) == ("c", 0.6, {"x": 1.0})


def test_without_a_ranking_the_best_sample_answers_and_without_samples_nothing_does():
    assert answer_so_far("r", SAMPLES, []).best_candidate == "a"
    empty = answer_so_far("r", [], [])
    assert empty.best_candidate == "" and empty.best_params == {} and empty.n_samples == 0
    assert math.isnan(empty.best_score)


def test_a_leader_needs_a_sample_or_a_selection():
    unsampled = [CandidateEstimate("a", math.nan, 0, 0, 0, 0, 0, 0)]
    assert leader(unsampled) is None and leader(unsampled, winner="b") == "b"
    assert leader(_ranked("b", "a")) == "b"
