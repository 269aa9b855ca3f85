"""Test generation: extraction of asserts, validity and mutation scoring in the sandbox."""

from __future__ import annotations

import json
import threading
import time

import pytest

from engine.errors import ConfigError
from engine.tasks.base import Problem, ProblemOutcome
from engine.tasks.mutation import mutants
from engine.tasks.testgen import (
    CONTINUATION_STOPS,
    Statement,
    TestGenTask,
    combined_score,
    detects,
    example_asserts,
    extract_tests,
    run_statements,
)

SPLITS = ("train", "tune", "holdout")


@pytest.fixture(scope="module")
def task() -> TestGenTask:
    return TestGenTask(workers=2, assert_timeout=0.5)


@pytest.fixture(scope="module")
def by_id(task) -> dict[str, Problem]:
    return {p.id: p for split in SPLITS for p in task.problems(split)}


def _asserts(statements: list[Statement]) -> list[str]:
    return [s.source for s in statements if s.is_assert]


def _fenced(*lines: str) -> str:
    return "Here are the tests:\n\n```python\n" + "\n".join(lines) + "\n```\nDone."


TOY = Problem("toy", "def add(a, b):\n    '''Sum.'''\n", "    return a + b\n", "", "add")


# -- the combined score -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "valid, mutation, expected",
    [(1.0, 1.0, 1.0), (0.5, 1.0, 2 / 3), (0.8, 0.2, 0.32), (0.0, 0.9, 0.0), (0.0, 0.0, 0.0)],
)
def test_combined_is_the_harmonic_mean(valid, mutation, expected):
    assert combined_score(valid, mutation) == pytest.approx(expected)
    assert combined_score(mutation, valid) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "1"])
def test_combined_refuses_values_outside_the_unit_interval(bad):
    with pytest.raises(ValueError, match="must be in \\[0, 1\\]"):
        combined_score(bad, 0.5)


# -- extraction ------------------------------------------------------------------------------


def test_extract_top_level_asserts_from_a_fenced_answer():
    answer = _fenced(
        "from math import isclose",
        "def add(a, b):",
        "    return 0  # the model's own version: dropped",
        "assert add(1, 2) == 3",
        "assert add(1, 2) == 3",
        "assert True",
        "assert isclose(add(0.1, 0.2), 0.3)",
        "print(add(1, 1))",
    )
    found = extract_tests(TOY, answer, continuation=False)
    assert found == [
        Statement(1, "from math import isclose", False),
        Statement(4, "assert add(1, 2) == 3", True),
        Statement(7, "assert isclose(add(0.1, 0.2), 0.3)", True),
    ]


def test_extract_unpacks_test_functions_and_check():
    answer = _fenced(
        "def test_small():",
        '    """Small numbers."""',
        "    x = add(1, 2)",
        "    assert x == 3",
        "    for i in range(3):",
        "        assert add(i, 0) == i",
        "",
        "def check(candidate):",
        "    assert candidate(2, 2) == 4",
        "",
        "def helper(n):",
        "    return n * 2",
        "",
        "if __name__ == '__main__':",
        "    test_small()",
        "    assert add(helper(1), 0) == 2",
    )
    found = extract_tests(TOY, answer, continuation=False)
    assert [(s.source.split("\n")[0], s.is_assert) for s in found] == [
        ("x = add(1, 2)", False),
        ("assert x == 3", True),
        ("for i in range(3):", True),
        ("candidate = add", False),
        ("assert candidate(2, 2) == 4", True),
        ("def helper(n):", False),
        ("assert add(helper(1), 0) == 2", True),
    ]


def test_extract_keeps_the_complete_statements_of_a_cut_off_answer():
    answer = "```python\nassert add(1, 2) == 3\nassert add(2, 2) == 4\nassert add(5, [1, 2"
    assert _asserts(extract_tests(TOY, answer, continuation=False)) == [
        "assert add(1, 2) == 3",
        "assert add(2, 2) == 4",
    ]


def test_extract_falls_back_to_assert_lines_in_prose():
    answer = "Sure!\n  assert add(1, 2) == 3\nThis checks (1, 2.\nassert add(0, 0) == 0 and\n"
    assert _asserts(extract_tests(TOY, answer, continuation=False)) == ["assert add(1, 2) == 3"]


def test_extract_caps_the_number_of_asserts():
    answer = _fenced(*(f"assert add({i}, 0) == {i}" for i in range(10)))
    assert len(_asserts(extract_tests(TOY, answer, continuation=False, max_asserts=4))) == 4


