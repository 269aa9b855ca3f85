"""Conala and CodeAlpaca: loading, prompts, splits, extraction, EM@k and CodeBLEU."""

from __future__ import annotations

import ast
import gzip
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from codebleu import calc_codebleu

from engine.errors import ConfigError, DatasetError
from engine.tasks.base import ProblemOutcome
from engine.tasks.codebleu_metric import codebleu_score, python_tokens
from engine.tasks.instruct import (
    DATA,
    CodeAlpacaTask,
    ConalaTask,
    em_at_k,
    exact_match,
    extract_code,
    format_prompt,
    load_codealpaca,
    load_conala,
    normalize_code,
    strip_fences,
)

SPLITS = ("train", "tune", "holdout")
TASKS = (ConalaTask, CodeAlpacaTask)


def _write(path: Path, rows: list, *, raw_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    for number, text in (raw_lines or {}).items():
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def _conala_rows(n: int, *, start: int = 0, per_question: int = 1) -> list[dict]:
    return [
        {
            "intent": f"add {i} to x",
            "rewritten_intent": f"add {i} to variable `x`",
            "snippet": f"x + {i}",
            "question_id": 5000 + i // per_question,
        }
        for i in range(start, start + n)
    ]


def _all(task) -> list:
    return [p for split in SPLITS for p in task.problems(split)]


# -- prompt format ---------------------------------------------------------------------------


def test_prompt_is_the_study_format_exactly():
    assert format_prompt("reverse string `s`") == (
        "### Instruction:\nreverse string `s`\n### Response:\n"
    )
    assert format_prompt(" Swap them. \n", "a = 5\nb = 10\n") == (
        "### Instruction:\nSwap them.\n### Input:\na = 5\nb = 10\n### Response:\n"
    )
    assert format_prompt("Do it.", "  \n") == "### Instruction:\nDo it.\n### Response:\n"


def test_task_prompt_pieces(tmp_path):
    conala = ConalaTask(
        _write(
            tmp_path / "c.jsonl",
            [{"intent": "sort", "rewritten_intent": "sort list `l`", "snippet": "sorted(l)\n"}],
        ),
        holdout_fraction=0.0,
        n_train=0,
    )
    (problem,) = _all(conala)
    expected = "### Instruction:\nsort list `l`\n### Response:\n"
    assert conala.completion_prefix(problem) == expected
    assert conala.instruction(problem) == expected
    assert conala.example_response(problem) == "sorted(l)"
    alpaca = CodeAlpacaTask(
        _write(
            tmp_path / "a.jsonl",
            [{"instruction": "Swap a and b.", "input": "a = 5\nb = 10", "output": "a, b = b, a"}],
        ),
        holdout_fraction=0.0,
        n_train=0,
    )
    (problem,) = _all(alpaca)
    assert alpaca.completion_prefix(problem) == (
        "### Instruction:\nSwap a and b.\n### Input:\na = 5\nb = 10\n### Response:\n"
    )
    assert alpaca.instruction(problem) == alpaca.completion_prefix(problem)


# -- normalization and exact match --------------------------------------------------------------


def test_strip_fences_prefers_the_first_python_block():
    text = "Use this:\n```bash\nls\n```\n```python\nx = 1\n```\n```py\nx = 2\n```"
    assert strip_fences(text) == "x = 1\n"
    assert strip_fences("```\ny\n```") == "y\n"
    assert strip_fences("```sql\nSELECT 1\n```") == "SELECT 1\n"
    assert strip_fences("```python\nunclosed(") == "unclosed("
    assert strip_fences("no fence `x`") == "no fence `x`"


def test_normalize_code_token_sequence():
    assert normalize_code("if a:\n    b = 1  # c\nc") == (
        "if", "a", ":", "<NEWLINE>", "<INDENT>", "b", "=", "1", "<NEWLINE>", "<DEDENT>",
        "c", "<NEWLINE>",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("candidate", "reference"),
    [
        ("sorted( l ,key=lambda d:d['age'] )", "sorted(l, key=lambda d: d['age'])"),
        ("```python\nsorted(l)\n```", "sorted(l)"),
        ("  sorted(l)  \r\n\n", "sorted(l)"),
        ("sorted(l)  # ascending", "sorted(l)"),
        ("f(a,\n  b)", "f(a, b)"),  # a newline inside brackets is not a line break
        ("if x:\n  y()\n\n  z()", "if x:\n    y()\n    z()"),  # indent width, blank line
        ("    a = 1\n    b = 2", "a = 1\nb = 2"),  # common indentation
    ],
)
def test_exact_match_ignores_layout(candidate, reference):
    assert exact_match(candidate, reference)


@pytest.mark.parametrize(
    ("candidate", "reference"),
    [
        ('d["age"]', "d['age']"),  # string literals are compared as written
        ("if x:\n    y()\nz()", "if x:\n    y()\n    z()"),  # nesting matters
        ("a = 1; b = 2", "a = 1\nb = 2"),  # so do logical lines
        ("sorted(l)", "sorted(l, reverse=True)"),
        ("", "x"),
        ("   ", "x"),
    ],
)
def test_exact_match_is_not_fooled(candidate, reference):
    assert not exact_match(candidate, reference)


def test_untokenizable_code_falls_back_to_whitespace_normalization():
    assert normalize_code("f(a,\n   b") == ("<TEXT>", "f(a, b")  # unclosed bracket
    assert normalize_code("x = $ 1") == ("<TEXT>", "x = $ 1")  # no such token
    assert exact_match("x  =\t$ 1", "x = $ 1")
    # the fallback never equals a token sequence
    assert normalize_code("<TEXT> a") != normalize_code("a")


def test_em_at_k_hand_computed():
    matches = [[False, True, False], [False, False, False], [True, False, False], [0, 0, 1]]
    assert em_at_k(matches, 1) == 1 / 4
    assert em_at_k(matches, 2) == 2 / 4
    assert em_at_k(matches, 3) == 3 / 4
    assert em_at_k(matches, 10) == 3 / 4  # a problem with fewer candidates uses them all
    for k in (0, -1, 1.0, True):
        with pytest.raises(ValueError, match="k must be an integer"):
            em_at_k(matches, k)
    with pytest.raises(ValueError, match="no problems"):
        em_at_k([], 1)
    with pytest.raises(ValueError, match="no candidates"):
        em_at_k([[True], []], 1)


def test_extract_code_cuts_continuations_at_stops_only():
    stops = ["\n###", "\n\n"]
    raw = "sorted(l)\n\nThis sorts the list.\n### Instruction:\nmore"
    assert extract_code(raw, continuation=True, stops=stops) == "sorted(l)"
    assert extract_code("x\n### Instruction", continuation=True, stops=["\n###"]) == "x"
    chat = "Here you go:\n\n```python\n    sorted(l)\n```\n\nIt sorts."
    assert extract_code(chat, continuation=False, stops=stops) == "sorted(l)"
    assert extract_code("a\n\nb", continuation=False, stops=stops) == "a\n\nb"


# -- CodeBLEU -------------------------------------------------------------------------------


def test_python_tokens():
    assert python_tokens("d['age']  # key\n") == ["d", "[", "'age'", "]"]
    assert python_tokens("if a:\n    b") == ["if", "a", ":", "b"]
    assert python_tokens("x = $") == ["x", "=", "$"]
    assert python_tokens("f(a,\n b") == ["f(a,", "b"]  # does not tokenize: whitespace split


@pytest.mark.parametrize("tokenizer", ["python", "whitespace"])
def test_codebleu_is_the_package_value(tokenizer):
    reference = "sorted(l, key=lambda d: d['age'])"
    candidate = "l.sort(key=lambda x: x['age'])"
    split = {"python": python_tokens, "whitespace": str.split}[tokenizer]
    expected = calc_codebleu([reference], [candidate], lang="python", tokenizer=split)
    got = codebleu_score(reference, candidate, tokenizer=tokenizer)
    assert got == pytest.approx(
        {
            "codebleu": expected["codebleu"],
            "ngram": expected["ngram_match_score"],
            "weighted_ngram": expected["weighted_ngram_match_score"],
            "syntax": expected["syntax_match_score"],
            "dataflow": expected["dataflow_match_score"],
        }
    )
    assert 0.3 < got["codebleu"] < 0.7


def test_codebleu_of_identical_code_is_one():
    code = "def add(a, b):\n    total = a + b\n    return total"
    assert codebleu_score(code, code) == pytest.approx(dict.fromkeys(_KEYS, 1.0))
    one_liner = "list(itertools.product(a, b))"
    assert codebleu_score(one_liner, one_liner)["codebleu"] == pytest.approx(1.0)
    # the package's whitespace tokens see only two words here
    assert codebleu_score(one_liner, one_liner, tokenizer="whitespace")["codebleu"] < 0.7
    # BLEU needs 4-grams: a 3-token reference cannot reach 1 even against itself
    assert codebleu_score("'a' in d", "'a' in d")["codebleu"] == pytest.approx(0.78, abs=0.01)


_KEYS = ("codebleu", "ngram", "weighted_ngram", "syntax", "dataflow")


def test_codebleu_of_empty_candidate_is_zero_and_odd_text_does_not_crash():
    assert codebleu_score("x + 1", "") == dict.fromkeys(_KEYS, 0.0)
    assert codebleu_score("x + 1", " \n\t") == dict.fromkeys(_KEYS, 0.0)
    for odd in ("x = '\ud800'", "\x00", "```", "(((", "'''", "def"):
        scores = codebleu_score("x + 1", odd)
        assert all(0.0 <= v <= 1.0 for v in scores.values())
    with pytest.raises(ConfigError, match="reference is empty"):
        codebleu_score("  ", "x")
    with pytest.raises(ConfigError, match="unknown tokenizer"):
        codebleu_score("x", "x", tokenizer="nltk")
    with pytest.raises(ConfigError, match="unknown language"):
        codebleu_score("x", "x", lang="cobol")


def test_codebleu_hides_only_the_dataflow_warning(caplog):
    root = logging.getLogger()
    filters = list(root.filters)
    with caplog.at_level(logging.WARNING):
        codebleu_score("s[::-1]", "s[::-2]")  # no data flow in the reference
        logging.warning("an unrelated warning")
    assert [r.getMessage() for r in caplog.records] == ["an unrelated warning"]
    assert root.filters == filters


def test_codebleu_from_threads_equals_serial():
    pairs = [(f"x = [i * {k} for i in y]", f"x = [j * {k % 3} for j in y]") for k in range(24)]
    serial = [codebleu_score(r, c) for r, c in pairs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda pair: codebleu_score(*pair), pairs))
    assert threaded == serial


