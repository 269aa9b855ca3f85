"""A test harness appended to untrusted code: run test units one by one, report by nonce.

:func:`with_harness` returns a program for :func:`engine.tasks.sandbox.execute`: the code under
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
import re

__all__ = ["Unit", "read_report", "with_harness"]

Unit = tuple[int, str, bool]
_FUTURE = re.compile(r"^from\s+__future__\s+import\b")

# Defined before the code under test runs, with what it relies on bound as defaults, so
# code that replaces builtins.exec, json.dumps or os.write does not change how the
# results are reported; the program file is removed so its text (and the nonce in it)
# cannot be read back. This raises the bar; it is not a wall (see docs/sandbox.md).
_HARNESS = """\
import builtins as _cl_builtins, json as _cl_json, os as _cl_os
import signal as _cl_signal, sys as _cl_sys


def _codellmtuner_harness(
    nonce, alias, units, limit, _exec=_cl_builtins.exec, _compile=_cl_builtins.compile,
    _dumps=_cl_json.dumps, _write=_cl_os.write, _exit=_cl_os._exit, _signal=_cl_signal,
    _sys=_cl_sys, _BaseException=BaseException,
):
    class _TimeLimit(_BaseException):
        pass

    def _alarm(signum, frame):
        raise _TimeLimit(f"took longer than {limit} s")

    _signal.signal(_signal.SIGALRM, _alarm)
    scope = dict(globals())
    if alias:
        scope[alias[0]] = scope.get(alias[1])
    results = []
    for line, source, counted in units:
        try:
            try:
                _signal.setitimer(_signal.ITIMER_REAL, limit)
                _exec(_compile(source, f"<test line {line}>", "exec"), scope)
            finally:
                _signal.setitimer(_signal.ITIMER_REAL, 0)
            ok = True
        except _BaseException as error:
            ok = False
            try:
                _write(2, f"test line {line}: {error!r}"[:300].encode() + b"\\n")
            except _BaseException:
                pass
        if counted:
            results.append(ok is True)
    for stream in (_sys.stdout, _sys.stderr, _sys.__stdout__, _sys.__stderr__):
        try:
            stream.flush()
        except _BaseException:
            pass
    _write(1, ("\\n" + nonce + " " + _dumps(results) + "\\n").encode())
    _exit(0 if all(results) else 1)


try:
    _cl_os.unlink(__file__)
except OSError:
    pass
del _cl_builtins, _cl_json, _cl_os, _cl_signal, _cl_sys
"""


def with_harness(
    program: str,
    units: list[Unit],
    *,
    nonce: str,
    assert_timeout: float,
    alias: tuple[str, str] | None = None,
) -> str:
    """The harness, ``program``, then the call running ``units`` with ``assert_timeout`` s
    each.

    ``alias=(name, target)`` binds ``name`` to the program's ``target`` in the units'
    namespace (HumanEval's ``check(candidate)`` calls the entry point ``candidate``).
    """
    call = f"_codellmtuner_harness({nonce!r}, {alias!r}, {units!r}, {float(assert_timeout)!r})\n"
    # A __future__ import must open the file: it goes before the harness.
    lines = program.rstrip().split("\n")
    future = [line for line in lines if _FUTURE.match(line)]
    body = "\n".join(line for line in lines if not _FUTURE.match(line))
    return "".join(f"{line}\n" for line in future) + f"{_HARNESS}\n\n{body}\n\n\n{call}"


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
