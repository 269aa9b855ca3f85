"""APPS: loading, comparison rules, sandboxed stdin and call-based scoring, metrics."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from engine.errors import ConfigError, DatasetError
from engine.tasks import ProblemOutcome
from engine.tasks._splits import split_by_hash
from engine.tasks.apps import (
    CONTINUATION_STOPS,
    AppsTask,
    bundled_dataset,
    extract_program,
    load_problems,
    numbers_close,
    outputs_match,
    read_results,
    returns_match,
)

SPLITS = ("train", "tune", "holdout")


@pytest.fixture(scope="module")
def task() -> AppsTask:
    return AppsTask(workers=2)


@pytest.fixture(scope="module")
def by_id(task) -> dict:
    return {p.id: p for split in SPLITS for p in task.problems(split)}


def _fence(code: str) -> str:
    return f"Here is my solution.\n\n```python\n{code}\n```\n"


def _row(pid, *, difficulty="introductory", tests=None, fn_name=None, **extra) -> dict:
    """A real-APPS-style row (``input_output`` and ``solutions`` are JSON strings)."""
    tests = tests if tests is not None else [("1 2\n", "3\n"), ("5 5\n", "10\n")]
    io = {"inputs": [t[0] for t in tests], "outputs": [t[1] for t in tests]}
    if fn_name:
        io["fn_name"] = fn_name
    row = {
        "problem_id": pid, "question": f"Problem {pid}: add two numbers.",
        "solutions": json.dumps(["a, b = map(int, input().split())\nprint(a + b)\n"]),
        "input_output": json.dumps(io), "difficulty": difficulty, "url": "", "starter_code": "",
    }  # fmt: skip
    row.update(extra)
    return row


def _write(path: Path, rows: list, *, raw_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    for number, text in (raw_lines or {}).items():
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


# -- output comparison ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "actual, expected, match",
    [
        ("8\n", "8\n", True),
        ("  8  \n\n", "8", True),  # rule 1: surrounding whitespace
        ("1 2\r\n3\r\n", "1 2\n3\n", True),  # rule 2: tokens, line endings
        ("1\n2\n3", "1 2 3", True),  # rule 2: line breaks do not matter
        ("1  2", "1 2", True),
        ("YES", "yes", False),  # case matters
        ("1 2", "1 2 3", False),
        ("", "0", False),
        ("2.333333", "2.3333333333", True),  # rule 3: float tolerance
        ("1.5", "1.5000000000", True),
        ("1.0", "1", True),  # a decimal token against an integer one: by value
        ("2.34", "2.3333333333", False),
        ("100001", "100000", False),  # integers: exact, no relative tolerance
        ("007 -0", "7 0", True),
        ("123456789012345678901", "123456789012345678902", False),
        ("0.5 NO", "0.5000001 NO", True),
        ("0.5 NO", "0.5000001 YES", False),
    ],
)
def test_outputs_match_rules(actual, expected, match):
    assert outputs_match(actual, expected) is match


@pytest.mark.parametrize(
    "got, want, close",
    [
        ("1e-9", "0", True),  # |x - y| <= 1e-8 absolute
        ("1e-7", "0", False),
        ("1000000.5", "1000000", True),  # 0.5 <= 1e-8 + 1e-5 * 1e6
        ("1000020.0", "1000000", False),
        ("+3", "3", True),
        ("3", "4", False),
        ("abc", "abc", False),  # not numbers: the caller compares strings
        ("1e999", "1e999", True),  # both infinite
        ("nan", "nan", False),
        ("1" * 5000, "1" * 5000, True),  # more digits than int() accepts
    ],
)
def test_numbers_close(got, want, close):
    assert numbers_close(got, want) is close


@pytest.mark.parametrize(
    "actual, expected, match",
    [
        (5, 5, True),
        (5, [5], True),  # APPS wraps some outputs in a list
        ([1, 2], [[1, 2]], True),
        ([1, 2], [1, 2], True),
        ((1, 2), [1, 2], True),  # tuples compare as lists
        ([(1, 2), (3, 4)], [[[1, 2], [3, 4]]], True),
        (1, [1, 2], False),  # only a one-element list is unwrapped
        (True, [True], True),
        ("abc", ["abc"], True),
        (None, [None], True),
        (6, [7], False),
        ({1, 2}, [1, 2], False),  # a set is not JSON
    ],
)
def test_returns_match(actual, expected, match):
    assert returns_match(actual, expected) is match


def test_returns_match_refuses_an_object_that_equals_everything():
    class Liar:
        def __eq__(self, other):
            return True

    assert not returns_match(Liar(), [5])
    assert not returns_match([Liar()], [5])


def test_read_results_counts_only_this_nonce_and_first_reports():
    stdout = "\n".join(
        [
            "noise",
            'n0nce [0, true, "passed"]',
            'other [1, true, "passed"]',  # another nonce
            'n0nce [1, false, "wrong answer"]',
            'n0nce [1, true, "passed"]',  # a second report of test 1 does not count
            'n0nce [7, true, "passed"]',  # out of range
            "n0nce not json",
            'n0nce "done"',
        ]
    )
    results, finished = read_results(stdout, "n0nce", 3)
    assert [ok for ok, _ in results] == [True, False, False]
    assert results[2][1].startswith("no result")
    assert finished
    assert read_results('n0nce [0, true, "passed"]', "n0nce", 1) == ([(True, "passed")], False)


# -- data ----------------------------------------------------------------------------------


def test_bundled_sample_shape(task, by_id):
    assert len(by_id) == 24
    assert Counter(p.meta["difficulty"] for p in by_id.values()) == {
        "introductory": 10, "interview": 8, "competition": 6,
    }  # fmt: skip
    call_based = [p for p in by_id.values() if p.entry_point]
    assert len(call_based) == 4 and all(p.meta["starter_code"] for p in call_based)
    assert {p.meta["class_name"] for p in call_based} == {"", "Solution"}
    for p in by_id.values():
        assert 3 <= p.meta["n_tests"] <= 6 and p.reference.strip()
    assert task.skipped == {}
    assert "bundled" in task.source and "APPS format" in task.source and "--dataset" in task.source
    assert task.metrics == ("avg_tests", "pass@1")


def test_bundled_rows_use_the_real_apps_encoding():
    for line in bundled_dataset().read_text().splitlines():
        row = json.loads(line)
        assert set(row) == {
            "problem_id", "question", "solutions", "input_output", "difficulty", "url",
            "starter_code",
        }  # fmt: skip
        assert isinstance(row["problem_id"], int)
        assert isinstance(json.loads(row["input_output"]), dict)
        assert len(json.loads(row["solutions"])) == 1


def test_splits_are_disjoint_and_train_has_references(tmp_path):
    rows = [_row(i) for i in range(30)]
    full = AppsTask(_write(tmp_path / "full.jsonl", rows), n_train=4)
    expected = split_by_hash(
        load_problems(tmp_path / "full.jsonl")[0], holdout_fraction=0.2, n_train=4
    )
    for split in SPLITS:  # every problem has a reference: the shared split
        assert [p.id for p in full.problems(split)] == [p.id for p in expected[split]]
    no_reference = {p.id for p in expected["train"][:2]}
    for row in rows:
        if str(row["problem_id"]) in no_reference:
            row["solutions"] = ""
    partial = AppsTask(_write(tmp_path / "partial.jsonl", rows), n_train=4)
    ids = {split: [p.id for p in partial.problems(split)] for split in SPLITS}
    assert len(ids["train"]) == 4 and not no_reference & set(ids["train"])
    assert no_reference <= set(ids["tune"])
    assert ids["holdout"] == [p.id for p in expected["holdout"]]
    assert sorted(sum(ids.values(), [])) == sorted(str(i) for i in range(30))


def test_accepts_objects_string_ids_and_lists_of_lines(tmp_path):
    rows = [
        _row("cf-1", input_output={"inputs": [["1 2", ""]], "outputs": [["3"]]}),
        _row(2, solutions=["print(1)"], input_output={"inputs": ["x"], "outputs": ["1"]}),
    ]
    problems, skipped = load_problems(_write(tmp_path / "d.jsonl", rows))
    assert [p.id for p in problems] == ["cf-1", "2"] and skipped == {}
    assert json.loads(problems[0].tests) == {"inputs": ["1 2\n"], "outputs": ["3"]}
    assert problems[1].reference == "print(1)"


def test_problems_without_tests_are_skipped_and_counted(tmp_path):
    rows = [_row(1), _row(2, input_output=""), _row(3, tests=[]), _row(4)]
    task = AppsTask(_write(tmp_path / "d.jsonl", rows))
    assert task.skipped == {"no tests": 2}
    assert sorted(p.id for s in SPLITS for p in task.problems(s)) == ["1", "4"]
    _write(tmp_path / "none.jsonl", [_row(1, input_output=""), _row(2, tests=[])])
    with pytest.raises(DatasetError, match="none of its 2 problems has tests"):
        AppsTask(tmp_path / "none.jsonl")


def test_max_tests_keeps_the_first_tests(tmp_path):
    rows = [_row(1, tests=[(f"{i} 0\n", f"{i}\n") for i in range(9)])]
    [problem], _ = load_problems(_write(tmp_path / "d.jsonl", rows), max_tests=4)
    assert problem.meta["n_tests"] == 4 and problem.meta["tests_total"] == 9
    assert json.loads(problem.tests)["inputs"] == ["0 0\n", "1 0\n", "2 0\n", "3 0\n"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"input_output": '{"inputs": [1'}, "field 'input_output' is not valid JSON"),
        ({"input_output": json.dumps({"inputs": ["1"], "outputs": []})},
         "field 'input_output' has 1 inputs but 0 outputs"),
        ({"input_output": json.dumps({"inputs": "1", "outputs": "2"})},
         "field 'input_output.inputs' must be a list"),
        ({"input_output": json.dumps({"inputs": [5], "outputs": ["5"]})},
         r"field 'input_output.inputs\[0\]' must be a string or a list of strings"),
        ({"input_output": json.dumps({"fn_name": "f", "inputs": [5], "outputs": [5]})},
         r"field 'input_output.inputs\[0\]' must be a list of arguments"),
        ({"input_output": json.dumps({"fn_name": "not a name", "inputs": [[1]], "outputs": [1]})},
         "field 'input_output.fn_name' must be a Python name"),
        ({"difficulty": "easy"}, "field 'difficulty' must be one of introductory, interview"),
        ({"question": "  "}, "field 'question' is empty"),
        ({"solutions": "[not json"}, "field 'solutions' is not valid JSON"),
        ({"solutions": json.dumps([1, 2])}, "field 'solutions' must be a list of program"),
        ({"problem_id": 1}, "problem_id '1' appears twice"),
        ({"problem_id": None}, "field 'problem_id' must be an integer or a string"),
    ],
)  # fmt: skip
def test_malformed_rows_name_file_line_and_field(tmp_path, change, message):
    bad = {**_row(99), **change}
    path = _write(tmp_path / "data.jsonl", [_row(1), bad, _row(3)])
    with pytest.raises(DatasetError, match=r"data\.jsonl:2: " + message):
        AppsTask(path)


def test_missing_question_is_refused(tmp_path):
    bad = _row(2)
    del bad["question"]
    with pytest.raises(DatasetError, match=r"data\.jsonl:2: field 'question' is missing"):
        AppsTask(_write(tmp_path / "data.jsonl", [_row(1), bad]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"samples_per_problem": 0}, "samples_per_problem"),
        ({"samples_per_problem": 1.5}, "samples_per_problem"),
        ({"max_tests": 0}, "max_tests"),
        ({"test_timeout": 0}, "test_timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"workers": 0}, "workers"),
        ({"memory_mb": 10}, "memory_mb"),
        ({"sandbox": "docker"}, "sandbox"),
        ({"holdout_fraction": 1.0}, "holdout_fraction"),
        ({"n_train": -1}, "n_train"),
    ],
)
def test_invalid_options_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        AppsTask(**kwargs)


def test_metrics_offer_pass_at_k_up_to_samples_per_problem():
    assert AppsTask(samples_per_problem=1).metrics == ("avg_tests", "pass@1")
    assert AppsTask(samples_per_problem=4).metrics == ("avg_tests", "pass@1", "pass@2")
    assert AppsTask(samples_per_problem=5).metrics == ("avg_tests", "pass@1", "pass@2", "pass@5")


# -- prompts and extraction ----------------------------------------------------------------


def test_prompt_pieces(task, by_id):
    stdin, call = by_id["0"], by_id["14"]
    assert "standard input" in task.instruction(stdin)
    assert stdin.prompt.strip() in task.instruction(stdin)
    assert "```python\nclass Solution:" in task.instruction(call)
    assert "`maxProfit` must return" in task.instruction(call)
    assert task.example_response(stdin) == f"```python\n{stdin.reference.strip()}\n```"
    prefix = task.completion_prefix(call)
    assert prefix.startswith('"""\n') and prefix.endswith(call.meta["starter_code"])
    assert "\n# Python 3 solution\n" in prefix
    assert task.stop_sequences(continuation=True) == list(CONTINUATION_STOPS)
    assert task.stop_sequences(continuation=False) == []


