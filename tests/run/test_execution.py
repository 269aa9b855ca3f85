"""The stage machine without a Tuner: a frozen plan, an ``emit`` and a ``checkpoint``."""

from __future__ import annotations

import contextlib

import pytest
import sqlalchemy

from engine import (
    SAMPLING,
    SELECTION,
    TUNING,
    Message,
    RankingUpdated,
    RunFinished,
    RunSettings,
    RunSpec,
    RunStarted,
    SampleRecorded,
    SearchSpace,
    StageChanged,
    Store,
)
from engine.evaluation import ObjectiveEvaluator, build_evaluator
from engine.generation import Candidate
from engine.run._evidence import Evidence
from engine.run._execution import Execution
from engine.run._proposals import Proposals
from engine.run._session import RunPlan, StopRequested
from tests.objectives import PEAKS, landscape, problem_landscape


def _spec(budget: int = 12, **options) -> RunSpec:
    return RunSpec(
        candidates=tuple(Candidate(name=n, model="") for n in "abc"),
        settings=RunSettings.of(budget=budget, seed=5, **options),
        space=SearchSpace(),
        objective=True,
    )


class _PassRates(ObjectiveEvaluator):
    """An objective whose scores are pass rates: the run knows they lie in [0, 1]."""

    score_range = (0.0, 1.0)


def _execute(spec: RunSpec, checkpoint=lambda: None, objective=landscape, rates=False):
    events = []
    with contextlib.closing(Store(":memory:")) as store:
        evaluator = (
            _PassRates(objective, spec.names, problems=spec.problems)
            if rates
            else build_evaluator(spec, objective=objective)
        )
        evaluator.prepare(spec.space)
        execution = Execution(RunPlan("r1", spec, ":memory:"), store, evaluator, None,
                              emit=events.append, checkpoint=checkpoint)  # fmt: skip
        result = execution.execute()
        run = store.get_run("r1")
    return result, events, run


def test_the_three_stages_in_order_within_the_budget():
    spec = _spec()
    result, events, run = _execute(spec)
    stages = [e.stage for e in events if isinstance(e, StageChanged)]
    assert stages == [SAMPLING, SELECTION, TUNING]
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    samples = [e.sample for e in events if isinstance(e, SampleRecorded)]
    assert len(samples) == result.n_samples == 12
    # every candidate's first sample is the shared default point
    firsts = {s.candidate: s.params for s in reversed(samples)}
    assert len({tuple(sorted(p.items())) for p in firsts.values()}) == 1
    winner = next(e.winner for e in events if isinstance(e, StageChanged) and e.stage == TUNING)
    assert all(s.candidate == winner for s in samples if s.stage == TUNING)
    assert result.best_candidate == winner == run.winner
    # the run is stored as its spec says, and reads back as the same spec
    assert run.status == "finished" and RunSpec.of_run(run) == spec


def test_a_checkpoint_that_stops_leaves_a_stopped_run_with_its_answer_so_far():
    calls = []

    def checkpoint():
        calls.append(None)
        if len(calls) > 4:
            raise StopRequested

    result, events, run = _execute(_spec(), checkpoint)
    assert run.status == "stopped" and events[-1] == RunFinished("r1", result, stopped=True)
    assert result.n_samples == 4 == sum(isinstance(e, SampleRecorded) for e in events)


def test_the_same_spec_gives_the_same_run():
    first, _, _ = _execute(_spec())
    again, _, _ = _execute(_spec())
    assert first == again


def test_evidence_ranks_the_committed_samples_and_knows_each_incumbent():
    spec = _spec(budget=30)
    result, events, _ = _execute(spec)
    evidence = Evidence("r2", spec.names, spec.space, spec.settings, lambda s, f: 0.0)
    assert evidence.rank() is None and evidence.ranking == ()
    for event in events:
        if isinstance(event, SampleRecorded):
            evidence.add(event.sample)
    assert evidence.used() == evidence.spent() == 30
    assert {n: len(s) for n, s in evidence.samples.items()} == {
        n: len(evidence.studies[n].trials) for n in spec.names
    }
    ranking = evidence.rank().estimates
    assert ranking[0].candidate == max(PEAKS, key=PEAKS.get) == result.best_candidate
    assert sum(e.prob_best for e in ranking) == pytest.approx(1.0)
    # scores without problems: nothing is complete, so no incumbent to keep up with
    assert evidence.incumbent("b") is None


