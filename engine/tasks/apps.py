"""APPS: write a Python 3 program for a natural-language programming problem.

The data is an APPS-format JSONL file (the rows of the APPS ``train``/``test`` files):
``problem_id`` (int or str), ``question``, ``difficulty`` (``introductory``,
``interview`` or ``competition``), ``input_output`` (a JSON string, as in the real files,
or an object: ``inputs`` and ``outputs`` lists and, for call-based problems, ``fn_name``),
optional ``starter_code`` and ``solutions`` (a JSON string list of reference programs;
the first is the few-shot example answer). Without a file the task uses a small bundled
sample in the same format (``engine/tasks/data/apps-sample.jsonl``). A problem without
tests cannot be scored: it is left out and counted in :attr:`AppsTask.skipped`.

Two kinds of tests:

- *standard input*: the program reads the test's input from stdin and its stdout is
  compared to the expected output by :func:`outputs_match`;
- *call-based* (``fn_name``): the program is run, then ``fn_name`` (or
  ``<Class>().fn_name`` when the starter code defines a class such as ``Solution``) is
  called with the test's input list as positional arguments and the return value is
  compared by :func:`returns_match`.

Scoring runs one sandbox process per (problem, completion) that runs the problem's first
``max_tests`` tests one by one, each with its own time limit, and reports each result as
it finishes on a line keyed by a random per-run nonce (so partial results survive a
whole-run timeout, and the program, whose output is redirected to a file, cannot forge
them). A test the run never reported fails. As in the APPS evaluator, every program
starts in a namespace holding the usual imports (:data:`PRELUDE`); ``SystemExit`` and
``os._exit`` inside a test end the program (its output so far is compared), not the run.
"""

from __future__ import annotations

import inspect
import json
import re
import secrets
import textwrap
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from engine import sandbox
from engine.errors import ConfigError, DatasetError
from engine.tasks._code import PYTHON_TAGS, cut_at_stops, fenced_blocks
from engine.tasks._jsonl import RowError, load_jsonl, optional_str, require_str
from engine.tasks._options import is_positive, is_whole, require, set_common_options
from engine.tasks._splits import problems_of, split_by_hash
from engine.tasks.base import Problem, ProblemOutcome, Split, Task
from engine.tasks.metrics import pass_at_k

__all__ = [
    "CONTINUATION_STOPS",
    "DIFFICULTIES",
    "PASS_KS",
    "PRELUDE",
    "AppsTask",
    "bundled_dataset",
    "extract_program",
    "load_problems",
    "numbers_close",
    "outputs_match",
    "parse_row",
    "raw_prefix",
    "read_results",
    "returns_match",
    "runner_program",
]

DIFFICULTIES = ("introductory", "interview", "competition")
PASS_KS = (1, 2, 5)  # pass@k offered for each k <= samples_per_problem
CONTINUATION_STOPS = ('\n"""', "\n# Python 3 solution", "\n```")
OUTPUT_CHARS = 2000  # of each outcome's diagnostic text
NOTE_CHARS = 200  # of each test's note in the run's report
_SHOWN_FAILURES = 5  # failing tests described in an outcome's output
_CLASS = re.compile(r"^class\s+([A-Za-z_]\w*)", re.M)

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


