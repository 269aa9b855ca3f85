"""The stage machine: the three stages of one run, over an open store.

Stage 1 samples every candidate and then whoever may be best, until the selection is
settled (:meth:`Execution._stage1`); stage 2 selects the leader; stage 3 spends the rest
of the budget on the winner (:meth:`Execution._stage3`), whose best parameters are then
scored once on held-out problems.

What the run knows is its :class:`~engine.run._evidence.Evidence`; where it samples next
comes from :class:`~engine.run._proposals.Proposals`; who evaluates a sample is its
:class:`~engine.run._dispatch.Dispatch` (this process, or workers); its row, the requests
of viewers and its events are its :class:`~engine.run._session.Session`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from engine._faults import crash_point
from engine.budget import format_amount
from engine.errors import TunerError
from engine.evaluation import Evaluator
from engine.events import (
    RankingUpdated,
    RunFinished,
    RunStarted,
    SampleRecorded,
    StageChanged,
    Subscriber,
)
from engine.records import (
    BUDGET_STAGES,
    HOLDOUT,
    SAMPLING,
    SELECTION,
    TUNING,
    Job,
    Sample,
    TuneResult,
)
from engine.run._dispatch import Dispatch, InProcess, ToWorkers
from engine.run._evidence import Evidence
from engine.run._proposals import Proposals
from engine.run._session import RunPlan, Session, StopRequested
from engine.run.worker import Workers
from engine.selection import (
    EXPLORE_EACH,
    MIN_STAGE1_SAMPLES,
    SETTLED,
    EarlyStop,
    Ranking,
    answer_so_far,
    block_to_finish,
    budget_spent,
    next_stage1_candidate,
    safe_eliminations,
    sample_chunks,
    sampler_seed,
    selection_settled,
    switch_block,
    top_two,
    why_leader,
)
from engine.store import Store, StoreFullError, TransientStoreError

if TYPE_CHECKING:
    import optuna

__all__ = ["Execution"]

#: Samples in a row that may fail to be written (disk full, store locked) before the run
#: stops: a disk that stays full must not burn hours of evaluations that cannot be kept.
MAX_LOST_SAMPLES = 3


class Execution:
    """One execution of ``plan`` against the open ``store``.

    Args:
        evaluator: scores the run's samples in this process; with ``workers`` the run
            still asks it how many problems a score is a mean over, and how noisy one is.
        workers: the workers a run starts; ``None``: the run evaluates its samples itself.
        emit: hands an event to the run's subscribers.
        checkpoint: called between samples; raises :class:`StopRequested` to stop the
            run, and blocks while it is paused.
    """

    def __init__(
        self,
        plan: RunPlan,
        store: Store,
        evaluator: Evaluator,
        workers: Workers | None,
        *,
        emit: Subscriber,
        checkpoint: Callable[[], None],
    ) -> None:
        self.store, self.evaluator = store, evaluator
        self.run_id, spec = plan.run_id, plan.spec
        self.names, self.settings, self.budget = spec.names, spec.settings, spec.settings.budget
        self.session = Session(plan, store, emit=emit, checkpoint=checkpoint)
        evaluator.attach(store)
        self.evidence = Evidence(self.run_id, self.names, spec.space, self.settings,
                                 evaluator.known_variance, evaluator.score_range)  # fmt: skip
        chunks = sample_chunks(evaluator.problem_count("tune"), self.settings.seed,
                               self.settings.fidelity)  # fmt: skip
        self.proposals = Proposals(self.run_id, self.evidence, chunks)
        self.dispatch: Dispatch = (
            InProcess(store, self.run_id, self._take_in, evaluator, chunks)
            if workers is None
            else ToWorkers(
                store,
                self.run_id,
                self._take_in,
                workers,
                checkpoint=self.session.checkpoint,
                warn=self.session.warn,
            )  # fmt: skip
        )
        self.winner: str | None = None  # stage 2's choice, once made
        self.eliminated: set[str] = set()  # out of stage 1 on the latest evidence
        self.block = 1  # stage-1 samples in a row, as last told (--switch-block)
        self.lost_in_a_row = 0  # samples not recorded since the last one that was

    # -- lifecycle --------------------------------------------------------------------------

    def execute(self) -> TuneResult:
        """Run (or continue) the three stages; returns the answer."""
        try:
            return self._execute()
        finally:
            self.session.close()

    def _execute(self) -> TuneResult:
        session = self.session
        try:
            run = session.open()
            self._replay()
            used, budget = self.evidence.used(), self.budget
            session.emit(RunStarted(self.run_id, tuple(self.names), budget.amount, used,
                                    budget.unit, self.evidence.spent()))  # fmt: skip
            if used:  # resumed: every decision starts from the evidence so far
                self._rank(stage=TUNING if run.winner else SAMPLING)
            self.winner = run.winner or self._stage1()
            result = self._stage3(self.winner)
        except StopRequested:
            session.stopped()
            result = self._answer(self.winner)
            session.emit(RunFinished(self.run_id, result, stopped=True))
            return result
        except KeyboardInterrupt:
            session.stopped()
            raise
        except TunerError as error:
            session.failed(str(error))
            raise
        except Exception as error:
            session.failed(f"{type(error).__name__}: {error}")
            raise
        session.finished(result)
        return result

    def _replay(self) -> None:
        """Rebuild the evidence from the store, and the jobs still in flight: nothing is
        evaluated again."""
        committed, last = [], 0
        for sample in self.store.samples(self.run_id):
            last = max(last, sample.id or 0)
            committed.append((sample.candidate, sample.stage, sample.trial))
            self.evidence.add(sample)
        self.dispatch.replay(committed, last)

    # -- the budget ---------------------------------------------------------------------------

    def _committed_or_promised(self) -> float:
        """What the committed samples cost, and what the jobs in flight will cost at the
        mean cost of a committed sample (one sample each before there is any), so that
        workers do not overrun the budget."""
        spent, used = self.evidence.spent(), self.evidence.used()
        flying = self.dispatch.in_flight()
        if not flying:
            return spent
        mean = spent / used if used else float(self.budget.unit == "samples")
        return spent + mean * flying

    # -- the stages ---------------------------------------------------------------------------

    def _stage1(self) -> str:
        """Sample until the selection is settled; the leader then is the winner.

        Every candidate first gets :data:`MIN_STAGE1_SAMPLES` (the shared default point,
        then one of its optimizer's), round-robin, and :data:`EXPLORE_EACH` while stage
        1's share of the budget lasts. Then each sample goes to the candidate
        top-two Thompson sampling names from the latest ranking's draws, among those not
        eliminated, until the leader's P(best) reaches :data:`SETTLED` or stage 1 has
        spent its share of the budget. Every decision depends only on the committed
        samples and the seed, so a resumed run decides as the uninterrupted one did.

        With workers, stage-1 samples may still be in flight when the last one is
        proposed. Unless the leader is settled already, the choice waits for them: made on
        those committed by then, it was a coin flip where a worker had died with a
        candidate's first sample (P(best) 0.42 against 0.34, the worse one chosen in one
        of three runs under load). The workers then wait at most one evaluation, once.
        """
        budget = self.budget
        target = self.settings.stage1_fraction * budget.amount
        # Stage 1 stops at the first sample that reaches its share: a whole one.
        whole = target if budget.unit == "minutes" else math.ceil(target)
        detail = (
            f"{MIN_STAGE1_SAMPLES}-{EXPLORE_EACH} per candidate, then to whoever may be best, "
            f"until P(best) >= {SETTLED} or {format_amount(whole, budget.unit)} "
            f"{budget.unit} are spent"
        )
        self.session.emit(StageChanged(self.run_id, SAMPLING, detail))
        while True:
            self.dispatch.await_capacity()
            name = self._next_stage1(target)
            if name is None and not self.evidence.on_every_candidate():
                self.dispatch.await_sample()
                continue
            if name is None:
                break
            self._sample(name, SAMPLING)  # a sample that was not recorded is taken again
        ranking = self.evidence.ranking
        while self.dispatch.in_flight(stage=SAMPLING) and ranking[0].prob_best < SETTLED:
            self.dispatch.await_sample()
            ranking = self.evidence.ranking
        if self.settings.stage1_fraction < 1:
            self._warn_if_spent()
        winner = ranking[0].candidate
        self.store.update_run(self.run_id, winner=winner, stage=TUNING)
        crash_point("selected")
        self.session.emit(StageChanged(self.run_id, SELECTION, why_leader(ranking), winner=winner))
        return winner

    def _next_stage1(self, target: float) -> str | None:
        """The candidate to sample next in stage 1, or ``None`` once it is over."""
        evidence = self.evidence
        counts = {name: len(s) + self.dispatch.in_flight(name)
                  for name, s in evidence.samples.items()}  # fmt: skip
        least = min(counts.values())
        spent = self._committed_or_promised()
        block = self._switch_block()
        if least < MIN_STAGE1_SAMPLES or (least < EXPLORE_EACH and spent < target):
            # Round-robin, a round at a time: first the samples every candidate gets
            # (the shared default point and one proposal), then the rest of the
            # exploration. With blocks, a candidate takes its part of a round in one
            # block: one load, not several.
            each = MIN_STAGE1_SAMPLES if least < MIN_STAGE1_SAMPLES else EXPLORE_EACH
            unfinished = self._unfinished_block(block)
            if unfinished is not None and counts[unfinished] < each:
                return unfinished
            return next_stage1_candidate(self.names, counts, least + 1)
        if not evidence.on_every_candidate():
            return None
        ranking = evidence.selection
        if selection_settled(ranking.estimates[0].prob_best, spent, target):
            return None
        active = self._active(ranking)
        if len(active) == 1:
            return None
        # A block the evidence chose: not the one the exploration ended with. (The
        # evidence is followed only once every candidate has had its EXPLORE_EACH: with
        # stage 1's share spent earlier, stage 1 is over.)
        unfinished = self._unfinished_block(block, after=EXPLORE_EACH)
        if unfinished is not None and self.names.index(unfinished) in active:
            return unfinished
        proposed = evidence.used() + self.dispatch.in_flight()
        rng = np.random.default_rng(sampler_seed(self.settings.seed, len(self.names), proposed))
        return self.names[top_two(ranking.maxima, active, rng)]

    def _switch_block(self) -> int:
        """Stage-1 samples in a row (``--switch-block``): as set, or for ``auto`` from the
        seconds the committed samples spent switching models and evaluating, so the same
        samples give the same blocks on resume."""
        block = self.settings.switch_block
        if block == "auto":
            samples = [s for listed in self.evidence.samples.values() for s in listed]
            switches = [s.switch_seconds for s in samples if s.switch_seconds > 0]
            block = switch_block(switches, [s.seconds - s.switch_seconds for s in samples])
            if block > 1 and self.block == 1:
                self.session.say(
                    f"the models do not all fit --device-memory: a switch of models took "
                    f"{np.mean(switches):.1f} s, so a candidate now gets {block} stage-1 "
                    "samples in a row (--switch-block)"
                )
        self.block = block
        return block

    def _unfinished_block(self, block: int, after: int = 0) -> str | None:
        """:func:`block_to_finish` on the committed stage-1 samples."""
        if block == 1:
            return None  # the order costs a sort: read it for blocks only
        order = [s.candidate for s in self.evidence.in_commit_order() if s.stage == SAMPLING]
        return block_to_finish(order, block, after)

    def _active(self, ranking: Ranking) -> list[int]:
        """The candidates (indices) still in stage 1: all but those whose upper bound on
        the tuned score is below the leader's lower bound on the latest evidence."""
        names, alpha = self.names, self.settings.eliminate
        every = list(range(len(names)))
        out = {names[c] for c in safe_eliminations(ranking.maxima, every, alpha)}
        for name in sorted(out - self.eliminated, key=names.index):
            self.session.say(
                f"{name} is out of stage 1: with {1 - alpha:.0%} confidence its tuned score "
                f"is below {ranking.estimates[0].candidate}'s"
            )
        self.eliminated = out
        return [c for c in every if names[c] not in out]

    def _warn_if_spent(self) -> None:
        spent = self._committed_or_promised()
        if budget_spent(spent, self.budget.amount):
            self.session.warn(
                f"stage 1 spent {self.budget.format_used(spent)} of the budget "
                f"({MIN_STAGE1_SAMPLES} samples per candidate at least); nothing is left to "
                "tune the winner: give a larger budget or a smaller stage-1 fraction"
            )

    def _stage3(self, winner: str) -> TuneResult:
        self.session.emit(StageChanged(self.run_id, TUNING, winner, winner=winner))
        while True:
            self.dispatch.await_capacity()
            if budget_spent(self._committed_or_promised(), self.budget.amount):
                if not self.dispatch.pending:
                    break
                self.dispatch.await_sample()
                continue
            self._sample(winner, TUNING)
        holdout = None
        if self.evaluator.has_holdout:
            detail = f"scoring {winner} on held-out"
            self.session.emit(StageChanged(self.run_id, HOLDOUT, detail, winner=winner))
            holdout = self._holdout(winner)
        return self._answer(winner, holdout)

    def _holdout(self, winner: str) -> dict[str, float]:
        done = self.store.samples(self.run_id, stage=HOLDOUT)
        if done:
            return done[0].metrics
        job = Job(self.run_id, winner, HOLDOUT, 0, self._answer(winner).best_params,
                  split="holdout")  # fmt: skip
        while True:
            self.session.checkpoint()
            try:
                return self.dispatch.holdout(job)
            except TransientStoreError as error:
                self._lost(f"the held-out score of {winner}", error)

    # -- samples ------------------------------------------------------------------------------

    def _sample(self, name: str, stage: str) -> None:
        """Propose the next sample of ``name`` and dispatch it.

        A sample that could not be recorded (the store is full or locked) leaves the run
        as if it was never proposed: the same sample is proposed again, exactly as a
        resumed run would."""
        self.session.checkpoint()
        trial_number = len(self.evidence.samples[name]) + self.dispatch.in_flight(name)
        job, trial, reference = self.proposals.propose(name, stage, trial_number, self.winner)
        try:
            self.dispatch.submit(job, trial, reference)
        except TransientStoreError as error:
            self.evidence.fail(name, trial)
            self._lost(f"{name} {stage} trial {job.trial}", error)

    def _take_in(
        self, sample: Sample, trial: optuna.trial.Trial | None, stopper: EarlyStop
    ) -> None:
        """Add a committed ``sample`` to the evidence, tell the subscribers, and rank."""
        self.lost_in_a_row = 0
        crash_point("committed")
        self.evidence.add(sample, trial)
        budget = self.budget
        self.session.emit(SampleRecorded(self.run_id, sample, self.evidence.spent(), budget.amount,
                                  budget.unit))  # fmt: skip
        if sample.stage not in BUDGET_STAGES:
            return
        if sample.partial:
            self.session.say(stopper.why(sample))
        self._rank(stage=sample.stage)

    def _lost(self, what: str, error: TransientStoreError) -> None:
        """Count a sample that could not be recorded; stop the run after too many."""
        self.lost_in_a_row += 1
        if self.lost_in_a_row >= MAX_LOST_SAMPLES:
            remedy = "free space" if isinstance(error, StoreFullError) else "when it is free"
            raise type(error)(
                f"{self.lost_in_a_row} samples in a row could not be recorded ({error}); "
                f"committed samples are kept: {remedy}, {self.session.resume_hint()}"
            ) from error
        self.session.warn(f"{what} was not recorded ({error}); the run goes on and takes it again")

    # -- the ranking and the answer -----------------------------------------------------------

    def _rank(self, stage: str) -> None:
        ranking = self.evidence.rank()
        if ranking is None:
            return
        count = self.evidence.used()
        try:
            entries = [asdict(e) for e in ranking.estimates]
            self.store.add_ranking(self.run_id, count, stage, entries)
        except TransientStoreError as error:
            # The samples are the truth; the ranking history only replays how it evolved.
            self.session.warn(f"the ranking after {count} samples was not recorded ({error})")
        self.session.emit(RankingUpdated(self.run_id, ranking.estimates, count))

    def _answer(
        self, winner: str | None = None, holdout: dict[str, float] | None = None
    ) -> TuneResult:
        samples = [s for name in self.names for s in self.evidence.samples[name]]
        ranking = self.evidence.ranking
        return answer_so_far(self.run_id, samples, ranking, winner=winner, holdout=holdout)
