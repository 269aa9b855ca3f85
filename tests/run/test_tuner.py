import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine import (
    Budget,
    ConfigError,
    Message,
    RankingUpdated,
    RunFinished,
    RunStarted,
    SampleRecorded,
    StageChanged,
    Store,
    Tuner,
    TunerError,
)
from engine.evaluation import ObjectiveEvaluator
from engine.selection import EXPLORE_EACH, MAX_SWITCH_BLOCK, MIN_STAGE1_SAMPLES
from tests import ROOT
from tests.objectives import OPTIMA, cost_landscape, landscape, noisy_landscape, token_landscape


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

    assert isinstance(events[0], RunStarted)
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
        ({"budget": "3 samples"}, "too small"),
        ({"budget": "ten"}, "not understood"),
        ({"budget": "1.5"}, "whole number"),
        ({"budget": True}, "amount"),
        ({"budget": "1000 tokens", "stage1_fraction": 0}, "fraction"),
        ({"sampler": "cmaes"}, "unknown sampler"),
        ({"psm": "maybe"}, "psm must be on or off"),
        ({"draws": 3}, "draws must be a whole number >= 16"),
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


def test_a_budget_string_of_samples_is_the_same_run_as_an_int(tmp_path):
    db = tmp_path / "s.db"
    a = Tuner(objective=landscape, candidates=["a", "b"], budget=8, store=db, run_id="int")
    b = Tuner(objective=landscape, candidates=["a", "b"], budget="8 samples", store=db,
              run_id="str")  # fmt: skip
    assert a.budget == b.budget == Budget(8)
    a.run(), b.run()
    store = Store(db)
    assert [s.params for s in store.samples("int")] == [s.params for s in store.samples("str")]
    assert store.get_run("str").budget == 8 and store.get_run("str").config["budget"] == {
        "amount": 8,
        "unit": "samples",
    }


def test_a_tokens_budget_balances_stage_one_then_spends_the_rest_on_the_winner(tmp_path):
    db = tmp_path / "s.db"
    events = []
    tuner = Tuner(objective=token_landscape, candidates=["a", "b", "c"], budget="3000 tokens",
                  seed=2, store=db, run_id="tok")  # fmt: skip
    tuner.subscribe(events.append)
    result = tuner.run()

    started = events[0]
    assert isinstance(started, RunStarted)
    assert (started.budget, started.budget_unit) == (3000, "tokens")
    recorded = [e for e in events if isinstance(e, SampleRecorded)]
    assert all(e.budget_unit == "tokens" and e.budget == 3000 for e in recorded)
    costs = [e.sample.generated_tokens for e in recorded]
    assert costs == [e.sample.params["max_new_tokens"] for e in recorded]
    # budget_used is the running total of the samples' generated tokens
    assert [e.budget_used for e in recorded] == [sum(costs[: i + 1]) for i in range(len(costs))]

    stage1 = [e for e in recorded if e.sample.stage == "sampling"]
    first = 3 * MIN_STAGE1_SAMPLES  # round-robin, whatever they cost
    assert [e.sample.candidate for e in stage1[:first]] == ["a", "b", "c"] * MIN_STAGE1_SAMPLES
    # after them, no stage-1 sample starts once half the budget is spent
    assert all(e.budget_used < 1500 for e in stage1[first - 1 : -1])
    tuning = [e for e in recorded if e.sample.stage == "tuning"]
    assert tuning and {e.sample.candidate for e in tuning} == {result.best_candidate}
    # stage 3 stopped at the first sample that spent the budget
    assert recorded[-1].budget_used >= 3000 > recorded[-2].budget_used
    assert result.n_samples == len(recorded)
    assert isinstance(events[-1], RunFinished) and not events[-1].stopped

    run = Store(db).get_run("tok")
    assert run.status == "finished" and run.budget == 3000
    assert run.config["budget"] == {"amount": 3000, "unit": "tokens"}
    assert Tuner.resume("tok", store=db, objective=token_landscape).budget == Budget(3000, "tokens")