class AppsTask(Task):
    """APPS-format program synthesis, scored by running each problem's tests.

    Args:
        dataset: an APPS-format JSONL file (plain or ``.gz``); ``None`` = the bundled
            sample.
        samples_per_problem: completions drawn per problem (the ``n`` of pass@k).
        holdout_fraction: share of problems held out for the final score, in [0, 1).
        n_train: size of the few-shot pool (problems with a reference solution only); at
            most half of the non-holdout problems.
        workers: problems scored in parallel; ``None`` = the CPU count.
        sandbox: sandbox mode, ``"auto"``, ``"bwrap"`` or ``"process"``.
        max_tests: tests run per problem (the first ones of the file), >= 1.
        test_timeout: wall-clock limit in seconds of each test (capped at ``timeout``).
        timeout: wall-clock limit in seconds of one problem's whole run; tests not
            reached by then fail.
        memory_mb: address-space limit of each run, >= 64.

    Raises:
        DatasetError: the file is missing, empty, has a malformed row, or no problem in
            it has tests.
        ConfigError: an option is out of range.
    """

    name = "apps"
    description = "write a Python 3 program for a problem statement; run its tests"
    metrics: tuple[str, ...] = ("avg_tests", "pass@1")

    def __init__(
        self,
        dataset: str | Path | None = None,
        *,
        samples_per_problem: int = 1,
        holdout_fraction: float = 0.2,
        n_train: int = 8,
        workers: int | None = None,
        sandbox: str = "auto",
        max_tests: int = 20,
        test_timeout: float = 4.0,
        timeout: float = 40.0,
        memory_mb: int = 1024,
    ) -> None:
        set_common_options(
            self, samples_per_problem=samples_per_problem, workers=workers, sandbox=sandbox
        )
        require(is_whole(max_tests, 1), f"max_tests must be an integer >= 1: {max_tests!r}")
        require(is_positive(test_timeout), f"test_timeout must be positive: {test_timeout!r}")
        require(is_positive(timeout), f"timeout must be a positive number: {timeout!r}")
        require(is_whole(memory_mb, 64), f"memory_mb must be an integer >= 64: {memory_mb!r}")
        self.metrics = ("avg_tests", *(f"pass@{k}" for k in PASS_KS if k <= samples_per_problem))
        self.max_tests = max_tests
        self.timeout = float(timeout)
        self.test_timeout = min(float(test_timeout), self.timeout)
        self.memory_mb = memory_mb
        self.dataset = Path(dataset) if dataset is not None else bundled_dataset()
        problems, self.skipped = load_problems(self.dataset, max_tests=max_tests)
        if dataset is None:
            self.source = (
                f"bundled sample of {len(problems)} hand-written problems in APPS format "
                "(not APPS itself; pass real APPS files with --dataset)"
            )
        else:
            self.source = str(self.dataset)
        self._difficulty = {p.id: p.meta["difficulty"] for p in problems}
        self._splits = _split(problems, holdout_fraction, n_train)

    # -- data ------------------------------------------------------------------------------

    def problems(self, split: Split) -> list[Problem]:
        return problems_of(self._splits, split)

    # -- prompt pieces ---------------------------------------------------------------------

    def instruction(self, problem: Problem) -> str:
        question = problem.prompt.strip()
        starter = problem.meta.get("starter_code", "").strip()
        if not problem.entry_point:
            text = (
                "Write a Python 3 program that solves the problem below. Read the input from "
                "standard input and write the answer to standard output. Answer with the "
                f"complete program in one ```python code block.\n\n{question}"
            )
            if starter:
                text += f"\n\nStart from this code:\n```python\n{starter}\n```"
            return text
        if not starter:
            return (
                f"Write a Python 3 function `{problem.entry_point}` that solves the problem "
                "below and returns the answer. Answer with the complete code in one "
                f"```python code block.\n\n{question}"
            )
        return (
            "Complete the starter code below so that it solves the problem, in Python 3. "
            f"`{problem.entry_point}` must return the answer. Answer with the complete code "
            f"in one ```python code block.\n\n{question}\n\nStarter code:\n"
            f"```python\n{starter}\n```"
        )

    def completion_prefix(self, problem: Problem) -> str:
        return raw_prefix(problem)

    def example_response(self, problem: Problem) -> str:
        """The problem's first reference solution in a ```python block.

        Raises:
            ConfigError: the problem has no reference solution (the ``train`` split only
                holds problems that have one).
        """
        if not problem.reference.strip():
            raise ConfigError(f"APPS problem {problem.id} has no reference solution")
        return f"```python\n{problem.reference.strip()}\n```"

    def stop_sequences(self, *, continuation: bool) -> list[str]:
        """For raw completions, the start of a next problem (docstring, solution marker
        or a closing fence); none for chat answers."""
        return list(CONTINUATION_STOPS) if continuation else []

    # -- scoring ---------------------------------------------------------------------------

    def score(
        self,
        problems: Sequence[Problem],
        completions: Sequence[str],
        *,
        continuation: bool,
    ) -> list[ProblemOutcome]:
        """Run each completion on its problem's tests, ``workers`` runs at a time.

        ``status`` is ``passed`` (every test passed), ``timeout`` (the whole run, or a
        test, ran out of time), ``crashed`` (the run ended before reporting every test:
        killed by a limit or a signal) or ``failed``. ``fraction`` is the fraction of
        tests passed; ``metrics`` holds ``tests`` and ``tests_passed``.
        """
        if len(problems) != len(completions):
            raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
        if not problems:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(problems))) as pool:
            flags = [continuation] * len(problems)
            return list(pool.map(self._score_one, problems, completions, flags))

    def _score_one(self, problem: Problem, completion: str, continuation: bool) -> ProblemOutcome:
        nonce = secrets.token_hex(16)
        program = extract_program(problem, completion, continuation=continuation)
        code = runner_program(program, problem, nonce=nonce, test_timeout=self.test_timeout)
        run = sandbox.execute(
            code, timeout=self.timeout, memory_mb=self.memory_mb, mode=self.sandbox
        )
        n_tests = problem.meta["n_tests"]
        results, finished = read_results(run.stdout, nonce, n_tests)
        passed_tests = sum(ok for ok, _ in results)
        passed = passed_tests == n_tests
        if passed:
            status = "passed"
        elif run.status in ("timeout", "crashed"):
            status = run.status
        elif not finished:
            status = "crashed"
        elif any(note.startswith("timeout") for _, note in results):
            status = "timeout"
        else:
            status = "failed"
        output = _diagnostics(results, run, nonce, passed_tests)
        return ProblemOutcome(
            problem.id, status, passed, passed_tests / n_tests, output, run.seconds,
            metrics={"tests": float(n_tests), "tests_passed": float(passed_tests)},
        )  # fmt: skip

    def aggregate(self, outcomes: Sequence[ProblemOutcome]) -> dict[str, float]:
        """``avg_tests``: mean over problems of the fraction of tests passed (averaged
        over the problem's completions). ``pass@k``: mean over problems of the unbiased
        pass@k (:func:`~engine.tasks.metrics.pass_at_k`) for each k in :data:`PASS_KS`
        up to ``samples_per_problem``. The same values over the problems of one
        difficulty are reported as ``avg_tests/<difficulty>``, ``pass@k/<difficulty>``
        (for the difficulties present).

        Raises:
            ValueError: no outcomes, or a problem with fewer outcomes than a k.
        """
        if not outcomes:
            raise ValueError("aggregate needs at least one outcome")
        by_problem: dict[str, list[ProblemOutcome]] = {}
        for outcome in outcomes:
            by_problem.setdefault(outcome.problem_id, []).append(outcome)
        ks = [int(name.split("@")[1]) for name in self.metrics if name.startswith("pass@")]
        for problem_id, group in by_problem.items():
            if len(group) < max(ks):
                raise ValueError(
                    f"problem {problem_id} has {len(group)} outcomes; pass@{max(ks)} needs "
                    f"at least {max(ks)} (samples_per_problem={self.samples_per_problem})"
                )
        result = _group_metrics(list(by_problem.values()), ks)
        for difficulty in DIFFICULTIES:
            groups = [g for pid, g in by_problem.items() if self._difficulty.get(pid) == difficulty]
            if groups:
                for name, value in _group_metrics(groups, ks).items():
                    result[f"{name}/{difficulty}"] = value
        return result


