"""The one evaluator a run's spec describes, for the run, its resumption and its workers."""

from __future__ import annotations

from collections.abc import Callable

from engine.errors import ConfigError
from engine.evaluation._base import Evaluator, Objective, import_objective
from engine.evaluation._objective import ObjectiveEvaluator
from engine.evaluation._task import TaskEvaluator
from engine.spec import RunSpec
from engine.tasks import Task


def build_evaluator(
    spec: RunSpec,
    *,
    objective: Objective | None = None,
    task: Task | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_info: Callable[[str], None] | None = None,
) -> Evaluator:
    """The evaluator of a run with ``spec``, as the run, its resumption and its workers
    all build it: the objective (``objective``, else the one the spec's import path
    names) over the spec's problems, or the spec's task (``task``, an object given in
    its place, else loaded by name with the spec's settings) on its candidates.
    ``on_warning`` and ``on_info`` receive its one-line warnings and notes (each model
    loaded or evicted, with its seconds)."""
    settings = spec.settings
    if spec.objective:
        if objective is None:
            if not isinstance(spec.objective, str):
                raise ConfigError("this run tuned a Python function: pass it as objective=")
            objective = import_objective(spec.objective)
        return ObjectiveEvaluator(
            objective, spec.names, require_cost=settings.budget.unit == "tokens",
            problems=spec.problems,
        )  # fmt: skip
    if task is None and spec.task is None:
        raise ConfigError("a run needs a task or an objective")
    return TaskEvaluator.from_settings(
        task or spec.task, spec.candidates, settings, on_warning=on_warning, on_info=on_info
    )
