"""Reading a dataset JSONL file (plain or ``.gz``), row by row, refusing bad rows.

A loader passes a ``parse(row, where)`` function that turns one JSON object into its
problem, raising :class:`RowError` (or :class:`~engine.errors.DatasetError`) with the
field at fault. :func:`load_jsonl` runs it on every row and, if any row is malformed,
refuses the whole file with one message naming the file, line and field of the first
bad row and how many others there are: a dataset is never silently shortened.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from engine.errors import DatasetError

__all__ = ["RowError", "load_jsonl", "optional_str", "require_str"]

T = TypeVar("T")
_SHOWN = 5  # line numbers of further bad rows listed in the message


class RowError(ValueError):
    """One row is malformed; the message names the field and what is wrong with it."""


def load_jsonl(path: str | Path, parse: Callable[[dict[str, Any], str], T]) -> list[T]:
    """``parse(row, "file:line")`` for every non-blank line of ``path``, in file order.

    Raises:
        DatasetError: the file is missing, unreadable or has no rows, or a row is not a
            JSON object or fails ``parse``: ``file:line: message`` for the first bad row,
            followed by the count and line numbers of the others.
    """
    path = Path(path)
    lines = _read_lines(path)
    parsed: list[T] = []
    errors: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            parsed.append(parse(_object(line), f"{path}:{number}"))
        except (RowError, DatasetError) as error:
            errors.append((number, str(error)))
    if errors:
        raise DatasetError(_refusal(path, errors, len(parsed) + len(errors)))
    if not parsed:
        raise DatasetError(f"{path}: the dataset has no rows")
    return parsed


def require_str(row: Mapping[str, Any], field: str, *, empty_ok: bool = False) -> str:
    """``row[field]`` as a string; :class:`RowError` if missing, not a string or empty."""
    if field not in row:
        raise RowError(f"field {field!r} is missing")
    value = row[field]
    if not isinstance(value, str):
        raise RowError(f"field {field!r} must be a string, got {type(value).__name__}")
    if not empty_ok and not value.strip():
        raise RowError(f"field {field!r} is empty")
    return value


def optional_str(row: Mapping[str, Any], field: str, default: str = "") -> str:
    """``row[field]`` when present and not null, else ``default``; must be a string."""
    if row.get(field) is None:
        return default
    return require_str(row, field, empty_ok=True)


def _read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        # A FIFO or a device (/dev/zero) would block or never end: only plain files.
        if path.exists() and not path.is_dir() and not path.is_file():
            raise DatasetError(f"{path}: not a regular file; give a .jsonl file")
        # utf-8-sig: a byte-order mark some editors write is not part of the first row.
        with opener(path, "rt", encoding="utf-8-sig") as file:
            return file.read().splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such dataset file") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a folder; give a .jsonl file") from None
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as error:
        # zlib.error: a .gz file whose compressed body is corrupted
        raise DatasetError(f"{path}: cannot read the dataset ({error})") from None
    except ValueError as error:  # a NUL byte in the path
        raise DatasetError(f"{str(path)!r}: not a usable file path ({error})") from None


def _object(line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise RowError(f"invalid JSON ({error.msg})") from None
    except ValueError:  # Python refuses to convert integers of more than 4300 digits
        raise RowError("invalid JSON (a number is too long)") from None
    except RecursionError:
        raise RowError("invalid JSON (nested too deeply)") from None
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {type(row).__name__}")
    for key, value in row.items():
        # "\ud800" escapes decode to lone surrogates: not text, and SQLite, hashing and
        # tokenizers cannot encode them, so they would fail far from the file.
        if _has_surrogate(key) or _has_surrogate(value):
            raise RowError(f"field {key!r} holds a lone surrogate (an invalid \\uD8xx escape)")
    return row


def _has_surrogate(value: Any) -> bool:
    """Whether ``value`` (a parsed JSON value) holds a string that is not valid Unicode."""
    pending = [value]  # iterative: a deeply nested value must not exhaust the stack
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
    return False


def _refusal(path: Path, errors: list[tuple[int, str]], total: int) -> str:
    number, message = errors[0]
    where = f"{path}:{number}"
    text = message if message.startswith(f"{path}:") else f"{where}: {message}"
    if len(errors) > 1:
        others = ", ".join(str(n) for n, _ in errors[1 : 1 + _SHOWN])
        more = ", ..." if len(errors) > 1 + _SHOWN else ""
        text += f" (and {len(errors) - 1} more malformed rows, lines {others}{more})"
    return f"{text}; {len(errors)} of {total} rows malformed, fix or remove them"
