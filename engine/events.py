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
    from engine.psm import CandidateEstimate
    from engine.store import Sample
    from engine.tuner import TuneResult

#: The stages of a run, in order.
STAGES = ("sampling", "selection", "tuning", "holdout")


@dataclass(frozen=True)
class Event:
    run_id: str


@dataclass(frozen=True)
class RunStarted(Event):
    candidates: tuple[str, ...]
    budget: int
    resumed_samples: int  # samples already in the store (0 for a new run)
    stage1_per_candidate: int


@dataclass(frozen=True)
class StageChanged(Event):
    stage: str  # one of STAGES
    detail: str = ""


@dataclass(frozen=True)
class SampleRecorded(Event):
    sample: Sample
    budget_used: int
    budget: int


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
