"""The program that runs in the sandbox: a completion run on a problem's tests one by one,
each result reported on a nonce line as it finishes, and read back here.

The comparison functions are copied into that program by :func:`runner_program`, so they
are self-contained (their imports inside them) and run here and there alike.
"""

from __future__ import annotations

import inspect
import json
import textwrap

from engine.tasks.base import Problem

__all__ = [
    "PRELUDE",
    "numbers_close",
    "outputs_match",
    "read_results",
    "returns_match",
    "runner_program",
]

# What the APPS evaluator puts in front of every program (without numpy, which would
# cost every run its import), so code that relies on these names is scored as in APPS.
PRELUDE = """\
import sys
import time
import itertools
from itertools import accumulate, product, permutations, combinations
import collections
from collections import Counter, OrderedDict, deque, defaultdict, ChainMap
from functools import lru_cache
import math
from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2
import fractions
from typing import List, Tuple, Dict, Optional, Set
import random
import heapq
from heapq import *
"""


def numbers_close(got: str, want: str) -> bool:
    """Whether two output tokens are equal as numbers.

    Both must be decimal numbers (``[+-]digits[.digits][e[+-]digits]``). Two integer
    tokens must be the same integer (``007`` = ``7``, ``-0`` = ``0``): no tolerance, so a
    large integer answer that is off by one never passes. Otherwise they are close when
    ``|got - want| <= 1e-8 + 1e-5 * |want|`` (the tolerance of ``numpy.allclose`` that
    the APPS evaluator uses).
    """
    import re

    number = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    if not (re.fullmatch(number, got) and re.fullmatch(number, want)):
        return False
    integer = r"[+-]?[0-9]+"
    if re.fullmatch(integer, got) and re.fullmatch(integer, want):

        def canonical(token: str) -> str:
            digits = token.lstrip("+-").lstrip("0") or "0"
            return ("-" if token.startswith("-") and digits != "0" else "") + digits

        return canonical(got) == canonical(want)  # no int(): it refuses > 4300 digits
    x, y = float(got), float(want)
    return x == y or abs(x - y) <= 1e-8 + 1e-5 * abs(y)


def outputs_match(actual: str, expected: str) -> bool:
    """Whether a standard-input program's output ``actual`` matches ``expected``.

    The first rule that holds decides a match, else it is a mismatch:

    1. ``actual.strip() == expected.strip()`` (exact, ignoring surrounding whitespace);
    2. the whitespace-separated tokens are equal (``str.split()``: spacing and line
       breaks do not matter);
    3. there are as many tokens and each pair is equal or :func:`numbers_close`.

    Letter case always matters (``YES`` is not ``Yes``).
    """
    if actual.strip() == expected.strip():
        return True
    got, want = actual.split(), expected.split()
    if got == want:
        return True
    if len(got) != len(want):
        return False
    return all(g == w or numbers_close(g, w) for g, w in zip(got, want, strict=True))


def returns_match(actual: object, expected: object) -> bool:
    """Whether a call-based function's return value ``actual`` matches ``expected``
    (the test's output, as parsed from JSON).

    Tuples are compared as lists (JSON has no tuples), objects with ``tolist()`` (numpy
    values) as what it returns; any other non-JSON value never matches. A match is
    ``actual == expected`` or, since APPS wraps some outputs in a list,
    ``[actual] == expected``.
    """
    opaque = object()  # equal to nothing, so a custom __eq__ cannot fake a match

    def plain(value: object, depth: int = 0) -> object:
        if depth > 100:
            return opaque
        if isinstance(value, (list, tuple)):
            return [plain(v, depth + 1) for v in value]
        if isinstance(value, dict):
            return {k: plain(v, depth + 1) for k, v in value.items()}
        if value is None or type(value) in (bool, int, float, str):
            return value
        tolist = getattr(type(value), "tolist", None)
        if callable(tolist) and type(value).__module__.split(".")[0] == "numpy":
            return plain(value.tolist(), depth + 1)  # type: ignore[attr-defined]
        return opaque

    got = plain(actual)
    try:
        return bool(expected == got) or bool(expected == [got])
    except Exception:  # a comparison that raises (deep recursion, ...) is a mismatch
        return False


