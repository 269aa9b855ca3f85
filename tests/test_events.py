"""engine.events: what a run tells its subscribers, in what order."""

from __future__ import annotations

import dataclasses

import pytest

from engine import (
    STAGES,
    Event,
    RankingUpdated,
    RunFinished,
    RunStarted,
    SampleRecorded,
    StageChanged,
    Tuner,
)
from tests.objectives import landscape


@pytest.fixture(scope="module")
def events() -> list[Event]:
    seen: list[Event] = []
    tuner = Tuner(objective=landscape, candidates=["a", "b", "c"], budget=12, seed=1)
    tuner.subscribe(seen.append)
    tuner.run()
    return seen


def test_a_run_starts_and_finishes_once_and_names_its_run(events):
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert sum(isinstance(e, (RunStarted, RunFinished)) for e in events) == 2
    assert len({e.run_id for e in events}) == 1
    assert events[0].candidates == ("a", "b", "c") and events[0].budget == 12


def test_the_stages_come_in_order(events):
    stages = [e.stage for e in events if isinstance(e, StageChanged)]
    assert stages == sorted(stages, key=STAGES.index) and len(set(stages)) == len(stages)


def test_each_sample_counts_what_is_spent_and_a_ranking_follows_it(events):
    recorded = [e for e in events if isinstance(e, SampleRecorded)]
    assert [e.budget_used for e in recorded] == list(range(1, 13))
    after = [e.n_samples for e in events if isinstance(e, RankingUpdated)]
    assert after == list(range(1, 13))
    assert events[-1].result.n_samples == 12 and not events[-1].stopped


def test_events_cannot_be_changed_by_a_subscriber(events):
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[0].budget = 0  # type: ignore[misc]
