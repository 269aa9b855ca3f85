"""Finding the code in a model's answer: fenced blocks, parsing."""

from __future__ import annotations

import ast
import re
import threading
from collections.abc import Sequence

__all__ = ["PYTHON_TAGS", "fenced_blocks", "parse_python", "truncate_at_stop"]

# CPython 3.11 before 3.11.8 shares the AST constructor's recursion counter between
# threads, so two ast.parse calls at once can fail with "SystemError: AST constructor
# recursion depth mismatch" (cpython gh-106905). Tasks score in threads: parse one at a time.
_PARSE_LOCK = threading.Lock()

#: Language tags of a fenced block that mean Python ("" = an untagged block).
PYTHON_TAGS = frozenset({"", "python", "python3", "py", "py3"})
# An unclosed fence runs to the end: a model that hit its token limit never closes it.
_FENCE = re.compile(r"```([^\n`]*)\n(.*?)(?:```|\Z)", re.S)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(tag, body)`` of each ``` fenced block of ``text`` in order; ``tag`` is the first
    word of the info string, lower-cased (``""`` when untagged)."""
    blocks = []
    for info, body in _FENCE.findall(text):
        words = info.strip().lower().split()
        blocks.append((words[0] if words else "", body))
    return blocks


def parse_python(source: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse(source)``, safe to call from several threads at once.

    Raises:
        SyntaxError: ``source`` is not valid Python (also ValueError for a NUL byte).
    """
    with _PARSE_LOCK:
        return ast.parse(source, filename=filename)


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest occurrence of any stop sequence.

    Returns ``(text, found)``. Empty stop sequences are ignored. Backends cut their
    generations with it and tasks cut raw continuations with it, so both cut alike.

    >>> truncate_at_stop("a = 1\\ndef g():", ["\\ndef", "\\nclass"])
    ('a = 1', True)
    """
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
