"""Bad input, fuzzed with hypothesis: CLI flags, space files, dataset JSONL, model paths.

Every bad input must end in exactly one ``error: ...`` line on stderr and exit status 2,
never a traceback, and the store must be untouched: a store path that did not exist is
not created, an existing store (holding a finished run) stays byte-identical. The API
under the CLI (``SearchSpace``, ``Budget.parse``, ``parse_candidate``, ``resolve_model``,
``get_task``) must either accept an input or raise a :class:`TunerError` with a one-line
message; any other exception is a bug.

The CLI runs in-process (``tui.commands.main``) for speed, and as a real subprocess for a few
cases. No input may ever start a run or load a model: each ``run`` gets a last candidate
that names a missing folder ("the guard"), so an input the fuzzer happens to make valid
stops at that candidate, still before the store is opened. Where the API can say what
the CLI should print, the CLI's line is compared with the API's message (differential).

Run with ``-s`` to see how many examples each target ran and how each ended.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import math
import os
import string
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine import Budget, SearchSpace
from engine.errors import ConfigError, DatasetError, ModelLoadError, TunerError
from engine.generation import parse_candidate, parse_style, resolve_model
from engine.generation._models import BUNDLED_ALIASES
from engine.space import PARAM_NAMES
from engine.tasks import get_task
from tests import ROOT
from tui.commands import main
from tui.commands.common import one_line

#: Reproducible in CI (derandomize) and no example database left in the work tree.
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


#: "target: outcome" -> examples; printed at the end of the module (pytest -s).
TALLY: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_tally() -> Iterator[None]:
    yield
    for key in sorted(TALLY):
        print(f"fuzz {key}: {TALLY[key]}")


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch) -> None:
    """Nothing may reach the user's caches: no bundled-model conversion, no hub lookup."""
    from huggingface_hub import constants

    cache = tmp_path_factory.mktemp("caches")
    monkeypatch.setenv("CODELLMTUNER_CACHE", str(cache / "codellmtuner"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache / "hub"))


# -- running the CLI ---------------------------------------------------------------------------


