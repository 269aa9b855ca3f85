"""HumanEval: loading, splits, extraction, sandboxed scoring, metrics (on the real data)."""

from __future__ import annotations

import ast
import gzip
import json
import math
import time
from pathlib import Path

import pytest

from engine.errors import ConfigError, DatasetError
from engine.tasks import HumanEvalTask, ProblemOutcome, get_task, pass_at_k
from engine.tasks._harness import read_report
from engine.tasks.humaneval import (
    CONTINUATION_STOPS,
    bundled_dataset,
    check_units,
    extract_program,
    load_problems,
)

SPLITS = ("train", "tune", "holdout")


@pytest.fixture(scope="module")
def task() -> HumanEvalTask:
    return HumanEvalTask(workers=2)


@pytest.fixture(scope="module")
def by_id(task) -> dict:
    return {p.id: p for split in SPLITS for p in task.problems(split)}


def _rows(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "task_id": f"T/{i}",
            "prompt": f"def f{i}(x):\n    '''Return x + {i}.'''\n",
            "canonical_solution": f"    return x + {i}\n",
            "test": f"def check(candidate):\n    assert candidate(1) == {1 + i}\n",
            "entry_point": f"f{i}",
        }
        for i in range(start, start + n)
    ]


def _write(path: Path, rows: list, *, raw_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    for number, text in (raw_lines or {}).items():
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


# -- data and splits -------------------------------------------------------------------------


def test_bundled_splits_are_disjoint_and_cover_all_164(task):
    ids = {split: [p.id for p in task.problems(split)] for split in SPLITS}
    every = [i for split in SPLITS for i in ids[split]]
    assert len(every) == len(set(every)) == 164
    assert len(ids["train"]) == 8
    assert 0.15 <= len(ids["holdout"]) / 164 <= 0.25


def test_splits_do_not_depend_on_anything_but_the_data(task):
    again = get_task("humaneval")
    for split in SPLITS:
        assert [p.id for p in again.problems(split)] == [p.id for p in task.problems(split)]


def test_adding_problems_keeps_the_holdout_of_the_others(tmp_path):
    small = HumanEvalTask(_write(tmp_path / "small.jsonl", _rows(40)))
    large = HumanEvalTask(_write(tmp_path / "large.jsonl", _rows(40) + _rows(40, start=40)))
    small_holdout = {p.id for p in small.problems("holdout")}
    large_holdout = {p.id for p in large.problems("holdout")}
    assert small_holdout and small_holdout == {i for i in large_holdout if int(i[2:]) < 40}


def test_problem_fields_come_from_the_row(by_id):
    problem = by_id["HumanEval/0"]
    assert problem.entry_point == "has_close_elements"
    assert problem.prompt.startswith("from typing import List")
    assert problem.reference.lstrip().startswith("for idx, elem")
    assert "def check(candidate)" in problem.tests


def test_user_file_plain_and_gzipped(tmp_path):
    plain = _write(tmp_path / "mine.jsonl", _rows(10))
    packed = tmp_path / "mine.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, packed):
        loaded = get_task("humaneval", dataset=str(path))
        assert sum(len(loaded.problems(s)) for s in SPLITS) == 10


@pytest.mark.parametrize(
    "raw, message",
    [
        ('{"task_id": "T/x", "prompt": "p", "canonical_solution": "", "test": ""}',
         r"data\.jsonl:2: field 'entry_point' is missing"),
        ('{"task_id": "T/x", "prompt": "p"', r"data\.jsonl:2: invalid JSON"),
        ('["not", "an", "object"]', r"data\.jsonl:2: expected a JSON object"),
        ('{"task_id": 7, "prompt": "p", "canonical_solution": "", "test": "", '
         '"entry_point": "f"}', r"data\.jsonl:2: field 'task_id' must be a string"),
        ('{"task_id": "T/x", "prompt": "p", "canonical_solution": "", "test": "", '
         '"entry_point": "not a name"}', r"data\.jsonl:2: field 'entry_point' must be a Python"),
        (json.dumps(_rows(1)[0]), r"data\.jsonl:2: task_id 'T/0' appears twice"),
    ],
)  # fmt: skip
def test_malformed_rows_name_file_line_and_field(tmp_path, raw, message):
    path = _write(tmp_path / "data.jsonl", _rows(3), raw_lines={2: raw})
    with pytest.raises(DatasetError, match=message):
        HumanEvalTask(path)


def test_empty_and_missing_files_are_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DatasetError, match="has no rows"):
        HumanEvalTask(tmp_path / "empty.jsonl")
    with pytest.raises(DatasetError, match="no such dataset file"):
        HumanEvalTask(tmp_path / "absent.jsonl")