def test_example_response_needs_a_reference(tmp_path):
    task = AppsTask(_write(tmp_path / "d.jsonl", [_row(1, solutions="")]), holdout_fraction=0.0)
    [problem] = task.problems("tune")
    with pytest.raises(ConfigError, match="no reference solution"):
        task.example_response(problem)


def test_extract_program(by_id):
    stdin, call = by_id["0"], by_id["7"]
    answer = (
        "Input format:\n```\n3 5\n```\nCode:\n```python\nprint(1)\n```\n```python\nprint(2)\n```"
    )
    assert extract_program(stdin, answer, continuation=False) == "print(1)\n"
    two = "```python\nimport math\n```\n```python\ndef digit_sum(n):\n    return 0\n```"
    assert extract_program(call, two, continuation=False).startswith("def digit_sum")
    assert extract_program(stdin, "```\nprint(3)\n```", continuation=False) == "print(3)\n"
    assert extract_program(stdin, "print(4)", continuation=False) == "print(4)"
    raw = 'print(5)\n"""\nNext problem'
    assert extract_program(stdin, raw, continuation=True) == "print(5)"
    body = "return 0\n\n# Python 3 solution\nmore"
    assert extract_program(call, body, continuation=True) == "def digit_sum(n):\n\treturn 0\n"