# -- loading --------------------------------------------------------------------------------


def test_bundled_samples_are_valid_python_and_say_what_they_are():
    for task_class, expected_rows in ((ConalaTask, 42), (CodeAlpacaTask, 40)):
        task = task_class()
        problems = _all(task)
        assert len(problems) == expected_rows
        assert task.skipped == {}
        assert "small bundled sample" in task.source and "--dataset" in task.source
        for problem in problems:
            ast.parse(problem.reference)  # every reference is valid Python 3
            assert problem.prompt.startswith("### Instruction:\n")
            assert problem.prompt.endswith("\n### Response:\n")
    assert (DATA / "conala-sample.jsonl").is_file() and (DATA / "codealpaca-sample.jsonl").is_file()


def test_rewritten_intent_is_preferred_and_null_or_blank_falls_back(tmp_path):
    rows = [
        {"intent": "raw one", "rewritten_intent": "rewritten one", "snippet": "a"},
        {"intent": "raw two", "rewritten_intent": None, "snippet": "b"},
        {"intent": "raw three", "rewritten_intent": "  ", "snippet": "c"},
        {"intent": "raw four", "snippet": "d"},
    ]
    problems, skipped = load_conala(_write(tmp_path / "c.jsonl", rows))
    assert [p.meta["instruction"] for p in problems] == [
        "rewritten one", "raw two", "raw three", "raw four",
    ]  # fmt: skip
    assert skipped == {}