def test_unknown_task_lists_the_known_ones():
    known = "apps, codealpaca, conala, humaneval, summarization, testgen"
    with pytest.raises(ConfigError, match=f"unknown task .mbpp.; known tasks: {known}"):
        get_task("mbpp")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"holdout_fraction": 1.0}, "holdout_fraction"),
        ({"n_train": -1}, "n_train"),
        ({"timeout": 0}, "timeout"),
        ({"workers": 0}, "workers"),
        ({"sandbox": "docker"}, "sandbox"),
    ],
)
def test_invalid_options_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        HumanEvalTask(**kwargs)


# -- prompt pieces ---------------------------------------------------------------------------


def test_prompt_pieces(task, by_id):
    problem = by_id["HumanEval/0"]
    assert f"```python\n{problem.prompt.strip()}\n```" in task.instruction(problem)
    assert task.completion_prefix(problem) == problem.prompt
    response = task.example_response(problem)
    assert response.startswith("```python\nfrom typing import List") and response.endswith("```")
    assert "return False" in response
    assert task.stop_sequences(continuation=True) == list(CONTINUATION_STOPS)
    assert task.stop_sequences(continuation=False) == []


# -- extraction ------------------------------------------------------------------------------

SOLUTION_0 = """\
def has_close_elements(numbers: List[float], threshold: float) -> bool:
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1 :])
"""


def _compiles(program: str) -> bool:
    compile(program, "program", "exec")
    return True


def test_extract_fenced_answer_with_prose(task, by_id):
    answer = f"Sure! Here is the function:\n\n```python\n{SOLUTION_0}```\n\nIt compares pairs."
    program = extract_program(by_id["HumanEval/0"], answer, continuation=False)
    assert "Sure!" not in program and "compares pairs" not in program
    assert program.startswith("from typing import List")  # the prompt's import is kept
    assert program.count("def has_close_elements") == 1 and _compiles(program)
    [outcome] = task.score([by_id["HumanEval/0"]], [answer], continuation=False)
    assert outcome.passed, outcome.output


def test_extract_prefers_the_block_that_defines_the_entry_point(by_id):
    answer = (
        "Usage:\n```python\nprint(has_close_elements([1.0], 0.5))\n```\n"
        f"Code:\n```py\n{SOLUTION_0}```\n```text\nFalse\n```"
    )
    program = extract_program(by_id["HumanEval/0"], answer, continuation=False)
    assert "any(abs(a - b)" in program and "print(" not in program


def test_extract_unfenced_code(by_id):
    program = extract_program(by_id["HumanEval/0"], SOLUTION_0, continuation=False)
    assert "any(abs(a - b)" in program and _compiles(program)


@pytest.mark.parametrize("indent", ["", "    "])
def test_extract_body_only_answer_goes_under_the_prompt(task, by_id, indent):
    body = SOLUTION_0.splitlines()[1].strip()
    problem = by_id["HumanEval/0"]
    answer = f"```python\n{indent}{body}\n```"
    program = extract_program(problem, answer, continuation=False)
    assert program.startswith(problem.prompt) and _compiles(program)
    [outcome] = task.score([problem], [answer], continuation=False)
    assert outcome.passed, outcome.output


def test_extract_drops_demo_code_and_keeps_prompt_helpers(task, by_id):
    problem = by_id["HumanEval/10"]  # make_palindrome calls is_palindrome from the prompt
    answer = (
        "```python\ndef make_palindrome(string: str) -> str:\n"
        "    for i in range(len(string) + 1):\n"
        "        if is_palindrome(string[i:]):\n"
        "            return string + string[:i][::-1]\n\n"
        "print(make_palindrome('cat'))\nassert make_palindrome('cat') == 'wrong'\n"
        "if __name__ == '__main__':\n    raise SystemExit(make_palindrome('x'))\n```"
    )
    program = extract_program(problem, answer, continuation=False)
    assert "def is_palindrome" in program and "print(" not in program
    assert "wrong" not in program and "__main__" not in program and _compiles(program)
    [outcome] = task.score([problem], [answer], continuation=False)
    assert outcome.passed, outcome.output


def test_extract_continuation_cuts_at_the_first_stop(by_id):
    problem = by_id["HumanEval/0"]
    completion = problem.reference + "\n\ndef unrelated():\n    pass\n"
    program = extract_program(problem, completion, continuation=True)
    assert program == problem.prompt + problem.reference + "\n"


