"""Follow a run through the store: the events a live run emits, rebuilt from its rows.

A run started elsewhere (``codellmtuner run --headless`` under ``nohup`` on a lab server)
writes every sample, ranking and warning to ``samples.db``. :class:`RunFollower` reads
what was added since its last poll and turns it into the same :mod:`engine.events` a
subscriber of the live :class:`~engine.Tuner` receives, so a viewer has one code path for
both. Following only reads: attaching and detaching never disturb the run.
"""

from __future__ import annotations

import os
import socket

from engine.events import (
    Event,
    Message,
    RankingUpdated,
    RunFailed,
    RunFinished,
    RunStarted,
    SampleRecorded,
    StageChanged,
)
from engine.records import (
    BUDGET_STAGES,
    SELECTION,
    TUNING,
    CandidateEstimate,
    Run,
    Sample,
    TuneResult,
)
from engine.selection import Balance, answer_so_far, balance
from engine.space import SearchSpace
from engine.spec import RunSpec
from engine.store import Store


class RunFollower:
    """Incremental reader of one run.

    Args:
        store: an open :class:`Store` (used from the thread that calls :meth:`poll`).
        run_id: a run id, a unique prefix of one, or ``"latest"``.

    Each :meth:`poll` returns the events for rows committed since the previous poll;
    the first poll replays the run so far, starting with :class:`RunStarted`.
    """

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        run = store.get_run(run_id)
        self.run_id = run.id
        self.spec = RunSpec.of_run(run)
        self.budget = self.spec.settings.budget
        self._started = False
        self._last_sample = 0
        self._last_ranking = 0
        self._last_message = 0
        self._budget_used = 0
        self._stage = ""
        self._winner: str | None = None
        self._status = ""
        self._ranking: tuple[CandidateEstimate, ...] = ()
        self._samples: list[Sample] = []

    def poll(self) -> list[Event]:
        """Events for everything committed since the last call (oldest first)."""
        run = self.store.get_run(self.run_id)
        events: list[Event] = []
        if not self._started:
            events.append(self._run_started(run))
            self._started = True
        events += self._new_messages()
        events += self._new_samples(run)
        events += self._new_rankings()
        events += self._stage_changes(run)
        events += self._status_change(run)
        return events

    def _run_started(self, run: Run) -> RunStarted:
        return RunStarted(
            run.id, tuple(self.spec.names), self.budget.amount, len(self._samples),
            budget_unit=self.budget.unit, budget_used=self._budget_used,
        )  # fmt: skip

    def _new_messages(self) -> list[Event]:
        rows = self.store.messages(self.run_id, after=self._last_message)
        if rows:
            self._last_message = rows[-1]["id"]
        return [Message(self.run_id, r["level"], r["text"]) for r in rows]

    def _new_samples(self, run: Run) -> list[Event]:
        fresh = self.store.samples(self.run_id, after=self._last_sample)
        events: list[Event] = []
        for sample in fresh:
            self._last_sample = sample.id
            if sample.stage in BUDGET_STAGES:
                self._budget_used += self.budget.cost(sample)
                self._samples.append(sample)
            events.append(
                SampleRecorded(self.run_id, sample, self._budget_used, self.budget.amount,
                               budget_unit=self.budget.unit)
            )  # fmt: skip
        return events

    def _new_rankings(self) -> list[Event]:
        rows = self.store.rankings(self.run_id, after=self._last_ranking)
        events: list[Event] = []
        for row in rows:
            self._last_ranking = row["id"]
            self._ranking = tuple(CandidateEstimate(**e) for e in row["entries"])
            events.append(RankingUpdated(self.run_id, self._ranking, row["n_samples"]))
        return events

    def _stage_changes(self, run: Run) -> list[Event]:
        events: list[Event] = []
        if run.winner and run.winner != self._winner:
            self._winner = run.winner
            detail = f"{run.winner} selected"
            events.append(StageChanged(self.run_id, SELECTION, detail, winner=run.winner))
        if run.stage != self._stage:
            self._stage = run.stage
            detail = run.winner if run.stage == TUNING and run.winner else ""
            events.append(StageChanged(self.run_id, run.stage, detail, winner=run.winner))
        return events

    def _status_change(self, run: Run) -> list[Event]:
        if run.status == self._status:
            return []
        previous, self._status = self._status, run.status
        if run.status == "running" and previous in ("stopped", "failed", "finished"):
            return [self._run_started(run)]  # resumed: it goes on from where it was
        if run.status == "finished" and run.result:
            return [RunFinished(self.run_id, TuneResult.from_dict(run.result))]
        if run.status == "stopped":
            answer = answer_so_far(self.run_id, self._samples, self._ranking, winner=run.winner)
            return [RunFinished(self.run_id, answer, stopped=True)]
        if run.status == "failed":
            return [RunFailed(self.run_id, run.error or "the run failed")]
        return []


def stored_answer(store: Store, run_id: str) -> TuneResult:
    """The answer of a run as the store holds it: the result it recorded when it finished,
    else :func:`~engine.selection.answer_so_far` over its committed samples, its latest
    ranking and its winner, which is what the run itself answers when it stops there."""
    run = store.get_run(run_id)
    if run.status == "finished" and run.result:
        return TuneResult.from_dict(run.result)
    history = store.rankings(run.id)
    ranking = [CandidateEstimate(**e) for e in history[-1]["entries"]] if history else []
    return answer_so_far(run.id, store.samples(run.id), ranking, winner=run.winner)


def stored_balance(store: Store, run_id: str) -> Balance | None:
    """:func:`~engine.selection.balance` of a stored run's budget samples (stages
    sampling and tuning) in its search space's covariates, as its ranking matched them;
    ``None`` without samples."""
    spec = RunSpec.of_run(store.get_run(run_id))
    samples = [s for s in store.samples(run_id) if s.stage in BUDGET_STAGES]
    if not samples:
        return None
    return balance(
        spec.names, [spec.space.covariates(s.params) for s in samples],
        [s.candidate for s in samples], names=SearchSpace.COVARIATE_NAMES,
    )  # fmt: skip


def live_status(store: Store, run: Run) -> str:
    """``run.status``, made precise for a run marked running: ``"running"`` or
    ``"paused"`` while its process lives on this host, ``"starting"`` before a process
    has claimed it, ``"interrupted"`` when its process is gone (``resume`` continues it),
    and ``"running on HOST"`` when another host runs it."""
    if run.status != "running":
        return run.status
    control = store.control(run.id)
    if control.pid is None:
        return "starting"
    if control.host != socket.gethostname():
        return f"running on {control.host}"
    if not _alive(control.pid):
        return "interrupted"
    return "paused" if control.request == "pause" else "running"


def is_live(status: str) -> bool:
    """Whether a :func:`live_status` names a run whose process goes on (and reads
    requests)."""
    return status.startswith(("running", "paused"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process holds the pid
        return True
    return True