def _main(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` in-process: its exit status and what it wrote on stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def _one_error_line(code: int, stderr: str, *, mentions: str | None = None) -> str:
    """Check the contract of a refused input; returns the error line."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("error: "), stderr
    assert "internal error" not in line, stderr  # a bug that main() caught
    assert code == 2, stderr
    if mentions is not None:
        assert mentions in line, (mentions, line)
    return line


def _expected_line(error: TunerError) -> str:
    return "error: " + one_line(str(error))


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file of ``folder`` (the store, its -wal and -shm) and a hash of its bytes."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory) -> Path:
    """A store holding one finished (objective) run: bad input must leave it as it is."""
    from engine import Tuner
    from tests.objectives import landscape

    db = tmp_path_factory.mktemp("finished") / "samples.db"
    Tuner(objective=landscape, candidates=["a", "b"], budget=4, store=db, run_id="done").run()
    return db


class _Runs:
    """``codellmtuner run`` with one fuzzed piece; checks the store after each call."""

    def __init__(self, tmp: Path, finished: Path) -> None:
        self.tmp = tmp
        self.finished = finished
        self.guard = str(tmp / "no-such-model")
        self.fresh = tmp / "fresh" / "samples.db"
        self.fresh.parent.mkdir(exist_ok=True)

    def refuse(self, args: list[str], *, existing: bool, target: str) -> str:
        """Run ``args`` with the guard candidate; returns the (one) error line."""
        store = self.finished if existing else self.fresh
        before = _snapshot(store.parent)
        argv = ["run", "--headless", *args, f"--candidate=guard={self.guard}"]
        code, stderr = _main([*argv, "--store", str(store)])
        line = _one_error_line(code, stderr)
        assert _snapshot(store.parent) == before, f"{argv} changed the store folder"
        guarded = self.guard in line
        TALLY[f"{target}: {'guard reached (input valid)' if guarded else 'refused'}"] += 1
        return line


@pytest.fixture
def runs(tmp_path, finished_store) -> _Runs:
    return _Runs(tmp_path, finished_store)


def _api_error(call: Callable[[], Any]) -> TunerError | None:
    """The :class:`TunerError` ``call()`` raises (one line), or None if it succeeds."""
    try:
        call()
    except TunerError as error:
        assert "\n" not in str(error) and str(error).strip(), repr(str(error))
        return error
    return None


# -- strategies --------------------------------------------------------------------------------

_FLOATS = st.floats(allow_nan=True, allow_infinity=True)
_NUMBER_TEXT = st.one_of(
    _FLOATS.map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["inf", "-inf", "nan", "1e999", "-0", "0x10", "1_000", "", " ", "1e-400"]),
    st.text(string.digits + ".-+e_ ", max_size=8),
)
_GARBAGE = st.text(max_size=12)
_NAMES = st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=12))


def _param_items() -> st.SearchStrategy[str]:
    bound = st.one_of(_NUMBER_TEXT, _GARBAGE)
    ranged = st.builds(lambda n, lo, hi: f"{n}={lo}:{hi}", _NAMES, bound, bound)
    fixed = st.builds(lambda n, v: f"{n}={v}", _NAMES, bound)
    reversed_ = st.builds(
        lambda n, lo, hi: f"{n}={max(lo, hi)}:{min(lo, hi) - 1}",
        st.sampled_from(PARAM_NAMES), st.integers(0, 5000), st.integers(0, 5000),
    )  # fmt: skip
    triple = st.builds(lambda n, a, b, c: f"{n}={a}:{b}:{c}", _NAMES, bound, bound, bound)
    return st.one_of(ranged, fixed, reversed_, triple, _GARBAGE)


def _budget_texts() -> st.SearchStrategy[str]:
    units = st.sampled_from(
        ["", " samples", "k tokens", "tok", "m", " min", "h", "s", " parsecs", "k", "kk", "%"]
    )
    numbers = st.one_of(_NUMBER_TEXT, st.sampled_from(["9" * 400, "0", "0.0", "-5", ".", "1."]))
    return st.one_of(st.builds(lambda n, u: f"{n}{u}", numbers, units), _GARBAGE)


# -- the search space --------------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.integers(), _FLOATS,
    st.text(max_size=6),
)  # fmt: skip
_RANGE_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["low", "high", "log", "step"]), _SCALARS, max_size=4),
)


@fuzz(300)
@given(st.one_of(
    st.dictionaries(_NAMES, _RANGE_VALUES, max_size=4),
    st.dictionaries(st.one_of(st.integers(), st.none()), _SCALARS, max_size=2),
    st.lists(_SCALARS, max_size=2), st.text(max_size=4), _SCALARS,
))  # fmt: skip
def test_search_space_accepts_or_raises_one_line_config_errors(ranges: Any) -> None:
    error = _api_error(lambda: SearchSpace(ranges))
    TALLY[f"api SearchSpace: {'accepted' if error is None else 'refused'}"] += 1
    assert error is None or isinstance(error, ConfigError)


@fuzz(300)
@given(st.lists(_param_items(), min_size=1, max_size=3))
def test_param_overrides_accept_or_raise_one_line_config_errors(items: list[str]) -> None:
    error = _api_error(lambda: SearchSpace.from_overrides(items))
    TALLY[f"api from_overrides: {'accepted' if error is None else 'refused'}"] += 1
    assert error is None or isinstance(error, ConfigError)


@fuzz(60)
@given(item=_param_items(), existing=st.booleans())
def test_cli_param_is_refused_with_the_engines_message(runs: _Runs, item, existing) -> None:
    line = runs.refuse([f"--param={item}"], existing=existing, target="cli --param")
    error = _api_error(lambda: SearchSpace.from_overrides([item]))
    if error is not None:
        assert line == _expected_line(error)
    else:
        assert runs.guard in line


_BARE_KEY = set(string.ascii_letters + string.digits + "_-")


def _toml_key(key: str) -> str:
    return key if key and set(key) <= _BARE_KEY else json.dumps(key)


def _toml_value(value: Any) -> str:
    """TOML for a JSON-like value (a tiny writer: hypothesis builds dicts, not text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)  # JSON's escapes and numbers are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return '"none"'  # TOML has no null


def _toml_document(table: dict[str, Any], under_space: bool) -> str:
    lines = ["[space]"] if under_space else []
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


_SPACE_FILES = st.one_of(
    st.builds(
        lambda table, under: _toml_document(table, under).encode("utf-8", "surrogatepass"),
        st.dictionaries(_NAMES, _RANGE_VALUES, max_size=4), st.booleans(),
    ),
    st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=60),
    st.sampled_from([
        b"space = 3\n", b"[space]\ntop_k = " + b"1" * 5000 + b"\n",
        b"a = " + b"[" * 3000 + b"]" * 3000 + b"\n", b"\xef\xbb\xbf[space]\n", b"[space\n",
    ]),
)  # fmt: skip


@fuzz(80)
@given(content=_SPACE_FILES, existing=st.booleans())
def test_cli_space_file_is_refused_with_the_engines_message(
    runs: _Runs, content: bytes, existing: bool
) -> None:
    path = runs.tmp / "space.toml"
    path.write_bytes(content)
    error = _api_error(lambda: SearchSpace.from_toml(path))
    line = runs.refuse([f"--space={path}"], existing=existing, target="cli --space")
    if error is not None:
        assert line == _expected_line(error)
        assert str(path) in line
    else:
        assert runs.guard in line


def test_space_file_paths_that_are_no_file_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # reading it would block for ever
    cases = [tmp_path, tmp_path / "missing.toml", "a\0b.toml", "x" * 5000, fifo, "/dev/zero"]
    for path in cases:
        error = _api_error(lambda path=path: SearchSpace.from_toml(path))
        assert isinstance(error, ConfigError), path


def test_space_regressions_found_by_fuzzing(tmp_path: Path) -> None:
    """Each raised TypeError, ValueError, OverflowError or RecursionError before."""
    bad: list[Any] = [
        [1, 2], "abc", {1: 0, "x": 0}, {"top_k": 10**400}, {"top_k": [1, 10**5000]},
        {"top_k": {"low": 1, "high": 2, "log": "maybe"}},
    ]  # fmt: skip
    for ranges in bad:
        with pytest.raises(ConfigError):
            SearchSpace(ranges)
    for text in ("top_k = " + "1" * 5000, "a = " + "[" * 3000 + "]" * 3000):
        (tmp_path / "s.toml").write_text(text)
        with pytest.raises(ConfigError, match="not valid TOML"):
            SearchSpace.from_toml(tmp_path / "s.toml")


# -- the budget and the numeric flags ----------------------------------------------------------


@fuzz(300)
@given(st.one_of(
    _budget_texts(), _FLOATS, st.integers(), st.integers(10**300, 10**400), st.booleans(),
    st.none(), st.lists(st.integers(), max_size=2),
))  # fmt: skip
def test_budget_parse_accepts_or_raises_one_line_config_errors(value: Any) -> None:
    error = _api_error(lambda: Budget.parse(value))
    TALLY[f"api Budget.parse: {'accepted' if error is None else 'refused'}"] += 1
    assert error is None or isinstance(error, ConfigError)


def test_budget_regressions_found_by_fuzzing() -> None:
    """A run of digits read as inf, and ints too large for a float, overflowed."""
    for value in ("9" * 400, "9" * 400 + " tokens", 10**400, "1000000000000001"):
        with pytest.raises(ConfigError, match="too large"):
            Budget.parse(value)
    with pytest.raises(ConfigError, match="too large"):
        Budget(10**400, "minutes")


@fuzz(60)
@given(text=_budget_texts(), existing=st.booleans())
def test_cli_budget_is_refused_with_the_engines_message(runs: _Runs, text, existing) -> None:
    line = runs.refuse([f"--budget={text}"], existing=existing, target="cli --budget")
    error = _api_error(lambda: Budget.parse(text))
    if error is not None:
        assert line == _expected_line(error)
    else:
        assert runs.guard in line or "too small" in line  # 1 sample: stage 1 needs 2


_NUMERIC_FLAGS = (
    "--seed", "--problems", "--holdout-problems", "--samples-per-problem", "--batch-size",
    "--stage1-fraction",
)  # fmt: skip


@fuzz(100)
@given(
    flag=st.sampled_from(_NUMERIC_FLAGS),
    value=st.one_of(
        _NUMBER_TEXT,
        _GARBAGE,
        st.integers(-(10**20), -1).map(str),
        st.integers(2**63, 10**40).map(str),
    ),
    existing=st.booleans(),
)
def test_cli_numeric_flags_give_one_error_line(runs: _Runs, flag, value, existing) -> None:
    line = runs.refuse([f"{flag}={value}"], existing=existing, target="cli numeric flags")
    if runs.guard not in line:
        words = {"--seed": "seed", "--stage1-fraction": "stage"}.get(flag, "")
        assert flag in line or words in line or "size" in line or "per problem" in line, line


def test_seed_out_of_range_is_refused_before_the_store(tmp_path: Path) -> None:
    """A negative seed used to fail at the first sample (numpy's SeedSequence), after the
    store and the run were created; one past 2**63 failed writing the run to SQLite."""
    from engine import Tuner
    from tests.objectives import landscape

    db = tmp_path / "samples.db"
    for seed in ("-1", str(2**63)):
        code, stderr = _main(["run", f"--seed={seed}", "--store", str(db)])
        _one_error_line(code, stderr, mentions="seed")
    assert not db.exists()
    # The largest seed passes the flag's check (the budget is what fails here) ...
    argv = ["run", "--seed", str(2**63 - 1), "--budget", "x", "--store", str(db)]
    _one_error_line(*_main(argv), mentions="budget 'x'")
    # ... and goes through a real (objective) run.
    Tuner(objective=landscape, candidates=["a", "b"], budget=4, seed=2**63 - 1, store=db).run()


def test_argparse_errors_are_one_line(tmp_path: Path) -> None:
    cases = [
        (["run", "--seed", "x"], "--seed"), (["run", "--bogus"], "--bogus"),
        (["run", "--sampler", "best"], "--sampler"), (["export", "r"], "--output"),
        (["nosuchcommand"], "nosuchcommand"), (["run", "--candidate"], "--candidate"),
    ]  # fmt: skip
    for argv, mention in cases:
        code, stderr = _main([*argv, "--store", str(tmp_path / "s.db")])
        _one_error_line(code, stderr, mentions=mention)
    assert not (tmp_path / "s.db").exists()


# -- candidates and model paths ----------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory) -> list[str]:
    """Model sources that are no model: missing, a file, empty, loops, odd names."""
    root = tmp_path_factory.mktemp("models")
    (root / "a-file").write_text("not a folder")
    (root / "empty").mkdir()
    (root / "loop").symlink_to(root / "loop")
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "config-dir" / "config.json").mkdir(parents=True)
    for name, text in [("junk", "{not json"), ("list", "[]"), ("t5", '{"model_type": "t5"}'),
                       ("typed", '{"model_type": "llama", "vocab_size": "many"}')]:  # fmt: skip
        (root / name).mkdir()
        (root / name / "config.json").write_text(text)
    names = ["a-file", "empty", "loop", "dangling", "config-dir", "junk", "list", "t5", "typed"]
    return [str(root / n) for n in names] + [
        str(root / "missing"), "x" * 300, "a\0b", "~no-such-user-xyz/m", "org/not-cached",
        "ünïcødé/模型", "./", "..", "-", " ", "smollm3",
    ]  # fmt: skip


def _specs(models: list[str]) -> st.SearchStrategy[str]:
    name = st.one_of(st.just(""), st.text(max_size=8).map(lambda t: t + "="))
    style = st.one_of(
        st.just(""), st.sampled_from(["@chat", "@raw", "@fewshot", "@fewshot-0", "@fewshot-17",
                                      "@fewshot-" + "9" * 5000, "@", "@@raw"]),
        st.text(max_size=8).map(lambda t: "@" + t),
    )  # fmt: skip
    model = st.one_of(st.sampled_from(models), st.text(max_size=10))
    return st.builds(lambda n, m, s: n + m + s, name, model, style)


@fuzz(300)
@given(data=st.data())
def test_candidates_and_models_accept_or_raise_one_line_errors(bad_models, data) -> None:
    spec = data.draw(st.one_of(_specs(bad_models), st.text()))
    assume(not _bundled(spec))
    error = _api_error(lambda: parse_candidate(spec))
    TALLY[f"api parse_candidate: {'accepted' if error is None else 'refused'}"] += 1
    source = data.draw(st.one_of(st.sampled_from(bad_models), st.text(max_size=20)))
    assume(source.strip().lower() not in BUNDLED_ALIASES)
    model_error = _api_error(lambda: resolve_model(source))
    assert isinstance(model_error, ModelLoadError), source  # none of them is a model
    TALLY["api resolve_model: refused"] += 1


@fuzz(80)
@given(data=st.data(), existing=st.booleans())
def test_cli_candidate_is_refused_with_the_engines_message(runs, bad_models, data, existing):
    spec = data.draw(_specs(bad_models))
    assume(not _bundled(spec))
    line = runs.refuse([f"--candidate={spec}"], existing=existing, target="cli --candidate")
    # The engine parses every candidate, checks the names, then resolves the models.
    try:
        candidate = parse_candidate(spec)
    except TunerError as error:
        assert line == _expected_line(error)
        return
    if candidate.name == "guard":
        assert "two candidates are named 'guard'" in line
        return
    error = _api_error(lambda: resolve_model(candidate.model))
    assert line == (_expected_line(error) if error is not None else line)
    assert error is not None or runs.guard in line


def _bundled(spec: str) -> bool:
    """Whether ``spec`` names the bundled model: resolving it converts it (20 s)."""
    try:
        return parse_candidate(spec).model.strip().lower() in BUNDLED_ALIASES
    except TunerError:
        return False


@fuzz(100)
@given(config=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), _FLOATS, st.text(max_size=8),
              st.sampled_from(["llama", "gpt2", "t5", "bert", "LlamaForCausalLM", "float16"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(
                                ["model_type", "vocab_size", "hidden_size", "architectures",
                                 "torch_dtype", "num_attention_heads", "rope_scaling", "x"]),
                                inner, max_size=4)),
    max_leaves=8,
))  # fmt: skip
def test_junk_config_json_is_refused_or_resolved(tmp_path: Path, config: Any) -> None:
    """A folder with a random config.json: resolved (weights are checked when loading) or
    refused with a ModelLoadError, never another exception from transformers."""
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    error = _api_error(lambda: resolve_model(str(folder)))
    TALLY[f"api resolve_model junk config: {'resolved' if error is None else 'refused'}"] += 1
    assert error is None or isinstance(error, ModelLoadError)


def test_model_regressions_found_by_fuzzing(bad_models: list[str]) -> None:
    """Long names (OSError), ~unknown-user (RuntimeError), configs transformers chokes on
    (TypeError, validation errors) and non-causal models all raise ModelLoadError."""
    for source in bad_models:
        with pytest.raises(ModelLoadError):
            resolve_model(source)
    t5 = next(m for m in bad_models if m.endswith("/t5"))
    with pytest.raises(ModelLoadError, match="'t5' model, which cannot generate text"):
        resolve_model(t5)
    with pytest.raises(ConfigError, match="K must be between"):
        parse_style("fewshot-" + "9" * 5000)
    with pytest.raises(ConfigError, match="unprintable"):
        parse_candidate("a\nb=smollm2")


def test_a_causal_model_folder_still_resolves(tiny_model_dir: Path) -> None:
    assert resolve_model(str(tiny_model_dir)).path == tiny_model_dir.resolve()


# -- datasets ----------------------------------------------------------------------------------

_HUMANEVAL = {
    "task_id": "t/0", "prompt": "def f(x):\n", "canonical_solution": "    return x\n",
    "test": "def check(candidate):\n    assert candidate(1) == 1\n", "entry_point": "f",
}  # fmt: skip
#: task -> (a valid row, its identifying field, the fields a row must have)
DATASETS: dict[str, tuple[dict[str, Any], str, tuple[str, ...]]] = {
    "humaneval": (_HUMANEVAL, "task_id", tuple(_HUMANEVAL)),
    "testgen": (_HUMANEVAL, "task_id", tuple(_HUMANEVAL)),
    "apps": (
        {"problem_id": "p0", "question": "echo", "difficulty": "introductory",
         "solutions": json.dumps(["print(input())"]),
         "input_output": json.dumps({"inputs": ["1\n"], "outputs": ["1\n"]})},
        "problem_id", ("problem_id", "question", "difficulty"),
    ),
    "conala": ({"intent": "sort l", "snippet": "sorted(l)", "question_id": 1}, "snippet",
               ("intent", "snippet")),
    "codealpaca": ({"instruction": "add", "input": "", "output": "x = 1"}, "output",
                   ("instruction", "output")),
    "summarization": ({"id": "a", "code": "def f(): pass", "summary": "does nothing"}, "id",
                      ("id", "code", "summary")),
}  # fmt: skip


def _valid_row(task: str, i: int) -> dict[str, Any]:
    row, key, _ = DATASETS[task]
    row = dict(row)
    row[key] = f"{row[key]}{i}" if key != "output" else f"x = {i}"  # rows must differ
    return row


_WRONG_TYPES = st.one_of(
    st.none(), st.booleans(), _FLOATS, st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip


def _bad_line(task: str) -> st.SearchStrategy[tuple[str, str]]:
    """A malformed line and what the refusal must name about it."""
    _, _, required = DATASETS[task]
    missing = st.sampled_from(required).map(
        lambda f: (json.dumps({k: v for k, v in _valid_row(task, 99).items() if k != f}), f)
    )
    wrong = st.tuples(st.sampled_from(required), _WRONG_TYPES).map(
        lambda fv: (json.dumps({**_valid_row(task, 99), fv[0]: fv[1]}), fv[0])
    )
    not_object = st.one_of(
        st.lists(st.integers(), max_size=2), st.integers(), st.text(max_size=5), st.none()
    ).map(lambda v: (json.dumps(v), "expected a JSON object"))
    not_json = st.sampled_from(["{", "{'a': 1}", "[1,", "1" * 5000, "[" * 5000, "nul"]).map(
        lambda t: (t, "invalid JSON")
    )
    surrogate = st.sampled_from(required).map(
        lambda f: (json.dumps({**_valid_row(task, 99), f: "a\ud800"}), f)
    )
    return st.one_of(missing, wrong, not_object, not_json, surrogate)


@fuzz(200)
@given(data=st.data())
def test_a_malformed_row_names_file_line_and_field(tmp_path: Path, data) -> None:
    task = data.draw(st.sampled_from(sorted(DATASETS)))
    n_rows = data.draw(st.integers(1, 6))
    bad_at = data.draw(st.integers(0, n_rows - 1))
    bad, named = data.draw(_bad_line(task))
    lines = [json.dumps(_valid_row(task, i)) for i in range(n_rows)]
    lines[bad_at] = bad
    gz = data.draw(st.booleans())
    path = tmp_path / ("d.jsonl.gz" if gz else "d.jsonl")
    text = "\n".join(lines).encode("utf-8", "surrogatepass")
    path.write_bytes(gzip.compress(text) if gz else text)
    code, stderr = _main(["tasks", task, f"--dataset={path}"])
    line = _one_error_line(code, stderr, mentions=f"{path}:{bad_at + 1}: ")
    assert named in line, line
    api = _api_error(lambda: get_task(task, dataset=path))
    assert isinstance(api, DatasetError) and line == _expected_line(api)
    TALLY["cli tasks --dataset malformed row: refused with file:line"] += 1


_WHOLE_FILES = st.one_of(
    st.binary(max_size=80),
    st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.text(max_size=10).map(json.dumps), max_size=4).map(
        lambda lines: "\n".join(lines).encode()
    ),
    st.sampled_from([b"", b"\n\n  \n", b"\x1f\x8b\x08\x00garbage", b"\xff\xfe{}", b"\x00" * 10]),
)  # fmt: skip


@fuzz(150)
@given(task=st.sampled_from(sorted(DATASETS)), content=_WHOLE_FILES, suffix=st.booleans())
def test_a_garbage_dataset_is_refused_in_one_line(tmp_path, task, content, suffix) -> None:
    path = tmp_path / ("g.jsonl.gz" if suffix else "g.jsonl")
    path.write_bytes(content)  # a .gz name on bytes that are no gzip, too
    code, stderr = _main(["tasks", task, f"--dataset={path}"])
    line = _one_error_line(code, stderr, mentions=str(path))
    api = _api_error(lambda: get_task(task, dataset=path))
    assert api is not None and line == _expected_line(api)
    TALLY["cli tasks --dataset garbage file: refused"] += 1


@fuzz(30)
@given(task=st.sampled_from(sorted(DATASETS)), bad=st.data(), existing=st.booleans())
def test_cli_run_refuses_a_bad_dataset_before_the_store(runs: _Runs, task, bad, existing):
    bad_line, _ = bad.draw(_bad_line(task))
    path = runs.tmp / "bad.jsonl"
    path.write_text(json.dumps(_valid_row(task, 0)) + "\n" + bad_line + "\n")
    line = runs.refuse([f"--task={task}", f"--dataset={path}"], existing=existing,
                       target="cli run --dataset")  # fmt: skip
    assert f"{path}:2: " in line


def test_dataset_regressions_found_by_fuzzing(tmp_path: Path) -> None:
    """A 5000-digit number (ValueError), deep nesting (RecursionError), a lone surrogate
    (UnicodeEncodeError at splitting), a corrupted gzip body (zlib.error), a NUL byte in
    the path (ValueError) and a FIFO (blocked for ever): all refused, naming the file."""
    row = json.dumps(_valid_row("humaneval", 0))
    cases = {
        "digits.jsonl": row + "\n" + "1" * 5000, "deep.jsonl": row + "\n" + "[" * 5000,
        "surrogate.jsonl": json.dumps({**_valid_row("humaneval", 1), "task_id": "\ud800"}),
    }  # fmt: skip
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8", errors="surrogatepass")
        with pytest.raises(DatasetError, match=f"{name}:"):
            get_task("humaneval", dataset=tmp_path / name)
    body = gzip.compress((row + "\n").encode() * 50)
    (tmp_path / "broken.jsonl.gz").write_bytes(body[:20] + b"\xff" * 40 + body[60:])
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    for path in (tmp_path / "broken.jsonl.gz", "a\0b.jsonl", fifo):
        with pytest.raises(DatasetError):
            get_task("humaneval", dataset=path)


def test_a_byte_order_mark_is_not_part_of_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_valid_row("codealpaca", 0)).encode())
    assert len(get_task("codealpaca", dataset=path).problems("tune")) == 1


# -- the rest of the CLI -------------------------------------------------------------------------


def test_device_is_checked_before_the_store(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Everything else is valid here: the device used to fail at the first model load,
    after the store and the run were created."""
    db = tmp_path / "samples.db"
    argv = ["run", "--headless", f"--candidate={tiny_model_dir}", "--budget=4",
            "--problems=1", "--device=warp-drive", "--store", str(db)]  # fmt: skip
    _one_error_line(*_main(argv), mentions="warp-drive")
    assert not db.exists()


def test_export_to_an_unwritable_place_is_one_line(finished_store: Path, tmp_path: Path) -> None:
    before = _snapshot(finished_store.parent)
    (tmp_path / "a-file").write_text("")
    for target in (tmp_path / "a-file", tmp_path / "a-file" / "below", "a\0b"):
        argv = ["export", "done", "-o", str(target), "--store", str(finished_store)]
        _one_error_line(*_main(argv), mentions="cannot write")
    assert _snapshot(finished_store.parent) == before


def test_messages_quoting_user_text_stay_one_line(tmp_path: Path) -> None:
    path = str(tmp_path / "two\nlines\u2028and\rmore.jsonl")
    code, stderr = _main(["tasks", "humaneval", f"--dataset={path}"])
    line = _one_error_line(code, stderr, mentions="no such dataset file")
    assert "two\\nlines\\u2028and\\rmore" in line


def test_an_internal_error_is_one_line_unless_debugging(monkeypatch) -> None:
    import tui.commands

    def broken(args, console):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setitem(tui.commands.COMMANDS, "runs", broken)
    code, stderr = _main(["runs"])
    assert code == 1 and stderr.strip().splitlines() == [
        "error: internal error (RuntimeError: boom); CODELLMTUNER_DEBUG=1 shows the traceback"
    ]
    monkeypatch.setenv("CODELLMTUNER_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["runs"])


@pytest.mark.parametrize(
    ("args", "mention"),
    [
        (["run", "--seed", "-3"], "seed"),
        (["run", "--budget", "9" * 400], "too large"),
        (["run", "--param", "top_k=1:1e400"], "top_k"),
        (["run", "--candidate", "x@fewshot-" + "9" * 3000], "K must be between"),
        (["run", "--candidate", "~no-such-user-xyz/m"], "not found"),
        (["tasks", "apps", "--dataset", "/dev/null"], "not a regular file"),
    ],
)
def test_the_real_command_prints_one_line(tmp_path: Path, args: list[str], mention: str) -> None:
    db = tmp_path / "samples.db"
    env = {**os.environ, "CODELLMTUNER_CACHE": str(tmp_path / "cache")}
    store = ["--store", str(db)] if args[0] == "run" else []
    result = subprocess.run(
        [sys.executable, "-m", "tui.commands", *args, *store],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    _one_error_line(result.returncode, result.stderr, mentions=mention)
    assert not db.exists()
