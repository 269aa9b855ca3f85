"""Errors the engine raises for the user to read.

Every :class:`TunerError` carries a one-line message that says what went wrong and how
to fix it. Front ends print ``str(error)`` and exit non-zero; they never show a traceback
for these.
"""

from __future__ import annotations

import math


class TunerError(Exception):
    """Base class: a problem the user can fix (bad input, missing model, ...)."""


class ConfigError(TunerError):
    """An invalid option, parameter range or candidate specification."""


class DatasetError(TunerError):
    """A dataset file that cannot be read, or a row that is malformed."""


class ModelLoadError(TunerError):
    """A model path or id that does not resolve to a loadable model."""


class ServerError(TunerError):
    """A model server that cannot be reached, refuses a request, or answers nonsense."""


class StoreError(TunerError):
    """The sample store cannot be opened, is corrupted, or the run is unknown."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none): the
    detail a one-line :class:`TunerError` quotes from a library's exception."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- checks of user input, each raising ConfigError --------------------------------------


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
