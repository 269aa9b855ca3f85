"""The multi-fidelity benchmark: its harness runs end to end, its families are what they
claim, and every strategy keeps to its tokens budget."""

from __future__ import annotations

import re

import numpy as np
import pytest

from benchmarks import fidelity
from benchmarks._fidelity import STRATEGIES, ProblemFamily, TokenMeter, serfling_bound
from benchmarks._strategies.landscapes import FAMILIES, SPACE
from tests.objectives import random_params

SUMMARY = re.compile(
    r"^fidelity auto vs off: tokens ratio (\d+\.\d\d|inf) at equal score; at equal tokens "
    r"auto \d\.\d{3}, best multi-fidelity peer \(.+\) \d\.\d{3}$"
)


def test_quick_run_prints_every_strategy_and_the_summary(capsys):
    fidelity.main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert SUMMARY.match(lines[-1]), lines[-1]
    rows = [line for line in lines[:-1] if "│" in line]
    for name in STRATEGIES:  # smooth, pass_at_1 and pooled
        assert sum(name in row for row in rows) == 3, name


def test_a_configuration_solves_its_true_score_of_problems_on_average():
    family = ProblemFamily.of(FAMILIES["smooth"])
    for params in random_params(SPACE, 5, seed=1):
        chances = family.chances("a", params)
        assert chances.mean() == pytest.approx(family.true("a", params), abs=1e-6)
        # the same difficulty order for every configuration: easy problems first
        assert np.array_equal(np.argsort(chances), np.argsort(-family.difficulty))


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_keeps_to_its_tokens_budget(name, monkeypatch):
    family = ProblemFamily.of(FAMILIES["smooth"])
    spent = []
    original = TokenMeter.__call__

    def counting(self, candidate, params, indices):
        scores, cost = original(self, candidate, params, indices)
        spent.append(cost)
        return scores, cost

    monkeypatch.setattr(TokenMeter, "__call__", counting)
    budget = fidelity.base_tokens(family, 2)
    choice = STRATEGIES[name](family, budget, 0)
    assert choice.candidate in family.candidates
    # it stops at the first evaluation that reaches the budget: less than one over
    whole_sample = family.tokens({"temperature": 1.5, "max_new_tokens": 256}, list(range(40)))
    assert budget <= sum(spent) < budget + whole_sample


def test_the_serfling_bound_narrows_as_problems_are_scored():
    assert serfling_bound([0.0] * 8, 40) == pytest.approx(0.393, abs=1e-3)  # sqrt(0.825 ln 20 / 16)
    bounds = [serfling_bound([0.5] * m, 40) for m in (4, 8, 16, 32, 40)]
    assert bounds == sorted(bounds, reverse=True) and bounds[-1] == 0.5