# -- sandboxed scoring ---------------------------------------------------------------------

SUM = "a, b = map(int, input().split())\nprint(a + b)\n"  # problem 0: 4 tests


def _score(task, problem, code, *, continuation=False):
    text = code if continuation else _fence(code)
    [outcome] = task.score([problem], [text], continuation=continuation)
    return outcome


def test_correct_stdin_program_passes_every_test(task, by_id):
    outcome = _score(task, by_id["0"], SUM)
    assert (outcome.status, outcome.passed, outcome.fraction) == ("passed", True, 1.0)
    assert outcome.metrics == {"tests": 4.0, "tests_passed": 4.0}


def test_wrong_program_fails_some_tests(task, by_id):
    # Tests of problem 0: "3 5", "-4 10", "1e9 1e9", "0 0": a - b is right only for 0 0.
    outcome = _score(task, by_id["0"], "a, b = map(int, input().split())\nprint(a - b)\n")
    assert (outcome.status, outcome.passed, outcome.fraction) == ("failed", False, 0.25)
    assert "test 0: wrong answer: expected '8\\n', got '-2\\n'" in outcome.output


@pytest.mark.parametrize(
    "code",
    [
        "import sys\na, b = map(int, input().split())\nprint(a + b)\nsys.exit(0)\nprint('x')\n",
        "a, b = map(int, input().split())\nexit(print(a + b))\n",
        "import sys\na, b = map(int, input().split())\nprint(a + b)\nsys.exit('done')\n",
        "import os, sys\nprint(sum(map(int, input().split())))\nsys.stdout.flush()\nos._exit(0)\n",
    ],
)
def test_program_exits_end_the_program_not_the_run(task, by_id, code):
    assert _score(task, by_id["0"], code).fraction == 1.0


