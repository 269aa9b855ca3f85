"""A package's face, declared once: the imports under its ``if TYPE_CHECKING:``.

Type checkers and editors read those imports; at run time :func:`attach` turns them into
names that load on first use, and derives ``__all__`` from them. A viewer that only folds
events and reads the store (``from engine import RunFollower``) so pulls in neither
Optuna nor torch, and a worker starts without the app's imports.

Usage, at the end of a package's ``__init__.py``::

    if TYPE_CHECKING:
        from engine.store._store import Store

    __getattr__, __dir__, __all__ = attach(__name__, __file__)
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def face_of(source: str, package: str) -> dict[str, tuple[str, str]]:
    """``{name: (module, attribute)}`` of the ``from ... import`` statements under the
    top-level ``if TYPE_CHECKING:`` blocks of ``source`` (the ``__init__`` of ``package``)."""
    face = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"):
            continue
        for statement in node.body:
            if not isinstance(statement, ast.ImportFrom):
                raise TypeError(f"{package}: the face is `from ... import` statements only")
            module = statement.module or ""
            if statement.level:  # relative to the package itself
                module = ".".join([package, *[""] * (statement.level - 1), module]).strip(".")
            for alias in statement.names:
                face[alias.asname or alias.name] = (module, alias.name)
    return face


def attach(
    package: str, init_file: str
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, from its face."""
    face = face_of(Path(init_file).read_text(encoding="utf-8"), package)
    namespace = vars(sys.modules[package])

    def __getattr__(name: str) -> Any:
        if name not in face:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = face[name]
        value = getattr(importlib.import_module(module), attribute)
        namespace[name] = value  # the next access skips this hook
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(face))

    return __getattr__, __dir__, sorted(face)