@pytest.mark.parametrize(
    ("loader", "bad_row", "message"),
    [
        (load_conala, {"intent": "x"}, "field 'snippet' is missing"),
        (load_conala, {"intent": 3, "snippet": "a"}, "field 'intent' must be a string, got int"),
        (load_conala, {"intent": "x", "snippet": " "}, "field 'snippet' is empty"),
        (
            load_conala,
            {"intent": "", "rewritten_intent": None, "snippet": "a"},
            "field 'intent' is empty",
        ),
        (
            load_conala,
            {"intent": "x", "rewritten_intent": ["y"], "snippet": "a"},
            "field 'rewritten_intent' must be a string, got list",
        ),
        (
            load_conala,
            {"intent": "x", "snippet": "a", "question_id": 1.5},
            "field 'question_id' must be an integer or a string, got float",
        ),
        (load_codealpaca, {"instruction": "x"}, "field 'output' is missing"),
        (
            load_codealpaca,
            {"instruction": "x", "input": 7, "output": "a"},
            "field 'input' must be a string, got int",
        ),
        (load_codealpaca, {"output": "a"}, "field 'instruction' is missing"),
    ],
)
def test_malformed_rows_are_refused_with_file_line_and_field(tmp_path, loader, bad_row, message):
    good = {"intent": "y", "snippet": "b"} if loader is load_conala else {}
    good = good or {"instruction": "y", "output": "b"}
    path = _write(tmp_path / "d.jsonl", [good, good | {"snippet": "c", "output": "c"}, bad_row])
    with pytest.raises(DatasetError, match=f"{path}:3: {message}"):
        loader(path)


