"""How a run's jobs are evaluated: in the run's own process, or by workers.

Each sample the run wants is a :class:`~engine.records.Job`. :class:`InProcess`
evaluates it at once and commits it before the run proposes the next. :class:`ToWorkers`
writes it to the store, for workers (:mod:`engine.run.worker`) to claim, and keeps up to
as many in flight as there are workers: the run proposes the next job whenever a sample
comes back, so a proposal is made before the samples still in flight are known, the one
thing parallelism changes. Every proposal is still a function of the committed samples,
the jobs in flight and the seed, and the jobs are in the store, so a resumed run picks
up the same ones.

Either way a committed sample reaches the run through one callable, ``take_in(sample,
trial, stopper)``.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterable

import optuna

from engine.errors import TunerError
from engine.evaluation import Evaluator
from engine.records import BUDGET_STAGES, HOLDOUT, Job, Sample
from engine.run.worker import Workers
from engine.selection import EarlyStop
from engine.store import Store, abandoned

__all__ = ["COLLECT_POLL", "Dispatch", "InProcess", "ToWorkers"]

#: Seconds between two looks for the samples of workers: short, since a worker waits
#: for its next job while the run has not seen its last sample.
COLLECT_POLL = 0.05

Key = tuple[str, str, int]  # (candidate, stage, trial) of a job and of its sample
TakeIn = Callable[[Sample, "optuna.trial.Trial | None", EarlyStop], None]


class Dispatch(abc.ABC):
    """Evaluates the jobs of run ``run_id`` and hands each committed sample to
    ``take_in``. A method that writes to the store may raise
    :class:`~engine.store.TransientStoreError`: the job then counts as never proposed."""

    def __init__(self, store: Store, run_id: str, take_in: TakeIn) -> None:
        self.store, self.run_id, self.take_in = store, run_id, take_in
        self.pending: dict[Key, Job] = {}  # jobs in flight, by the key of their sample

    def in_flight(self, name: str | None = None, *, stage: str | None = None) -> int:
        """Stage-1 and stage-3 jobs in flight (of candidate ``name``, of ``stage``)."""
        return sum(
            1 for c, s, _ in self.pending
            if s in BUDGET_STAGES and name in (None, c) and stage in (None, s)
        )  # fmt: skip

    def replay(self, committed: Iterable[Key], last_id: int) -> None:  # noqa: B027
        """Pick up the jobs an earlier execution left in flight; ``committed`` are the
        keys of the samples in the store, ``last_id`` the highest sample id."""

    def await_capacity(self) -> None:  # noqa: B027
        """Wait while as many jobs are in flight as can be."""

    @abc.abstractmethod
    def submit(self, job: Job, trial: optuna.trial.Trial | None, reference: Sample | None) -> None:
        """Evaluate ``job``, asked for by ``trial``, stopping early below ``reference``."""

    @abc.abstractmethod
    def await_sample(self) -> None:
        """Wait until at least one job in flight has come back as a sample."""

    @abc.abstractmethod
    def holdout(self, job: Job) -> dict[str, float]:
        """The metrics of the held-out ``job``, evaluated (once) and committed."""


class InProcess(Dispatch):
    """Evaluates each job in the run's own process, with ``evaluator``, on the tuning
    problems in ``chunks``."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        take_in: TakeIn,
        evaluator: Evaluator,
        chunks: list[list[int]] | None,
    ) -> None:
        super().__init__(store, run_id, take_in)
        self.evaluator, self.chunks = evaluator, chunks

    def submit(self, job: Job, trial: optuna.trial.Trial | None, reference: Sample | None) -> None:
        stopper = EarlyStop(reference)
        # The completion cache is written while evaluating: a full disk fails it too.
        evaluation = self.evaluator.evaluate(
            job.candidate, job.params, split="tune", chunks=self.chunks, keep_going=stopper
        )
        sample = self.store.add_sample(evaluation.sample(job), evaluation.outcomes, stage=job.stage)
        self.take_in(sample, trial, stopper)

    def await_sample(self) -> None:
        raise AssertionError("a run that evaluates its own jobs has none in flight")

    def holdout(self, job: Job) -> dict[str, float]:
        evaluation = self.evaluator.evaluate(job.candidate, job.params, split="holdout")
        sample = self.store.add_sample(evaluation.sample(job), evaluation.outcomes, stage=HOLDOUT)
        self.take_in(sample, None, EarlyStop(None))
        return sample.metrics


class ToWorkers(Dispatch):
    """Hands each job to ``workers`` through the store and takes in their samples.

    ``checkpoint`` is called at every look at the store (it raises to stop the run),
    ``warn`` gets the workers' one-line warnings.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        take_in: TakeIn,
        workers: Workers,
        *,
        checkpoint: Callable[[], None],
        warn: Callable[[str], None],
    ) -> None:
        super().__init__(store, run_id, take_in)
        self.workers, self.checkpoint, self.warn = workers, checkpoint, warn
        self.asked: dict[Key, optuna.trial.Trial] = {}  # the trials of the jobs in flight
        self.seen = 0  # the id of the last sample taken in

    def replay(self, committed: Iterable[Key], last_id: int) -> None:
        self.seen = last_id
        self.store.retry_jobs(self.run_id)
        done = set(committed)
        self.pending = {j.key: j for j in self.store.jobs(self.run_id) if j.key not in done}

    def submit(self, job: Job, trial: optuna.trial.Trial | None, reference: Sample | None) -> None:
        self.pending[job.key] = self.store.add_job(job)
        if trial is not None:
            self.asked[job.key] = trial

    def await_capacity(self) -> None:
        self._collect()
        while len(self.pending) >= self.workers.capacity(self.store):
            self.await_sample()

    def await_sample(self) -> None:
        while not self._collect():
            for warning in self.workers.check(self.store):
                self.warn(warning)
            time.sleep(COLLECT_POLL)

    def holdout(self, job: Job) -> dict[str, float]:
        if job.key not in self.pending:
            self.pending[job.key] = self.store.add_job(job)
        while job.key in self.pending:
            self.await_sample()
        return self.store.samples(self.run_id, stage=HOLDOUT)[0].metrics

    def _collect(self) -> int:
        """Take in the samples workers committed since the last look; raise the error
        of a job that failed. Returns how many came in."""
        self.checkpoint()
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
            self.take_in(sample, self.asked.pop(job.key, None), stopper)
        return len(new)