def test_extract_continuation_reads_the_test_function_only():
    completion = "1, 2) == 3\n    assert add(0, 0) == 0\n\ntest_add()\nassert add(1, 1) == 5\n"
    found = extract_tests(TOY, completion, continuation=True)
    assert _asserts(found) == ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
    cut = "1, 2) == 3\n    assert add(2, 2) == 4\n# more tests\n    assert add(9, 9) == 0\n"
    assert len(_asserts(extract_tests(TOY, cut, continuation=True))) == 2


def test_extract_finds_nothing_in_an_answer_without_asserts():
    for answer in ("", "I cannot help with that.", _fenced("x = add(1, 2)", "print(x)")):
        assert not _asserts(extract_tests(TOY, answer, continuation=False))


# -- prompt pieces ---------------------------------------------------------------------------


def test_prompt_pieces(task, by_id):
    problem = by_id["HumanEval/0"]
    instruction = task.instruction(problem)
    assert "`has_close_elements`" in instruction
    assert (problem.prompt + problem.reference).strip() in instruction
    prefix = task.completion_prefix(problem)
    assert prefix.startswith(problem.prompt.rstrip()[:40])
    assert prefix.endswith("def test_has_close_elements():\n    assert has_close_elements(")
    assert task.stop_sequences(continuation=True) == list(CONTINUATION_STOPS)
    assert task.stop_sequences(continuation=False) == []


def test_example_asserts_come_from_the_problems_own_tests(by_id):
    assert example_asserts(by_id["HumanEval/2"]) == [
        "assert truncate_number(3.5) == 0.5",
        "assert abs(truncate_number(1.33) - 0.33) < 1e-06",
        "assert abs(truncate_number(123.456) - 0.456) < 1e-06",
    ]
    seeded = example_asserts(by_id["HumanEval/32"])  # only a seeded loop: keep its setup
    assert seeded[0] == "import math" and seeded[-1].startswith("for _ in range(100):")
    assert "find_zero(copy.deepcopy(coeffs))" in seeded[-1]


def test_splits_and_metadata(task):
    ids = [p.id for split in SPLITS for p in task.problems(split)]
    assert len(ids) == len(set(ids)) == 164
    assert len(task.problems("train")) == 8
    assert task.metrics[0] == "combined" and set(task.metrics) == {"combined", "valid", "mutation"}
    assert task.skipped == {} and "HumanEval" in task.source
    with pytest.raises(ConfigError, match="unknown split"):
        task.problems("test")  # type: ignore[arg-type]


def test_rows_without_solution_or_tests_are_skipped(tmp_path):
    rows = [
        {"task_id": f"T/{i}", "prompt": f"def f{i}(x):\n", "entry_point": f"f{i}",
         "canonical_solution": "    return x\n" if i != 1 else "",
         "test": "def check(candidate):\n    assert candidate(1) == 1\n" if i != 2 else ""}
        for i in range(6)
    ]  # fmt: skip
    path = tmp_path / "mini.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    task = TestGenTask(path, samples_per_problem=3)
    assert task.skipped == {"no canonical_solution": 1, "no test": 1}
    assert sum(len(task.problems(s)) for s in SPLITS) == 4
    assert task.source == str(path) and task.samples_per_problem == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"samples_per_problem": 0}, "samples_per_problem"),
        ({"workers": 0}, "workers"),
        ({"sandbox": "docker"}, "sandbox"),
        ({"mutants": 0}, "mutants"),
        ({"seed": 1.5}, "seed"),
        ({"timeout": 0}, "timeout"),
        ({"assert_timeout": float("inf")}, "assert_timeout"),
        ({"max_asserts": 0}, "max_asserts"),
        ({"memory_mb": 10}, "memory_mb"),
        ({"holdout_fraction": 1.0}, "holdout_fraction"),
    ],
)
def test_invalid_options_are_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TestGenTask(**kwargs)


# -- running statements in the sandbox --------------------------------------------------------

_ADD = "def add(a, b):\n    return a + b\n"


def test_run_statements_reports_each_statement():
    statements = [
        Statement(1, "assert add(1, 2) == 3", True),
        Statement(2, "assert add(1, 2) == 4", True),
        Statement(3, "import math", False),
        Statement(4, "assert math.isclose(add(0.1, 0.2), 0.3)", True),
    ]
    results, run = run_statements(_ADD, statements, timeout=10, assert_timeout=1)
    assert results == [True, False, True, True]
    assert "test line 2: AssertionError" in run.stderr


def test_a_suite_kills_a_real_mutant_but_not_an_equivalent_one():
    suite = [
        Statement(1, "assert add(1, 2) == 3", True),
        Statement(2, "assert add(0, 0) == 0", True),
    ]
    options = {"timeout": 10, "assert_timeout": 1}
    assert not detects(_ADD, suite, **options)  # the reference itself
    assert detects("def add(a, b):\n    return a - b\n", suite, **options)
    assert not detects("def add(a, b):\n    return b + a\n", suite, **options)
    assert detects("def add(a, b):\n    raise SystemExit(0)\n", suite, **options)