def test_not_json_and_empty_files_are_refused(tmp_path):
    path = _write(tmp_path / "d.jsonl", _conala_rows(3), raw_lines={2: "{not json"})
    with pytest.raises(DatasetError, match=f"{path}:2: invalid JSON"):
        load_conala(path)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="has no rows"):
        ConalaTask(tmp_path / "empty.jsonl")
    with pytest.raises(DatasetError, match="no such dataset file"):
        CodeAlpacaTask(tmp_path / "missing.jsonl")


def test_input_null_or_missing_means_none(tmp_path):
    rows = [
        {"instruction": "a", "input": None, "output": "x = 1"},
        {"instruction": "b", "output": "x = 2"},
        {"instruction": "c", "input": "", "output": "x = 3"},
    ]
    problems, _ = load_codealpaca(_write(tmp_path / "a.jsonl", rows))
    assert all("### Input:" not in p.prompt for p in problems)


def test_duplicates_and_non_python_rows_are_skipped_and_counted(tmp_path):
    rows = [
        {"instruction": "a", "input": "", "output": "x = 1"},
        {"instruction": "a", "input": "", "output": "x = 1"},  # duplicate
        {"instruction": "b", "input": "", "output": "SELECT * FROM t;"},
        {"instruction": "c", "input": "", "output": "print 'py2'"},
    ]
    path = _write(tmp_path / "a.jsonl", rows)
    problems, skipped = load_codealpaca(path)
    assert len(problems) == 1
    assert skipped == {"duplicate row": 1, "reference is not Python 3": 2}
    task = CodeAlpacaTask(path, python_only=False, holdout_fraction=0.0)
    assert task.skipped == {"duplicate row": 1}
    assert len(_all(task)) == 3
    py2 = ConalaTask(_write(tmp_path / "c.jsonl", [{"intent": "p", "snippet": "print 1"}]))
    assert py2.skipped == {} and len(_all(py2)) == 1  # Conala keeps Python 2 by default
    only_sql = _write(tmp_path / "sql.jsonl", [rows[2]])
    with pytest.raises(DatasetError, match="every row was skipped"):
        CodeAlpacaTask(only_sql)