@pytest.mark.parametrize(
    "code",
    [
        "print(sum(map(int, open(0).read().split())))\n",
        "import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))\n",
        "import sys\nfor line in sys.stdin:\n    print(sum(map(int, line.split())))\n",
        "import os\nos.write(1, str(sum(map(int, os.read(0, 99).split()))).encode())\n",
        "import sys, threading\n\ndef main():\n    print(sum(map(int, input().split())))\n\n"
        "threading.stack_size(2**24)\nthreading.Thread(target=main).start()\n",
    ],
)
def test_judge_style_input_and_output(task, by_id, code):
    assert _score(task, by_id["0"], code).fraction == 1.0


def test_a_hanging_test_times_out_alone(by_id):
    task = AppsTask(test_timeout=0.5, timeout=20.0)
    code = "a, b = map(int, input().split())\nwhile a == -4:\n    pass\nprint(a + b)\n"
    outcome = _score(task, by_id["0"], code)
    assert (outcome.status, outcome.fraction) == ("timeout", 0.75)
    assert "test 1: timeout: took longer than 0.5 s" in outcome.output


def test_whole_run_timeout_keeps_the_tests_already_reported(by_id):
    task = AppsTask(test_timeout=30.0, timeout=1.5)
    code = "a, b = map(int, input().split())\nwhile a == -4:\n    pass\nprint(a + b)\n"
    outcome = _score(task, by_id["0"], code)
    assert (outcome.status, outcome.fraction) == ("timeout", 0.25)
    assert "test 2: no result" in outcome.output


