"""A test harness appended to untrusted code: run test units one by one, report by nonce.

:func:`with_harness` returns a program for :func:`engine.sandbox.execute`: the code under
test, then a harness that executes each *unit* (a piece of Python source) in one shared
namespace, each under its own ``SIGALRM`` limit so one hanging test does not hide the
others, and finally writes one line ``<nonce> <json list of bools>`` and exits before
anything else can print. :func:`read_report` reads that line back. The nonce is random
per run, so the code under test cannot forge a report; a program that exits before the
harness finishes (``sys.exit(0)``, ``os._exit(0)``) has no report and scores nothing.

A unit is ``(line, source, counted)``: ``line`` labels its error messages, and only
``counted`` units produce a result (the others are setup, such as a helper definition).
"""

from __future__ import annotations

import json

__all__ = ["Unit", "read_report", "with_harness"]

Unit = tuple[int, str, bool]

_HARNESS = """

def _codellmtuner_harness(nonce, alias, units, limit):
    import json, os, signal, sys

    class _TimeLimit(BaseException):
        pass

    def _alarm(signum, frame):
        raise _TimeLimit(f"took longer than {limit} s")

    signal.signal(signal.SIGALRM, _alarm)
    scope = dict(globals())
    if alias:
        scope[alias[0]] = scope.get(alias[1])
    results = []
    for line, source, counted in units:
        try:
            try:
                signal.setitimer(signal.ITIMER_REAL, limit)
                exec(compile(source, f"<test line {line}>", "exec"), scope)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            ok = True
        except BaseException as error:
            ok = False
            try:
                os.write(2, f"test line {line}: {error!r}"[:300].encode() + b"\\n")
            except BaseException:
                pass
        if counted:
            results.append(ok)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass
    os.write(1, ("\\n" + nonce + " " + json.dumps(results) + "\\n").encode())
    os._exit(0 if all(results) else 1)
"""


def with_harness(
    program: str,
    units: list[Unit],
    *,
    nonce: str,
    assert_timeout: float,
    alias: tuple[str, str] | None = None,
) -> str:
    """``program``, then the harness running ``units`` with ``assert_timeout`` s each.

    ``alias=(name, target)`` binds ``name`` to the program's ``target`` in the units'
    namespace (HumanEval's ``check(candidate)`` calls the entry point ``candidate``).
    """
    call = f"_codellmtuner_harness({nonce!r}, {alias!r}, {units!r}, {float(assert_timeout)!r})\n"
    return f"{program.rstrip()}\n\n{_HARNESS}\n\n{call}"


def read_report(stdout: str, nonce: str) -> list[bool] | None:
    """The per-unit results from the harness's nonce line, or ``None`` if it never ran
    to the end (the last line starting with the nonce wins)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(nonce + " "):
            try:
                results = json.loads(line[len(nonce) + 1 :])
            except ValueError:
                return None
            ok = isinstance(results, list) and all(isinstance(r, bool) for r in results)
            return results if ok and results else None
    return None