def test_a_hanging_mutant_costs_one_statement_time_limit():
    suite = [Statement(i, f"assert add({i}, 0) == {i}", True) for i in range(8)]
    start = time.perf_counter()
    assert detects(
        "def add(a, b):\n    while True:\n        pass\n", suite, timeout=10, assert_timeout=0.5
    )
    assert time.perf_counter() - start < 3.0  # not 8 x 0.5 s: later statements are skipped


# -- scoring real HumanEval problems -----------------------------------------------------------


@pytest.mark.slow
def test_a_perfect_answer_is_valid_and_kills_most_mutants(task, by_id):
    problems = [by_id["HumanEval/0"], by_id["HumanEval/2"]]
    answers = [_fenced(*example_asserts(p, count=100)) for p in problems]
    outcomes = task.score(problems, answers, continuation=False)
    for outcome, problem in zip(outcomes, problems, strict=True):
        assert outcome.problem_id == problem.id
        assert outcome.metrics["valid"] == 1.0
        assert outcome.metrics["mutants"] >= 3
        assert outcome.metrics["mutants"] <= outcome.metrics["mutants_generated"] <= 10
        # every retained mutant is killed by the problem's own tests, by construction
        assert outcome.metrics["killed"] == outcome.metrics["mutants"]
        assert outcome.status == "passed" and outcome.passed and outcome.fraction == 1.0
    assert task.aggregate(outcomes)["combined"] == 1.0


def test_retained_mutants_are_those_the_problems_tests_kill(task, by_id):
    problem = by_id["HumanEval/0"]
    drawn = {
        m.description
        for m in mutants(
            problem.prompt + problem.reference, limit=10, seed=0, function=problem.entry_point
        )
    }
    retained = task.retained_mutants(problem)
    assert retained == task.retained_mutants(problem)  # cached, same answer
    described = {m.description for m in retained}
    assert described < drawn
    # `if idx != idx2` matters to HumanEval's tests; `distance < threshold` vs `<=` does not
    assert "line 14: != -> ==" in described
    assert drawn - described == {"line 16: < -> <="}


def test_wrong_asserts_are_invalid_and_weak_tests_kill_less(task, by_id):
    problem = by_id["HumanEval/2"]
    weak = _fenced(
        "assert truncate_number(3.5) == 0.5",
        "assert truncate_number(3.5) == 3",  # wrong
        "assert truncate_number(2.0) >= 0",  # right, but kills little
    )
    outcome = task.score([problem], [weak], continuation=False)[0]
    assert outcome.metrics["asserts"] == 3 and outcome.metrics["valid_asserts"] == 2
    assert outcome.metrics["valid"] == pytest.approx(2 / 3)
    assert outcome.status == "failed" and not outcome.passed
    assert "AssertionError" in outcome.output
    trivial = task.score(
        [problem], [_fenced("assert truncate_number(2.0) >= 0")], continuation=False
    )[0]
    assert trivial.metrics["valid"] == 1.0
    assert trivial.metrics["mutation"] < outcome.metrics["mutation"] <= 1.0
    assert trivial.fraction == pytest.approx(combined_score(1.0, trivial.metrics["mutation"]))


def test_answers_without_asserts_score_zero(task, by_id):
    problem = by_id["HumanEval/2"]
    outcomes = task.score([problem] * 2, ["", "Just trust me."], continuation=False)
    for outcome in outcomes:
        assert outcome.status == "no_asserts" and outcome.fraction == 0.0
        assert outcome.metrics["valid"] == outcome.metrics["mutation"] == 0.0
        assert outcome.metrics["killed"] == 0.0 and outcome.metrics["mutants"] > 0
    assert task.aggregate(outcomes)["combined"] == 0.0


def test_a_hanging_assert_times_out_alone(task, by_id):
    problem = by_id["HumanEval/2"]
    answer = _fenced(
        "assert truncate_number(3.5) == 0.5",
        "assert all(True for _ in iter(int, 1))",  # loops forever
        "assert abs(truncate_number(1.25) - 0.25) < 1e-9",
    )
    outcome = task.score([problem], [answer], continuation=False)[0]
    assert outcome.metrics["asserts"] == 3 and outcome.metrics["valid_asserts"] == 2
    assert "took longer than" in outcome.output
    assert outcome.metrics["killed"] > 0


def test_raw_continuations_are_scored(task, by_id):
    problem = by_id["HumanEval/2"]
    completion = "3.5) == 0.5\n    assert truncate_number(1.5) == 0.5\n\n\ntest_truncate_number()\n"
    outcome = task.score([problem], [completion], continuation=True)[0]
    assert outcome.metrics["asserts"] == 2 and outcome.metrics["valid"] == 1.0