def test_a_run_killed_midway_keeps_earlier_tests(task, by_id):
    code = "import os\na, b = map(int, input().split())\nif a == 0:\n    os.kill(os.getpid(), 9)\nprint(a + b)\n"  # noqa: E501
    outcome = _score(task, by_id["0"], code)
    assert (outcome.status, outcome.fraction) == ("crashed", 0.75)


def test_a_syntax_error_fails_every_test(task, by_id):
    outcome = _score(task, by_id["0"], "print(1\n")
    assert (outcome.status, outcome.fraction) == ("failed", 0.0)
    assert "does not compile" in outcome.output


def test_a_program_cannot_forge_its_results(tmp_path):
    # It cannot see the nonce (the runner's file is gone) and what it writes to any open
    # descriptor either is its output or lacks the nonce.
    forge = (
        "import json, os\nprint(os.listdir('.'))\nfor fd in range(1, 30):\n"
        "    for i in range(3):\n        try:\n"
        "            os.write(fd, ('\\nxyz ' + json.dumps([i, True, 'passed']) + '\\n').encode())\n"
        "        except OSError:\n            pass\n"
    )
    row = _row(1, tests=[("", "[]\n"), ("", "[]"), ("", "[]")])
    task = AppsTask(_write(tmp_path / "d.jsonl", [row]), holdout_fraction=0.0)
    [problem] = task.problems("tune")
    assert _score(task, problem, "import os\nprint(os.listdir('.'))\n").fraction == 1.0
    assert _score(task, problem, forge).fraction == 0.0


def test_call_based_function_and_solution_class(task, by_id):
    digit_sum, stock, islands = by_id["7"], by_id["14"], by_id["15"]
    assert _score(task, digit_sum, "def digit_sum(n):\n    return sum(map(int, str(n)))\n").passed
    stock_code = (
        "class Solution:\n    def maxProfit(self, prices):\n"
        "        return max(0, max(b - a for i, a in enumerate(prices) for b in prices[i:]))\n"
    )
    assert _score(task, stock, stock_code).passed  # outputs not wrapped: 5, 0, ...
    count = (
        "class Solution:\n    def numIslands(self, grid: List[List[str]]) -> int:\n"
        "        return (2, 0, 3, 1)[len(grid[0]) - 3 if len(grid[0]) > 2 else 1]\n"
    )
    outcome = _score(task, islands, count)  # outputs wrapped: [2], [0], ...
    assert outcome.fraction == 0.75  # right for the 3- and 5-wide grids and [["0"]]