@pytest.mark.parametrize("stop_at", [700, 2200])  # during stage 1, and during stage 3
def test_a_stopped_tokens_budget_run_resumes_to_the_same_end(tmp_path, stop_at):
    db = tmp_path / "s.db"
    settings = {"objective": token_landscape, "candidates": ["a", "b", "c"],
                "budget": "3000 tokens", "seed": 5, "store": db}  # fmt: skip
    full = Tuner(**settings, run_id="full").run()

    tuner = Tuner(**settings, run_id="split")
    tuner.subscribe(
        lambda e: isinstance(e, SampleRecorded) and e.budget_used >= stop_at and tuner.stop()
    )
    stopped = tuner.run()
    assert stopped.n_samples < full.n_samples
    assert Store(db).get_run("split").status == "stopped"
    spent_when_stopped = Budget(3000, "tokens").spent(Store(db).samples("split"))

    resumed = Tuner.resume("split", store=db, objective=token_landscape)
    seen = []
    resumed.subscribe(lambda e: isinstance(e, RunStarted) and seen.append(e))
    result = resumed.run()
    assert seen[0].budget_unit == "tokens" and seen[0].budget_used == spent_when_stopped
    assert seen[0].resumed_samples == stopped.n_samples
    store = Store(db)
    keys = lambda run: [(s.candidate, s.stage, s.params) for s in store.samples(run)]  # noqa: E731
    assert keys("split") == keys("full")
    assert result.n_samples == full.n_samples
    assert (result.best_candidate, result.best_params) == (full.best_candidate, full.best_params)


def test_a_tokens_budget_needs_an_objective_that_reports_its_cost():
    tuner = Tuner(objective=landscape, candidates=["a", "b"], budget="1000 tokens")
    with pytest.raises(TunerError, match="without a cost"):
        tuner.run()


def test_a_cost_budget_spent_by_stage_one_warns_and_tunes_nothing():
    events = []
    tuner = Tuner(objective=token_landscape, candidates=["a", "b"], budget="100 tokens")
    tuner.subscribe(events.append)
    result = tuner.run()
    stages = [e.sample.stage for e in events if isinstance(e, SampleRecorded)]
    assert stages == ["sampling"] * (2 * MIN_STAGE1_SAMPLES)
    warnings = [e.text for e in events if isinstance(e, Message) and e.level == "warning"]
    assert len(warnings) == 1 and "nothing is left to tune" in warnings[0]
    assert result.best_candidate in ("a", "b") and result.best_params


def test_a_minutes_budget_counts_the_measured_seconds():
    def slow(candidate, params):
        time.sleep(0.02)
        return landscape(candidate, params)

    events = []
    tuner = Tuner(objective=slow, candidates=["a", "b"], budget="0.4s", seed=1)
    tuner.subscribe(events.append)
    tuner.run()
    recorded = [e for e in events if isinstance(e, SampleRecorded)]
    assert all(e.budget_unit == "minutes" and e.budget == pytest.approx(0.4 / 60) for e in recorded)
    assert all(e.sample.seconds >= 0.02 for e in recorded)
    minutes = [sum(e.sample.seconds for e in recorded[: i + 1]) / 60 for i in range(len(recorded))]
    assert [e.budget_used for e in recorded] == pytest.approx(minutes)
    assert recorded[-1].budget_used >= 0.4 / 60 > recorded[-2].budget_used
    assert any(e.sample.stage == "tuning" for e in recorded)


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


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True])
def test_a_seed_outside_what_the_samplers_and_the_store_hold_is_refused(seed):
    with pytest.raises(ConfigError, match="seed must be a whole number between 0 and 2"):
        Tuner(objective=lambda c, p: 0.0, candidates=["a", "b"], seed=seed)


# -- stage 1 follows the evidence -------------------------------------------------------------


def _stage1_counts(samples):
    counts: dict[str, int] = {}
    for s in samples:
        if s.stage == "sampling":
            counts[s.candidate] = counts.get(s.candidate, 0) + 1
    return counts


def _out(events) -> list[str]:
    return [e.text for e in events if isinstance(e, Message) and "out of stage 1" in e.text]


