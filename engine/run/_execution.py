"""One execution of a :class:`~engine.run.Tuner` against an open store: stage 1,
the selection, stage 3 and the held-out score, and the requests of viewers in other
processes obeyed between samples.

Each sample the run wants is a :class:`~engine.records.Job`. Without workers the run
evaluates it in its own process and commits it before proposing the next. With workers
(:mod:`engine.run.worker`) it writes up to as many jobs as there are workers to the store
and proposes the next one whenever a sample comes back, so a proposal is made before the
samples still in flight are known: the one thing parallelism changes. Every proposal is
still a function of the committed samples, the jobs in flight and the seed, and the jobs
are in the store, so a resumed run picks up the same ones.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np
import optuna

from engine._faults import crash_point
from engine.budget import format_amount
from engine.errors import TunerError
from engine.evaluation import Evaluator
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
    HOLDOUT,
    SAMPLING,
    SELECTION,
    TUNING,
    CandidateEstimate,
    Job,
    Run,
    Sample,
    TuneResult,
)
from engine.selection import (
    EXPLORE_EACH,
    MIN_STAGE1_SAMPLES,
    SETTLED,
    CostModel,
    EarlyStop,
    Ranking,
    answer_so_far,
    budget_spent,
    full_scores,
    next_stage1_candidate,
    plan,
    rank,
    safe_eliminations,
    sampler_seed,
    selection_settled,
    top_two,
    why_leader,
)
from engine.store import (
    OptunaMirror,
    Store,
    StoreError,
    StoreFullError,
    TransientStoreError,
    abandoned,
)

if TYPE_CHECKING:
    from engine.run._tuner import Tuner
    from engine.run.worker import Workers

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: Samples in a row that may fail to be written (disk full, store locked) before the run
#: stops: a disk that stays full must not burn hours of evaluations that cannot be kept.
MAX_LOST_SAMPLES = 3
#: Random points of the space a Thompson proposal considers besides local ones.
PROPOSAL_POINTS = 128
#: Seconds between two looks at the store while a run is paused on request.
REQUEST_POLL = 0.5
#: Seconds between two looks for the samples of workers: short, since a worker waits
#: for its next job while the run has not seen its last sample.
COLLECT_POLL = 0.05


class StopRequested(Exception):
    """Raised between samples when :meth:`Tuner.stop` was called."""


class Execution:
    """The state of one execution of a :class:`Tuner` against an open store."""

    def __init__(
        self, tuner: Tuner, store: Store, evaluator: Evaluator, workers: Workers | None = None
    ) -> None:
        self.tuner = tuner
        self.workers = workers  # None: the run evaluates its samples itself
        self.pending: dict[tuple[str, str, int], Job] = {}  # jobs in flight, by sample key
        self.asked: dict[tuple[str, str, int], optuna.trial.Trial] = {}  # their trials
        self.seen = 0  # the id of the last sample taken in
        self.mirror: OptunaMirror | None = None  # the studies optuna-dashboard shows
        self._unmirrored: set[str] = set()  # candidates with samples not mirrored yet
        self._mirror_warned = False
        self.store = store
        self.run_id = tuner.run_id
        self.evaluator = evaluator
        self.evaluator.attach(store)
        self.store.on_wait = self._store_waits
        self._outage = False  # a warning about the store is not written to it
        self.studies: dict[str, optuna.Study] = {}
        self.samples: dict[str, list[Sample]] = {name: [] for name in tuner.names}
        self.selection: Ranking | None = None  # the latest ranking, with its draws
        self.winner: str | None = None  # stage 2's choice, once made
        self.eliminated: set[str] = set()  # out of stage 1 on the latest evidence
        self.lost_in_a_row = 0  # samples not recorded since the last one that was
        problems = evaluator.problem_count("tune")
        # Chunks of tuning problems every sample is scored in (None: no problems).
        self.chunks = plan(problems, tuner.seed, tuner.settings.fidelity) if problems else None

    @property
    def ranking(self) -> tuple[CandidateEstimate, ...]:
        """The latest ranking's lines, best first (none before the first sample)."""
        return self.selection.estimates if self.selection else ()

    # -- lifecycle --------------------------------------------------------------------------

    def execute(self) -> TuneResult:
        t = self.tuner
        # Warnings go to the store too, so a viewer attached from elsewhere sees them.
        unsubscribe = t.subscribe(self._keep_message)
        try:
            return self._execute()
        finally:
            unsubscribe()
            if self.mirror is not None:
                self._mirror()
                self.mirror.close()

    def _keep_message(self, event: Event) -> None:
        if isinstance(event, Message) and not self._outage:
            # A full or locked store must not turn a warning into a failure: subscribers
            # (the CLI, the app) still receive it.
            with contextlib.suppress(TransientStoreError):
                self.store.add_message(self.run_id, event.level, event.text)

    def _execute(self) -> TuneResult:
        t = self.tuner
        try:
            run = self._open_run()
            self._replay()
            self._open_mirror()
            t._emit(
                RunStarted(self.run_id, tuple(t.names), t.budget.amount, self.used(),
                           t.budget.unit, self.spent())
            )  # fmt: skip
            if self.used():  # resumed: every decision starts from the evidence so far
                self._rank(stage=TUNING if run.winner else SAMPLING)
            self.winner = run.winner or self._stage1()
            result = self._stage3(self.winner)
        except StopRequested:
            self._set_stopped()
            result = self._answer(self.winner)
            t._emit(RunFinished(self.run_id, result, stopped=True))
            return result
        except KeyboardInterrupt:
            self._set_stopped()
            raise
        except TunerError as error:
            self._fail(str(error))
            raise
        except Exception as error:
            self._fail(f"{type(error).__name__}: {error}")
            raise
        try:
            self.store.update_run(self.run_id, status="finished", result=result.to_dict())
        except TransientStoreError as error:
            message = f"the result could not be recorded ({error}); {self._resume_hint()}"
            self._fail(message)
            raise type(error)(message) from error
        t._emit(RunFinished(self.run_id, result))
        return result

    def _store_waits(self, text: str) -> None:
        """The store's server does not answer and the store waits for it: one warning,
        for the subscribers only (writing it to the store would wait too)."""
        self._outage = True
        try:
            self.tuner._emit(Message(self.run_id, "warning", text))
        finally:
            self._outage = False

    def _set_stopped(self) -> None:
        # Left "running" if the store cannot take it: a resume treats both alike.
        with contextlib.suppress(TransientStoreError):
            self.store.update_run(self.run_id, status="stopped")

    def _fail(self, message: str) -> None:
        # Recording the failure may fail too (the store is full, locked or damaged): the
        # error still reaches the subscribers and the caller.
        with contextlib.suppress(TunerError):
            if self.store.has_run(self.run_id):
                self.store.update_run(self.run_id, status="failed", error=message)
        self.tuner._emit(RunFailed(self.run_id, message))

    def _resume_hint(self) -> str:
        store = self.tuner.store_path
        option = "" if store == "samples.db" else f" --store {store}"
        return f"then `codellmtuner resume {self.run_id}{option}` continues the run"

    def _open_run(self) -> Run:
        t = self.tuner
        if not self.store.has_run(self.run_id):
            run = self.store.create_run(
                self.run_id, budget=t.budget.amount, seed=t.seed, config=t.config()
            )
        else:
            self.store.update_run(self.run_id, status="running", error=None)
            run = self.store.get_run(self.run_id)
        self.store.claim_run(self.run_id, os.getpid(), socket.gethostname())
        return run

    def _checkpoint(self) -> None:
        """Between samples: honour :meth:`Tuner.stop` and :meth:`Tuner.pause`, and the
        same requests made through the store by a viewer in another process."""
        self.tuner._checkpoint()
        request = self._request()  # one read of the store per sample
        if request == "pause":
            self.tuner._emit(Message(self.run_id, "info", "paused on request"))
            while request == "pause":
                time.sleep(REQUEST_POLL)
                self.tuner._checkpoint()
                request = self._request()
            self.tuner._emit(Message(self.run_id, "info", "going on"))
        if request == "stop":
            raise StopRequested

    def _request(self) -> str | None:
        try:
            return self.store.control(self.run_id).request
        except TransientStoreError:  # a store busy for a minute: ask again next time
            return None

    def _replay(self) -> None:
        """Rebuild each candidate's study from the store: nothing is re-evaluated."""
        for name in self.tuner.names:
            self.studies[name] = optuna.create_study(
                direction="maximize", study_name=f"{self.run_id}/{name}"
            )
        committed = set()
        for sample in self.store.samples(self.run_id):
            self.seen = max(self.seen, sample.id or 0)
            committed.add((sample.candidate, sample.stage, sample.trial))
            if sample.stage in BUDGET_STAGES:
                self._add_to_study(sample)
                self.samples[sample.candidate].append(sample)
        if self.workers is not None:  # the jobs proposed before, still to be taken in
            self.store.retry_jobs(self.run_id)
            jobs = self.store.jobs(self.run_id)
            self.pending = {j.key: j for j in jobs if j.key not in committed}

    def _add_to_study(self, sample: Sample) -> None:
        values, dists = self.tuner.space.trial_values(sample.params)
        trial = optuna.trial.create_trial(params=values, distributions=dists, value=sample.score)
        self.studies[sample.candidate].add_trial(trial)

    def used(self) -> int:
        """Samples committed in stages 1 and 3."""
        return sum(len(s) for s in self.samples.values())

    def spent(self) -> int | float:
        """What the committed stage-1 and stage-3 samples cost, in the budget's unit."""
        return self.tuner.budget.spent(s for samples in self.samples.values() for s in samples)

    def _in_flight(self, name: str | None = None) -> int:
        """Stage-1 and stage-3 jobs in flight (of candidate ``name``)."""
        return sum(
            1 for c, stage, _ in self.pending if stage in BUDGET_STAGES and name in (None, c)
        )

    def _committed_or_promised(self) -> float:
        """:meth:`spent` and what the jobs in flight will cost at the mean cost of a
        committed sample (one sample each before there is any), so that workers do not
        overrun the budget."""
        spent, used, flying = self.spent(), self.used(), self._in_flight()
        if not flying:
            return spent
        mean = spent / used if used else float(self.tuner.budget.unit == "samples")
        return spent + mean * flying

    # -- stages -----------------------------------------------------------------------------

    def _stage1(self) -> str:
        """Sample until the selection is settled; the leader then is the winner.

        Every candidate first gets :data:`MIN_STAGE1_SAMPLES` (the shared default point,
        then one of its optimizer's), round-robin, and :data:`EXPLORE_EACH` while stage
        1's share of the budget lasts. Then each sample goes to the candidate
        top-two Thompson sampling names from the latest ranking's draws, among those not
        eliminated, until the leader's P(best) reaches :data:`SETTLED` or stage 1 has
        spent its share of the budget. Every decision depends only on the committed
        samples and the seed, so a resumed run decides as the uninterrupted one did.

        With workers the choice is made on the samples committed by then, as every
        proposal is: stage-1 samples still in flight come in during stage 3, and count in
        the ranking (the answer stays the winner's), rather than leave the workers idle.
        """
        t = self.tuner
        target = t.settings.stage1_fraction * t.budget.amount
        # Stage 1 stops at the first sample that reaches its share: a whole one.
        share = format_amount(target if t.budget.unit == "minutes" else math.ceil(target),
                              t.budget.unit)  # fmt: skip
        detail = (
            f"{MIN_STAGE1_SAMPLES}-{EXPLORE_EACH} per candidate, then to whoever may be best, "
            f"until P(best) >= {SETTLED} or {share} {t.budget.unit} are spent"
        )
        t._emit(StageChanged(self.run_id, SAMPLING, detail))
        while True:
            self._await_capacity()
            name = self._next_stage1(target)
            if name is None and not self._evidence_on_every_candidate():
                self._await_sample()
                continue
            if name is None:
                break
            self._sample(name, SAMPLING)  # a sample that was not recorded is taken again
        if t.settings.stage1_fraction < 1:
            self._warn_if_spent()
        winner = self.ranking[0].candidate
        self.store.update_run(self.run_id, winner=winner, stage=TUNING)
        crash_point("selected")
        why = why_leader(self.ranking)
        t._emit(StageChanged(self.run_id, SELECTION, why, winner=winner))
        return winner

    def _next_stage1(self, target: float) -> str | None:
        """The candidate to sample next in stage 1, or ``None`` once it is over."""
        t = self.tuner
        counts = {name: len(s) + self._in_flight(name) for name, s in self.samples.items()}
        least = min(counts.values())
        spent = self._committed_or_promised()
        if least < MIN_STAGE1_SAMPLES or (least < EXPLORE_EACH and spent < target):
            return next_stage1_candidate(t.names, counts, least + 1)
        if not self._evidence_on_every_candidate():
            return None
        ranking = self.selection
        if selection_settled(ranking.estimates[0].prob_best, spent, target):
            return None
        active = self._active(ranking)
        if len(active) == 1:
            return None
        proposed = self.used() + self._in_flight()
        rng = np.random.default_rng(sampler_seed(t.seed, len(t.names), proposed))
        return t.names[top_two(ranking.maxima, active, rng)]

    def _evidence_on_every_candidate(self) -> bool:
        """Whether every candidate has a committed sample. With workers, a candidate's
        first samples may all be in flight: until one is in, its tuned score is unknown,
        and stage 1 must not end (nor top-two sampling start) without it."""
        return self.selection is not None and all(self.samples.values())

    def _active(self, ranking: Ranking) -> list[int]:
        """The candidates (indices) still in stage 1: all but those whose upper bound on
        the tuned score is below the leader's lower bound on the latest evidence."""
        t = self.tuner
        every = list(range(len(t.names)))
        out = {t.names[c] for c in safe_eliminations(ranking.maxima, every, t.settings.eliminate)}
        level = 1 - t.settings.eliminate
        for name in sorted(out - self.eliminated, key=t.names.index):
            t._emit(Message(self.run_id, "info", (
                f"{name} is out of stage 1: with {level:.0%} confidence its tuned score is "
                f"below {ranking.estimates[0].candidate}'s"
            )))  # fmt: skip
        self.eliminated = out
        return [c for c in every if t.names[c] not in out]

    def _stage3(self, winner: str) -> TuneResult:
        t = self.tuner
        t._emit(StageChanged(self.run_id, TUNING, winner, winner=winner))
        while True:
            self._await_capacity()
            if budget_spent(self._committed_or_promised(), t.budget.amount):
                if not self.pending:
                    break
                self._await_sample()
                continue
            self._sample(winner, TUNING)
        holdout = None
        if self.evaluator.has_holdout:
            detail = f"scoring {winner} on held-out"
            t._emit(StageChanged(self.run_id, HOLDOUT, detail, winner=winner))
            holdout = self._holdout(winner)
        return self._answer(winner, holdout)

    def _sample(self, name: str, stage: str) -> None:
        """Propose the next sample of ``name`` and evaluate it, or hand it to the workers.

        A sample that could not be recorded (the store is full or locked) leaves the run
        as if it was never proposed: the same sample is proposed again, exactly as a
        resumed run would."""
        self._checkpoint()
        job, trial, reference = self._propose(name, stage)
        if self.workers is None:
            self._evaluate(job, trial, reference)
            return
        try:
            self.pending[job.key] = self.store.add_job(job)
        except TransientStoreError as error:
            if trial is not None:
                self.studies[name].tell(trial, state=optuna.trial.TrialState.FAIL)
            self._lost(f"{name} {stage} trial {job.trial}", error)
            return
        if trial is not None:
            self.asked[job.key] = trial

    def _propose(
        self, name: str, stage: str
    ) -> tuple[Job, optuna.trial.Trial | None, Sample | None]:
        """The next job of ``name``, the Optuna trial that asked for it (``None`` where
        the run chose the point itself) and the sample it must keep up with."""
        t = self.tuner
        study = self.studies[name]
        trial_number = len(self.samples[name]) + self._in_flight(name)
        index = t.names.index(name)
        seed = sampler_seed(t.seed, index, trial_number)
        study.sampler = _make_sampler(t.settings.sampler, seed)
        trial = None
        if trial_number == 0:
            params = t.space.default_params()
        elif t.settings.sampler != "thompson":
            trial = study.ask()
            params = t.space.suggest(trial)
        elif self.selection is None:  # workers: no sample is in yet, so nothing is known
            params = t.space.from_unit(t.space.random_unit(1, np.random.default_rng(seed))[0])
        else:
            params = self._thompson(name, trial_number)
        reference = self._reference(name)
        job = Job(self.run_id, name, stage, trial_number, params,
                  reference=reference.id if reference else None)  # fmt: skip
        return job, trial, reference

    def _evaluate(
        self, job: Job, trial: optuna.trial.Trial | None, reference: Sample | None
    ) -> None:
        """Evaluate ``job`` in this process and take its sample in."""
        stopper = EarlyStop(reference)
        try:
            # The completion cache is written while evaluating: a full disk fails it too.
            evaluation = self.evaluator.evaluate(
                job.candidate, job.params, split="tune", chunks=self.chunks, keep_going=stopper
            )
            sample = self.store.add_sample(
                evaluation.sample(job), evaluation.outcomes, stage=job.stage
            )
        except TransientStoreError as error:
            if trial is not None:  # a failed trial is ignored by every sampler
                self.studies[job.candidate].tell(trial, state=optuna.trial.TrialState.FAIL)
            self._lost(f"{job.candidate} {job.stage} trial {job.trial}", error)
            return
        self._take_in(sample, trial, stopper)

    def _take_in(
        self, sample: Sample, trial: optuna.trial.Trial | None, stopper: EarlyStop
    ) -> None:
        """Add a committed ``sample`` to the run's evidence: its candidate's study, the
        ranking, and the events."""
        self.lost_in_a_row = 0
        crash_point("committed")
        budget = self.tuner.budget
        if sample.stage in BUDGET_STAGES:
            self.samples[sample.candidate].append(sample)
        self.tuner._emit(
            SampleRecorded(self.run_id, sample, self.spent(), budget.amount, budget.unit)
        )
        if sample.stage not in BUDGET_STAGES:
            return
        if sample.partial:
            self.tuner._emit(Message(self.run_id, "info", stopper.why(sample)))
        if trial is None:
            self._add_to_study(sample)
        else:
            self.studies[sample.candidate].tell(trial, sample.score)
        self._unmirrored.add(sample.candidate)
        if self.workers is None:  # with workers, while waiting for them (_await_sample)
            self._mirror()
        self._rank(stage=sample.stage)

    # -- the Optuna mirror -------------------------------------------------------------------

    def _open_mirror(self) -> None:
        """Mirror each candidate's samples into Optuna's tables of the store's database
        (:mod:`engine.store._mirror`), those of an earlier execution included."""
        url = OptunaMirror.url_of(self.tuner.store_path)
        if url is None:
            return
        try:
            self.mirror = OptunaMirror(url)
        except StoreError as error:
            self._mirror_failed(error)
            return
        self._unmirrored.update(self.tuner.names)
        self._mirror()

    def _mirror(self) -> None:
        """Mirror the samples taken in since the last time."""
        if self.mirror is None:
            return
        while self._unmirrored:
            name = self._unmirrored.pop()
            try:
                self.mirror.sync(self.run_id, name, self.samples[name], self.tuner.space)
            except StoreError as error:
                self._mirror_failed(error)  # the next sample of the candidate retries it

    def _mirror_failed(self, error: StoreError) -> None:
        """One warning, the first time: the store has every sample, and the next sync
        adds what this one did not (a database that was briefly away, say)."""
        if self._mirror_warned:
            return
        self._mirror_warned = True
        self.tuner._emit(Message(self.run_id, "warning", (
            f"optuna-dashboard may miss samples of this run: {error}; the store keeps them all"
        )))  # fmt: skip

    # -- workers ----------------------------------------------------------------------------

    def _await_capacity(self) -> None:
        """With workers, wait while as many jobs are in flight as they can take."""
        if self.workers is None:
            return
        self._collect()
        while len(self.pending) >= self.workers.capacity(self.store):
            self._await_sample()

    def _await_sample(self) -> None:
        """Wait until at least one job in flight has come back as a sample."""
        while not self._collect():
            assert self.workers is not None
            self._mirror()  # off the path from a worker's sample to its next job
            for warning in self.workers.check(self.store):
                self.tuner._emit(Message(self.run_id, "warning", warning))
            time.sleep(COLLECT_POLL)

    def _collect(self) -> int:
        """Take in the samples workers committed since the last look; raise the error
        of a job that failed. Returns how many came in."""
        self._checkpoint()
        jobs = self.store.jobs(self.run_id, ("claimed", "failed"))
        for job in (j for j in jobs if j.key in self.pending):
            error = job.error if job.status == "failed" else abandoned(job)
            if error:
                raise TunerError(error)
        new = self.store.samples(self.run_id, after=self.seen)
        for sample in new:
            self.seen = sample.id
            job = self.pending.pop((sample.candidate, sample.stage, sample.trial), None)
            if job is None:
                continue
            reference = self.store.sample(job.reference) if job.reference else None
            stopper = EarlyStop(reference)
            if sample.partial:
                stopper(sample.problem_scores)  # the p-value the worker stopped on
            self._take_in(sample, self.asked.pop(job.key, None), stopper)
        return len(new)

    def _reference(self, name: str) -> Sample | None:
        """What a new sample of ``name`` must beat to go on scoring problems. In stage 1,
        the better of its candidate's incumbent and the ranking leader's: a sample
        clearly below the leader's best cannot change the answer, whichever candidate
        it belongs to, so this holds for a candidate's first sample too. Once the
        winner is chosen, its own incumbent: the answer is then the winner's best
        parameters, whichever candidate leads the ranking. A candidate's incumbent is
        its sample with the highest posterior mean if that scored every problem, else
        its complete sample with the highest score. ``None`` (score every problem) with
        fidelity off or while there is nothing complete to compare with."""
        if self.chunks is None or len(self.chunks) < 2:
            return None
        own = self._incumbent(name)
        if self.winner is not None or not self.ranking:
            return own
        lead = self._incumbent(self.ranking[0].candidate)
        if own is None:
            return lead
        return lead if lead is not None and lead.score > own.score else own

    def _incumbent(self, name: str) -> Sample | None:
        complete = [s for s in self.samples[name] if not s.partial and s.problem_scores]
        if not complete:
            return None
        incumbent = next((e.incumbent for e in self.ranking if e.candidate == name), -1)
        return max(complete, key=lambda s: (s.trial == incumbent, s.score))

    def _thompson(self, name: str, trial_number: int) -> dict:
        """The next point of ``name`` by Thompson sampling of the latest ranking's model."""
        t = self.tuner
        index = t.names.index(name)
        rng = np.random.default_rng(sampler_seed(t.seed, index, trial_number))
        reference = t.space.random_unit(PROPOSAL_POINTS, rng)
        cost, cooling = self._pricing(index)
        return t.space.from_unit(self.selection.propose(index, reference, rng, cost, cooling))

    def _pricing(self, c: int) -> tuple[Callable[[np.ndarray], np.ndarray] | None, float]:
        """Candidate ``c``'s cost per problem at unit points, learned from every sample
        that cost something (:class:`engine.selection.CostModel`), and the share of the budget
        left, which cools it (:meth:`engine.selection.Ranking.propose`). ``(None, 0)``
        with a samples budget, where every problem costs the same."""
        t = self.tuner
        if t.budget.unit == "samples":
            return None, 0.0
        priced = [s for n in t.names for s in self.samples[n]
                  if not s.cached and t.budget.cost(s) > 0]  # fmt: skip
        model = CostModel.fit(
            [t.space.unit(s.params) for s in priced], [t.names.index(s.candidate) for s in priced],
            [t.budget.cost(s) / max(1, len(s.problem_scores)) for s in priced],
        )  # fmt: skip
        if model is None or c not in model.intercepts:
            return None, 0.0
        return functools.partial(model.predict, c), max(0.0, 1 - self.spent() / t.budget.amount)

    def _lost(self, what: str, error: TransientStoreError) -> None:
        """Count a sample that could not be recorded; stop the run after too many."""
        self.lost_in_a_row += 1
        if self.lost_in_a_row >= MAX_LOST_SAMPLES:
            remedy = "free space" if isinstance(error, StoreFullError) else "when it is free"
            raise type(error)(
                f"{self.lost_in_a_row} samples in a row could not be recorded ({error}); "
                f"committed samples are kept: {remedy}, {self._resume_hint()}"
            ) from error
        self.tuner._emit(Message(self.run_id, "warning", (
            f"{what} was not recorded ({error}); the run goes on and takes it again"
        )))  # fmt: skip

    def _warn_if_spent(self) -> None:
        budget = self.tuner.budget
        spent = self._committed_or_promised()
        if budget_spent(spent, budget.amount):
            self.tuner._emit(Message(self.run_id, "warning", (
                f"stage 1 spent {budget.format_used(spent)} of the budget ({MIN_STAGE1_SAMPLES} "
                "samples per candidate at least); nothing is left to tune the winner: give a "
                "larger budget or a smaller stage-1 fraction"
            )))  # fmt: skip

    def _rank(self, stage: str) -> tuple[CandidateEstimate, ...]:
        t = self.tuner
        pooled = sorted((s for n in t.names for s in self.samples[n]), key=_commit_order)
        if not pooled:
            return ()
        scores = full_scores(pooled)
        self.selection = rank(
            t.names, [t.space.unit(s.params) for s in pooled],
            [t.space.covariates(s.params) for s in pooled], [s.candidate for s in pooled],
            scores, trials=[s.trial for s in pooled],
            known_noise=[self.evaluator.known_variance(s.score, s.fidelity) for s in pooled],
            fidelity=[s.fidelity for s in pooled],
            use_psm=t.settings.psm, draws=t.settings.draws,
            random_state=sampler_seed(t.seed, len(t.names) + 1, len(pooled)),
            learned=self.selection.learned if self.selection else None,
        )  # fmt: skip
        entries = [asdict(e) for e in self.ranking]
        try:
            self.store.add_ranking(self.run_id, len(pooled), stage, entries)
        except TransientStoreError as error:
            # The samples are the truth; the ranking history only replays how it evolved.
            warning = f"the ranking after {len(pooled)} samples was not recorded ({error})"
            self.tuner._emit(Message(self.run_id, "warning", warning))
        self.tuner._emit(RankingUpdated(self.run_id, self.ranking, len(pooled)))
        return self.ranking

    def _holdout(self, winner: str) -> dict[str, float]:
        done = self.store.samples(self.run_id, stage=HOLDOUT)
        if done:
            return done[0].metrics
        job = Job(self.run_id, winner, HOLDOUT, 0, self._answer(winner).best_params,
                  split="holdout")  # fmt: skip
        while True:
            self._checkpoint()
            try:
                if self.workers is None:
                    evaluation = self.evaluator.evaluate(winner, job.params, split="holdout")
                    sample = self.store.add_sample(
                        evaluation.sample(job), evaluation.outcomes, stage=HOLDOUT
                    )
                    self._take_in(sample, None, EarlyStop(None))
                    return sample.metrics
                if job.key not in self.pending:
                    self.pending[job.key] = self.store.add_job(job)
                while job.key in self.pending:
                    self._await_sample()
                return self.store.samples(self.run_id, stage=HOLDOUT)[0].metrics
            except TransientStoreError as error:
                self._lost(f"the held-out score of {winner}", error)

    # -- the answer -------------------------------------------------------------------------

    def _answer(
        self, winner: str | None = None, holdout: dict[str, float] | None = None
    ) -> TuneResult:
        samples = [s for name in self.tuner.names for s in self.samples[name]]
        return answer_so_far(self.run_id, samples, self.ranking, winner=winner, holdout=holdout)


def _commit_order(sample: Sample) -> tuple[float, int]:
    """Samples in the order they were committed (the store's ids grow with it)."""
    return (sample.id if sample.id is not None else math.inf, sample.trial)


def _make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        # multivariate/group TPE is flagged experimental; it is what handles the
        # conditional (greedy vs sampling) space well.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if kind == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=4)
        if kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=4, multivariate=True, group=True
        )
