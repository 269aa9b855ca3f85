import math

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.records import CandidateEstimate, Sample
from engine.selection import (
    EXPLORE_EACH,
    MAX_SWITCH_BLOCK,
    MIN_STAGE1_SAMPLES,
    SETTLED,
    answer_so_far,
    best_sample_index,
    block_to_finish,
    budget_spent,
    check_elimination,
    check_split,
    leader,
    next_stage1_candidate,
    safe_eliminations,
    sampler_seed,
    selection_settled,
    switch_block,
    top_two,
    why_leader,
)


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


def test_a_block_goes_on_until_it_has_its_samples_in_a_row():
    assert block_to_finish(["a", "b", "b"], 3) == "b"
    assert block_to_finish(["a", "b", "b", "b"], 3) is None
    assert block_to_finish(["a", "b"], 1) is None and block_to_finish([], 3) is None


def test_the_block_the_exploration_ends_with_is_not_carried_on():
    # Each candidate's first EXPLORE_EACH are the exploration's; the evidence's blocks
    # count from the sample after, whichever candidate the exploration ended with.
    explored = [name for name in "abc" for _ in range(EXPLORE_EACH)]
    assert block_to_finish(explored, 8) == "c"
    assert block_to_finish(explored, 8, after=EXPLORE_EACH) is None
    assert block_to_finish([*explored, "c"], 8, after=EXPLORE_EACH) == "c"
    assert block_to_finish([*explored, "a", "a"], 3, after=EXPLORE_EACH) == "a"


def test_a_block_is_the_fewest_samples_that_keep_a_switch_a_small_share():
    assert switch_block([], [30.0]) == 1  # nothing switched: every model fits
    # s / (s + b e) <= 0.15: 20 s against 30 s needs b >= 3.78
    assert switch_block([20.0], [30.0]) == 4 and switch_block([5.0, 1.0], [30.0]) == 1
    assert switch_block([60.0], [10.0]) == switch_block([1.0], [0.0]) == MAX_SWITCH_BLOCK


def test_sampler_seed_is_deterministic_and_distinct():
    assert sampler_seed(0, 1, 2) == sampler_seed(0, 1, 2)
    seeds = {sampler_seed(s, c, t) for s in range(2) for c in range(3) for t in range(5)}
    assert len(seeds) == 30


def test_best_sample_prefers_the_earliest_of_ties():
    assert best_sample_index([0.1, 0.5, 0.5, 0.2]) == 1


def test_budget_spent_and_split_checks():
    assert not budget_spent(99.9, 100) and budget_spent(100, 100) and budget_spent(130, 100)
    check_split(2, 1.0)
    with pytest.raises(ConfigError, match="at least one candidate"):
        check_split(0, 0.5)
    with pytest.raises(ConfigError, match="fraction"):
        check_split(2, 1.5)


def test_a_samples_budget_must_give_every_candidate_its_minimum():
    check_split(3, 0.5, samples=3 * MIN_STAGE1_SAMPLES)
    with pytest.raises(ConfigError, match="use --budget 6 or more"):
        check_split(3, 0.5, samples=5)


# -- stage 1 follows the evidence -----------------------------------------------------------

#: Draws of three candidates' tuned scores: "a" is the best in 3 draws of 4, "b" in one,
#: "c" in none.
MAXIMA = np.array([[0.9, 0.5, 0.1], [0.8, 0.85, 0.2], [0.7, 0.4, 0.3], [0.95, 0.6, 0.2]])


def test_top_two_samples_the_leader_or_a_challenger_never_a_candidate_no_draw_favours():
    picks = [top_two(MAXIMA, [0, 1, 2], np.random.default_rng(seed)) for seed in range(400)]
    share = np.bincount(picks, minlength=3) / len(picks)
    assert share[2] == 0
    # the leader of a random draw ("a" 3/4 of the time) half the time, else the challenger:
    # a = 3/4 * 1/2 + 1/4 * 1/2 (b leads, a challenges) = 1/2, the same for b
    assert share[0] == pytest.approx(0.5, abs=0.07) and share[1] == pytest.approx(0.5, abs=0.07)


def test_top_two_with_one_candidate_in_every_draw_samples_it():
    assert top_two(MAXIMA, [0, 2], np.random.default_rng(0)) == 0
    assert top_two(MAXIMA, [2], np.random.default_rng(0)) == 2


def test_a_candidate_is_eliminated_only_when_its_upper_bound_is_below_the_leaders_lower():
    rng = np.random.default_rng(0)
    leader_draws = rng.normal(0.8, 0.02, 1000)
    maxima = np.column_stack([
        leader_draws, rng.normal(0.75, 0.02, 1000), rng.normal(0.5, 0.02, 1000)
    ])  # fmt: skip
    assert safe_eliminations(maxima, [0, 1, 2], 0.05) == [2]  # b overlaps the leader
    assert safe_eliminations(maxima, [0, 1, 2], 0.0) == []  # off
    assert safe_eliminations(maxima, [1], 0.05) == []  # alone


def test_the_selection_settles_on_evidence_or_on_the_budget_share():
    assert selection_settled(SETTLED, spent=1, target=10)
    assert not selection_settled(SETTLED - 0.01, spent=9.9, target=10)
    assert selection_settled(0.2, spent=10, target=10)


@pytest.mark.parametrize("alpha", [-0.01, 0.5, math.nan])
def test_check_elimination_refuses_levels_outside_0_to_a_half(alpha):
    with pytest.raises(ConfigError, match="elimination level"):
        check_elimination(alpha)
    check_elimination(0.0)
    check_elimination(0.2)


def test_why_the_leader_leads_names_its_estimate_and_the_runner_up():
    a = CandidateEstimate("a", 0.62, 0.55, 0.68, 0.4, 0.4, 9, 5, prob_best=0.93)
    b = CandidateEstimate("b", 0.48, 0.40, 0.55, 0.4, 0.4, 4, 4, prob_best=0.07)
    unsampled = CandidateEstimate("c", math.nan, 0, 0, 0, 0, 0, 0)
    assert why_leader([a, b]) == (
        "a leads: tuned score 0.62 (0.55-0.68), P(best) 0.93; next b 0.48 (0.40-0.55)"
    )
    assert why_leader([a, unsampled]).endswith("(the only candidate with samples)")
    assert why_leader([unsampled]) == "no samples yet"


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


def test_the_answer_is_the_leaders_incumbent_where_the_ranking_names_one():
    ranking = [CandidateEstimate("b", 0.8, 0, 0, 0, 0, 3, 3, incumbent=0), *_ranked("a")]
    answer = answer_so_far("r", SAMPLES, ranking)  # b's trial 0 scored 0.5, less than 0.7
    assert (answer.best_candidate, answer.best_params, answer.best_score) == (
        "b",
        {"temperature": 0.0},
        0.5,
    )


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
