import pytest

from engine.errors import ConfigError
from engine.stages import (
    best_sample_index,
    next_stage1_candidate,
    plan_budget,
    sampler_seed,
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
