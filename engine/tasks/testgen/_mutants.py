"""The mutant cache: for each problem, the mutants its own tests kill (the equivalence
filter), computed once per task object even when several scoring calls need it at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from engine.tasks import mutation
from engine.tasks.base import Problem

__all__ = ["MutantSet", "Pending", "claim", "reference_function"]


@dataclass(frozen=True)
class MutantSet:
    """One problem's mutants: how many were drawn, the ones kept, and why none were."""

    generated: int  # drawn from the function
    retained: tuple[mutation.Mutant, ...]  # of those, the ones the problem's tests kill
    note: str = ""


class Pending:
    """The mutant sets one scoring call needs.

    :func:`claim` registers a future for each problem nobody has claimed yet (``owned``);
    :meth:`launch` starts their runs and :meth:`finish` (always called, even after an
    error) resolves them, so no other caller waits on them forever. A failed claim is
    forgotten so a later call tries again.
    """

    def __init__(self, lock: threading.Lock, cache: dict[tuple, Future[MutantSet]]) -> None:
        self.futures: dict[tuple, Future[MutantSet]] = {}
        self.owned: list[tuple[Problem, tuple, Future[MutantSet]]] = []
        self._jobs: list[tuple | BaseException] = []
        self._lock = lock
        self._cache = cache

    def launch(self, start: Callable[[Problem], tuple]) -> None:
        """Start the filter of each owned problem: ``start(problem)`` returns the drawn
        mutants, the future of the reference's run (``None`` when nothing was drawn), the
        futures of the mutants' runs, and a note."""
        for problem, _, _ in self.owned:
            try:
                self._jobs.append(start(problem))
            except BaseException as error:  # resolved (as this error) in finish
                self._jobs.append(error)

    def finish(self) -> None:
        """Resolve every owned future from its runs; re-raise the first failure."""
        first_error = None
        jobs = self._jobs + [RuntimeError("never started")] * (len(self.owned) - len(self._jobs))
        for (_, key, future), job in zip(self.owned, jobs, strict=True):
            try:
                if isinstance(job, BaseException):
                    raise job
                result = _collect_filter(*job)
            except BaseException as error:
                with self._lock:
                    self._cache.pop(key, None)
                future.set_exception(error)
                first_error = first_error or error
            else:
                future.set_result(result)
        self.owned, self._jobs = [], []
        if first_error is not None:
            raise first_error

    def result(self, problem: Problem) -> MutantSet:
        """The mutant set of ``problem`` (waits for whoever computes it)."""
        return self.futures[_key(problem)].result()


def claim(
    problems: Iterable[Problem], lock: threading.Lock, cache: dict[tuple, Future[MutantSet]]
) -> Pending:
    """The futures of the problems' mutant sets from ``cache``; the ones nobody computes
    yet are added to it and claimed by (owned by) the returned object."""
    pending = Pending(lock, cache)
    with lock:
        for problem in problems:
            key = _key(problem)
            if key in pending.futures:
                continue
            future = cache.get(key)
            if future is None:
                future = cache[key] = Future()
                pending.owned.append((problem, key, future))
            pending.futures[key] = future
    return pending


def reference_function(problem: Problem) -> str:
    """The complete reference function, with the prompt's imports and helpers."""
    return problem.prompt + problem.reference


def _collect_filter(
    drawn: list[mutation.Mutant],
    reference: Future[tuple[bool, float]] | None,
    runs: list[Future[tuple[bool, float]]],
    note: str,
) -> MutantSet:
    """The set a filter's runs give: none kept when the reference fails its own tests,
    else the mutants the tests detect."""
    if reference is None:
        return MutantSet(0, (), note)
    if reference.result()[0]:
        for run in runs:
            run.cancel()
        return MutantSet(len(drawn), (), "no mutants kept: the reference fails its own tests")
    kept = tuple(m for m, run in zip(drawn, runs, strict=True) if run.result()[0])
    return MutantSet(len(drawn), kept)


def _key(problem: Problem) -> tuple[str, str, str]:
    """What a mutant set depends on: the function and its tests (the id for reading)."""
    return (problem.id, reference_function(problem), problem.tests)
