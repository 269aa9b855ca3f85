"""Tasks: a dataset split into problems, prompt pieces, and a scorer.

``get_task("humaneval")`` returns the HumanEval task on its built-in data; pass
``dataset=`` to use a JSONL file in the task's format instead, and other keyword options
(``samples_per_problem=``, ...) to the task's constructor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.tasks._code import truncate_at_stop
from engine.tasks._splits import unit_hash
from engine.tasks.apps import AppsTask
from engine.tasks.base import Problem, ProblemOutcome, Split, Task
from engine.tasks.humaneval import HumanEvalTask
from engine.tasks.instruct import CodeAlpacaTask, ConalaTask
from engine.tasks.metrics import pass_at_k
from engine.tasks.summarization import SummarizationTask
from engine.tasks.testgen import TestGenTask

__all__ = [
    "AppsTask",
    "CodeAlpacaTask",
    "ConalaTask",
    "HumanEvalTask",
    "Problem",
    "ProblemOutcome",
    "Split",
    "SummarizationTask",
    "TestGenTask",
    "Task",
    "TASKS",
    "get_task",
    "pass_at_k",
    "truncate_at_stop",
    "unit_hash",
]

#: Task name -> task class; each takes ``(dataset=None, *, samples_per_problem=1, ...)``.
TASKS: dict[str, type[Task]] = {
    "humaneval": HumanEvalTask,
    "apps": AppsTask,
    "summarization": SummarizationTask,
    "testgen": TestGenTask,
    "conala": ConalaTask,
    "codealpaca": CodeAlpacaTask,
}


def get_task(name: str, *, dataset: str | Path | None = None, **options: Any) -> Task:
    """The task registered as ``name`` (case-insensitive), on ``dataset`` if given.

    Raises:
        ConfigError: ``name`` is not a known task, or an option is invalid.
        DatasetError: ``dataset`` cannot be read or has a malformed row.
    """
    key = str(name).strip().lower()
    if key not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[key](dataset, **options)
