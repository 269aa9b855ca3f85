"""The strategies benchmark: its harness runs end to end, and its landscapes are what
they claim (each family's stated optimum really is the optimum)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from benchmarks import strategies
from benchmarks._strategies import landscapes, peers, runners
from benchmarks._strategies.catalog import STRATEGIES
from benchmarks._strategies.landscapes import (
    FAMILIES,
    SPACE,
    random_unit_points,
    unit_coordinates,
)
from benchmarks._strategies.replay import replay_family
from tests.objectives import random_params

SUMMARY = re.compile(
    r"^three-stage vs two-stage: score ratio \d+\.\d\d, budget ratio (\d+\.\d\d|inf), "
    r"right-candidate rate [01]\.\d\d$"
)


# -- the harness -----------------------------------------------------------------------------


def test_quick_run_prints_every_row_the_summary_and_a_plot(tmp_path, capsys):
    plot, diagram = tmp_path / "strategies.png", tmp_path / "reliability.png"
    strategies.main(["--quick", "--plot", str(plot), "--reliability-plot", str(diagram)])
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert SUMMARY.match(lines[-1]), lines[-1]
    for family in strategies.FAMILIES:  # the synthetic ones and the replay
        assert sum(line.strip("│ ").startswith(f"{family} (") for line in lines) == 1, family
    cells = [[c.strip() for c in line.split("│")] for line in lines]
    for name in STRATEGIES:
        # one row per family, each naming the strategy in its own cell
        assert sum(name in row for row in cells) == len(strategies.FAMILIES), name
    labels = [row[1] for row in cells if len(row) > 2]
    assert sum(label in ("qualifies", "does NOT qualify") for label in labels) == len(
        strategies.FAMILIES
    )
    assert sum(label.startswith("best peer: ") for label in labels) == len(strategies.FAMILIES)
    stated = re.compile(r"^  (\w+): stated (\d\.\d\d), right (\d\.\d\d)$")
    calibrated = [stated.match(line) for line in lines if stated.match(line)]
    assert sorted(m[1] for m in calibrated) == sorted(strategies.FAMILIES)
    assert all(0 < float(m[2]) <= 1 for m in calibrated)  # three-stage states a P(best)
    hits = re.compile(r"^  (\w+): share x B/K (\d+\.\d\d), right: three-stage [01]\.\d\d, ")
    found = [m for line in lines if (m := hits.match(line))]
    assert sorted(m[1] for m in found) == sorted(strategies.FAMILIES)
    assert [float(m[2]) for m in found] == sorted(float(m[2]) for m in found)
    ece = re.compile(r"^  at (the switch|the end): (\d+) runs, pooled ECE (\d\.\d{3})$")
    reliable = [ece.match(line) for line in lines if ece.match(line)]
    assert [m[1] for m in reliable] == ["the switch", "the end"]
    runs = int(reliable[1][2])
    assert runs == len(strategies.FAMILIES) * strategies.parse_args(["--quick"]).seeds
    binned = re.compile(r"^    P\(best\) in \[(\d\.\d\d), (\d\.\d\d)\]: (\d+) runs, ")
    counts = [int(m[3]) for line in lines if (m := binned.match(line))]
    assert sum(counts) == 2 * runs  # every run in one bin, at the switch and at the end
    assert any(line.startswith("wall time: ") for line in lines)
    assert plot.read_bytes()[:8] == diagram.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_strategy_run_on_fewer_seeds_is_compared_on_the_seeds_it_ran():
    def record(strategy, seed, score):
        return strategies.Record("smooth", strategy, seed, 30, score, seed == 0)

    records = [record("two-stage", s, 0.5) for s in range(5)]
    records += [record("joint GP", s, 0.4 + 0.1 * s) for s in range(3)]
    row = strategies.summarise(records, "smooth", "joint GP")
    assert row.scores.tolist() == pytest.approx([0.4, 0.5, 0.6])
    assert row.ratios[1.0].tolist() == pytest.approx([0.8, 1.0, 1.2])
    assert row.rights.tolist() == [True, False, False]


def test_the_default_grid_gives_each_family_ten_evaluations_per_candidate():
    args = strategies.parse_args([])
    assert args.seeds >= 30
    assert args.bases == {
        f: 10 * len(strategies.get_family(f).candidates) for f in strategies.FAMILIES
    }
    assert min(args.bases.values()) == 30
    for family, grid in args.grids.items():
        assert args.bases[family] in grid


def _records(scores: dict[str, float], family: str = "smooth") -> list[strategies.Record]:
    return [
        strategies.Record(family, name, seed, 30, score, False)
        for seed in range(3)
        for name, score in scores.items()
    ]


def test_best_peer_is_the_best_non_three_stage_strategy_and_losses_name_it():
    scores = {name: 0.5 for name in STRATEGIES} | {"three-stage": 0.6, "joint TPE": 0.7}
    records = _records(scores)
    assert strategies.best_peer(records, "smooth") == "joint TPE"
    assert strategies.losses(records, ["smooth"], {"smooth": 30}) == [
        "smooth: three-stage 0.600 < best peer joint TPE 0.700 (median true score at budget 30)"
    ]
    records = _records(scores | {"three-stage": 0.8})
    assert strategies.losses(records, ["smooth"], {"smooth": 30}) == []


def test_summary_line_ratios_come_from_three_stage_vs_two_stage():
    records = [
        strategies.Record("smooth", name, seed, budget, score, name == "three-stage", budget / 20)
        for seed in range(3)
        for budget, three, two in ((10, 0.3, 0.2), (20, 0.6, 0.4))
        for name, score in (("three-stage", three), ("two-stage", two))
    ]
    line = strategies.summary_line(records, ["smooth"])
    # 0.6 / 0.4 = 1.5 at 20; 0.3 / 0.4 = 0.75 at 10: the ratio curve reaches 1 at 10 + 10 / 3
    assert line == (
        "three-stage vs two-stage: score ratio 1.50, budget ratio 0.67, right-candidate rate 1.00"
    )


def test_budget_to_match_interpolates_the_first_crossing():
    assert strategies.budget_to_match({10: 0.5, 20: 1.0, 40: 0.9}, 20) == 1.0
    assert strategies.budget_to_match({10: 0.5, 20: 0.9, 40: 1.1}, 20) == pytest.approx(1.5)
    assert strategies.budget_to_match({10: 1.2, 20: 1.0}, 20) == 0.5
    assert strategies.budget_to_match({10: 0.1, 20: 0.2}, 20) == math.inf


@pytest.mark.parametrize("family", ["smooth", "hidden"])
@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_spends_exactly_its_budget(monkeypatch, name, family):
    made: list[runners.CountingObjective] = []

    class Recording(runners.CountingObjective):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(runners, "CountingObjective", Recording)
    family = FAMILIES[family]
    budget = 13 if len(family.candidates) == 3 else 21
    choice = STRATEGIES[name](family, budget, 0)
    assert [o.calls for o in made] == [budget]
    assert choice.candidate in family.candidates
    assert 0.0 <= family.true(choice.candidate, choice.params) <= 1.0
    values, dists = SPACE.trial_values(choice.params)  # a valid point of the space
    for key, value in values.items():
        assert dists[key]._contains(dists[key].to_internal_repr(value)), (key, value)


def test_successive_halving_halves_the_candidates_each_round(monkeypatch):
    pulled: list[str] = []
    original = peers._Arm.pull

    def pull(self):
        pulled.append(self.name)
        return original(self)

    monkeypatch.setattr(peers._Arm, "pull", pull)
    peers.successive_halving(FAMILIES["hidden"], 48, 0)  # 8 -> 4 -> 2 -> 1, 16 a round
    rounds = [pulled[:16], pulled[16:32], pulled[32:]]
    assert [len(set(r)) for r in rounds] == [8, 4, 2]
    assert set(rounds[2]) <= set(rounds[1]) <= set(rounds[0])


def test_max_ucb_pulls_every_arm_then_the_one_with_the_highest_bound(monkeypatch):
    rewards = {"a": 0.3, "b": 0.9, "c": 0.5}  # each arm's observed score, fixed
    arms: dict[str, peers._Arm] = {}
    original = peers._Arm.pull

    def pull(self):
        arms[self.name] = self
        original(self)
        self.scores[-1] = rewards[self.name]
        return self.scores[-1]

    monkeypatch.setattr(peers._Arm, "pull", pull)
    peers.max_ucb(FAMILIES["smooth"], 40, 0)
    pulls = {name: len(arm.scores) for name, arm in arms.items()}
    assert sum(pulls.values()) == 40 and min(pulls.values()) >= 1
    assert pulls["b"] > pulls["c"] > pulls["a"]


def test_the_ablations_run_the_tuner_with_one_option_changed(monkeypatch):
    calls = []
    monkeypatch.setattr(runners, "three_stage", lambda *a, **k: calls.append(k))
    runners.three_stage_with_psm_prior(FAMILIES["smooth"], 12, 0)
    runners.three_stage_with_tpe(FAMILIES["smooth"], 12, 0)
    assert calls == [{"psm": True}, {"sampler": "tpe"}]


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


@pytest.mark.parametrize("name", ["pass_at_1", "hidden"])
def test_pass_rate_families_observe_binomial_means_of_the_true_score(name):
    family = FAMILIES[name]
    n = family.problems
    candidate = family.best_candidate
    optimum = family.surfaces[candidate].optimum
    rng = np.random.default_rng(5)
    seen = np.array([family.observe(candidate, optimum, rng) for _ in range(4000)])
    assert np.allclose(seen * n, np.round(seen * n))  # k / N
    p = family.true(candidate, optimum)
    assert seen.mean() == pytest.approx(p, abs=0.01)
    assert seen.std() == pytest.approx(math.sqrt(p * (1 - p) / n), rel=0.1)


def test_family_sizes_and_pass_rate_problem_counts():
    assert len(FAMILIES["pass_at_1"].candidates) == 5
    assert len(FAMILIES["hidden"].candidates) == 8
    assert FAMILIES["pass_at_1"].problems == 164 and FAMILIES["hidden"].problems == 20


def test_pass_at_1_every_model_is_best_at_greedy_and_the_best_is_the_sharpest():
    family = FAMILIES["pass_at_1"]
    drops = {}
    for name, surface in family.surfaces.items():
        optimum = surface.optimum
        assert optimum["temperature"] == 0.0
        warm = {**optimum, "temperature": 0.6, "top_p": 1.0, "top_k": 100}
        hot = {**warm, "temperature": 1.2}
        assert surface(optimum) > surface(warm) > surface(hot)
        drops[name] = (surface(optimum) - surface(warm)) / surface(optimum)
    assert max(drops, key=drops.get) == family.best_candidate


def test_hidden_family_best_region_is_empty_of_the_others():
    family = FAMILIES["hidden"]
    best = family.surfaces[family.best_candidate]
    assert best.optimum["temperature"] > 1.0 and best.optimum["top_p"] <= 0.6
    for name, surface in family.surfaces.items():
        if name != family.best_candidate:
            # the others are at their floor where the best peaks, and vice versa
            assert surface(best.optimum) < 0.15, name
            assert best(surface.optimum) < 0.15, name


def test_peak_region_width_of_a_gaussian_bump_is_two_sds_clipped_to_the_range():
    mode = landscapes.Mode(landscapes._p(0.75, 0.75, 10, 1.15, 128), 0.1, 0.5)
    family = landscapes.SyntheticFamily("t", "", {"a": landscapes.Surface(0.2, (mode,))})
    assert landscapes.peak_region_width(family, "a") == pytest.approx([0.2] * 5, abs=0.011)
    greedy = landscapes.Mode(landscapes._p(0.0, rp=1.15, m=128), 0.1, 0.5)
    family = landscapes.SyntheticFamily("t", "", {"a": landscapes.Surface(0.2, (greedy,))})
    width = landscapes.peak_region_width(family, "a")
    assert width[0] == pytest.approx(0.1, abs=0.011)  # temperature: only above 0


def test_winning_share_is_the_volume_where_the_best_beats_the_tuned_runner_up():
    flat = landscapes.Surface(0.5, (landscapes.Mode(landscapes._p(0.5), 0.1, 0.0),))
    # greedy only: a bump that is 0 wide in temperature, top_p and top_k and flat along
    # repetition penalty and length covers random search's greedy half, and nothing else
    greedy = landscapes.Mode(landscapes._p(0.0), (1e-3, 1e-3, 1e-3, 1e3, 1e3), 0.4)
    family = landscapes.SyntheticFamily(
        "t", "", {"best": landscapes.Surface(0.3, (greedy,)), "flat": flat}
    )
    assert landscapes.winning_share(family) == pytest.approx(0.5, abs=0.01)
    higher = landscapes.Surface(0.6, (landscapes.Mode(landscapes._p(0.5), 0.1, 0.0),))
    family = landscapes.SyntheticFamily("t", "", {"best": higher, "flat": flat})
    assert landscapes.winning_share(family) == 1.0
    # a 5-d bump: a small volume, however wide along each axis
    bump = landscapes.Mode(landscapes._p(0.75, 0.75, 10, 1.15, 128), 0.1, 0.5)
    family = landscapes.SyntheticFamily(
        "t", "", {"best": landscapes.Surface(0.2, (bump,)), "flat": flat}
    )
    assert 0 < landscapes.winning_share(family) < 0.01
    assert landscapes.qualification(family).width >= landscapes.QUALIFYING_WIDTH


@pytest.mark.parametrize("name", list(strategies.FAMILIES))
def test_every_family_qualifies(name):
    q = landscapes.qualification(strategies.get_family(name))
    assert q.qualifies, (q.gap, q.width)


def test_replay_family_states_its_optimum_point():
    family = replay_family()
    for c in family.candidates:
        u = family.optimum_unit(c)
        assert family.unit_values(c, u[None])[0] == pytest.approx(family.peak_of(c))


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


def test_the_expected_calibration_error_against_values_worked_by_hand():
    ece = strategies.expected_calibration_error
    # honest in every bin: no gap
    assert ece([0.6, 0.6, 0.6, 0.6, 0.6], [True, True, True, False, False]) == pytest.approx(0)
    # 0.9 stated twice, right once; 0.3 stated twice, never right: (2 * 0.4 + 2 * 0.3) / 4
    assert ece([0.9, 0.9, 0.3, 0.3], [True, False, False, False]) == pytest.approx(0.35)
    # a stated 1.0 falls in the last bin, not past it
    assert ece([1.0, 1.0], [False, False]) == pytest.approx(1.0)
