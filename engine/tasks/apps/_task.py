"""The APPS task: prompts, the program a completion stands for, scoring by the sandboxed
runner, and pass@k pooled over problems and per difficulty."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, is_positive, is_whole, require
from engine.tasks import sandbox
from engine.tasks._code import PYTHON_TAGS, fenced_blocks, truncate_at_stop
from engine.tasks._options import set_common_options, set_sandbox_limits
from engine.tasks._splits import split_by_hash
from engine.tasks.apps._load import DIFFICULTIES, bundled_dataset, load_problems
from engine.tasks.apps._runner import read_results, runner_program
from engine.tasks.base import (
    Problem,
    ProblemOutcome,
    Task,
    check_completions,
    group_by_problem,
)
from engine.tasks.metrics import avg_tests_and_pass_at_k, ks_up_to

__all__ = ["CONTINUATION_STOPS", "AppsTask", "extract_program", "raw_prefix"]

CONTINUATION_STOPS = ('\n"""', "\n# Python 3 solution", "\n```")
OUTPUT_CHARS = 2000  # of each outcome's diagnostic text
_SHOWN_FAILURES = 5  # failing tests described in an outcome's output


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
        set_sandbox_limits(self, timeout=timeout, memory_mb=memory_mb)
        require(is_positive(test_timeout), f"test_timeout must be positive: {test_timeout!r}")
        self.metrics = ("avg_tests", *(f"pass@{k}" for k in ks_up_to(samples_per_problem)))
        self.max_tests = max_tests
        self.test_timeout = min(float(test_timeout), self.timeout)
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
        check_completions(problems, completions)
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
        pass@k (:func:`~engine.tasks.metrics.pass_at_k`) for each k of
        :data:`~engine.tasks.metrics.K_VALUES` up to ``samples_per_problem``. The same
        values over the problems of one difficulty are reported as
        ``avg_tests/<difficulty>``, ``pass@k/<difficulty>`` (for the difficulties present).

        Raises:
            ValueError: no outcomes, or a problem with fewer outcomes than a k.
        """
        by_problem = group_by_problem(outcomes)
        ks = ks_up_to(self.samples_per_problem)
        for problem_id, group in by_problem.items():
            if len(group) < max(ks):
                raise ValueError(
                    f"problem {problem_id} has {len(group)} outcomes; pass@{max(ks)} needs "
                    f"at least {max(ks)} (samples_per_problem={self.samples_per_problem})"
                )
        result = avg_tests_and_pass_at_k(list(by_problem.values()), ks)
        for difficulty in DIFFICULTIES:
            groups = [g for pid, g in by_problem.items() if self._difficulty.get(pid) == difficulty]
            if groups:
                for name, value in avg_tests_and_pass_at_k(groups, ks).items():
                    result[f"{name}/{difficulty}"] = value
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
        code, _ = truncate_at_stop(completion, CONTINUATION_STOPS)
        return problem.meta.get("starter_code", "") + code
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