def _group_metrics(groups: list[list[ProblemOutcome]], ks: list[int]) -> dict[str, float]:
    """``avg_tests`` and ``pass@k`` over ``groups`` (each: one problem's outcomes)."""
    result = {"avg_tests": sum(sum(o.fraction for o in g) / len(g) for g in groups) / len(groups)}
    for k in ks:
        total = sum(pass_at_k(len(g), sum(o.passed for o in g), k) for g in groups)
        result[f"pass@{k}"] = total / len(groups)
    return result


def _diagnostics(results: list[tuple[bool, str]], run: Any, nonce: str, passed: int) -> str:
    """A short account: tests passed, the first failing tests' notes, the run's stderr."""
    lines = [f"{passed}/{len(results)} tests passed"]
    failures = [(i, note) for i, (ok, note) in enumerate(results) if not ok]
    for i, note in failures[:_SHOWN_FAILURES]:
        lines.append(f"test {i}: {note}")
    if len(failures) > _SHOWN_FAILURES:
        lines.append(f"... and {len(failures) - _SHOWN_FAILURES} more failing tests")
    if run.status == "timeout":
        lines.append(f"the whole run took longer than its limit ({run.seconds:.1f} s)")
    stdout = "\n".join(line for line in run.stdout.splitlines() if nonce not in line).strip()
    text = "\n".join(lines)[:OUTPUT_CHARS]
    tail = (stdout + "\n" + run.stderr.strip()).strip()
    room = OUTPUT_CHARS - len(text) - 1
    if tail and room > 0:
        text += "\n" + tail[-room:]
    return text


