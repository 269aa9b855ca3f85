"""Typed events a run reports to its subscribers.

The headless CLI and the Textual app are two consumers of the same stream; neither
reaches into the engine. Events are delivered synchronously on the thread running the
tuner, in order; a subscriber that needs another thread (a UI) hands them over itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.records import CandidateEstimate, Sample, TuneResult


@dataclass(frozen=True)
class Event:
    run_id: str


@dataclass(frozen=True)
class RunStarted(Event):
    """A run starts or resumes.

    ``budget`` is the amount in ``budget_unit`` (``"samples"``, ``"tokens"`` or
    ``"minutes"``; a float for minutes) and ``budget_used`` what the store's samples have
    already spent of it. ``resumed_samples`` counts those samples (0 for a new run).
    """

    candidates: tuple[str, ...]
    budget: float
    resumed_samples: int
    budget_unit: str = "samples"
    budget_used: float = 0


@dataclass(frozen=True)
class StageChanged(Event):
    """The run entered ``stage`` (one of :data:`engine.records.STAGES`). ``winner`` is the
    candidate stage 2 selected, from the selection on; ``detail`` is for people."""

    stage: str
    detail: str = ""
    winner: str | None = None


@dataclass(frozen=True)
class SampleRecorded(Event):
    """A sample was committed to the store.

    ``budget_used`` and ``budget`` are amounts in ``budget_unit`` (whole numbers for
    samples and tokens, floats for minutes); a held-out sample does not count.
    """

    sample: Sample
    budget_used: float
    budget: float
    budget_unit: str = "samples"


@dataclass(frozen=True)
class RankingUpdated(Event):
    ranking: tuple[CandidateEstimate, ...]
    n_samples: int


@dataclass(frozen=True)
class Message(Event):
    """Something the user should see: ``level`` is ``"info"`` or ``"warning"``."""

    level: str
    text: str


@dataclass(frozen=True)
class RunFinished(Event):
    result: TuneResult
    stopped: bool = False  # stopped on request before the budget was spent (resumable)


@dataclass(frozen=True)
class RunFailed(Event):
    error: str


Subscriber = Callable[[Event], Any]
