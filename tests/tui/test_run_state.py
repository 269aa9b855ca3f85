"""RunState: what the run screen shows, folded from engine events."""

from engine import RankingUpdated, RunFinished, RunStarted, SampleRecorded, StageChanged
from engine.records import TuneResult
from engine.selection._psm import CandidateEstimate
from engine.store._store import Sample
from tui.run.state import RunState


def _sample(candidate, trial, score, at, stage="sampling"):
    params = {"temperature": 0.0}
    return Sample("r", candidate, stage, trial, params, score, seconds=10.0, created_at=at)


def _estimate(candidate, score, n=2):
    return CandidateEstimate(candidate, score, score, score, score, score, n, n)


def test_state_tracks_progress_leader_elimination_and_pace():
    state = RunState(started_at=1000.0)
    state.apply(RunStarted("r", ("a", "b"), 10, 0))
    for i, (name, score) in enumerate([("a", 0.2), ("b", 0.5), ("a", 0.4), ("b", 0.3)], 1):
        state.apply(SampleRecorded("r", _sample(name, i // 2, score, 1000.0 + 10 * i), i, 10))
    state.apply(RankingUpdated("r", (_estimate("b", 0.5), _estimate("a", 0.4)), 4))

    assert state.leader == "b" and state.answer().best_score == 0.5
    assert state.best("a").score == 0.4 and not state.eliminated("a")
    # 4 of 10 samples in 40 s: 6 left at 10 s each
    assert state.elapsed(now=1040.0) == 40.0 and state.remaining(now=1040.0) == 60.0

    state.apply(StageChanged("r", "selection", "b selected", winner="b"))
    assert state.winner == "b" and state.eliminated("a") and not state.eliminated("b")


def test_a_finished_run_ends_at_its_last_sample_and_keeps_the_final_ranking():
    state = RunState(started_at=5000.0)
    state.apply(RunStarted("r", ("a",), 2, 0))
    state.apply(SampleRecorded("r", _sample("a", 0, 0.1, 1020.0), 1, 2))
    state.apply(SampleRecorded("r", _sample("a", 1, 0.3, 1030.0), 2, 2))
    final = (_estimate("a", 0.3),)
    result = TuneResult("r", "a", {"temperature": 0.0}, 0.3, final, {"pass@1": 0.5}, 2)
    state.apply(RunFinished("r", result))
    assert state.done and state.stage == "finished" and state.ranking == final
    assert state.elapsed(now=99999.0) == 20.0  # 1010 (first sample began) to 1030
    assert state.remaining() is None and state.holdout() == {"pass@1": 0.5}


def test_a_minutes_budget_estimates_the_time_left_from_the_budget():
    state = RunState(started_at=0.0)
    state.apply(RunStarted("r", ("a",), 30, 0, budget_unit="minutes"))
    state.apply(SampleRecorded("r", _sample("a", 0, 0.1, 600.0), 10.0, 30, budget_unit="minutes"))
    assert state.remaining(now=600.0) == 20 * 60


def test_progress_targets_follow_the_samples_once_a_winner_is_selected():
    from tui.run.ranking import _target

    state = RunState()
    state.apply(RunStarted("r", ("a", "b", "c"), 12, 0))
    # stage 1 gave "c" 1 sample and "a" and "b" 3 each, as the evidence asked
    order = ["a", "b", "c", "a", "b", "a", "b"]
    for i, name in enumerate(order):
        sample = _sample(name, order[:i].count(name), 0.1, 1000.0 + i)
        state.apply(SampleRecorded("r", sample, i + 1, 12))
    assert [_target(state, n) for n in "abc"] == [0, 0, 0]  # not known before selection
    state.apply(StageChanged("r", "selection", "a selected", winner="a"))
    assert [_target(state, n) for n in "abc"] == [12 - 4, 3, 1]


def test_samples_stopped_early_are_their_own_series_and_never_a_best():
    from dataclasses import replace

    from tui.run.plots import STOPPED_EARLY, score_series

    state = RunState()
    state.apply(RunStarted("r", ("a", "b"), 10, 0))
    stopped = replace(_sample("a", 1, 0.9, 20.0), fidelity=0.25, problem_scores=(1, 1, 1, 0.6))
    for i, s in enumerate([_sample("a", 0, 0.4, 10.0), stopped, _sample("b", 0, 0.5, 30.0)], 1):
        state.apply(SampleRecorded("r", s, i, 10))
    assert score_series(state) == {"a": ([1], [0.4]), "b": ([3], [0.5]),
                                   STOPPED_EARLY: ([2], [0.9])}  # fmt: skip
    assert state.best("a").score == 0.4  # 0.9 on 4 problems is no score to compare
