"""Reading the tests out of an answer: its code parsed with :mod:`ast`, test functions
unpacked into statements, each an assert (scored) or setup."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from engine.tasks._code import PYTHON_TAGS, fenced_blocks, parse_python, truncate_at_stop
from engine.tasks.base import Problem

__all__ = ["CONTINUATION_STOPS", "MAX_ASSERTS", "Statement", "extract_tests", "open_test"]

#: Where a raw continuation of ``def test_<name>():`` has left the test function.
CONTINUATION_STOPS = ("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#", "\n@", "\n```", "\ntest_")
MAX_ASSERTS = 50  # default cap on the asserts taken from one answer (bounds the run time)


class Statement(NamedTuple):
    """One statement of extracted test code: its line in the answer, its source, and
    whether it is an assert (counted and scored) or setup (an import, a helper, ...)."""

    line: int
    source: str
    is_assert: bool


def extract_tests(
    problem: Problem, completion: str, *, continuation: bool, max_asserts: int = MAX_ASSERTS
) -> list[Statement]:
    """The test statements of an answer, in order.

    ``continuation``: the completion continues :meth:`TestGenTask.completion_prefix`, so
    it is read as the body of ``def test_<entry_point>():`` up to the function's end (or
    the first of :data:`CONTINUATION_STOPS`). Otherwise (a chat answer): the fenced
    Python blocks, else all fenced blocks, else the whole text. In that code

    - a top-level ``assert`` is an assert; ``assert <constant>`` is dropped;
    - a test function (``test*``, ``check``, or an argument-free function with an
      ``assert``) is unpacked: each statement of its body is an assert if it contains
      one (a ``for`` loop with asserts is one assert), else setup; ``check``'s parameter
      is bound to the entry point;
    - the answer's own ``def <entry_point>`` is dropped, so the reference is what runs;
    - imports, helper functions, classes and assignments are kept as setup;
    - other expression statements (``test_x()``, ``print(...)``) are dropped, and an
      ``if __name__ == "__main__":`` block is read like top-level code.

    Code that does not parse is cut before its first syntax error (a generation cut off
    at the token limit keeps its complete statements); if that leaves no assert, every
    line that is an ``assert`` on its own is taken. Repeated asserts count once, and
    asserts after the first ``max_asserts`` are ignored.
    """
    text = completion.replace("\r\n", "\n")
    name = problem.entry_point
    blocks = [_continued_test(name, text)] if continuation else _code_blocks(text)
    found: list[Statement] = []
    for block in blocks:
        block = textwrap.dedent(block)
        tree = _parse_prefix(block)
        statements = list(_collect(tree.body, name)) if tree else []
        if not any(s.is_assert for s in statements):
            statements = _assert_lines(block)
        found += statements
    seen: set[str] = set()
    kept = []
    for statement in found:
        if statement.is_assert:
            if statement.source in seen or len(seen) >= max_asserts:
                continue
            seen.add(statement.source)
        kept.append(statement)
    return kept


def open_test(name: str) -> str:
    """The start of the test function a raw completion continues."""
    return f"def test_{name}():\n    assert {name}("


def _continued_test(name: str, text: str) -> str:
    lines = (open_test(name) + truncate_at_stop(text, CONTINUATION_STOPS)[0]).split("\n")
    end = next(
        (i for i in range(1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()),
        len(lines),
    )  # the first line back at column 0 ends the test function
    return "\n".join(lines[:end])


def _code_blocks(text: str) -> list[str]:
    blocks = fenced_blocks(text)
    python = [body for tag, body in blocks if tag in PYTHON_TAGS]
    return python or [body for _, body in blocks] or [text]


def _parse_prefix(code: str) -> ast.Module | None:
    """``code`` parsed, or its longest prefix before a syntax error that parses."""
    lines = code.split("\n")
    while lines:
        try:
            return parse_python("\n".join(lines))
        except SyntaxError as error:
            line = error.lineno or len(lines)
            lines = lines[: max(0, min(line - 1, len(lines) - 1))]
        except ValueError:  # a null byte
            return None
    return None


def _assert_lines(code: str) -> list[Statement]:
    found = []
    for number, line in enumerate(code.split("\n"), 1):
        if line.lstrip().startswith("assert"):
            try:
                tree = parse_python(line.strip())
            except (SyntaxError, ValueError):
                continue
            if len(tree.body) == 1 and _has_assert(tree.body[0]):
                found.append(Statement(number, ast.unparse(tree.body[0]), True))
    return found


def _collect(body: Sequence[ast.stmt], name: str) -> Iterator[Statement]:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name == name:
                continue  # the answer's own version of the function under test
            if isinstance(node, ast.FunctionDef) and _is_test_function(node):
                if node.name == "check" and node.args.args:
                    yield Statement(node.lineno, f"{node.args.args[0].arg} = {name}", False)
                yield from _unpack(node.body)
            else:
                yield _statement(node, False)
        elif isinstance(node, ast.If) and _is_main_guard(node):
            yield from _collect(node.body, name)
        elif isinstance(node, ast.Expr):
            continue  # calls of the test functions, prints, strings
        elif _has_assert(node):
            yield _statement(node, True)
        elif not isinstance(node, ast.Assert):  # assert <constant> tests nothing
            yield _statement(node, False)


def _unpack(body: Sequence[ast.stmt]) -> Iterator[Statement]:
    """The statements of a test function's body."""
    for i, node in enumerate(body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.Return) or _is_print(node):
            continue
        if _has_assert(node):
            yield _statement(node, True)
        elif not isinstance(node, ast.Assert):
            yield _statement(node, False)


def _statement(node: ast.stmt, is_assert: bool) -> Statement:
    return Statement(node.lineno, ast.unparse(node), is_assert)


def _is_test_function(node: ast.FunctionDef) -> bool:
    if node.name == "check" or node.name.startswith("test"):
        return True
    arguments = node.args
    takes_none = not (arguments.posonlyargs or arguments.args or arguments.kwonlyargs)
    return takes_none and not (arguments.vararg or arguments.kwarg) and _has_assert(node, True)


def _is_main_guard(node: ast.If) -> bool:
    test = ast.unparse(node.test).replace('"', "'")
    return test in ("__name__ == '__main__'", "'__main__' == __name__")


def _is_print(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "print"
    )


def _has_assert(node: ast.AST, top: bool = False) -> bool:
    """Whether ``node`` contains an ``assert`` of a non-constant, outside nested
    definitions (``top``: ``node`` itself is the definition to look into)."""
    if isinstance(node, ast.Assert):
        return not isinstance(node.test, ast.Constant)
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
    if isinstance(node, nested) and not top:
        return False
    return any(_has_assert(child) for child in ast.iter_child_nodes(node))