def _sandbox_main(
    nonce: str, source: str, tests: str, fn_name: str, class_name: str, limit: float, prelude: str
) -> None:
    """Run in the sandbox (never here): each test of ``tests`` against ``source``.

    Each test runs the program as ``__main__`` in a fresh namespace (seeded with
    ``prelude``) with file descriptors 0 and 1 redirected to files (so ``input()``,
    ``sys.stdin.buffer``, ``open(0)`` and ``os.write(1, ...)`` work as in a judge), under
    its own ``SIGALRM`` limit. ``SystemExit`` and ``os._exit`` end the program, not the
    run. Each result is written at once, on the saved real stdout, as
    ``<nonce> [index, passed, note]``; ``<nonce> "done"`` ends the report.
    """
    import contextlib
    import gc
    import json
    import os
    import signal
    import sys
    import tempfile
    import threading

    real_in, real_out = os.dup(0), os.dup(1)
    real_exit = os._exit
    workdir = os.getcwd()  # for the test files, wherever the program chdirs to
    with contextlib.suppress(Exception):  # so the program cannot read the nonce there
        os.remove(globals()["__file__"])

    def report(entry: object) -> None:
        os.write(real_out, ("\n" + nonce + " " + json.dumps(entry) + "\n").encode())

    class TestTimeout(BaseException):
        pass

    def alarm(signum: int, frame: object) -> None:
        raise TestTimeout(f"took longer than {limit:g} s")

    def program_exit(status: int = 0) -> None:
        raise SystemExit(status)

    def short(value: object) -> str:
        text = repr(value)
        return text if len(text) <= 60 else text[:45] + "..." + text[-12:]

    signal.signal(signal.SIGALRM, alarm)
    # A program printing past the file-size limit gets an OSError (its test fails)
    # instead of the SIGXFSZ that would kill the run and the tests after it.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    data = json.loads(tests)
    base: dict = {"__name__": "__main__"}
    exec(prelude, base)
    try:
        code = compile(source, "<program>", "exec")
    except Exception as error:  # SyntaxError, ValueError (NUL bytes), RecursionError
        for index in range(len(data["inputs"])):
            report([index, False, f"does not compile: {error!r}"])
        report("done")
        real_exit(1)

    def call(namespace: dict, args: list) -> object:
        target = namespace.get(class_name) if class_name else None
        if target is None and fn_name not in namespace:
            target = namespace.get("Solution")  # a class the starter code did not show
        if target is not None:
            return getattr(target(), fn_name)(*args)
        if fn_name not in namespace:
            raise NameError(f"the program defines no {fn_name!r}")
        return namespace[fn_name](*args)

    def run(stdin_text: str, args: object) -> tuple[str, object]:
        namespace = dict(base)
        before = set(threading.enumerate())
        with (
            tempfile.TemporaryFile(dir=workdir) as stdin_file,
            tempfile.TemporaryFile(dir=workdir) as stdout_file,
        ):
            stdin_file.write(stdin_text.encode())
            stdin_file.seek(0)
            streams = sys.stdin, sys.stdout
            os.dup2(stdin_file.fileno(), 0)
            os.dup2(stdout_file.fileno(), 1)
            sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
            os._exit = program_exit
            value = None
            try:
                try:
                    signal.setitimer(signal.ITIMER_REAL, limit)
                    with contextlib.suppress(SystemExit):  # the program ended: compare
                        exec(code, namespace)
                    if args is not None:
                        value = call(namespace, args)
                    for thread in threading.enumerate():
                        if thread not in before and not thread.daemon:
                            thread.join()  # the interpreter would wait for them too
                    sys.stdout.flush()
                    # Files the program opened on fd 0 or 1 close now, not in a later test.
                    namespace.clear()
                    gc.collect()
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            finally:
                for stream in (sys.stdout, sys.__stdout__):
                    with contextlib.suppress(BaseException):
                        stream.flush()
                os._exit = real_exit
                sys.stdin, sys.stdout = streams
                os.dup2(real_in, 0)  # the originals, even if the program closed 0 or 1
                os.dup2(real_out, 1)
            stdout_file.seek(0)
            return stdout_file.read().decode("utf-8", "replace"), value

    all_passed = True
    for index, (given, expected) in enumerate(zip(data["inputs"], data["outputs"], strict=True)):
        try:
            if fn_name:
                _, got = run("", given)
                ok = returns_match(got, expected)
            else:
                got, _ = run(given, None)
                ok = outputs_match(got, expected)
            note = "passed" if ok else f"wrong answer: expected {short(expected)}, got {short(got)}"
        except TestTimeout as error:
            ok, note = False, f"timeout: {error}"
        except BaseException as error:
            ok, note = False, f"error: {error!r}"
        all_passed = all_passed and ok
        report([index, ok, note[:200]])
    report("done")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    real_exit(0 if all_passed else 1)


def runner_program(program: str, problem: Problem, *, nonce: str, test_timeout: float) -> str:
    """The sandbox program that runs ``program`` on ``problem``'s tests and reports each
    result on a line keyed by ``nonce`` (read back with :func:`read_results`)."""
    parts = [inspect.getsource(f) for f in (numbers_close, outputs_match, returns_match)]
    parts.append(inspect.getsource(_sandbox_main))
    arguments = (
        nonce, program, problem.tests, problem.entry_point,
        problem.meta.get("class_name", ""), float(test_timeout), PRELUDE,
    )  # fmt: skip
    call = f"_sandbox_main(*{arguments!r})\n"
    header = "from __future__ import annotations\n\n"
    return header + "\n\n".join(textwrap.dedent(p) for p in parts) + "\n\n" + call


def read_results(stdout: str, nonce: str, n_tests: int) -> tuple[list[tuple[bool, str]], bool]:
    """Per test ``(passed, note)`` from the run's nonce lines, and whether the run
    reported to the end. A test without a report failed (``note`` says it never ran to
    the end); the first report of a test counts."""
    found: dict[int, tuple[bool, str]] = {}
    finished = False
    for line in stdout.splitlines():
        if not line.startswith(nonce + " "):
            continue
        try:
            entry = json.loads(line[len(nonce) + 1 :])
        except ValueError:
            continue
        if entry == "done":
            finished = True
        elif (
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], int)
            and isinstance(entry[1], bool)
            and 0 <= entry[0] < n_tests
        ):
            found.setdefault(entry[0], (entry[1], str(entry[2])))
    missing = (False, "no result: the run ended before this test finished")
    return [found.get(i, missing) for i in range(n_tests)], finished
