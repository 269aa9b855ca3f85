"""Checks of task options, shared by the task constructors (each raises ConfigError)."""

from __future__ import annotations

import math
import os
from typing import Any

from engine.errors import ConfigError

__all__ = ["is_positive", "is_whole", "require", "set_common_options"]


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition``."""
    if not condition:
        raise ConfigError(message)


def is_whole(value: object, minimum: int | None = None) -> bool:
    """``value`` is an ``int`` (not a ``bool``) and at least ``minimum``."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    return ok and (minimum is None or value >= minimum)  # type: ignore[operator]


def is_positive(value: object) -> bool:
    """``value`` is a finite number above 0 (not a ``bool``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return ok and math.isfinite(value) and value > 0  # type: ignore[arg-type]


def set_common_options(
    task: Any, *, samples_per_problem: object, workers: object, sandbox: object
) -> None:
    """Check the options every task takes and set them on ``task``; ``workers=None``
    becomes the CPU count."""
    from engine.sandbox import MODES  # here, so importing the option checks stays cheap

    require(
        is_whole(samples_per_problem, 1),
        f"samples_per_problem must be a whole number >= 1: {samples_per_problem!r}",
    )
    workers = (os.cpu_count() or 1) if workers is None else workers
    require(is_whole(workers, 1), f"workers must be a whole number >= 1: {workers!r}")
    require(sandbox in MODES, f"sandbox must be one of {', '.join(MODES)}: {sandbox!r}")
    task.samples_per_problem, task.workers, task.sandbox = samples_per_problem, workers, sandbox