# -- the harness -----------------------------------------------------------------------------


def test_check_units_count_real_asserts_only():
    tests = (
        "def check(candidate):\n"
        "    import math\n"
        "    assert True, 'marker, not a test'\n"
        "    assert candidate(1) == 2\n"
        "    for x in range(3):\n"
        "        assert candidate(x) == x + 1\n"
        "    def helper():\n"
        "        assert False\n"
    )
    argument, units = check_units(tests)
    assert argument == "candidate"
    assert [(line, counted) for line, _, counted in units] == [
        (2, False), (3, False), (4, True), (5, True), (7, False)
    ]  # fmt: skip


def test_check_units_without_asserts_or_check_is_one_test():
    assert check_units("def check(f):\n    if f(1) != 2:\n        raise ValueError\n") == (
        "f", [(1, "check(f)", True)]
    )  # fmt: skip
    assert check_units("assert f(1) == 2\n") == ("candidate", [(0, "pass", True)])


def test_read_report_needs_the_nonce_line():
    assert read_report("noise\nabc [true, false]\n", "abc") == [True, False]
    assert read_report("abc [true]\nabc [false]\n", "abc") == [False]  # the last one counts
    assert read_report("xyz [true]\n", "abc") is None
    assert read_report("abc [1, 2]\n", "abc") is None
    assert read_report("abc [true\n", "abc") is None


# -- scoring in the sandbox ------------------------------------------------------------------

CANONICAL = ["HumanEval/0", "HumanEval/10", "HumanEval/32", "HumanEval/38", "HumanEval/151"]


@pytest.mark.parametrize("continuation", [True, False])
def test_canonical_solutions_pass_every_test(task, by_id, continuation):
    problems = [by_id[i] for i in CANONICAL]
    if continuation:
        completions = [p.reference for p in problems]
    else:
        completions = [task.example_response(p) for p in problems]
    outcomes = task.score(problems, completions, continuation=continuation)
    assert [o.problem_id for o in outcomes] == CANONICAL
    for outcome in outcomes:
        assert (outcome.status, outcome.passed, outcome.fraction) == ("passed", True, 1.0), outcome
    assert task.aggregate(outcomes) == {"avg_tests": 1.0, "pass@1": 1.0}


def test_empty_and_wrong_completions_score_zero(task, by_id):
    problem = by_id["HumanEval/0"]
    outcomes = task.score(
        [problem] * 3, ["", "    return 42\n", "Sorry, I can't."], continuation=False
    )
    for outcome in outcomes:
        assert (outcome.status, outcome.passed, outcome.fraction) == ("failed", False, 0.0)


def test_partly_right_function_gets_the_fraction_of_asserts_it_passes(task, by_id):
    problem = by_id["HumanEval/0"]
    asserts = [n for n in ast.walk(ast.parse(problem.tests)) if isinstance(n, ast.Assert)]
    expect_true = [a for a in asserts if ast.unparse(a.test).endswith("== True")]
    assert (len(asserts), len(expect_true)) == (7, 4)
    [outcome] = task.score([problem], ["    return True\n"], continuation=True)
    assert outcome.status == "failed" and not outcome.passed
    assert outcome.fraction == pytest.approx(4 / 7)


def test_a_hanging_assertion_does_not_hide_the_others(by_id):
    task = HumanEvalTask(timeout=10, assert_timeout=0.5, workers=1)
    problem = by_id["HumanEval/0"]
    completion = "    while threshold == 0.05:\n        pass\n" + problem.reference
    start = time.monotonic()
    [outcome] = task.score([problem], [completion], continuation=True)
    assert outcome.fraction == pytest.approx(6 / 7) and not outcome.passed
    assert "took longer than 0.5 s" in outcome.output
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    "completion",
    [
        "    return True\nimport sys\nsys.exit(0)\n",  # before the tests, exit code 0
        "    import os\n    os._exit(0)\n",  # inside the function, no way to catch it
        "    import sys\n    sys.exit(0)\n",  # inside the function, every test sees it
    ],
)
def test_exiting_early_with_code_zero_scores_zero(task, by_id, completion):
    [outcome] = task.score([by_id["HumanEval/0"]], [completion], continuation=True)
    assert (outcome.status, outcome.passed, outcome.fraction) == ("failed", False, 0.0)


def test_exiting_early_from_a_chat_answer_scores_zero(task, by_id):
    answer = f"```python\n{SOLUTION_0}\nraise SystemExit(0)\n```"
    [outcome] = task.score([by_id["HumanEval/0"]], [answer], continuation=False)
    assert (outcome.passed, outcome.fraction) == (False, 0.0)


