"""Checks of task options, shared by the task constructors (each raises ConfigError)."""

from __future__ import annotations

import os
from typing import Any

from engine.errors import is_positive, is_whole, require

__all__ = ["set_common_options", "set_sandbox_limits"]


def set_common_options(
    task: Any, *, samples_per_problem: object, workers: object, sandbox: object
) -> None:
    """Check the options every task takes and set them on ``task``; ``workers=None``
    becomes the CPU count."""
    from engine.tasks.sandbox import MODES  # here, so importing the option checks stays cheap

    require(
        is_whole(samples_per_problem, 1),
        f"samples_per_problem must be a whole number >= 1: {samples_per_problem!r}",
    )
    workers = (os.cpu_count() or 1) if workers is None else workers
    require(is_whole(workers, 1), f"workers must be a whole number >= 1: {workers!r}")
    require(sandbox in MODES, f"sandbox must be one of {', '.join(MODES)}: {sandbox!r}")
    task.samples_per_problem, task.workers, task.sandbox = samples_per_problem, workers, sandbox


def set_sandbox_limits(task: Any, *, timeout: object, memory_mb: object) -> None:
    """Check the limits of the sandboxed programs a code task runs and set them on
    ``task``: ``timeout`` seconds for a program, ``memory_mb`` of memory."""
    require(is_positive(timeout), f"timeout must be a positive number: {timeout!r}")
    require(is_whole(memory_mb, 64), f"memory_mb must be an integer >= 64: {memory_mb!r}")
    task.timeout, task.memory_mb = float(timeout), memory_mb