def test_stage_one_gives_a_dominated_candidate_less_and_can_eliminate_it(tmp_path):
    # "c" peaks at 0.5, far below "b" (0.8): after its round-robin samples it gets at most
    # one more (its unexplored space leaves it a small chance), the winner gets most of
    # the budget, and c's samples still count in the ranking.
    db = tmp_path / "s.db"
    events = []
    tuner = Tuner(objective=landscape, candidates=["a", "b", "c"], budget=40, seed=1, store=db)
    tuner.subscribe(events.append)
    result = tuner.run()
    counts = _stage1_counts(Store(db).samples(tuner.run_id))
    assert result.best_candidate == "b" and result.n_samples == 40
    assert EXPLORE_EACH <= counts["c"] <= EXPLORE_EACH + 1
    assert {e.candidate: e.n for e in result.ranking}["b"] > 40 / 2
    assert {e.candidate: e.n for e in result.ranking}["c"] == counts["c"]
    assert all(not text.startswith(result.best_candidate) for text in _out(events))


def test_switch_blocks_keep_a_candidate_for_a_block_and_resume_to_the_same_end(tmp_path):
    # --switch-block 4: each candidate's part of each round of the exploration in one
    # block (the shared default point and one proposal, then the rest: one model load,
    # not two), then each top-two pick kept for up to four samples in a row; a stopped
    # run resumes to the same samples.
    db = tmp_path / "s.db"
    kwargs = {"objective": landscape, "candidates": ["a", "b", "c"], "budget": 30, "seed": 2,
              "store": db, "switch_block": 4}  # fmt: skip
    full = Tuner(**kwargs, run_id="full").run()
    store = Store(db)
    order = [s.candidate for s in store.samples("full", stage="sampling")]
    # (c, loaded last, goes on first)
    assert order[:12] == ["a", "a", "b", "b", "c", "c", "c", "c", "a", "a", "b", "b"]
    switches = sum(x != y for x, y in zip(order[11:], order[12:], strict=False))
    assert switches <= (len(order) - 12 + 3) // 4  # blocks after exploration too
    _assert_stopped_and_resumed_ends_as(full, kwargs, stop_at=6)


class _OneResident(ObjectiveEvaluator):
    """The objective's evaluations as if one model fitted at a time: each takes 1 s, and
    one of a candidate other than the last one's loads its model in place of the last
    one's in ``switch`` seconds more (what a run's TaskEvaluator measures with a real
    residency)."""

    def __init__(self, objective, candidates, switch: float) -> None:
        super().__init__(objective, candidates)
        self.switch, self.last = switch, None

    def evaluate(self, candidate, params, **kwargs):
        evaluation = super().evaluate(candidate, params, **kwargs)
        switched = self.switch if self.last not in (None, candidate) else 0.0
        self.last = candidate
        return replace(evaluation, seconds=1.0 + switched, switch_seconds=switched)


def _one_resident(switch: float) -> type[Tuner]:
    """A Tuner whose evaluations switch models as :class:`_OneResident`'s do."""

    class OneResidentTuner(Tuner):
        def _evaluator(self):
            return _OneResident(self.objective, self.names, switch)

    return OneResidentTuner


def test_auto_switch_blocks_begin_once_a_model_is_loaded_again_and_resume_exactly(tmp_path):
    # --switch-block auto (the default): b's first sample evicts a's model, 20 s against
    # 1 s per evaluation, so from then on a candidate keeps its model for the most samples
    # in a row; where switching costs next to nothing, nothing changes.
    db = tmp_path / "s.db"
    kwargs = {"objective": landscape, "candidates": ["a", "b", "c"], "budget": 30, "seed": 2,
              "store": db}  # fmt: skip
    events = []
    tuner = _one_resident(20.0)(**kwargs, run_id="full")
    tuner.subscribe(events.append)
    full = tuner.run()
    order = [s.candidate for s in Store(db).samples("full", stage="sampling")]
    assert order[:12] == ["a", "b", "b", "c", "c", "a", "a", "a", "b", "b", "c", "c"]
    switches = sum(x != y for x, y in zip(order[11:], order[12:], strict=False))
    assert switches <= (len(order) - 12 + MAX_SWITCH_BLOCK - 1) // MAX_SWITCH_BLOCK
    said = [e.text for e in events if isinstance(e, Message) and "do not all fit" in e.text]
    assert said == [
        "the models do not all fit --device-memory: a switch of models took 20.0 s, so a "
        f"candidate now gets {MAX_SWITCH_BLOCK} stage-1 samples in a row (--switch-block)"
    ]
    _assert_stopped_and_resumed_ends_as(full, kwargs, stop_at=8, kind=_one_resident(20.0))

    cheap = _one_resident(0.01)(**{**kwargs, "store": None}).run()  # costs next to nothing
    afresh = Tuner(**{**kwargs, "store": None}, switch_block=1).run()
    counts = lambda result: [(e.candidate, e.n) for e in result.ranking]  # noqa: E731
    assert counts(cheap) == counts(afresh)