def test_infinite_loop_times_out_and_scores_zero(by_id):
    task = HumanEvalTask(timeout=1.5, assert_timeout=1.0, workers=1)
    start = time.monotonic()
    [outcome] = task.score([by_id["HumanEval/0"]], ["    while True:\n        pass\n"],
                           continuation=True)  # fmt: skip
    assert (outcome.status, outcome.passed, outcome.fraction) == ("timeout", False, 0.0)
    assert time.monotonic() - start < 5


def test_tests_without_asserts_still_score(tmp_path):
    rows = [
        {"task_id": "A", "prompt": "def f(x):\n", "canonical_solution": "    return x + 1\n",
         "test": "def check(g):\n    if g(1) != 2:\n        raise ValueError('no')\n",
         "entry_point": "f"},
        {"task_id": "B", "prompt": "def f(x):\n", "canonical_solution": "    return x + 1\n",
         "test": "if f(1) != 2:\n    raise ValueError('no')\n", "entry_point": "f"},
    ]  # fmt: skip
    task = HumanEvalTask(_write(tmp_path / "d.jsonl", rows), holdout_fraction=0.0, n_train=0)
    problems = sorted(task.problems("tune"), key=lambda p: p.id)
    right = task.score(problems, ["    return x + 1\n"] * 2, continuation=True)
    wrong = task.score(problems, ["    return x\n"] * 2, continuation=True)
    assert [(o.passed, o.fraction) for o in right] == [(True, 1.0), (True, 1.0)]
    assert [(o.passed, o.fraction) for o in wrong] == [(False, 0.0), (False, 0.0)]


def test_score_needs_one_completion_per_problem(task, by_id):
    with pytest.raises(ValueError, match="1 problems but 2 completions"):
        task.score([by_id["HumanEval/0"]], ["a", "b"], continuation=True)
    assert task.score([], [], continuation=True) == []


# -- metrics ---------------------------------------------------------------------------------


def _outcome(problem_id: str, passed: bool, fraction: float) -> ProblemOutcome:
    return ProblemOutcome(problem_id, "passed" if passed else "failed", passed, fraction)


def test_aggregate_averages_over_problems(task):
    outcomes = [_outcome("a", True, 1.0), _outcome("b", False, 0.5), _outcome("c", False, 0.0)]
    assert task.aggregate(outcomes) == pytest.approx({"avg_tests": 0.5, "pass@1": 1 / 3})


def test_aggregate_with_several_completions_per_problem(task):
    # a: 1 of 2 passed; b: 2 of 2. pass@1 = mean(1/2, 1) and avg_tests = mean(0.75, 1).
    outcomes = [_outcome("a", True, 1.0), _outcome("a", False, 0.5),
                _outcome("b", True, 1.0), _outcome("b", True, 1.0)]  # fmt: skip
    expected = {"avg_tests": 0.875, "pass@1": 0.75, "pass@2": 1.0}
    assert task.aggregate(outcomes) == pytest.approx(expected)
    with pytest.raises(ValueError):
        task.aggregate([])


def test_pass_at_k_metrics_follow_samples_per_problem():
    task = HumanEvalTask(samples_per_problem=5)
    assert task.metrics == ("avg_tests", "pass@1", "pass@2", "pass@5")
    # one of five passed: pass@2 = 1 - C(4,2)/C(5,2) = 0.4, pass@5 = 1
    outcomes = [_outcome("a", i == 0, float(i == 0)) for i in range(5)]
    expected = {"avg_tests": 0.2, "pass@1": 0.2, "pass@2": 0.4, "pass@5": 1.0}
    assert task.aggregate(outcomes) == pytest.approx(expected)
    with pytest.raises(ConfigError, match="samples_per_problem"):
        HumanEvalTask(samples_per_problem=0)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_the_closed_form(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            exact = 1 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_pass_at_k_known_values():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 4) == 1.0  # any 4 of 5 include a passing one
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)
    assert 0.0 < pass_at_k(1000, 1, 1) < 1e-2  # large n, no overflow


@pytest.mark.parametrize(
    "n, c, k",
    [(0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6), (5.0, 2, 1), (5, 2, 1.5)],
)
def test_pass_at_k_rejects_invalid_arguments(n, c, k):
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(n, c, k)


def test_bundled_dataset_is_the_packaged_file():
    path = bundled_dataset()
    assert path.name == "HumanEval.jsonl.gz" and len(load_problems(path)) == 164
