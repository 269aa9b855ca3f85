"""Tasks: a dataset split into problems, prompt pieces, and a scorer.

``get_task("humaneval")`` returns the bundled HumanEval task; pass ``dataset=`` to score a
JSONL file in the same format instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.errors import ConfigError
from engine.tasks.base import Problem, ProblemOutcome, Split, Task
from engine.tasks.humaneval import HumanEvalTask
from engine.tasks.metrics import pass_at_k

__all__ = [
    "HumanEvalTask",
    "Problem",
    "ProblemOutcome",
    "Split",
    "Task",
    "TASKS",
    "get_task",
    "pass_at_k",
]

#: Task name -> factory taking the optional dataset path.
TASKS: dict[str, Callable[[str | Path | None], Task]] = {
    "humaneval": lambda dataset: HumanEvalTask(dataset),
}


def get_task(name: str, *, dataset: str | Path | None = None) -> Task:
    """The task registered as ``name`` (case-insensitive), on ``dataset`` if given.

    Raises:
        ConfigError: ``name`` is not a known task.
        DatasetError: ``dataset`` cannot be read or has a malformed row.
    """
    key = str(name).strip().lower()
    if key not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[key](dataset)
