"""Mutants of a Python function: small syntactic faults made with :mod:`ast` (pure, no execution).

:func:`candidates` lists every distinct first-order mutant of the functions in a source
text, in source order; :func:`mutants` draws at most ``limit`` of them, deterministically
for a given ``seed`` and spread over the operator kinds. A :class:`Mutant` carries the
whole mutated module (``ast.unparse`` of the changed tree: imports and helpers included,
comments and formatting lost) and a description such as ``line 5: + -> -``, where the
line is that of the original source.

Only the *bodies* of the chosen functions change: never their signature, decorators,
default values or docstring, and never module-level code. Kinds and what they do:

``arithmetic``
    ``+ -> -``, ``- -> +``, ``* -> /``, ``/ -> *``, ``// -> /``, ``% -> //``, ``** -> *``,
    ``<< <-> >>``, ``& <-> |``, ``^ -> &``
``comparison``
    ``< -> <=``, ``<= -> <``, ``> -> >=``, ``>= -> >`` (off-by-one boundaries),
    ``== <-> !=``, ``is <-> is not``, ``in <-> not in``
``boolean``
    ``and <-> or``, ``not x -> x``, and a condition ``x -> not x`` (of an ``if``, ``while``,
    conditional expression or comprehension filter)
``augmented``
    the arithmetic table applied to ``+=``, ``-=``, ...
``unary``
    ``-x -> x``
``return``
    ``return x -> return None``
``constant``
    a number ``n -> n + 1``, ``0``, ``-n``; ``True <-> False``; a non-empty string or bytes
    ``-> ''``. Docstring-like string statements and f-string pieces are left alone.

A change whose unparsed module equals the original's (``0 -> -0``), one that duplicates
an earlier mutant, or one that does not compile is dropped.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError
from engine.tasks._code import parse_python

__all__ = ["KINDS", "Mutant", "candidates", "mutants"]

#: Operator kinds in the order :func:`mutants` deals them out.
KINDS = ("arithmetic", "comparison", "boolean", "augmented", "unary", "return", "constant")

_ARITHMETIC: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitAnd,
}
_COMPARISON: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_SYMBOLS: dict[type[ast.AST], str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
    ast.Mod: "%", ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&",
    ast.BitOr: "|", ast.BitXor: "^", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
    ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is", ast.IsNot: "is not",
    ast.In: "in", ast.NotIn: "not in", ast.And: "and", ast.Or: "or",
}  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    """One mutant: the whole mutated ``source``, what changed, its kind and line."""

    source: str
    description: str
    kind: str
    line: int


def candidates(source: str, *, function: str | None = None) -> list[Mutant]:
    """Every distinct mutant of ``source`` (see the module docstring), in source order.

    ``function`` names the top-level function whose body is mutated; ``None`` mutates
    the bodies of all top-level functions.

    Raises:
        SyntaxError: ``source`` is not valid Python.
        ValueError: ``source`` defines no top-level function ``function``.
    """
    original = parse_python(source)
    targets = _targets(original, function)
    baseline = ast.unparse(original)
    nodes = [(path, _resolve(original, path)) for path in _site_paths(original, targets)]
    nodes.sort(key=lambda item: (getattr(item[1], "lineno", 0), getattr(item[1], "col_offset", 0)))
    sites = [(path, change) for path, node in nodes for change in _changes(node, path[-1][0])]
    seen = {baseline}
    found = []
    for path, (kind, before, after, apply) in sites:
        tree = parse_python(source)  # a fresh copy per mutant; parsing is cheap and exact
        node = _resolve(tree, path)
        replacement = apply(node)
        if replacement is not node:
            _replace(tree, path, replacement)
        text = ast.unparse(ast.fix_missing_locations(tree))
        if text in seen or not _compiles(text):
            continue
        seen.add(text)
        line = getattr(node, "lineno", 0)
        found.append(Mutant(text + "\n", f"line {line}: {before} -> {after}", kind, line))
    return found


def mutants(source: str, *, limit: int, seed: int = 0, function: str | None = None) -> list[Mutant]:
    """At most ``limit`` of :func:`candidates`, in source order.

    When there are more, they are drawn by ``seed``: each kind's mutants are shuffled
    with one ``random.Random(seed)`` and then dealt out one kind at a time in
    :data:`KINDS` order, so a function with forty constants still gets its comparison
    and arithmetic mutants. The same source, function and seed give the same mutants.

    Raises:
        ConfigError: ``limit`` is not an integer >= 1 or ``seed`` is not an integer.
        SyntaxError: ``source`` is not valid Python.
        ValueError: ``source`` defines no top-level function ``function``.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"the mutant limit must be an integer >= 1, got {limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"the mutant seed must be an integer, got {seed!r}")
    found = candidates(source, function=function)
    if len(found) <= limit:
        return found
    rng = random.Random(seed)
    pools = []
    for kind in KINDS:
        pool = [i for i, m in enumerate(found) if m.kind == kind]
        rng.shuffle(pool)
        pools.append(pool)
    chosen: list[int] = []
    while len(chosen) < limit:  # some pool is non-empty: there are more than limit in all
        for pool in pools:
            if pool and len(chosen) < limit:
                chosen.append(pool.pop())
    return [found[i] for i in sorted(chosen)]


# -- where to mutate --------------------------------------------------------------------------

Path = tuple[tuple[str, int | None], ...]  # (field, index or None) steps from the module


