"""How the code is layered: the engine has no import cycle (``TYPE_CHECKING`` imports
count), a package is reached from outside only through its face, the app sees only the
engine's face, and the run screen's state loads neither Optuna nor torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ROOT

FACE = {"engine", "engine.errors"}  # what tui/ may import


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(
    source: str, modules: set[str], face: frozenset[str] = frozenset()
) -> set[str]:
    """Which of ``modules`` ``source`` imports, anywhere in it: inside functions too (a
    deferred import still makes a cycle) and under ``if TYPE_CHECKING`` (a type checker
    follows it). ``from engine.tasks import sandbox`` imports ``engine.tasks`` and
    ``engine.tasks.sandbox``, unless ``sandbox`` is one of the ``face`` names."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}" for alias in node.names if alias.name not in face
            )
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found & modules


def package_modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in (ROOT / package).rglob("*.py")}


def import_graph(package: str) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` for every module of ``package``."""
    files = package_modules(package)
    graph = {name: imported_modules(p.read_text(), set(files)) for name, p in files.items()}
    # Python imports a module's parent packages before it: an edge to an ancestor is how
    # packages work (``from engine.tasks import mutation`` inside engine/tasks/), not a cycle.
    return {
        name: {m for m in imported if m != name and not name.startswith(m + ".")}
        for name, imported in graph.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``[]``."""
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str]:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return []
        for nxt in sorted(graph.get(node, ())):
            cycle = walk(nxt, [*path, node])
            if cycle:
                return cycle
        done.add(node)
        return []

    for start in sorted(graph):
        cycle = walk(start, [])
        if cycle:
            return cycle
    return []


def test_a_cycle_is_found_and_type_checking_imports_count():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []
    source = (
        "from typing import TYPE_CHECKING\nfrom engine.tasks import sandbox\n"
        "if TYPE_CHECKING:\n    from engine.run._tuner import Tuner\n"
        "def later():\n    import engine.generation._models\n"
    )
    modules = {"engine.tasks", "engine.tasks.sandbox", "engine.generation._models",
               "engine.run._tuner", "engine.store"}  # fmt: skip
    assert imported_modules(source, modules) == modules - {"engine.store"}


def test_the_engine_has_no_import_cycle():
    assert find_cycle(import_graph("engine")) == []


def test_the_app_imports_only_the_engines_face():
    import engine

    engine_modules = set(package_modules("engine"))
    face = frozenset(engine.__all__)
    outside = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "tui").rglob("*.py")
        for name in imported_modules(path.read_text(), engine_modules, face) - FACE
    }
    assert outside == set()


def test_the_run_states_imports_leave_out_optuna_and_torch():
    code = (
        "import json, sys; import tui.run.state; "
        "print(json.dumps([m for m in ('optuna', 'torch', 'transformers') if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def _package_of(module: str) -> str | None:
    """The subpackage whose private module ``module`` is (``engine.store._sql``:
    ``engine.store``), or ``None``."""
    head, _, last = module.rpartition(".")
    return head if last.startswith("_") and head.count(".") >= 1 else None


def test_packages_are_reached_from_outside_only_through_their_face():
    modules = set(package_modules("engine"))
    private = {m for m in modules if _package_of(m)}
    through_a_side_door = {
        f"{name} imports {target}"
        for name, imported in import_graph("engine").items()
        for target in imported & private
        if not (name + ".").startswith(_package_of(target) + ".")
    }
    assert through_a_side_door == set()


def test_a_face_is_the_imports_under_type_checking():
    from engine._lazy import face_of

    source = (
        "from typing import TYPE_CHECKING\nfrom engine._lazy import attach\n"
        "if TYPE_CHECKING:\n    from engine.store._store import Store\n"
        "    from ._sql import TABLES as SCHEMA\n"
    )
    assert face_of(source, "engine.store") == {
        "Store": ("engine.store._store", "Store"),
        "SCHEMA": ("engine.store._sql", "TABLES"),
    }


@pytest.mark.parametrize(
    "package",
    ["engine", "engine.store", "engine.selection", "engine.generation", "engine.evaluation",
     "engine.run"],
)  # fmt: skip
def test_every_name_of_a_face_resolves(package):
    import importlib

    module = importlib.import_module(package)
    assert module.__all__ == sorted(module.__all__) and module.__all__
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018
