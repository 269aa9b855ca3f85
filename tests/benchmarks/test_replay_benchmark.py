"""The replay family of the strategies benchmark: its recorder writes real per-problem
outcomes, and its oracle is the kernel regression its docstring states."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from benchmarks import record_replay
from benchmarks._strategies.landscapes import SPACE, unit_coordinates
from benchmarks._strategies.replay import DATA, ReplayFamily, load, replay_family
from engine.store import Store

GREEDY = SPACE.default_params()
HOT = {"temperature": 1.5, "top_p": 0.5, "top_k": 1, "repetition_penalty": 1.3,
       "max_new_tokens": 256}  # fmt: skip


def _family() -> ReplayFamily:
    # "a": good when greedy, bad when hot; "b": mediocre everywhere
    return ReplayFamily({
        "a": [(GREEDY, [1.0, 1.0, 0.5, 0.0]), (HOT, [0.0, 0.0, 0.0, 0.0])],
        "b": [(GREEDY, [0.5, 0.5, 0.0, 0.0]), (HOT, [0.5, 0.0, 0.0, 0.0])],
    })  # fmt: skip


def test_true_score_is_the_recorded_mean_at_a_recorded_point_far_from_the_others():
    family = _family()
    assert family.true("a", GREEDY) == pytest.approx(0.625)
    assert family.true("a", HOT) == pytest.approx(0.0, abs=1e-6)
    assert family.best_candidate == "a"
    assert family.best_score == pytest.approx(0.625)


def test_true_score_halfway_between_two_points_is_their_average():
    family = _family()
    u = (unit_coordinates(GREEDY) + unit_coordinates(HOT)) / 2
    assert family.values("b", u[None])[0] == pytest.approx((0.25 + 0.125) / 2)
    assert family.weights("b", u[None])[:, 0] == pytest.approx([0.5, 0.5])


def test_observations_are_recorded_outcomes_whose_mean_is_the_true_score():
    family = _family()
    rng = np.random.default_rng(0)
    # halfway between GREEDY and HOT in unit coordinates: both weigh 1/2
    params = {"temperature": 0.75, "top_p": 0.75, "top_k": 10, "repetition_penalty": 1.15,
              "max_new_tokens": 181}  # fmt: skip
    draws = np.array([family.observe("a", params, rng) for _ in range(4000)])
    # every observation is a mean of four recorded per-problem scores
    assert set(np.round(draws * 8).astype(int)) <= set(range(0, 9))
    assert family.true("a", params) == pytest.approx(0.3125, abs=1e-3)
    assert draws.mean() == pytest.approx(family.true("a", params), abs=0.01)
    # problem by problem, either configuration's outcome: 0.5 * (1 - 0.5) per 1.0 problem
    assert draws.var() == pytest.approx((0.25 + 0.25 + 0.0625) / 16, rel=0.1)


def test_the_shipped_recording_is_complete_and_in_range():
    data = load(DATA)
    family = replay_family()
    assert family.candidates == record_replay.CANDIDATES
    per = {c: [r for r in data["samples"] if r["candidate"] == c] for c in family.candidates}
    assert min(len(rows) for rows in per.values()) >= 10
    for rows in per.values():
        assert rows[0]["params"] == SPACE.default_params()  # the shared default point first
        for row in rows:
            assert len(row["fraction"]) == len(data["problems"])
            assert all(0.0 <= f <= 1.0 for f in row["fraction"])
    recorded_best = max(family.true(r["candidate"], r["params"]) for r in data["samples"])
    assert family.best_score >= recorded_best - 1e-12


def test_the_recorder_writes_real_per_problem_outcomes_and_continues_a_stopped_run(
    tiny_model_dir, tmp_path
):
    store, out = tmp_path / "rec.db", tmp_path / "rec.json.gz"
    candidates = (str(tiny_model_dir), f"{tiny_model_dir}@raw")
    record_replay.record(store, configs=2, problems=2, candidates=candidates)
    data = record_replay.export(store, out)
    assert load(out) == data
    with contextlib.closing(Store(store)) as s:  # a grid: no candidate is dropped early
        assert s.get_run(record_replay.RUN_ID).config["eliminate"] == 0.0
    assert len(data["problems"]) == 2 and len(data["samples"]) == 4
    assert [r["params"] == SPACE.default_params() for r in data["samples"]] == [
        True, True, False, False,
    ]  # fmt: skip
    family = ReplayFamily({
        r["candidate"]: [(r["params"], r["fraction"])] for r in data["samples"]
    })  # fmt: skip
    assert 0.0 <= family.best_score <= 1.0
    # a second call continues the finished run: nothing is evaluated again
    record_replay.record(store, configs=2, problems=2, candidates=candidates)
    assert record_replay.export(store, out) == data
