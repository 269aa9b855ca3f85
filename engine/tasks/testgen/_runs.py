"""Sandbox runs of test statements: each statement under its own time limit, results
read back from the harness's nonce line."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from engine.tasks import sandbox
from engine.tasks._harness import read_report, with_harness
from engine.tasks.testgen._extract import Statement

__all__ = ["detection", "detects", "passing", "run_statements"]

_FLAG = "_codellmtuner_failed"


def run_statements(
    program: str,
    statements: Sequence[Statement],
    *,
    timeout: float,
    assert_timeout: float,
    memory_mb: int = 1024,
    mode: str = "auto",
) -> tuple[list[bool] | None, sandbox.Outcome]:
    """Run ``program`` then each statement in one sandbox run; per-statement pass/fail
    (``None`` when the run ended without its report) and the run's outcome."""
    nonce = secrets.token_hex(16)
    units = [(s.line, s.source, True) for s in statements]
    code = with_harness(program, units, nonce=nonce, assert_timeout=assert_timeout)
    run = sandbox.execute(code, timeout=timeout, memory_mb=memory_mb, mode=mode)
    results = read_report(run.stdout, nonce)
    if results is not None and len(results) != len(statements):
        results = None
    stdout = "\n".join(line for line in run.stdout.splitlines() if nonce not in line)
    return results, sandbox.Outcome(run.status, run.exit_code, stdout, run.stderr, run.seconds)


def detects(
    program: str,
    statements: Sequence[Statement],
    *,
    timeout: float,
    assert_timeout: float,
    memory_mb: int = 1024,
    mode: str = "auto",
    alias: tuple[str, str] | None = None,
) -> bool:
    """Whether the statements fail on ``program``: one raises or hangs, or the run ends
    without its report (a crash, a timeout, an early exit).

    The statements stop at the first failure (each later one fails at once), so a
    hanging mutant costs one ``assert_timeout``, not one per statement. ``alias`` as in
    :func:`~engine.tasks._harness.with_harness`.
    """
    return detection(program, statements, timeout, assert_timeout, memory_mb, mode, alias)[0]


def detection(
    program: str,
    statements: Sequence[Statement],
    timeout: float,
    assert_timeout: float,
    memory_mb: int,
    mode: str,
    alias: tuple[str, str] | None,
) -> tuple[bool, float]:
    """:func:`detects` and the run's seconds."""
    nonce = secrets.token_hex(16)
    units = [(0, f"{_FLAG} = False", False)]
    units += [(s.line, _guarded(s), True) for s in statements]
    code = with_harness(program, units, nonce=nonce, assert_timeout=assert_timeout, alias=alias)
    run = sandbox.execute(code, timeout=timeout, memory_mb=memory_mb, mode=mode)
    results = read_report(run.stdout, nonce)
    return results is None or not all(results), run.seconds


def _guarded(statement: Statement) -> str:
    """``statement`` run by ``exec`` (so its text needs no re-indenting) after a check
    that no earlier statement failed, marking a failure of its own."""
    code = f"compile({statement.source!r}, '<test line {statement.line}>', 'exec')"
    return (
        f"if {_FLAG}:\n    raise AssertionError('an earlier test failed')\n"
        f"try:\n    exec({code}, globals())\n"
        f"except BaseException:\n    {_FLAG} = True\n    raise\n"
    )


def passing(statements: Sequence[Statement], results: list[bool] | None) -> list[Statement]:
    """The statements that passed; none when the run gave no results."""
    if results is None:
        return []
    return [s for s, ok in zip(statements, results, strict=True) if ok]