def _split(problems: list[Problem], holdout_fraction: float, n_train: int) -> dict:
    """:func:`split_by_hash`, except that ``train`` (the few-shot pool) takes the
    lowest-hash non-holdout problems *that have a reference solution*; the same split
    as :func:`split_by_hash` when every problem has one."""
    splits = split_by_hash(problems, holdout_fraction, n_train)
    if all(p.reference.strip() for p in splits["train"]):
        return splits
    rest = splits["train"] + splits["tune"]  # train holds the lowest hashes: still in order
    train = [p for p in rest if p.reference.strip()][: len(splits["train"])]
    chosen = {p.id for p in train}
    tune = [p for p in rest if p.id not in chosen]
    return {"train": train, "tune": tune, "holdout": splits["holdout"]}


# -- loading --------------------------------------------------------------------------------


def bundled_dataset() -> Path:
    """The bundled APPS-format sample file."""
    return Path(__file__).resolve().parent / "data" / "apps-sample.jsonl"


def load_problems(path: str | Path, *, max_tests: int = 20) -> tuple[list[Problem], dict]:
    """Read and validate an APPS-format JSONL file (``.gz`` is decompressed).

    Returns the problems (each keeping its first ``max_tests`` tests) and the rows left
    out on purpose by reason: ``{"no tests": count}`` for problems whose ``input_output``
    is empty or has no tests (``{}`` if none).

    Raises:
        DatasetError: naming the file, line and field of a malformed row (and how many
            more there are); also for a missing, unreadable or empty file, a repeated
            ``problem_id``, and a file in which no problem has tests.
    """
    seen: set[str] = set()

    def parse(row: dict, where: str) -> Problem | None:
        problem = parse_row(row, max_tests=max_tests)
        if problem is not None:
            if problem.id in seen:
                raise RowError(f"problem_id {problem.id!r} appears twice")
            seen.add(problem.id)
        return problem

    rows = load_jsonl(path, parse)
    problems = [p for p in rows if p is not None]
    skipped = {"no tests": len(rows) - len(problems)} if len(problems) < len(rows) else {}
    if not problems:
        raise DatasetError(f"{path}: none of its {len(rows)} problems has tests")
    return problems, skipped


def parse_row(row: dict, *, max_tests: int = 20) -> Problem | None:
    """One APPS row as a :class:`Problem`, or ``None`` when it has no tests.

    ``Problem.tests`` is the JSON of ``{"inputs": [...], "outputs": [...]}`` (the first
    ``max_tests``; standard-input tests given as lists of lines are joined with newlines);
    ``Problem.entry_point`` is ``fn_name`` (``""`` for standard-input problems);
    ``meta`` holds ``difficulty``, ``starter_code``, ``class_name`` (the class the starter
    code defines, whose instance's method is called), ``n_tests`` and ``tests_total``.

    Raises:
        RowError: naming the malformed field.
    """
    problem_id = _problem_id(row)
    question = require_str(row, "question")
    difficulty = require_str(row, "difficulty").strip().lower()
    if difficulty not in DIFFICULTIES:
        raise RowError(
            f"field 'difficulty' must be one of {', '.join(DIFFICULTIES)}, "
            f"got {row['difficulty']!r}"
        )
    starter = optional_str(row, "starter_code")
    solutions = _solutions(row)
    tests = _tests(row)
    if tests is None:
        return None
    inputs, outputs, fn_name = tests
    classes = _CLASS.findall(starter) if fn_name else []
    meta = {
        "difficulty": difficulty,
        "starter_code": starter,
        "class_name": classes[-1] if classes else "",
        "n_tests": min(len(inputs), max_tests),
        "tests_total": len(inputs),
    }
    capped = {"inputs": inputs[:max_tests], "outputs": outputs[:max_tests]}
    reference = solutions[0] if solutions else ""
    return Problem(problem_id, question, reference, json.dumps(capped), fn_name, meta)