def _assert_stopped_and_resumed_ends_as(full, kwargs, stop_at: int, kind=Tuner) -> None:
    """Run ``kwargs`` as run "split" (a ``kind``, Tuner or a subclass), stopped once
    ``stop_at`` is used, then resumed: it ends with the answer and the samples of the
    uninterrupted run "full"."""
    tuner = kind(**kwargs, run_id="split")
    stop = lambda e: isinstance(e, SampleRecorded) and e.budget_used == stop_at and tuner.stop()  # noqa: E731
    tuner.subscribe(stop)
    tuner.run()
    result = kind.resume("split", store=kwargs["store"], objective=kwargs["objective"]).run()
    assert (result.best_candidate, result.best_params) == (full.best_candidate, full.best_params)
    store = Store(kwargs["store"])
    params = lambda run: [(s.candidate, s.params) for s in store.samples(run)]  # noqa: E731
    assert params("split") == params("full")


def test_elimination_0_eliminates_nothing():
    events = []
    tuner = Tuner(objective=landscape, candidates=["a", "b", "c"], budget=40, seed=1,
                  eliminate=0.0)  # fmt: skip
    tuner.subscribe(events.append)
    tuner.run()
    assert _out(events) == []


def test_a_stopped_run_with_elimination_resumes_to_the_same_end(tmp_path):
    db = tmp_path / "s.db"
    kwargs = {"objective": landscape, "candidates": ["a", "b", "c"], "budget": 24, "seed": 5,
              "store": db, "eliminate": 0.05}  # fmt: skip
    full = Tuner(**kwargs, run_id="full").run()
    _assert_stopped_and_resumed_ends_as(full, kwargs, stop_at=10)


@pytest.mark.parametrize("alpha", [-0.1, 0.5, 1.0])
def test_an_elimination_level_outside_0_to_a_half_is_refused(alpha):
    with pytest.raises(ConfigError, match=r"elimination level must be in \[0, 0.5\)"):
        Tuner(objective=landscape, candidates=["a", "b"], budget=10, eliminate=alpha)


def test_every_ranking_gives_an_interval_around_its_estimate_and_a_p_best():
    tuner = Tuner(objective=noisy_landscape, candidates=["a", "b", "c"], budget=12, seed=2)
    result = tuner.run()
    for e in result.ranking:
        assert e.ci_low <= e.score <= e.ci_high and 0 <= e.prob_best <= 1
    assert sum(e.prob_best for e in result.ranking) == pytest.approx(1.0)


def test_a_run_recorded_before_elimination_existed_resumes_without_it(tmp_path):
    db = tmp_path / "s.db"
    tuner = Tuner(objective=landscape, candidates=["a", "b"], budget=20, store=db, run_id="old",
                  eliminate=0.0)  # fmt: skip
    tuner.subscribe(lambda e: isinstance(e, SampleRecorded) and e.budget_used == 3 and tuner.stop())
    tuner.run()
    with sqlite3.connect(db) as con:  # the config as an older version wrote it
        (config,) = con.execute("select config from runs where id = 'old'").fetchone()
        config = json.loads(config)
        del config["eliminate"]
        con.execute("update runs set config = ? where id = 'old'", [json.dumps(config)])
    resumed = Tuner.resume("old", store=db, objective=landscape)
    assert resumed.settings.eliminate == 0.0
    assert resumed.run().n_samples == 20
