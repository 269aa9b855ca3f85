"""Fault injection for the crash tests: kill this process at a named point of a run.

With ``CODELLMTUNER_CRASH_AT="commit:3"`` in the environment, the third time the engine
passes the point ``commit`` it sends itself ``SIGKILL``: no handler runs, no buffer is
flushed, exactly as when a scheduler or the out-of-memory killer ends a run. Several
points may be given, comma-separated; the first one reached fires. Points:

``generated``  completions generated, not yet written to the completion cache
``scoring``    completions cached, scoring not started
``chunk``      a chunk of a sample's problems cached and scored, the next not started
``commit``     inside a sample's transaction, before it commits
``committed``  a sample committed, before the optimizer and the ranking hear of it
``selected``   the stage-1 winner stored, stage 3 not started
``loading``    a model being loaded, after the evictions that made room for it

Unset (always, outside tests), :func:`crash_point` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "POINTS", "crash_point"]

ENV = "CODELLMTUNER_CRASH_AT"
POINTS = ("generated", "scoring", "chunk", "commit", "committed", "selected", "loading")
_passes: dict[str, int] = {}


def _plan() -> dict[str, int]:
    plan = {}
    for item in filter(None, os.environ.get(ENV, "").split(",")):
        point, _, count = item.strip().partition(":")
        plan[point] = int(count or 1)
    return plan


_targets = _plan()


def crash_point(point: str) -> None:
    """SIGKILL this process if the environment asks for a crash at this pass of ``point``."""
    if point not in _targets:
        return
    _passes[point] = _passes.get(point, 0) + 1
    if _passes[point] == _targets[point]:
        os.kill(os.getpid(), signal.SIGKILL)
