"""Evaluation: turn (candidate, decoding parameters) into a scored sample.

An :class:`Evaluator` is what a run and its workers call; :func:`build_evaluator` makes
the one a run's spec describes: a user's objective, or a :class:`TaskEvaluator` that
prompts a model on a task, generates through the completion cache, scores the
completions in the sandbox and aggregates the task's metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import attach

if TYPE_CHECKING:
    from engine.evaluation._base import Evaluation, Evaluator, Objective, import_objective
    from engine.evaluation._build import build_evaluator
    from engine.evaluation._objective import ObjectiveEvaluator
    from engine.evaluation._task import TaskEvaluator

__getattr__, __dir__, __all__ = attach(__name__, __file__)
