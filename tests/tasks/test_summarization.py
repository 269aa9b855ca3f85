"""Code summarization: the standard-library corpus, its filters, JSONL files, scoring."""

from __future__ import annotations

import ast
import json
import sysconfig
from pathlib import Path

import pytest

from engine.errors import ConfigError, DatasetError
from engine.tasks import ProblemOutcome
from engine.tasks.summarization import (
    CONTINUATION_STOPS,
    DEFAULT_SIZE,
    EXCLUDED_DIRS,
    REFERENCE_WORDS,
    SOURCE_LINES,
    SummarizationTask,
    build_corpus,
    load_problems,
    stdlib_root,
)
from engine.tasks.text_metrics import corpus_bleu, first_sentence

SPLITS = ("train", "tune", "holdout")


@pytest.fixture(scope="module")
def stdlib_task() -> SummarizationTask:
    return SummarizationTask()


def _write(path: Path, rows: list, *, raw_lines: dict[int, str] | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    for number, text in (raw_lines or {}).items():
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(n: int) -> list[dict]:
    return [
        {"id": f"f{i}", "code": f"def f{i}(x):\n    return x + {i}\n", "summary": f"Add {i} to x."}
        for i in range(n)
    ]


@pytest.fixture
def small_task(tmp_path) -> SummarizationTask:
    return SummarizationTask(_write(tmp_path / "s.jsonl", _rows(20)), samples_per_problem=2)


def _by_id(task: SummarizationTask) -> dict:
    return {p.id: p for split in SPLITS for p in task.problems(split)}


# -- the built-in corpus, on the real standard library ----------------------------------------


@pytest.mark.slow
def test_stdlib_corpus_has_the_configured_size_and_stable_readable_ids(stdlib_task):
    problems = list(_by_id(stdlib_task).values())
    assert len(problems) == DEFAULT_SIZE
    ids = [p.id for p in problems]
    assert len(set(ids)) == len(ids)
    for pid in ids:
        path, qualname = pid.split(":")
        assert path.endswith(".py") and (stdlib_root() / path).is_file()
        assert not EXCLUDED_DIRS & set(path.split("/"))
        assert all(part.isidentifier() and not part.startswith("_") for part in qualname.split("."))
    assert "Python 3." in stdlib_task.source and "standard library" in stdlib_task.source


@pytest.mark.slow
def test_stdlib_corpus_is_deterministic_across_a_fresh_build(stdlib_task):
    fresh = build_corpus.__wrapped__(stdlib_root())  # bypass the per-process cache
    again = SummarizationTask(size=DEFAULT_SIZE, seed=0)
    assert {p.id for p in fresh.problems} >= set(_by_id(stdlib_task))
    assert fresh == build_corpus(stdlib_root())
    for split in SPLITS:
        assert [p.id for p in again.problems(split)] == [p.id for p in stdlib_task.problems(split)]


@pytest.mark.slow
def test_stdlib_seed_and_size_change_the_draw_not_the_pool(stdlib_task):
    other = SummarizationTask(seed=1)
    small = SummarizationTask(size=50)
    assert set(_by_id(other)) != set(_by_id(stdlib_task))
    assert len(_by_id(small)) == 50
    everything = SummarizationTask(size=None)
    assert everything.skipped["not_sampled"] == 0
    pool = len(_by_id(everything))
    assert stdlib_task.skipped["not_sampled"] == pool - DEFAULT_SIZE


@pytest.mark.slow
def test_stdlib_references_are_single_sentences_within_bounds(stdlib_task):
    for problem in _by_id(stdlib_task).values():
        reference = problem.reference
        assert first_sentence(reference) == reference, problem.id
        assert "\n" not in reference
        assert REFERENCE_WORDS[0] <= len(reference.split()) <= REFERENCE_WORDS[1]
        assert reference[0].isupper()


@pytest.mark.slow
def test_stdlib_inputs_are_one_function_without_its_docstring(stdlib_task):
    for problem in _by_id(stdlib_task).values():
        tree = ast.parse(problem.prompt)
        assert len(tree.body) == 1, problem.id
        function = tree.body[0]
        assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        assert ast.get_docstring(function) is None, problem.id
        assert function.name == problem.id.rsplit(".", 1)[-1].split(":")[-1]
        assert SOURCE_LINES[0] <= problem.prompt.count("\n") <= SOURCE_LINES[1]


@pytest.mark.slow
def test_stdlib_skipped_counts_are_reported(stdlib_task):
    skipped = stdlib_task.skipped
    for reason in ("no_docstring", "dunder_name", "private_name", "trivial_body"):
        assert skipped.get(reason, 0) > 0, reason
    assert all(isinstance(n, int) and n >= 0 for n in skipped.values())


@pytest.mark.slow
def test_stdlib_known_function_keeps_its_code_and_first_sentence():
    problems = {p.id: p for p in build_corpus(stdlib_root()).problems}
    decode = problems["json/decoder.py:JSONDecoder.decode"]
    assert decode.prompt.startswith("def decode(self, s, _w=WHITESPACE.match):\n    obj, end")
    assert decode.reference.startswith("Return the Python representation of ``s``")
    assert decode.meta["path"] == "json/decoder.py"


def test_stdlib_root_is_the_interpreters():
    assert stdlib_root() == Path(sysconfig.get_paths()["stdlib"])
    assert (stdlib_root() / "json" / "decoder.py").is_file()


# -- the filters, on a small tree built here --------------------------------------------------

_MOD = '''
import functools


def good(items):
    """Return the total of the given items.

    More text that is not part of the reference.
    """
    total = 0
    for item in items:
        total += item
    return total


async def fetch(client, url):
    """Fetch the page at url and return its body."""
    response = await client.get(url)
    return await response.read()


def _private(x):
    """Return the private value of x."""
    y = x + 1
    return y * 2


def no_doc(x):
    y = x + 1
    return y


def wrapper(x):
    """Return the wrapped value of x."""
    return other(x)


def short_ref(x):
    """Do it."""
    y = x
    return y


def signature(x):
    """signature(x) -> int"""
    y = x
    return y


def long_body(x):
    """Return a long computation of the value x."""
LONG_BODY


class Thing:
    """A thing."""

    def __init__(self):
        """Create the thing for real now."""
        self.a = 1
        self.b = 2

    @functools.lru_cache
    def method(self, x):
        """Compute the method value for x.

        Args: none.
        """

        if x:
            return 1
        text = """
text at column zero"""
        return text

    def inline(self):
        """Return one here right now."""; x = 1; return x

    def outer(self):
        """Return an inner function of this thing."""
        def inner_function_is_not_a_problem():
            """Return nothing at all here."""
            return None
        return inner_function_is_not_a_problem


class _Hidden:
    def visible(self):
        """Return the hidden visible value."""
        x = 1
        return x
'''

_COPY = '''
def good(items):
    """Sum up the items in a different way."""
    total = 0
    for item in items:
        total += item
    return total
'''

_GOOD_FILE = '''
def should_not_be_read(x):
    """Return a value that no one should see."""
    y = x
    return y
'''


def _tree(root: Path) -> Path:
    long_body = "\n".join(f"    x = x + {i}" for i in range(SOURCE_LINES[1] + 1))
    files = {
        "pkg/mod.py": _MOD.replace("LONG_BODY", long_body),
        "pkg/copy.py": _COPY,
        "pkg/broken.py": "def f(:\n    pass\n",
        "pkg/test_mod.py": _GOOD_FILE,
        "tests/helpers.py": _GOOD_FILE,
        "idlelib/editor.py": _GOOD_FILE,
        "site-packages/lib/thing.py": _GOOD_FILE,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "pkg" / "latin.py").write_bytes(b"# caf\xe9\n" + _GOOD_FILE.encode())
    return root


def test_filters_count_every_function_left_out_by_reason(tmp_path):
    corpus = build_corpus(_tree(tmp_path))
    assert [p.id for p in corpus.problems] == [
        "pkg/copy.py:good",
        "pkg/mod.py:Thing.method",
        "pkg/mod.py:Thing.outer",
        "pkg/mod.py:fetch",
    ]
    assert dict(corpus.skipped) == {
        "dunder_name": 1,
        "duplicate_code": 1,  # pkg/mod.py:good repeats pkg/copy.py:good, the smaller id
        "inline_docstring": 1,
        "no_docstring": 1,
        "private_name": 2,  # _private and _Hidden.visible
        "reference_form": 1,
        "reference_length": 1,
        "source_length": 1,
        "trivial_body": 1,
        "unparseable_file": 1,
        "unreadable_file": 1,
    }


def test_filtered_problem_keeps_decorators_code_and_strings_but_no_docstring(tmp_path):
    problems = {p.id: p for p in build_corpus(_tree(tmp_path)).problems}
    method = problems["pkg/mod.py:Thing.method"]
    assert method.reference == "Compute the method value for x."
    # Dedented by the def's indentation; the string line at column 0 is kept as it is.
    assert method.prompt == (
        "@functools.lru_cache\n"
        "def method(self, x):\n"
        "    if x:\n"
        "        return 1\n"
        '    text = """\n'
        'text at column zero"""\n'
        "    return text\n"
    )
    assert problems["pkg/copy.py:good"].reference == "Sum up the items in a different way."
    assert problems["pkg/mod.py:fetch"].prompt.startswith("async def fetch(client, url):\n")


def test_filtered_tree_is_deterministic(tmp_path):
    first = build_corpus.__wrapped__(_tree(tmp_path / "a"))
    second = build_corpus.__wrapped__(_tree(tmp_path / "b"))
    assert first == second


# -- user JSONL files -------------------------------------------------------------------------


def test_jsonl_file_is_loaded_with_its_fields(tmp_path):
    task = SummarizationTask(_write(tmp_path / "s.jsonl", _rows(20)))
    problems = _by_id(task)
    assert len(problems) == 20
    assert problems["f3"].prompt == "def f3(x):\n    return x + 3\n"
    assert problems["f3"].reference == "Add 3 to x."
    assert task.skipped == {} and task.source == str(tmp_path / "s.jsonl")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"code": "def f(): pass", "summary": "Do f."}', "'id' is missing"),
        ('{"id": "a", "code": 3, "summary": "Do f."}', "'code' must be a string"),
        ('{"id": "a", "code": "def f(): pass", "summary": "  "}', "'summary' is empty"),
        ('{"id": "a", "code": "def f(): pass", "summary": "```"}', "'summary' has no words"),
        ('{"id": "f0", "code": "def f(): pass", "summary": "Do f."}', "'f0' appears twice"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_jsonl_refuses_a_malformed_row_with_file_line_and_field(tmp_path, line, field):
    path = _write(tmp_path / "bad.jsonl", _rows(3), raw_lines={2: line})
    with pytest.raises(DatasetError) as error:
        load_problems(path)
    assert f"{path}:2: " in str(error.value)
    assert field in str(error.value)


def test_jsonl_refuses_missing_and_empty_files(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset file"):
        SummarizationTask(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no rows"):
        SummarizationTask(tmp_path / "empty.jsonl")


# -- options, splits, prompt pieces -----------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"samples_per_problem": 0},
        {"samples_per_problem": 1.5},
        {"workers": 0},
        {"sandbox": "docker"},
        {"size": 0},
        {"size": True},
        {"seed": "x"},
        {"holdout_fraction": 1.0},
        {"n_train": -1},
    ],
)
def test_invalid_options_are_refused(tmp_path, options):
    path = _write(tmp_path / "s.jsonl", _rows(4))
    with pytest.raises(ConfigError):
        SummarizationTask(path, **options)


def test_splits_are_disjoint_and_cover_the_data(small_task):
    ids = {split: [p.id for p in small_task.problems(split)] for split in SPLITS}
    every = [i for split in SPLITS for i in ids[split]]
    assert len(every) == len(set(every)) == 20
    assert len(ids["train"]) == min(8, (20 - len(ids["holdout"])) // 2)
    assert 0 < len(ids["holdout"]) < 10
    with pytest.raises(ConfigError, match="unknown split"):
        small_task.problems("test")  # type: ignore[arg-type]


def test_prompt_pieces(small_task):
    problem = _by_id(small_task)["f3"]
    instruction = small_task.instruction(problem)
    assert "one sentence" in instruction and problem.prompt.strip() in instruction
    prefix = small_task.completion_prefix(problem)
    assert prefix.startswith(problem.prompt.rstrip()) and prefix.endswith(":")
    assert small_task.example_response(problem) == "Add 3 to x."
    assert small_task.stop_sequences(continuation=True) == list(CONTINUATION_STOPS)
    assert small_task.stop_sequences(continuation=False) == []
    assert small_task.metrics[0] == "rougeL" and small_task.samples_per_problem == 2


# -- scoring ----------------------------------------------------------------------------------


def test_reference_scores_one_against_itself(small_task):
    problems = list(_by_id(small_task).values())
    references = [small_task.example_response(p) for p in problems]
    for continuation in (False, True):
        outcomes = small_task.score(problems, references, continuation=continuation)
        assert all(o.fraction == 1.0 and o.passed and o.status == "scored" for o in outcomes)
        assert all(o.metrics == {"rougeL": 1.0, "bleu": 1.0} for o in outcomes)
        assert small_task.aggregate(outcomes) == {
            "rougeL": 1.0, "bleu": 1.0, "corpus_bleu": 1.0, "exact_match": 1.0,
        }  # fmt: skip


def test_chat_and_raw_answers_are_cleaned_before_scoring(small_task):
    problem = _by_id(small_task)["f3"]
    chat = "Here is the summary:\n```\nThis function adds 3 to `x`.\n```"
    raw = " Add 3 to x.\n# x is a number"
    wrong = "Print the weather report"
    outcomes = small_task.score([problem] * 3, [chat, raw, wrong], continuation=False)
    assert [o.output for o in outcomes] == ["Adds 3 to x", "Add 3 to x", wrong]
    assert outcomes[1].fraction == 1.0 and outcomes[1].passed
    # ROUGE-L stems "adds" to "add"; BLEU and the exact match do not.
    assert outcomes[0].fraction == 1.0 and not outcomes[0].passed
    assert 0.0 < outcomes[0].metrics["bleu"] < 1.0
    assert outcomes[2].fraction == 0.0 and outcomes[2].metrics["bleu"] == 0.0


def test_empty_answer_scores_zero(small_task):
    problem = _by_id(small_task)["f1"]
    [outcome] = small_task.score([problem], ["```\n```"], continuation=False)
    assert outcome.status == "empty" and outcome.fraction == 0.0 and not outcome.passed


def test_score_refuses_mismatched_lengths(small_task):
    with pytest.raises(ValueError, match="2 problems but 1 completions"):
        small_task.score(list(_by_id(small_task).values())[:2], ["x"], continuation=False)


def test_aggregate_averages_samples_within_problems_first(small_task):
    by_id = _by_id(small_task)
    one, two = by_id["f1"], by_id["f2"]
    problems = [one, one, one, two]
    answers = ["Add 1 to x.", "", "Add 1 to x.", "Add 2 to x."]
    outcomes = small_task.score(problems, answers, continuation=False)
    result = small_task.aggregate(outcomes)
    # f1: samples 1, 0, 1 -> 2/3; f2: 1 -> mean over problems (2/3 + 1) / 2 = 5/6.
    assert result["rougeL"] == pytest.approx(5 / 6)
    assert result["bleu"] == pytest.approx(5 / 6)
    assert result["exact_match"] == pytest.approx(5 / 6)
    hyps = [o.output for o in outcomes]
    refs = ["Add 1 to x", "Add 1 to x", "Add 1 to x", "Add 2 to x"]
    assert result["corpus_bleu"] == pytest.approx(corpus_bleu(hyps, refs))
    assert 0.0 < result["corpus_bleu"] < 1.0
    assert set(small_task.metrics) <= set(result)


def test_aggregate_refuses_empty_and_unknown_outcomes(small_task):
    with pytest.raises(ValueError, match="at least one"):
        small_task.aggregate([])
    with pytest.raises(ValueError, match="unknown problems: nope"):
        small_task.aggregate([ProblemOutcome("nope", "scored", False, 0.5, "x")])
