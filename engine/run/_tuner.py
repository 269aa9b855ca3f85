"""The :class:`Tuner`: runs the three stages over a store and reports events."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.budget import Budget
from engine.errors import ConfigError, TunerError
from engine.evaluation import Evaluator, Objective, build_evaluator, import_objective
from engine.events import (
    Event,
    Message,
    RunFailed,
    Subscriber,
)
from engine.generation import Candidate, parse_candidate, unique_names, visible_gpus
from engine.records import TuneResult
from engine.run._execution import Execution
from engine.run._session import RunPlan, StopRequested
from engine.run.worker import Workers
from engine.selection import check_split
from engine.settings import RunSettings
from engine.space import SearchSpace
from engine.spec import RunSpec
from engine.store import Store, new_run_id
from engine.tasks import Task


class Tuner:
    """Find the best candidate and its decoding parameters within a budget.

    Give either a ``task`` with ``candidates`` (model specs such as ``"smollm2@raw"``),
    or an ``objective(candidate, params) -> score`` (or ``(score, cost)``) with candidate
    names. Higher scores are better; noise is fine. An objective whose score is a mean
    over ``problems`` problems is called as ``objective(candidate, params, indices)`` and
    returns one score per problem index (or ``(scores, cost)``), so that a hopeless
    configuration can stop after a few (``fidelity``, :mod:`engine.selection._fidelity`).

    Args:
        store: SQLite file path; ``None`` keeps the samples in memory.
        space: a :class:`SearchSpace` or a mapping of parameter ranges.
        run_id: name of the run; an existing id continues that run (see :meth:`resume`).
        settings: the run's options as a :class:`~engine.settings.RunSettings`.
        **options: run options by name, over ``settings`` (see
            :class:`~engine.settings.RunSettings` for each one's default and meaning):
            ``budget`` (``9`` samples, ``"20000 tokens"`` (an objective then returns
            ``(score, generated_tokens)``), ``"30m"``), ``seed``,
            ``sampler``, ``stage1_fraction``, ``eliminate``, ``psm``, ``fidelity``,
            ``draws``; for task
            runs also ``dataset``, ``tune_size``, ``holdout_size``, ``samples_per_problem``
            (a :class:`Task` object carries its own), ``train_size``, ``metric``,
            ``batch_size``, ``device``.

    Stage 1 ends once the leader is the best with probability 0.9 or ``stage1_fraction``
    of the budget is spent (see :mod:`engine.selection._decisions`). Call
    :meth:`subscribe` to receive :mod:`engine.events`, then :meth:`run`.
    """

    def __init__(
        self,
        *,
        candidates: Sequence[str | Candidate],
        task: str | Task | None = None,
        objective: Objective | str | None = None,
        store: str | Path | None = None,
        space: SearchSpace | Mapping[str, Any] | None = None,
        run_id: str | None = None,
        settings: RunSettings | None = None,
        problems: int = 0,
        **options: Any,
    ) -> None:
        if (task is None) == (objective is None):
            raise ConfigError("give either a task or an objective")
        if problems and objective is None:
            raise ConfigError("problems= is for an objective; a task has its own problems")
        settings = RunSettings.of(**{**(vars(settings) if settings else {}), **options})
        # An objective named by its import path can be evaluated in other processes.
        objective_path = objective if isinstance(objective, str) else None
        if objective_path is not None:
            objective = import_objective(objective_path)
        if isinstance(task, Task):
            settings = replace(settings, samples_per_problem=task.samples_per_problem)
        members = _candidates(candidates, names_only=objective is not None)
        samples = settings.budget.amount if settings.budget.unit == "samples" else None
        check_split(len(members), settings.stage1_fraction, samples)
        #: What this run is, as the store keeps it (:class:`~engine.spec.RunSpec`).
        self.spec = RunSpec(
            candidates=members, settings=settings,
            space=space if isinstance(space, SearchSpace) else SearchSpace(space),
            task=task.name if isinstance(task, Task) else task,
            objective=objective_path or objective is not None, problems=problems,
        )  # fmt: skip
        self.objective = objective
        self.task = task  # a name, or a Task object this process evaluates
        self.store_path = ":memory:" if store is None else str(store)
        self.run_id = run_id or new_run_id()
        self._subscribers: list[Subscriber] = []
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()

    # -- construction from the store --------------------------------------------------------

    @classmethod
    def resume(
        cls,
        run_id: str,
        *,
        store: str | Path = "samples.db",
        objective: Objective | str | None = None,
    ) -> Tuner:
        """A tuner that continues run ``run_id`` from ``store`` with its saved settings.

        Objective runs need the same ``objective`` again, unless it was given by its
        import path (a callable is not stored).
        """
        with contextlib.closing(Store(store)) as s:
            run = s.get_run(run_id)
        spec = RunSpec.of_run(run)
        if isinstance(spec.objective, str) and objective is None:
            objective = spec.objective
        if spec.objective and objective is None:
            raise ConfigError(f"run {run.id} tuned a Python objective; pass objective= to resume")
        return cls(
            candidates=spec.candidates, task=None if objective else spec.task,
            objective=objective, store=store, space=spec.space, run_id=run.id,
            settings=spec.settings, problems=spec.problems if objective else 0,
        )  # fmt: skip

    @property
    def settings(self) -> RunSettings:
        return self.spec.settings

    @property
    def budget(self) -> Budget:
        return self.spec.settings.budget

    @property
    def space(self) -> SearchSpace:
        return self.spec.space

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return self.spec.candidates

    @property
    def names(self) -> list[str]:
        return self.spec.names

    @property
    def problems(self) -> int:
        return self.spec.problems

    # -- control ----------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def stop(self) -> None:
        """Finish after the sample in progress; the run stays resumable."""
        self._stop.set()
        self._running.set()

    def pause(self) -> None:
        """Hold before the next sample until :meth:`unpause` (or :meth:`stop`)."""
        self._running.clear()

    def unpause(self) -> None:
        self._running.set()

    def _emit(self, event: Event) -> None:
        for callback in list(self._subscribers):
            callback(event)

    def _checkpoint(self) -> None:
        """Between samples: hold while paused; raise :class:`StopRequested` once stopped."""
        self._running.wait()
        if self._stop.is_set():
            raise StopRequested

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> TuneResult:
        """Run (or continue) the three stages; returns the result.

        Raises :class:`TunerError` for problems the user can fix; the run is then marked
        failed in the store, and every committed sample is kept.
        """
        evaluator = self._evaluator()
        workers = None
        try:
            workers = self._workers()
            if workers is not None:
                workers.start()  # they start up while this process checks its input
            evaluator.prepare(self.space)  # bad input fails here, before the store is touched
        except TunerError as error:
            if workers is not None:
                workers.stop()
            self._fail_saved_run(str(error))
            self._emit(RunFailed(self.run_id, str(error)))
            raise
        try:
            plan = RunPlan(self.run_id, self.spec, self.store_path)
            store = Store(self.store_path)
            try:
                return Execution(plan, store, evaluator, workers, emit=self._emit,
                                 checkpoint=self._checkpoint).execute()  # fmt: skip
            finally:
                store.close()
        finally:
            if workers is not None:
                workers.stop()

    def save(self) -> None:
        """Record the run in its store without running it, for another process to
        continue with :meth:`resume` (the app starts runs this way, so that they outlive
        it). Only task runs: an objective cannot be handed to another process."""
        if self.objective is not None:
            raise ConfigError("a run of a Python objective runs in the process that has it")
        with contextlib.closing(Store(self.store_path)) as store:
            settings = self.settings
            store.create_run(self.run_id, budget=settings.budget.amount, seed=settings.seed,
                             config=self.spec.to_dict())  # fmt: skip

    def _fail_saved_run(self, message: str) -> None:
        """A run recorded by :meth:`save` records why it could not start; a new run leaves
        no trace."""
        if not Store.exists(self.store_path):  # in memory, or no file yet
            return
        with contextlib.suppress(TunerError), contextlib.closing(Store(self.store_path)) as s:
            if s.has_run(self.run_id):
                s.update_run(self.run_id, status="failed", error=message)

    def _workers(self) -> Workers | None:
        """The workers this run starts (``workers`` of its settings), or ``None`` where
        it evaluates its samples itself (one worker)."""
        count, devices = self.settings.workers, []
        if self.task is not None and self.settings.device in ("auto", "cuda"):
            gpus = visible_gpus()
            devices = [f"cuda:{i}" for i in range(gpus)] if gpus > 1 else []
            if count is None:
                count = max(1, gpus)
        if count in (None, 1):
            return None
        if self.spec.objective is True:
            raise ConfigError(
                "workers evaluate an objective given by its import path: pass "
                "objective='module:function', or workers=1"
            )
        if self.store_path == ":memory:":
            raise ConfigError("workers take their jobs from the store: give the run a store")
        return Workers(self.store_path, self.run_id, count, devices=devices)

    def _evaluator(self) -> Evaluator:
        return build_evaluator(
            self.spec, objective=self.objective,
            task=self.task if isinstance(self.task, Task) else None,
            on_warning=lambda text: self._emit(Message(self.run_id, "warning", text)),
            on_info=lambda text: self._emit(Message(self.run_id, "info", text)),
        )  # fmt: skip


def _candidates(given: Sequence[str | Candidate], *, names_only: bool) -> tuple[Candidate, ...]:
    """The candidates as given: an objective's by name, a task's by model spec."""
    if names_only:
        return tuple(unique_names(
            c if isinstance(c, Candidate) else Candidate(name=str(c), model="") for c in given
        ))  # fmt: skip
    return tuple(unique_names(c if isinstance(c, Candidate) else parse_candidate(c) for c in given))