def test_proposals_start_at_the_default_and_repeat_for_the_same_seed():
    spec = _spec(sampler="tpe")
    evidence = Evidence("r3", spec.names, spec.space, spec.settings, lambda s, f: 0.0)
    proposals = Proposals("r3", evidence, chunks=None)
    job, trial, reference = proposals.propose("a", SAMPLING, 0, winner=None)
    assert job.params == spec.space.default_params() and trial is None and reference is None
    again = Proposals("r3", Evidence("r3", spec.names, spec.space, spec.settings,
                                     lambda s, f: 0.0), chunks=None)  # fmt: skip
    first, _, _ = proposals.propose("b", SAMPLING, 1, winner=None)
    second, _, _ = again.propose("b", SAMPLING, 1, winner=None)
    assert first.params == second.params != spec.space.default_params()


def test_with_problems_a_sample_keeps_up_with_the_leaders_incumbent():
    spec = RunSpec(
        candidates=tuple(Candidate(name=n, model="") for n in "abc"),
        settings=RunSettings.of(budget=12, seed=5),
        space=SearchSpace(), objective=True, problems=24,
    )  # fmt: skip
    result, events, _ = _execute(spec, objective=problem_landscape)
    samples = [e.sample for e in events if isinstance(e, SampleRecorded)]
    assert len(samples[0].problem_scores) == 24 and not samples[0].partial
    # a sample clearly below the best so far stops early, and the run says why
    stopped = [s for s in samples if s.partial]
    notes = {e.text.split(" stopped after")[0] for e in events if isinstance(e, Message)}
    assert stopped and {f"{s.candidate} trial {s.trial}" for s in stopped} <= notes
    # a stopped sample costs its share of the problems: more samples than the budget
    assert len(samples) > 12 and sum(s.fidelity for s in samples) == pytest.approx(12, abs=1)
    assert result.n_samples == len(samples)


def test_a_run_whose_scores_are_rates_ranks_within_their_range():
    # Early-stopped samples are estimated from a few problems' effects, and the posterior
    # of a maximum reaches past the best score: both leave [0, 1] unless bounded.
    spec = RunSpec(
        candidates=tuple(Candidate(name=n, model="") for n in "abc"),
        settings=RunSettings.of(budget=18, seed=5), space=SearchSpace(), objective=True,
        problems=24,
    )  # fmt: skip

    def extremes(events):
        lines = [e for x in events if isinstance(x, RankingUpdated) for e in x.ranking]
        return (min(min(e.ci_low, e.raw_mean, e.adjusted_mean) for e in lines),
                max(max(e.ci_high, e.raw_mean, e.incumbent_mean) for e in lines))  # fmt: skip

    _, free, _ = _execute(spec, objective=problem_landscape)
    low, high = extremes(free)
    assert low < 0 or high > 1  # what bounding is for
    _, bounded, _ = _execute(spec, objective=problem_landscape, rates=True)
    low, high = extremes(bounded)
    assert low >= 0 and high <= 1


def test_an_interrupt_inside_a_mirror_write_still_records_the_stop(tmp_path):
    # Ctrl-C (or SIGTERM) lands while the Optuna mirror writes a sample into the same
    # SQLite file: its transaction is left open, holding the write lock that recording
    # the stop needs. The run closes the mirror first, so the stop is recorded at once.
    spec, location = _spec(), str(tmp_path / "s.db")
    with contextlib.closing(Store(location, timeout=2.0)) as store:
        evaluator = build_evaluator(spec, objective=landscape)
        evaluator.prepare(spec.space)
        execution = Execution(RunPlan("r1", spec, location), store, evaluator, None,
                              emit=lambda _event: None, checkpoint=lambda: None)  # fmt: skip

        def interrupted_mirror_write(event):
            if isinstance(event, SampleRecorded) and event.sample.trial == 1:
                storage = execution.session.mirror.mirror._storage
                session = storage.scoped_session()
                session.execute(sqlalchemy.text("delete from trial_heartbeats"))  # writes
                raise KeyboardInterrupt

        execution.session.subscribers.append(interrupted_mirror_write)
        with pytest.raises(KeyboardInterrupt):
            execution.execute()
        assert store.get_run("r1").status == "stopped"
