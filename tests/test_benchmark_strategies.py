"""The strategies benchmark: its harness runs end to end, and its landscapes are what
they claim (each family's stated optimum really is the optimum)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from benchmarks import strategies
from benchmarks._strategies import runners
from benchmarks._strategies.landscapes import (
    FAMILIES,
    SPACE,
    random_unit_points,
    unit_coordinates,
)
from benchmarks._strategies.runners import STRATEGIES
from tests.objectives import random_params

SUMMARY = re.compile(
    r"^three-stage vs two-stage: score ratio \d+\.\d\d, budget ratio (\d+\.\d\d|inf), "
    r"right-candidate rate [01]\.\d\d$"
)


# -- the harness -----------------------------------------------------------------------------


def test_quick_run_prints_every_row_the_summary_and_a_plot(tmp_path, capsys):
    plot = tmp_path / "strategies.png"
    strategies.main(["--quick", "--plot", str(plot)])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert SUMMARY.match(lines[-1]), lines[-1]
    for family in strategies.FAMILIES:  # the synthetic ones and the replay
        assert sum(line.strip("│ ").startswith(family) for line in lines) == 1, family
    for name in STRATEGIES:
        # one row per family, each naming the strategy in its own cell
        cells = [[c.strip() for c in line.split("│")] for line in lines]
        assert sum(name in row for row in cells) == len(strategies.FAMILIES), name
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_line_ratios_come_from_three_stage_vs_two_stage():
    records = [
        strategies.Record("smooth", name, seed, budget, score, name == "three-stage")
        for seed in range(3)
        for budget, three, two in ((10, 0.3, 0.2), (20, 0.6, 0.4))
        for name, score in (("three-stage", three), ("two-stage", two))
    ]
    line = strategies.summary_line(records, ["smooth"], 20)
    # 0.6 / 0.4 = 1.5 at 20; 0.3 / 0.4 = 0.75 at 10: the ratio curve reaches 1 at 10 + 10 / 3
    assert line == (
        "three-stage vs two-stage: score ratio 1.50, budget ratio 0.67, right-candidate rate 1.00"
    )


def test_budget_to_match_interpolates_the_first_crossing():
    assert strategies.budget_to_match({10: 0.5, 20: 1.0, 40: 0.9}, 20) == 1.0
    assert strategies.budget_to_match({10: 0.5, 20: 0.9, 40: 1.1}, 20) == pytest.approx(1.5)
    assert strategies.budget_to_match({10: 1.2, 20: 1.0}, 20) == 0.5
    assert strategies.budget_to_match({10: 0.1, 20: 0.2}, 20) == math.inf


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_spends_exactly_its_budget(monkeypatch, name):
    made: list[runners.CountingObjective] = []

    class Recording(runners.CountingObjective):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(runners, "CountingObjective", Recording)
    family = FAMILIES["smooth"]
    choice = STRATEGIES[name](family, 13, 0)
    assert [o.calls for o in made] == [13]
    assert choice.candidate in family.candidates
    assert 0.0 <= family.true(choice.candidate, choice.params) <= 1.0


def test_counting_objective_refuses_to_overspend():
    objective = runners.CountingObjective(FAMILIES["smooth"], 1, 0)
    objective("a", SPACE.default_params())
    with pytest.raises(RuntimeError, match="budget of 1"):
        objective("a", SPACE.default_params())


@pytest.mark.parametrize("seed", [0, 1])
def test_skipping_the_ranking_bootstrap_does_not_change_the_tuners_choice(seed):
    family = FAMILIES["equal_mean"]
    fast = runners.three_stage(family, 12, seed, fast=True)
    exact = runners.three_stage(family, 12, seed, fast=False)
    assert fast == exact


# -- the landscapes --------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES.values(), ids=list(FAMILIES))
def test_the_stated_optimum_beats_random_points(family):
    points = random_unit_points(3000, np.random.default_rng(1))
    params = random_params(SPACE, 300, seed=2)
    for name, surface in family.surfaces.items():
        at_optimum = surface(surface.optimum)
        assert at_optimum == pytest.approx(surface.peak)
        assert surface.values(points).max() <= at_optimum + 1e-12, name
        assert max(surface(p) for p in params) <= at_optimum + 1e-12, name
    best = family.surfaces[family.best_candidate]
    everything = max(s.values(points).max() for s in family.surfaces.values())
    assert best(best.optimum) >= everything


@pytest.mark.parametrize("family", FAMILIES.values(), ids=list(FAMILIES))
def test_the_optimum_is_a_local_maximum_in_params(family):
    rng = np.random.default_rng(3)
    for surface in family.surfaces.values():
        optimum = surface.optimum
        keys = ["repetition_penalty"] + (["temperature", "top_p"] if optimum["temperature"] else [])
        for _ in range(200):
            nudged = {**optimum, **{k: float(optimum[k] + rng.normal(0, 0.02)) for k in keys}}
            assert surface(nudged) <= surface(optimum) + 1e-12


@pytest.mark.parametrize("family", FAMILIES.values(), ids=list(FAMILIES))
def test_one_candidate_is_clearly_best_and_optima_lie_in_the_space(family):
    peaks = sorted((s.peak for s in family.surfaces.values()), reverse=True)
    assert peaks[0] - peaks[1] >= 0.04
    for surface in family.surfaces.values():
        u = unit_coordinates(surface.optimum)
        assert ((u >= 0) & (u <= 1)).all()
        values, dists = SPACE.trial_values(surface.optimum)
        for key, value in values.items():
            dist = dists[key]
            assert dist._contains(dist.to_internal_repr(value)), (key, value)


def test_equal_mean_family_has_equal_means_and_different_peaks():
    surfaces = FAMILIES["equal_mean"].surfaces.values()
    params = random_params(SPACE, 2000, seed=4)
    means = [np.mean([s(p) for p in params]) for s in surfaces]
    assert max(means) - min(means) < 0.015
    peaks = [s.peak for s in surfaces]
    assert max(peaks) - min(peaks) > 0.25


def test_narrow_family_best_candidate_is_worse_on_average():
    family = FAMILIES["narrow"]
    best = family.surfaces[family.best_candidate]
    assert best.mean() < family.surfaces["a"].mean()


def test_regions_family_optima_are_greedy_hot_and_mid():
    optima = {c: s.optimum for c, s in FAMILIES["regions"].surfaces.items()}
    assert optima["a"]["temperature"] == 0.0 and "top_p" not in optima["a"]
    assert optima["b"]["temperature"] > 1.0
    assert 0.3 < optima["c"]["temperature"] < 1.0


def test_greedy_sits_at_the_cold_untruncated_end_of_the_space():
    greedy = {"temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": 64}
    assert unit_coordinates(greedy).tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]
    # the noiseless surfaces see greedy and a cold untruncated sample alike
    cold = {**greedy, "temperature": 1e-9, "top_p": 1.0, "top_k": 100}
    for family in FAMILIES.values():
        for surface in family.surfaces.values():
            assert surface(greedy) == pytest.approx(surface(cold))
