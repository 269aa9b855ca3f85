"""What the run screen shows, folded from engine events; no Textual here, so it is
tested on its own and the widgets only render it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from engine import (
    BUDGET_STAGES,
    SAMPLING,
    CandidateEstimate,
    Event,
    Message,
    RankingUpdated,
    RunFailed,
    RunFinished,
    RunStarted,
    Sample,
    SampleRecorded,
    StageChanged,
    TuneResult,
    answer_so_far,
    leader,
)


@dataclass
class RunState:
    """The live picture of one run. Feed it events with :meth:`apply`."""

    run_id: str = ""
    candidates: tuple[str, ...] = ()
    budget: float = 0
    budget_unit: str = "samples"
    budget_used: float = 0
    stage: str = "starting"
    stage_detail: str = ""
    winner: str | None = None
    ranking: tuple[CandidateEstimate, ...] = ()
    ranking_history: list[tuple[int, tuple[CandidateEstimate, ...]]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    result: TuneResult | None = None
    stopped: bool = False
    error: str | None = None
    paused: bool = False

    def apply(self, event: Event) -> None:
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler:
            handler(event)

    def _on_RunStarted(self, e: RunStarted) -> None:
        self.run_id = e.run_id
        self.candidates = e.candidates
        self.budget = e.budget
        self.budget_unit = e.budget_unit
        self.budget_used = e.budget_used
        self.stage = SAMPLING
        self.finished_at = self.error = self.result = None
        self.stopped = False

    def _on_StageChanged(self, e: StageChanged) -> None:
        self.stage, self.stage_detail = e.stage, e.detail
        self.winner = e.winner or self.winner

    def _on_SampleRecorded(self, e: SampleRecorded) -> None:
        self.samples.append(e.sample)
        self.budget_used = e.budget_used
        # A viewer attached late learns when the run began from its first sample.
        self.started_at = min(self.started_at, e.sample.created_at - e.sample.seconds)

    def _on_RankingUpdated(self, e: RankingUpdated) -> None:
        self.ranking = e.ranking
        self.ranking_history.append((e.n_samples, e.ranking))

    def _on_Message(self, e: Message) -> None:
        self.messages.append((e.level, e.text))

    def _on_RunFinished(self, e: RunFinished) -> None:
        self.result, self.stopped = e.result, e.stopped
        self.finished_at = self._last_activity()
        if e.result.ranking:
            self.ranking = e.result.ranking
        self.stage = "stopped" if e.stopped else "finished"

    def _on_RunFailed(self, e: RunFailed) -> None:
        self.error = e.error
        self.finished_at = self._last_activity()
        self.stage = "failed"

    def _last_activity(self) -> float:
        """When the run ended: its last committed sample (so a run opened from history
        shows the time it took, not the time since), or now if it had none."""
        return max((s.created_at for s in self.samples), default=time.time())

    # -- derived figures -------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    def tuning_samples(self, candidate: str | None = None) -> list[Sample]:
        """Samples that count against the budget (not the held-out score)."""
        return [
            s
            for s in self.samples
            if s.stage in BUDGET_STAGES and (candidate is None or s.candidate == candidate)
        ]

    def best(self, candidate: str) -> Sample | None:
        """The candidate's highest-scoring sample that scored every problem (the earliest
        on ties): a sample stopped early is a mean over a few problems only."""
        own = [s for s in self.tuning_samples(candidate) if not s.partial]
        return max(own, key=lambda s: s.score) if own else None

    @property
    def leader(self) -> str | None:
        return leader(self.ranking, self.winner)

    def answer(self) -> TuneResult | None:
        """The answer of the run, or the answer if it ended now; ``None`` before the
        first sample."""
        if self.result is not None:
            return self.result
        answer = answer_so_far(self.run_id, self.samples, self.ranking, winner=self.winner)
        return answer if answer.n_samples else None

    def eliminated(self, candidate: str) -> bool:
        return self.winner is not None and candidate != self.winner

    def holdout(self) -> dict[str, float] | None:
        return self.result.holdout if self.result else None

    def elapsed(self, now: float | None = None) -> float:
        end = self.finished_at or (now if now is not None else time.time())
        return max(0.0, end - self.started_at)

    def remaining(self, now: float | None = None) -> float | None:
        """Estimated seconds to spend the budget, from the pace so far; None if unknown."""
        if self.done or self.budget_used <= 0:
            return None
        left = max(0.0, self.budget - self.budget_used)
        if self.budget_unit == "minutes":
            return left * 60
        pace = self.elapsed(now) / self.budget_used
        return left * pace if math.isfinite(pace) else None