def test_concurrent_calls_share_one_filter(by_id):
    task = TestGenTask(workers=2, assert_timeout=0.5)
    problem = by_id["HumanEval/4"]
    answer = _fenced(*example_asserts(problem))
    results: list = []

    def score() -> None:
        results.append(task.score([problem], [answer], continuation=False)[0].metrics)

    threads = [threading.Thread(target=score) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and results[0] == results[1]
    assert [key[0] for key in task._mutant_sets] == [problem.id]


def test_a_reference_failing_its_own_tests_keeps_no_mutant():
    task = TestGenTask(workers=2, assert_timeout=0.5)
    good = Problem(
        "ok", TOY.prompt, TOY.reference, "def check(c):\n    assert c(1, 2) == 3\n", "add"
    )
    broken = Problem(
        "broken", TOY.prompt, TOY.reference, "def check(c):\n    assert c(1, 2) == 4\n", "add"
    )
    answer = _fenced("assert add(2, 2) == 4", "assert add(2, 2) == 5")
    outcomes = task.score([good, broken], [answer, answer], continuation=False)
    assert outcomes[0].metrics["mutants"] == 2 and outcomes[0].metrics["killed"] == 2
    assert outcomes[1].metrics["mutants_generated"] == 2 and outcomes[1].metrics["mutants"] == 0
    assert "reference fails its own tests" in outcomes[1].output
    assert outcomes[1].fraction == outcomes[1].metrics["valid"] == 0.5  # combined = valid
    result = task.aggregate(outcomes)
    assert result["no_mutants"] == 1 and result["mutation"] == 1.0


def test_score_needs_one_completion_per_problem(task, by_id):
    with pytest.raises(ValueError, match="1 problems but 2 completions"):
        task.score([by_id["HumanEval/2"]], ["", ""], continuation=False)
    assert task.score([], [], continuation=False) == []


# -- aggregation ------------------------------------------------------------------------------


def _outcome(problem_id: str, valid: float, mutants: int, killed: int, asserts: int = 4):
    mutation = killed / mutants if mutants else 0.0
    combined = combined_score(valid, mutation) if mutants else valid
    metrics = {
        "valid": valid, "mutation": mutation, "combined": combined, "asserts": asserts,
        "valid_asserts": valid * asserts, "mutants_generated": mutants + 1,
        "mutants": mutants, "killed": killed,
    }  # fmt: skip
    return ProblemOutcome(problem_id, "failed", False, combined, metrics=metrics)


def test_aggregate_averages_samples_then_problems(task):
    outcomes = [
        _outcome("a", 1.0, 4, 4),  # combined 1
        _outcome("a", 0.5, 4, 2),  # combined 0.5
        _outcome("b", 0.25, 2, 0),  # combined 0
        _outcome("c", 0.75, 0, 0),  # no mutants: combined = valid, left out of mutation
    ]
    result = task.aggregate(outcomes)
    assert result["valid"] == pytest.approx(((1.0 + 0.5) / 2 + 0.25 + 0.75) / 3)
    assert result["mutation"] == pytest.approx(((1.0 + 0.5) / 2 + 0.0) / 2)
    assert result["combined"] == pytest.approx(((1.0 + 0.5) / 2 + 0.0 + 0.75) / 3)
    assert result["mutants"] == 10 and result["killed"] == 6 and result["asserts"] == 16
    assert result["mutants_generated"] == 14 and result["no_mutants"] == 1
    assert set(task.metrics) <= set(result)


def test_aggregate_of_repeated_scored_problems(task, by_id):
    problem = by_id["HumanEval/2"]
    good = _fenced(*example_asserts(problem))
    outcomes = task.score([problem] * 3, [good, good, ""], continuation=False)
    result = task.aggregate(outcomes)
    assert result["valid"] == pytest.approx(2 / 3)
    assert result["combined"] == pytest.approx(sum(o.fraction for o in outcomes) / 3)
    assert result["mutants"] == 3 * outcomes[0].metrics["mutants"]


def test_aggregate_needs_outcomes(task):
    with pytest.raises(ValueError, match="at least one outcome"):
        task.aggregate([])


def test_example_response_of_every_train_problem_is_valid(task):
    problems = task.problems("train")
    answers = [task.example_response(p) for p in problems]
    extracted = [
        extract_tests(p, a, continuation=False) for p, a in zip(problems, answers, strict=True)
    ]
    assert all(_asserts(e) for e in extracted)
    for problem, statements in zip(problems, extracted, strict=True):
        results, _ = run_statements(
            problem.prompt + problem.reference, statements, timeout=10, assert_timeout=2
        )
        assert results is not None and all(results), problem.id
