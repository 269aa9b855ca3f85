"""The per-candidate sampler benchmark: its harness runs end to end (--quick), drives a
study the engine's way, and its figures mean what the report says."""

from __future__ import annotations

import re

import numpy as np
import pytest

from benchmarks import samplers
from benchmarks._strategies.landscapes import FAMILIES, SPACE

VERDICT = re.compile(
    r"^samplers: tpe \d\.\d\d, gp \d\.\d\d, random \d\.\d\d \(median fraction of the "
    r"optimum reached, pooled over budgets\)$"
)


def test_quick_run_prints_every_budget_and_sampler_and_the_verdict(capsys):
    samplers.main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert VERDICT.match(lines[-1]), lines[-1]
    cells = [[c.strip() for c in line.split("│")] for line in lines]
    for name in samplers.SAMPLERS:  # one row per budget in the main table
        rows = [row for row in cells if len(row) > 3 and row[2] == name]
        assert len(rows) == 2, name
        assert all(re.fullmatch(r"\d\.\d{3}", row[4]) for row in rows), rows
    for surface in samplers.QUICK_SURFACES:
        assert any(row[1:2] == [surface] for row in cells), surface


def test_every_candidate_surface_is_measured_against_its_optimum():
    table = samplers.surfaces()
    for fam in FAMILIES.values():
        for c in fam.candidates:
            assert table[f"{fam.name}/{c}"].optimum == fam.surfaces[c].peak
    replay = [s for s in table.values() if s.name.startswith("replay/")]
    assert replay and all(s.optimum > 0 for s in replay)


def test_a_run_starts_at_the_default_point_and_keeps_every_trial():
    surface = samplers.surfaces()["smooth/b"]
    run = samplers.run_one(surface, "tpe", seed=3, budget=6)
    assert run.true[0] == surface.family.true("b", SPACE.default_params())
    assert run.true.shape == run.observed.shape == run.seconds.shape == (6,)
    assert (np.diff(run.seconds) >= 0).all()
    again = samplers.run_one(surface, "tpe", seed=3, budget=6)  # seeded, as the engine is
    np.testing.assert_array_equal(run.true, again.true)


def test_best_tried_and_chosen_by_hand():
    run = samplers.Run(
        "s", "tpe", 0, true=np.array([0.2, 0.6, 0.4, 0.8]),
        observed=np.array([0.3, 0.5, 0.7, 0.6]), seconds=np.zeros(4), optimum=0.8,
    )  # fmt: skip
    assert run.best_tried(2) == pytest.approx(0.75)  # 0.6 / 0.8
    assert run.chosen(2) == pytest.approx(0.75)  # best observed 0.5 -> true 0.6
    assert run.best_tried(4) == pytest.approx(1.0)
    assert run.chosen(4) == pytest.approx(0.5)  # best observed 0.7 -> true 0.4


def test_verdict_pools_budgets_surfaces_and_seeds():
    def run(sampler, chosen_true):
        true = np.array(chosen_true)
        return samplers.Run("s", sampler, 0, true, true, np.zeros(len(true)), 1.0)

    runs = [run("tpe", [0.5, 0.9]), run("gp", [0.4, 0.6]), run("random", [0.3, 0.3])]
    # tpe: chosen 0.5 at budget 1, 0.9 at budget 2 -> median 0.7
    assert samplers.verdict(runs, ["tpe", "gp", "random"], [1, 2]) == (
        "samplers: tpe 0.70, gp 0.50, random 0.30 (median fraction of the optimum reached, "
        "pooled over budgets)"
    )
