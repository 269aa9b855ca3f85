"""Checks of task options, shared by the task constructors (each raises ConfigError)."""

from __future__ import annotations

import math

from engine.errors import ConfigError

__all__ = ["is_positive", "is_whole", "require"]


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