def _targets(tree: ast.Module, function: str | None) -> list[int]:
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    found = [
        i
        for i, node in enumerate(tree.body)
        if isinstance(node, functions) and (function is None or node.name == function)
    ]
    if function is not None and not found:
        raise ValueError(f"the source defines no top-level function {function!r}")
    return found[-1:] if function is not None else found  # a redefinition wins, as at run time


def _site_paths(tree: ast.Module, targets: list[int]) -> Iterator[Path]:
    """Paths to every node of the targets' bodies (docstrings skipped), depth first."""
    for index in targets:
        body = tree.body[index].body  # type: ignore[attr-defined]
        start = 1 if body and _is_docstring(body[0]) else 0
        for position in range(start, len(body)):
            yield from _walk(body[position], (("body", index), ("body", position)))


def _walk(node: ast.AST, path: Path) -> Iterator[Path]:
    if isinstance(node, ast.Expr) and _is_docstring(node):
        return  # a bare string statement does nothing; changing it makes an equivalent mutant
    if isinstance(node, ast.JoinedStr):
        # Only the expressions of an f-string: its literal pieces and format specs are
        # Constants whose mutation unparses unreliably.
        for i, value in enumerate(node.values):
            if isinstance(value, ast.FormattedValue):
                yield from _walk(value.value, (*path, ("values", i), ("value", None)))
        return
    yield path
    for name, value in ast.iter_fields(node):
        if name in ("annotation", "returns", "type_comment", "decorator_list"):
            continue  # annotations and decorators are not behaviour
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and name == "args":
            continue  # a nested function's signature (defaults included) stays as written
        if isinstance(value, ast.AST):
            yield from _walk(value, (*path, (name, None)))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, ast.AST):
                    yield from _walk(item, (*path, (name, i)))


def _resolve(tree: ast.AST, path: Path) -> ast.AST:
    node = tree
    for name, index in path:
        node = getattr(node, name) if index is None else getattr(node, name)[index]
    return node


def _replace(tree: ast.AST, path: Path, new: ast.AST) -> None:
    parent = _resolve(tree, path[:-1])
    name, index = path[-1]
    if index is None:
        setattr(parent, name, new)
    else:
        getattr(parent, name)[index] = new


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


# -- what to change ---------------------------------------------------------------------------

# kind, before, after, apply: changes the node in place and returns it, or returns the
# node that takes its place
Change = tuple[str, str, str, Callable[[Any], ast.AST]]


def _changes(node: ast.AST, field: str) -> list[Change]:
    """The mutations possible at ``node`` itself (not its children); ``field`` is the name
    under which its parent holds it (``test`` of an ``if``, ``ifs`` of a comprehension)."""
    found = []
    is_not = isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
    if field in ("test", "ifs") and not is_not:
        found.append(("boolean", "if x", "if not x", _negate))
    value = getattr(node, "value", None)
    returns_something = not (
        value is None or isinstance(value, ast.Constant) and value.value is None
    )
    if isinstance(node, ast.Return) and returns_something:
        found.append(("return", "return x", "return None", _return_none))
    return found + _operator_changes(node)


def _operator_changes(node: ast.AST) -> list[Change]:
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return [_swap_op("arithmetic", node.op, _ARITHMETIC, "op")]
    if isinstance(node, ast.AugAssign) and type(node.op) in _ARITHMETIC:
        old, new = _SYMBOLS[type(node.op)], _SYMBOLS[_ARITHMETIC[type(node.op)]]
        return [("augmented", old + "=", new + "=", _setter("op", _ARITHMETIC[type(node.op)]))]
    if isinstance(node, ast.Compare):
        return [_swap_cmp(i, op) for i, op in enumerate(node.ops) if type(op) in _COMPARISON]
    if isinstance(node, ast.BoolOp):
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        return [("boolean", _SYMBOLS[type(node.op)], _SYMBOLS[other], _setter("op", other))]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return [("boolean", "not x", "x", _unwrap)]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return [("unary", "-x", "x", _unwrap)]
    if isinstance(node, ast.Constant):
        return [("constant", repr(node.value), repr(new), _setter("value", new))
                for new in _constant_values(node.value)]  # fmt: skip
    return []


def _swap_op(kind: str, op: ast.AST, table: dict, field: str) -> Change:
    new = table[type(op)]
    return (kind, _SYMBOLS[type(op)], _SYMBOLS[new], _setter(field, new))


def _swap_cmp(index: int, op: ast.cmpop) -> Change:
    new = _COMPARISON[type(op)]

    def apply(node: ast.Compare) -> ast.AST:
        node.ops[index] = new()
        return node

    return ("comparison", _SYMBOLS[type(op)], _SYMBOLS[new], apply)


def _setter(field: str, value: object) -> Callable[[Any], ast.AST]:
    def apply(node: ast.AST) -> ast.AST:
        setattr(node, field, value() if isinstance(value, type) else value)
        return node

    return apply


def _unwrap(node: ast.UnaryOp) -> ast.AST:
    return node.operand


def _negate(node: ast.expr) -> ast.AST:
    return ast.UnaryOp(op=ast.Not(), operand=node)


def _return_none(node: ast.Return) -> ast.AST:
    node.value = ast.Constant(value=None)
    return node


def _constant_values(value: object) -> list[object]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, (int, float)):
        return [value + 1, type(value)(0), -value]
    if isinstance(value, (str, bytes)) and value:
        return [type(value)()]
    return []


def _compiles(text: str) -> bool:
    try:
        compile(text, "<mutant>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True
