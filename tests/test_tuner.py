import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import (
    ConfigError,
    RankingUpdated,
    RunFinished,
    RunStarted,
    SampleRecorded,
    StageChanged,
    Store,
    Tuner,
)
from tests.objectives import OPTIMA, cost_landscape, landscape, noisy_landscape

ROOT = Path(__file__).resolve().parents[1]


def test_objective_api_finds_the_best_candidate_and_its_optimum():
    calls = []

    def objective(candidate, params):
        calls.append(candidate)
        return noisy_landscape(candidate, params)

    result = Tuner(objective=objective, candidates=["a", "b", "c"], budget=45, seed=3).run()
    assert result.best_candidate == "b"
    assert abs(result.best_params["temperature"] - OPTIMA["b"]) < 0.25
    assert [e.candidate for e in result.ranking][0] == "b"
    assert len(calls) == 45  # stage 3 reuses stage-1 samples: nothing re-evaluated
    assert result.holdout is None and result.n_samples == 45


def test_events_arrive_in_stage_order_and_the_store_holds_everything(tmp_path):
    events = []
    tuner = Tuner(objective=landscape, candidates=["a", "b"], budget=10, seed=0,
                  store=tmp_path / "s.db", stage1_fraction=0.6)  # fmt: skip
    tuner.subscribe(events.append)
    result = tuner.run()

    assert isinstance(events[0], RunStarted) and events[0].stage1_per_candidate == 3
    stages = [e.stage for e in events if isinstance(e, StageChanged)]
    assert stages == ["sampling", "selection", "tuning"]
    recorded = [e for e in events if isinstance(e, SampleRecorded)]
    assert [e.budget_used for e in recorded] == list(range(1, 11))
    # stage 1 interleaves the candidates, then only the winner is sampled
    assert [e.sample.candidate for e in recorded[:6]] == ["a", "b"] * 3
    assert {e.sample.candidate for e in recorded[6:]} == {result.best_candidate}
    assert sum(isinstance(e, RankingUpdated) for e in events) == 10
    assert isinstance(events[-1], RunFinished) and not events[-1].stopped

    store = Store(tmp_path / "s.db")
    run = store.get_run(tuner.run_id)
    assert run.status == "finished" and run.winner == result.best_candidate
    assert len(store.samples(run.id)) == 10
    assert len(store.rankings(run.id)) == 10
    assert run.result["best_params"] == result.best_params


def test_first_sample_of_every_candidate_is_the_shared_default_point():
    tuner = Tuner(objective=landscape, candidates=["a", "b"], budget=6, seed=0)
    samples = []
    tuner.subscribe(lambda e: isinstance(e, SampleRecorded) and samples.append(e.sample))
    tuner.run()
    firsts = [s.params for s in samples if s.trial == 0]
    assert firsts[0] == firsts[1] == tuner.space.default_params()


def test_stop_then_resume_equals_an_uninterrupted_run(tmp_path):
    db = tmp_path / "s.db"
    full = Tuner(objective=landscape, candidates=["a", "b", "c"], budget=15, seed=7,
                 store=db, run_id="full").run()  # fmt: skip

    tuner = Tuner(objective=landscape, candidates=["a", "b", "c"], budget=15, seed=7,
                  store=db, run_id="split")  # fmt: skip
    tuner.subscribe(lambda e: isinstance(e, SampleRecorded) and e.budget_used == 7 and tuner.stop())
    stopped = tuner.run()
    assert stopped.n_samples == 7
    assert Store(db).get_run("split").status == "stopped"

    resumed = Tuner.resume("split", store=db, objective=landscape)
    seen = []
    resumed.subscribe(lambda e: isinstance(e, RunStarted) and seen.append(e.resumed_samples))
    result = resumed.run()
    assert seen == [7]
    assert result.n_samples == 15
    assert result.best_candidate == full.best_candidate
    assert result.best_params == full.best_params
    store = Store(db)
    params = lambda run: [(s.candidate, s.params) for s in store.samples(run)]  # noqa: E731
    assert params("split") == params("full")


def test_resume_of_an_objective_run_needs_the_objective(tmp_path):
    Tuner(objective=landscape, candidates=["a", "b"], budget=4, store=tmp_path / "s.db",
          run_id="r").run()  # fmt: skip
    with pytest.raises(ConfigError, match="pass objective="):
        Tuner.resume("r", store=tmp_path / "s.db")


def test_objective_may_return_a_cost():
    tuner = Tuner(objective=cost_landscape, candidates=["a", "b"], budget=4)
    samples = []
    tuner.subscribe(lambda e: isinstance(e, SampleRecorded) and samples.append(e.sample))
    tuner.run()
    assert all("cost" in s.metrics for s in samples)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": 3}, "too small"),
        ({"sampler": "cmaes"}, "unknown sampler"),
        ({"criterion": "max"}, "unknown criterion"),
        ({"candidates": ["a", "a"]}, "two candidates are named 'a'"),
        ({"candidates": []}, "no candidates"),
        ({"space": {"top_p": [2, 3]}}, "top_p"),
    ],
)
def test_bad_settings_fail_before_anything_runs(kwargs, message):
    settings = {"objective": landscape, "candidates": ["a", "b"], "budget": 10, **kwargs}
    with pytest.raises(ConfigError, match=message):
        Tuner(**settings)


def test_an_objective_returning_nan_fails_the_run_but_keeps_samples(tmp_path):
    def objective(candidate, params):
        return float("nan") if candidate == "b" and params["temperature"] > 0 else 0.5

    tuner = Tuner(objective=objective, candidates=["a", "b"], budget=8, store=tmp_path / "s.db")
    with pytest.raises(Exception, match="objective returned nan"):
        tuner.run()
    store = Store(tmp_path / "s.db")
    run = store.get_run(tuner.run_id)
    assert run.status == "failed" and "nan" in run.error
    assert len(store.samples(run.id)) >= 2


SCRIPT = """
import sys
from engine import Tuner
from tests.objectives import slow_landscape
Tuner(objective=slow_landscape, candidates=["a", "b", "c"], budget=24, seed=1,
      store=sys.argv[1], run_id=sys.argv[2]).run()
"""


def _count(db: Path, run_id: str) -> int:
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return conn.execute(
                "select count(*) from samples where run_id = ?", [run_id]
            ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [2, 9])  # during stage 1, and during stage 3
def test_a_killed_run_resumes_without_losing_or_duplicating_samples(tmp_path, kill_after):
    db = tmp_path / "s.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(db), "k"], cwd=ROOT, env=env)
    deadline = time.time() + 60
    while _count(db, "k") < kill_after and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _count(db, "k")
    assert kill_after <= before < 24

    from tests.objectives import slow_landscape

    result = Tuner.resume("k", store=db, objective=slow_landscape).run()
    store = Store(db)
    samples = store.samples("k")
    assert len(samples) == 24 == result.n_samples
    keys = [(s.candidate, s.trial) for s in samples]
    assert len(set(keys)) == len(keys)
    assert store.get_run("k").status == "finished"
    uninterrupted = Tuner(objective=slow_landscape, candidates=["a", "b", "c"], budget=24,
                          seed=1, store=db, run_id="u").run()  # fmt: skip
    assert result.best_candidate == uninterrupted.best_candidate
    assert result.best_params == uninterrupted.best_params
