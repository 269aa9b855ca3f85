"""A user's objective as an evaluator: a callable of (candidate, params), or of (candidate,
params, problem indices) for a score that is a mean over problems."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from engine.errors import ConfigError, TunerError
from engine.evaluation._base import Evaluation, Evaluator, KeepGoing, Objective


class ObjectiveEvaluator(Evaluator):
    """Calls ``objective(candidate, params)``; it returns a score or ``(score, cost)``.

    With ``problems`` (N > 0) the score is a mean over N problems and the objective says
    each one's: it is called as ``objective(candidate, params, indices)`` for a chunk of
    problem indices in ``0..N-1`` and returns one score per index (or ``(scores, cost)``),
    which lets a run stop a hopeless configuration early (:mod:`engine.selection._fidelity`).

    The cost is the number of tokens the evaluation generated (rounded to a whole number):
    it is recorded as the sample's ``generated_tokens`` (and as the ``cost`` metric), which
    is what a tokens budget counts. A minutes budget counts the call's measured wall-clock
    time. With ``require_cost`` (a tokens budget), a score without a cost is an error,
    since such samples would never spend the budget.
    """

    def __init__(
        self,
        objective: Objective,
        candidates: Sequence[str],
        *,
        require_cost: bool = False,
        problems: int = 0,
    ) -> None:
        if not callable(objective):
            raise ConfigError("objective must be callable as objective(candidate, params)")
        if isinstance(problems, bool) or not isinstance(problems, int) or problems < 0:
            raise ConfigError(f"problems must be a whole number >= 0, got {problems!r}")
        self.objective = objective
        self.candidates = tuple(candidates)
        self.require_cost = require_cost
        self.problems = problems

    def problem_count(self, split: str) -> int:
        return self.problems

    def evaluate(
        self,
        candidate: str,
        params: dict[str, Any],
        *,
        split: str,
        chunks: Sequence[Sequence[int]] | None = None,
        keep_going: KeepGoing | None = None,
    ) -> Evaluation:
        start = time.perf_counter()
        if not self.problems:
            score, cost = self._call(candidate, params)
            return _objective_evaluation(score, cost, time.perf_counter() - start)
        chunks = chunks if chunks is not None else [range(self.problems)]
        scores: list[float] = []
        total_cost: float | None = None
        for i, chunk in enumerate(chunks):
            values, cost = self._call(candidate, params, list(chunk))
            scores += self._problem_scores(candidate, values, len(chunk))
            if cost is not None:
                total_cost = (total_cost or 0.0) + cost
            if i < len(chunks) - 1 and keep_going is not None and not keep_going(scores):
                break
        evaluation = _objective_evaluation(
            float(np.mean(scores)), total_cost, time.perf_counter() - start
        )
        return replace(
            evaluation, problem_scores=tuple(scores), fidelity=len(scores) / self.problems
        )

    def _call(self, candidate: str, params: dict[str, Any], *chunk: list[int]) -> tuple:
        """The objective's value and cost (None if it gave none), checked."""
        value = self.objective(candidate, dict(params), *chunk)
        cost = None
        if isinstance(value, tuple):
            value, cost = value
        if not chunk:
            value = _number(value, f"objective returned {value!r} for {candidate}; "
                                   "expected a number")  # fmt: skip
            if not math.isfinite(value):
                raise TunerError(f"objective returned {value} for {candidate} at {params}")
        if cost is None:
            if self.require_cost:
                raise TunerError(
                    f"objective returned a score without a cost for {candidate}; a tokens "
                    "budget needs the objective to return (score, generated_tokens)"
                )
            return value, None
        cost = _number(cost, f"objective returned cost {cost!r} for {candidate}; "
                             "expected a number")  # fmt: skip
        if not math.isfinite(cost) or cost < 0:
            raise TunerError(f"objective returned cost {cost} for {candidate}; expected >= 0")
        return value, cost

    @staticmethod
    def _problem_scores(candidate: str, values: Any, expected: int) -> list[float]:
        try:
            scores = [float(v) for v in values]
        except (TypeError, ValueError):
            raise TunerError(
                f"objective returned {values!r} for {candidate}; with problems it must "
                "return one number per problem index it was given"
            ) from None
        if len(scores) != expected or not all(math.isfinite(v) for v in scores):
            raise TunerError(
                f"objective returned {len(scores)} scores for {candidate} where {expected} "
                "problems were asked, or a score that is not finite"
            )
        return scores


def _number(value: Any, message: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TunerError(message) from None


def _objective_evaluation(score: float, cost: float | None, seconds: float) -> Evaluation:
    if cost is None:
        return Evaluation(score=score, metrics={"score": score}, seconds=seconds)
    return Evaluation(
        score=score, metrics={"score": score, "cost": cost},
        generated_tokens=round(cost), seconds=seconds,
    )  # fmt: skip