def test_gzip_file(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt") as file:
        file.write("\n".join(json.dumps(r) for r in _conala_rows(5)))
    assert len(_all(ConalaTask(path))) == 5


# -- splits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("task_class", TASKS)
def test_bundled_splits_are_disjoint_cover_everything_and_are_stable(task_class):
    task = task_class()
    ids = {split: [p.id for p in task.problems(split)] for split in SPLITS}
    every = [i for split in SPLITS for i in ids[split]]
    assert len(every) == len(set(every))
    assert all(ids[split] for split in SPLITS)
    again = task_class()
    assert {s: [p.id for p in again.problems(s)] for s in SPLITS} == ids
    with pytest.raises(ConfigError, match="unknown split"):
        task.problems("test")


def test_rows_of_one_question_share_a_split(tmp_path):
    task = ConalaTask(_write(tmp_path / "c.jsonl", _conala_rows(120, per_question=3)), n_train=4)
    where = {p.meta["question_id"]: set() for p in _all(task)}
    for split in SPLITS:
        for problem in task.problems(split):
            where[problem.meta["question_id"]].add(split)
    assert all(len(splits) == 1 for splits in where.values())
    assert len(task.problems("train")) == 4 * 3  # n_train counts questions
    assert len(task.problems("holdout")) > 0


def test_adding_rows_keeps_the_holdout_of_the_others(tmp_path):
    small = ConalaTask(_write(tmp_path / "s.jsonl", _conala_rows(40)))
    large = ConalaTask(_write(tmp_path / "l.jsonl", _conala_rows(80)))
    small_holdout = {p.id for p in small.problems("holdout")}
    large_holdout = {p.id for p in large.problems("holdout")}
    assert small_holdout and small_holdout <= large_holdout


# -- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "metrics"),
    [
        (1, ("codebleu", "em@1")),
        (4, ("codebleu", "em@1")),
        (5, ("codebleu", "em@1", "em@5")),
        (10, ("codebleu", "em@1", "em@5", "em@10")),
        (20, ("codebleu", "em@1", "em@5", "em@10")),
    ],
)
def test_metrics_depend_on_samples_per_problem(n, metrics):
    task = ConalaTask(samples_per_problem=n)
    assert task.metrics == metrics
    assert task.samples_per_problem == n


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"samples_per_problem": 0}, "samples_per_problem must be"),
        ({"samples_per_problem": True}, "samples_per_problem must be"),
        ({"holdout_fraction": 1.0}, "holdout_fraction must be in"),
        ({"holdout_fraction": float("nan")}, "holdout_fraction must be in"),
        ({"n_train": -1}, "n_train must be"),
        ({"workers": 0}, "workers must be"),
        ({"sandbox": "docker"}, "sandbox must be one of"),
        ({"blank_line_stop": "yes"}, "blank_line_stop must be"),
        ({"python_only": 1}, "python_only must be"),
        ({"codebleu_tokenizer": "nltk"}, "codebleu_tokenizer must be one of"),
    ],
)
def test_options_are_validated(options, message):
    with pytest.raises(ConfigError, match=message):
        CodeAlpacaTask(**options)


def test_stop_sequences(tmp_path):
    assert ConalaTask().stop_sequences(continuation=True) == ["\n###", "\n\n"]
    assert ConalaTask().stop_sequences(continuation=False) == []
    # the CodeAlpaca sample has references with blank lines (between methods)
    assert CodeAlpacaTask().stop_sequences(continuation=True) == ["\n###"]
    assert ConalaTask(blank_line_stop=False).stop_sequences(continuation=True) == ["\n###"]
    rows = [{"intent": "two", "snippet": "import os\n    \nos.getcwd()"}]
    assert not ConalaTask(_write(tmp_path / "c.jsonl", rows)).blank_line_stop


