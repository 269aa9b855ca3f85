"""Errors the engine raises for the user to read.

Every :class:`TunerError` carries a one-line message that says what went wrong and how
to fix it. Front ends print ``str(error)`` and exit non-zero; they never show a traceback
for these.
"""

from __future__ import annotations


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
