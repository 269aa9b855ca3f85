"""RunFollower: a viewer of the store sees what a live subscriber sees."""

import pytest

from engine import (
    Message,
    RankingUpdated,
    RunFailed,
    RunFinished,
    RunStarted,
    SampleRecorded,
    StageChanged,
    Store,
    Tuner,
    TunerError,
)
from engine.run import RunFollower
from tests.objectives import landscape


def _run_with_follower(tmp_path, budget=12, **kwargs):
    """Run a tuner, polling a follower (own connection) after every live event."""
    path = tmp_path / "samples.db"
    live, followed = [], []
    tuner = Tuner(objective=landscape, candidates=["a", "b", "c"], budget=budget, seed=1,
                  store=path, run_id="r1", **kwargs)  # fmt: skip
    reader = Store(path)
    follower = None

    def on_event(event):
        nonlocal follower
        live.append(event)
        if isinstance(event, SampleRecorded):
            follower = follower or RunFollower(reader, "r1")
            followed.extend(follower.poll())

    tuner.subscribe(on_event)
    result = tuner.run()
    followed.extend(follower.poll())
    return live, followed, result


def test_follower_replays_samples_rankings_and_the_result_of_a_live_run(tmp_path):
    live, followed, result = _run_with_follower(tmp_path)

    assert isinstance(followed[0], RunStarted)
    assert followed[0].candidates == ("a", "b", "c") and followed[0].budget == 12

    def of(events, kind):
        return [e for e in events if isinstance(e, kind)]

    assert [e.sample for e in of(followed, SampleRecorded)] == [
        e.sample for e in of(live, SampleRecorded)
    ]
    assert [e.budget_used for e in of(followed, SampleRecorded)] == list(range(1, 13))
    # repr: early rankings hold NaN for candidates without samples, and NaN != NaN
    assert [repr(e.ranking) for e in of(followed, RankingUpdated)] == [
        repr(e.ranking) for e in of(live, RankingUpdated)
    ]
    stages = [e.stage for e in of(followed, StageChanged)]
    assert stages == ["sampling", "selection", "tuning"]
    (finished,) = of(followed, RunFinished)
    assert finished.result == result and not finished.stopped


def test_follower_is_incremental_and_sees_messages(tmp_path):
    path = tmp_path / "samples.db"
    Tuner(objective=landscape, candidates=["a", "b"], budget=4, seed=0, store=path,
          run_id="r2").run()  # fmt: skip
    store = Store(path)
    follower = RunFollower(store, "latest")
    assert follower.run_id == "r2"
    first = follower.poll()
    assert sum(isinstance(e, SampleRecorded) for e in first) == 4
    assert follower.poll() == []  # nothing new
    store.add_message("r2", "warning", "out of memory at batch 8; retrying with 4")
    (message,) = follower.poll()
    assert message == Message("r2", "warning", "out of memory at batch 8; retrying with 4")


def _stopped_after_3(path, run_id: str) -> None:
    """A 10-sample objective run stopped after its third sample."""
    tuner = Tuner(objective=landscape, candidates=["a", "b"], budget=10, seed=0,
                  store=path, run_id=run_id)  # fmt: skip
    tuner.subscribe(lambda e: isinstance(e, SampleRecorded) and e.budget_used == 3 and tuner.stop())
    tuner.run()


def test_follower_reports_a_stopped_run_with_its_best_so_far(tmp_path):
    path = tmp_path / "samples.db"
    _stopped_after_3(path, "r3")
    events = RunFollower(Store(path), "r3").poll()
    (finished,) = [e for e in events if isinstance(e, RunFinished)]
    assert finished.stopped and finished.result.n_samples == 3
    samples = [e.sample for e in events if isinstance(e, SampleRecorded)]
    assert finished.result.best_score == max(
        s.score for s in samples if s.candidate == finished.result.best_candidate
    )


def test_a_viewer_of_a_stopped_run_sees_it_go_on_when_resumed(tmp_path):
    from tui.run.state import RunState

    path = tmp_path / "samples.db"
    _stopped_after_3(path, "r4")
    follower, state = RunFollower(Store(path), "r4"), RunState()
    for event in follower.poll():
        state.apply(event)
    assert state.done and state.stopped
    resumed = Tuner.resume("r4", store=path, objective=landscape)
    resumed.subscribe(
        lambda e: isinstance(e, SampleRecorded) and e.budget_used == 5 and resumed.stop()
    )
    resumed.run()
    Store(path).update_run("r4", status="running")  # as while the resumed process runs
    events = follower.poll()
    assert isinstance(events[-1], RunStarted) and events[-1].budget_used == 5
    for event in events:
        state.apply(event)
    assert not state.done and state.budget_used == 5 and len(state.samples) == 5


def test_follower_reports_a_failed_run(tmp_path):
    path = tmp_path / "samples.db"

    def objective(candidate, params):
        return float("nan") if candidate == "b" else 0.5

    tuner = Tuner(objective=objective, candidates=["a", "b"], budget=4, store=path, run_id="r4")
    with pytest.raises(TunerError):
        tuner.run()
    events = RunFollower(Store(path), "r4").poll()
    (failed,) = [e for e in events if isinstance(e, RunFailed)]
    assert "nan" in failed.error.lower()


def test_follower_counts_a_tokens_budget_in_tokens(tmp_path):
    from tests.objectives import token_landscape

    path = tmp_path / "samples.db"
    Tuner(objective=token_landscape, candidates=["a", "b"], budget="2000 tokens", seed=0,
          store=path, run_id="tok").run()  # fmt: skip
    events = RunFollower(Store(path), "tok").poll()
    started = events[0]
    assert (started.budget, started.budget_unit) == (2000, "tokens")
    recorded = [e for e in events if isinstance(e, SampleRecorded)]
    assert recorded[-1].budget_used == sum(e.sample.generated_tokens for e in recorded)
    assert recorded[-1].budget_used >= 2000 and recorded[-1].budget_unit == "tokens"