def _problem_id(row: dict) -> str:
    if "problem_id" not in row:
        raise RowError("field 'problem_id' is missing")
    value = row["problem_id"]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RowError(f"field 'problem_id' must be an integer or a string, got {value!r}")
    if isinstance(value, str) and not value.strip():
        raise RowError("field 'problem_id' is empty")
    return str(value)


def _solutions(row: dict) -> list[str]:
    value = row.get("solutions")
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise RowError(f"field 'solutions' is not valid JSON ({error.msg})") from None
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise RowError("field 'solutions' must be a list of program strings")
    return value


def _tests(row: dict) -> tuple[list, list, str] | None:
    """``(inputs, outputs, fn_name)`` from ``input_output``; ``None`` without tests."""
    value = row.get("input_output")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise RowError(f"field 'input_output' is not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise RowError(f"field 'input_output' must be an object, got {type(value).__name__}")
    for key in ("inputs", "outputs"):
        if not isinstance(value.get(key), list):
            raise RowError(f"field 'input_output.{key}' must be a list")
    inputs, outputs = value["inputs"], value["outputs"]
    if len(inputs) != len(outputs):
        raise RowError(f"field 'input_output' has {len(inputs)} inputs but {len(outputs)} outputs")
    fn_name = value.get("fn_name") or ""
    if not isinstance(fn_name, str) or (fn_name and not fn_name.isidentifier()):
        raise RowError(f"field 'input_output.fn_name' must be a Python name, got {fn_name!r}")
    if not inputs:
        return None
    if fn_name:
        for i, args in enumerate(inputs):
            if not isinstance(args, list):
                raise RowError(
                    f"field 'input_output.inputs[{i}]' must be a list of arguments "
                    f"(call-based problem), got {type(args).__name__}"
                )
        return inputs, outputs, fn_name
    inputs = [_text(v, f"inputs[{i}]") for i, v in enumerate(inputs)]
    outputs = [_text(v, f"outputs[{i}]") for i, v in enumerate(outputs)]
    return inputs, outputs, ""


def _text(value: object, field: str) -> str:
    """A standard-input test's input or output: a string, or a list of lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "\n".join(value)
    raise RowError(
        f"field 'input_output.{field}' must be a string or a list of strings "
        f"(standard-input problem), got {type(value).__name__}"
    )


# -- prompt and extraction -----------------------------------------------------------------


def raw_prefix(problem: Problem) -> str:
    """The text a raw-completion model continues: the question in a docstring, a
    ``# Python 3 solution`` marker, then the starter code (if any)."""
    question = problem.prompt.strip().replace('"""', "'''")
    return f'"""\n{question}\n"""\n# Python 3 solution\n{problem.meta.get("starter_code", "")}'


def extract_program(problem: Problem, completion: str, *, continuation: bool) -> str:
    """The program a completion stands for.

    ``continuation``: the starter code followed by the completion cut at the first of
    :data:`CONTINUATION_STOPS` (the question docstring is left out: its backslashes could
    make invalid string escapes). Otherwise (a chat answer): the first fenced block
    tagged Python, else the first untagged one (for call-based problems, the first of
    these that defines ``fn_name`` wins), else the first fenced block of any language,
    else the whole text.
    """
    completion = completion.replace("\r\n", "\n")
    if continuation:
        return problem.meta.get("starter_code", "") + cut_at_stops(completion, CONTINUATION_STOPS)
    blocks = fenced_blocks(completion)
    # Tagged Python blocks first: an untagged block is often the sample input.
    python = [body for tag, body in blocks if tag in PYTHON_TAGS and tag]
    python += [body for tag, body in blocks if not tag]
    if problem.entry_point:
        pattern = rf"^\s*(?:async\s+)?def\s+{re.escape(problem.entry_point)}\s*\("
        for body in python:
            if re.search(pattern, body, re.M):
                return body
    if python:
        return python[0]
    return blocks[0][1] if blocks else completion


# -- output comparison (these functions also run inside the sandbox: self-contained) -------


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


# -- the sandboxed runner ------------------------------------------------------------------


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