def test_call_based_failures(task, by_id):
    digit_sum = by_id["7"]
    wrong = _score(task, digit_sum, "def digit_sum(n):\n    return n % 10\n")
    assert wrong.fraction == 0.25  # 123, 0, 99999, 1000000: only 0 -> 0 is right
    missing = _score(task, digit_sum, "def digits(n):\n    return 0\n")
    assert missing.fraction == 0.0 and "defines no 'digit_sum'" in missing.output


def test_raw_continuation_of_the_starter_code(task, by_id):
    body = "return sum(int(d) for d in str(n))\n\n# Python 3 solution\nprint('junk')"
    outcome = _score(task, by_id["7"], body, continuation=True)
    assert outcome.passed


@pytest.mark.slow
def test_every_bundled_reference_passes_all_its_tests(task, by_id):
    problems = sorted(by_id.values(), key=lambda p: int(p.id))
    outcomes = task.score(
        problems, [task.example_response(p) for p in problems], continuation=False
    )
    failing = {o.problem_id: o.output for o in outcomes if not o.passed}
    assert not failing
    assert sum(o.metrics["tests"] for o in outcomes) == sum(p.meta["n_tests"] for p in problems)


# -- aggregation ---------------------------------------------------------------------------


def _outcome(pid: str, passed: bool, fraction: float) -> ProblemOutcome:
    return ProblemOutcome(pid, "passed" if passed else "failed", passed, fraction)


def test_aggregate_by_hand_with_difficulties_and_pass_at_k(tmp_path):
    rows = [_row("a"), _row("b", difficulty="interview"), _row("c", difficulty="interview")]
    task = AppsTask(_write(tmp_path / "d.jsonl", rows), samples_per_problem=5)
    outcomes = (
        [_outcome("a", True, 1.0)] * 2 + [_outcome("a", False, 0.5)] * 3  # c = 2 of 5
        + [_outcome("b", False, 0.0)] * 4 + [_outcome("b", False, 0.25)]  # c = 0
        + [_outcome("c", True, 1.0)] * 5  # c = 5
    )  # fmt: skip
    metrics = task.aggregate(outcomes)
    # a: avg_tests (2 + 1.5) / 5 = 0.7, pass@1 2/5, pass@2 1 - C(3,2)/C(5,2) = 0.7, pass@5 1
    # b: avg_tests 0.05, all pass@k 0; c: 1 everywhere
    expected = {
        "avg_tests": (0.7 + 0.05 + 1.0) / 3, "pass@1": (0.4 + 0 + 1) / 3,
        "pass@2": (0.7 + 0 + 1) / 3, "pass@5": (1 + 0 + 1) / 3,
        "avg_tests/introductory": 0.7, "pass@1/introductory": 0.4,
        "pass@2/introductory": 0.7, "pass@5/introductory": 1.0,
        "avg_tests/interview": (0.05 + 1.0) / 2, "pass@1/interview": 0.5,
        "pass@2/interview": 0.5, "pass@5/interview": 0.5,
    }  # fmt: skip
    assert metrics == pytest.approx(expected)
    assert set(metrics) == set(expected)  # no key for a difficulty without problems


def test_aggregate_refuses_empty_and_too_few_samples(tmp_path):
    task = AppsTask(_write(tmp_path / "d.jsonl", [_row("a")]), samples_per_problem=2)
    with pytest.raises(ValueError, match="at least one outcome"):
        task.aggregate([])
    with pytest.raises(ValueError, match="pass@2 needs at least 2"):
        task.aggregate([_outcome("a", True, 1.0)])