# -- scoring ----------------------------------------------------------------------------------


@pytest.mark.parametrize("task_class", TASKS)
def test_the_references_score_perfectly_in_both_styles(task_class):
    task = task_class()
    problems = _all(task)
    raw = [p.reference + "\n### Instruction:\nnext one\n" for p in problems]
    chat = [f"Sure:\n```python\n{p.reference}\n```\nDone." for p in problems]
    for texts, continuation in ((raw, True), (chat, False)):
        outcomes = task.score(problems, texts, continuation=continuation)
        assert all(o.passed and o.status == "exact" for o in outcomes)
        for o, p in zip(outcomes, problems, strict=True):  # each at its maximum
            assert o.fraction == pytest.approx(codebleu_score(p.reference, p.reference)["codebleu"])
        metrics = task.aggregate(outcomes)
        assert metrics["em@1"] == 1.0
        assert metrics["codebleu"] > 0.97


def test_score_and_aggregate_with_repeated_problems(tmp_path):
    rows = [
        {"intent": "a", "snippet": "sorted(l, key=lambda d: d['age'])"},
        {"intent": "b", "snippet": "s[::-1]"},
        {"intent": "c", "snippet": "int(x)"},
    ]
    task = ConalaTask(
        _write(tmp_path / "c.jsonl", rows), samples_per_problem=5, holdout_fraction=0.0, n_train=0
    )
    a, b, c = sorted(_all(task), key=lambda p: p.meta["instruction"])
    problems = [a] * 5 + [b] * 5 + [c] * 5
    completions = [
        "sorted(l)", "", "sorted( l, key=lambda d: d['age'] )", "x", "x",  # a: 3rd
        "s[::-1]", "s", "s", "s", "s",  # b: 1st
        "float(x)", "x", "x", "x", "x",  # c: never
    ]  # fmt: skip
    outcomes = task.score(problems, completions, continuation=False)
    assert [o.problem_id for o in outcomes] == [p.id for p in problems]
    assert [o.status for o in outcomes[:5]] == ["inexact", "empty", "exact", "inexact", "inexact"]
    assert outcomes[1].fraction == 0.0 and outcomes[1].output == ""
    for o, completion in zip(outcomes, completions, strict=True):
        expected = codebleu_score(next(p.reference for p in problems if p.id == o.problem_id),
                                  completion)  # fmt: skip
        assert o.fraction == pytest.approx(expected["codebleu"])
        assert o.metrics["codebleu_syntax"] == pytest.approx(expected["syntax"])
        assert o.metrics["em"] == float(o.passed)
    metrics = task.aggregate(outcomes)
    assert set(task.metrics) <= set(metrics)
    assert metrics["em@1"] == pytest.approx(1 / 3)  # only b's first candidate
    assert metrics["em@5"] == pytest.approx(2 / 3)  # a (3rd) and b
    firsts = [outcomes[0], outcomes[5], outcomes[10]]  # CodeBLEU: first candidates only
    assert metrics["codebleu"] == pytest.approx(sum(o.fraction for o in firsts) / 3)
    assert metrics["codebleu_ngram"] == pytest.approx(
        sum(o.metrics["codebleu_ngram"] for o in firsts) / 3
    )
    # the order of problems does not matter, the order of a problem's candidates does
    shuffled = outcomes[5:10] + outcomes[:5] + outcomes[10:]
    assert task.aggregate(shuffled) == pytest.approx(metrics)


def test_score_and_aggregate_refuse_bad_input():
    task = ConalaTask()
    problem = task.problems("tune")[0]
    with pytest.raises(ValueError, match="1 problems but 2 completions"):
        task.score([problem], ["a", "b"], continuation=True)
    assert task.score([], [], continuation=True) == []
    with pytest.raises(ValueError, match="at least one outcome"):
        task.aggregate([])
    with pytest.raises(ValueError, match="no CodeBLEU metrics"):
        task.aggregate([ProblemOutcome(problem.id, "passed", True, 1.0)])
