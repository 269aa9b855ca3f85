"""Instruction-to-code tasks: Conala and CodeAlpaca, scored by CodeBLEU and exact match.

Both read a JSONL file (plain or ``.gz``) with one instruction and its reference code per
row; they differ only in the row format:

``conala``
    ``intent`` (string), ``rewritten_intent`` (string or null; used instead of
    ``intent`` when it is a non-blank string), ``snippet`` (the reference code),
    ``question_id`` (optional integer or string; rows of one question share a split).
``codealpaca``
    ``instruction`` (string), ``input`` (optional string, null = none), ``output`` (the
    reference code). By default rows whose ``output`` is not valid Python 3 are skipped
    and counted (CodeAlpaca-20k mixes languages; the study used its Python subset).

Without a file each task uses a small hand-written sample bundled under ``data/``.

The prompt is the study's fine-tuning format, the same text for raw and chat styles::

    ### Instruction:
    {instruction}
    ### Input:            (only when the row has a non-blank input)
    {input}
    ### Response:

Splits are fixed by the data (:mod:`engine.tasks._splits`) over *groups*: a Conala
question, or one CodeAlpaca instruction and input, so rows that share a question never
straddle train and holdout. Exact duplicate rows are skipped and counted.

Scoring executes nothing. The code of a completion is: for a raw continuation, the text
cut at the first stop sequence; then, in both styles, the first Python (or untagged)
fenced block if there is one; dedented and stripped. Metrics: ``codebleu`` of the first
candidate (:mod:`engine.tasks.codebleu_metric`) and ``em@k``, exact match after
:func:`normalize_code` among the first ``k`` candidates.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import textwrap
import time
import tokenize
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engine.errors import DatasetError, is_whole, require
from engine.tasks._code import PYTHON_TAGS, fenced_blocks, parse_python, truncate_at_stop
from engine.tasks._jsonl import RowError, load_jsonl, optional_str, require_str
from engine.tasks._options import set_common_options
from engine.tasks._splits import split_by_hash
from engine.tasks.base import (
    Problem,
    ProblemOutcome,
    Task,
    check_completions,
    group_by_problem,
)
from engine.tasks.codebleu_metric import COMPONENTS, TOKENIZERS, codebleu_score

__all__ = [
    "CodeAlpacaTask",
    "ConalaTask",
    "EM_KS",
    "InstructTask",
    "RESPONSE_STOP",
    "em_at_k",
    "exact_match",
    "extract_code",
    "format_prompt",
    "load_codealpaca",
    "load_conala",
    "normalize_code",
    "parse_codealpaca_row",
    "parse_conala_row",
    "split_grouped",
    "strip_fences",
]

DATA = Path(__file__).parent / "data"
EM_KS = (1, 5, 10)  # em@k reported for each k <= samples_per_problem
RESPONSE_STOP = "\n###"  # a raw continuation starting the next "### Instruction:" block
BLANK_LINE_STOP = "\n\n"
OUTPUT_CHARS = 2000  # of the extracted code kept in each ProblemOutcome
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_MARKERS = {tokenize.NEWLINE: "<NEWLINE>", tokenize.INDENT: "<INDENT>", tokenize.DEDENT: "<DEDENT>"}
_IGNORED = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
_UNTOKENIZED = "<TEXT>"  # never a Python token, so a fallback never equals a token sequence


# -- prompt ---------------------------------------------------------------------------------


def format_prompt(instruction: str, input_text: str = "") -> str:
    """The study's prompt: ``### Instruction:\\n{instruction}\\n### Response:\\n``, with an
    ``### Input:\\n{input_text}\\n`` section before the response when ``input_text`` is
    not blank. Both texts are stripped of surrounding whitespace."""
    text = f"### Instruction:\n{instruction.strip()}\n"
    if input_text.strip():
        text += f"### Input:\n{input_text.strip()}\n"
    return text + "### Response:\n"


# -- extraction and exact match ---------------------------------------------------------------


def strip_fences(text: str) -> str:
    """The body of the first ```python (or untagged) fenced block of ``text``, else of its
    first fenced block of any language, else ``text`` unchanged. An unclosed fence runs
    to the end of the text."""
    blocks = fenced_blocks(text)
    python = [body for tag, body in blocks if tag in PYTHON_TAGS]
    if python:
        return python[0]
    return blocks[0][1] if blocks else text


def extract_code(completion: str, *, continuation: bool, stops: Sequence[str] = ()) -> str:
    """The code a completion stands for.

    ``continuation`` (raw style): the text up to the first of ``stops``. Then in both
    styles: :func:`strip_fences`, line endings made ``\\n``, common indentation removed,
    surrounding whitespace stripped. May be empty.
    """
    text = completion.replace("\r\n", "\n")
    if continuation:
        text = truncate_at_stop(text, stops)[0]
    return textwrap.dedent(strip_fences(text)).strip()


def normalize_code(text: str) -> tuple[str, ...]:
    """The form exact match compares: Python tokens, or whitespace-normalized text.

    1. :func:`strip_fences`; ``\\r\\n`` -> ``\\n``; common indentation removed; stripped.
    2. If Python's :mod:`tokenize` reads it without error and without an ``ERRORTOKEN``:
       the token strings in order, with comments and non-logical newlines (``NL``)
       dropped and ``NEWLINE``/``INDENT``/``DEDENT`` kept as the markers ``<NEWLINE>``,
       ``<INDENT>``, ``<DEDENT>``. So spacing between tokens, blank lines, comments and
       the indentation width do not matter, but line structure and nesting do. String
       literals are compared as written (``'a'`` differs from ``"a"``).
    3. Otherwise ``("<TEXT>", text with every whitespace run made one space)``, which is
       never equal to a token sequence.
    """
    code = textwrap.dedent(strip_fences(text).replace("\r\n", "\n")).strip()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):  # unclosed bracket, bad dedent, ...
        tokens = None
    if tokens is None or any(t.type == tokenize.ERRORTOKEN for t in tokens):
        return (_UNTOKENIZED, " ".join(code.split()))
    return tuple(_MARKERS.get(t.type, t.string) for t in tokens if t.type not in _IGNORED)


def exact_match(candidate: str, reference: str) -> bool:
    """Whether ``normalize_code(candidate) == normalize_code(reference)``; never for an
    empty candidate."""
    return bool(candidate.strip()) and normalize_code(candidate) == normalize_code(reference)


def em_at_k(matches: Sequence[Sequence[bool]], k: int) -> float:
    """EM@k: the fraction of problems where one of the first ``k`` candidates matches.

    ``matches[i]`` holds problem i's per-candidate results in drawing order; a problem
    with fewer than ``k`` candidates uses all it has.

    Raises:
        ValueError: ``k`` is not an integer >= 1, ``matches`` is empty, or a problem has
            no candidates.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"em_at_k: k must be an integer >= 1, got {k!r}")
    if not matches:
        raise ValueError("em_at_k: no problems")
    if any(len(row) == 0 for row in matches):
        raise ValueError("em_at_k: a problem has no candidates")
    return sum(any(row[:k]) for row in matches) / len(matches)


# -- loading ----------------------------------------------------------------------------------


def parse_conala_row(row: dict[str, Any]) -> Problem:
    """A Conala row as a :class:`Problem`; ``meta`` holds ``instruction``, ``group`` and
    ``question_id`` (or None).

    Raises:
        RowError: naming the field that is missing, of the wrong type or empty.
    """
    intent = require_str(row, "intent", empty_ok=True)
    rewritten = optional_str(row, "rewritten_intent")
    instruction = rewritten if rewritten.strip() else intent
    if not instruction.strip():
        raise RowError("field 'intent' is empty (and 'rewritten_intent' is null or empty)")
    snippet = require_str(row, "snippet")
    question = row.get("question_id")
    if question is not None and (
        isinstance(question, bool) or not isinstance(question, (int, str)) or question == ""
    ):
        raise RowError(
            f"field 'question_id' must be an integer or a string, got {type(question).__name__}"
        )
    digest = _digest(instruction, snippet)
    if question is None:
        ident = group = f"conala/{digest}"
    else:
        group = f"conala/q{question}"
        ident = f"{group}/{digest}"
    meta = {"instruction": instruction, "group": group, "question_id": question}
    return Problem(ident, format_prompt(instruction), snippet, meta=meta)


def parse_codealpaca_row(row: dict[str, Any]) -> Problem:
    """A CodeAlpaca row as a :class:`Problem`; ``meta`` holds ``instruction``, ``input``
    and ``group`` (rows with the same instruction and input form one group).

    Raises:
        RowError: naming the field that is missing, of the wrong type or empty.
    """
    instruction = require_str(row, "instruction")
    given = optional_str(row, "input")
    output = require_str(row, "output")
    group = f"codealpaca/{_digest(instruction, given)}"
    meta = {"instruction": instruction, "input": given, "group": group}
    return Problem(
        f"codealpaca/{_digest(instruction, given, output)}",
        format_prompt(instruction, given),
        output,
        meta=meta,
    )


def load_conala(
    path: str | Path, *, python_only: bool = False
) -> tuple[list[Problem], dict[str, int]]:
    """``(problems, skipped)`` from a Conala-format JSONL file (plain or ``.gz``).

    ``skipped`` counts the rows left out by reason: ``"duplicate row"`` (the same
    instruction, input and reference as an earlier row) and, with ``python_only``,
    ``"reference is not Python 3"`` (the reference does not parse with :func:`ast.parse`).

    Raises:
        DatasetError: the file is missing, unreadable or empty, a row is malformed
            (``file:line: field ...``), or every row was skipped.
    """
    return _load(path, parse_conala_row, python_only=python_only)


def load_codealpaca(
    path: str | Path, *, python_only: bool = True
) -> tuple[list[Problem], dict[str, int]]:
    """``(problems, skipped)`` from a CodeAlpaca-format JSONL file (plain or ``.gz``).

    ``skipped`` counts the rows left out by reason: ``"duplicate row"`` (the same
    instruction, input and reference as an earlier row) and, with ``python_only``,
    ``"reference is not Python 3"`` (the reference does not parse with :func:`ast.parse`).

    Raises:
        DatasetError: the file is missing, unreadable or empty, a row is malformed
            (``file:line: field ...``), or every row was skipped.
    """
    return _load(path, parse_codealpaca_row, python_only=python_only)


def _load(
    path: str | Path, parse_row: Callable[[dict[str, Any]], Problem], *, python_only: bool
) -> tuple[list[Problem], dict[str, int]]:
    """Read, validate and deduplicate (see :func:`load_conala`)."""
    seen: set[str] = set()
    skipped: dict[str, int] = {}

    def parse(row: dict[str, Any], where: str) -> Problem | None:
        problem = parse_row(row)
        reason = None
        if problem.id in seen:
            reason = "duplicate row"
        elif python_only and not _is_python(problem.reference):
            reason = "reference is not Python 3"
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            return None
        seen.add(problem.id)
        return problem

    problems = [p for p in load_jsonl(path, parse) if p is not None]
    if not problems:
        raise DatasetError(f"{path}: every row was skipped ({_describe(skipped)})")
    return problems, skipped


def _is_python(code: str) -> bool:
    try:
        parse_python(code)
    except (SyntaxError, ValueError):  # ValueError: a NUL byte in the source
        return False
    return True


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "replace")).hexdigest()[:16]


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) or "none"


def split_grouped(
    problems: Sequence[Problem], holdout_fraction: float, n_train: int
) -> dict[str, list[Problem]]:
    """:func:`split_by_hash` over groups (``problem.meta["group"]``), each group standing
    as one problem whose id is the group key; ``n_train`` counts groups. Within a split,
    groups keep their hash order and rows their file order."""
    groups: dict[str, list[Problem]] = {}
    for problem in problems:
        groups.setdefault(problem.meta["group"], []).append(problem)
    heads = [Problem(key, "") for key in groups]
    return {
        split: [p for head in chosen for p in groups[head.id]]
        for split, chosen in split_by_hash(heads, holdout_fraction, n_train).items()
    }


# -- the tasks --------------------------------------------------------------------------------


class InstructTask(Task):
    """An instruction-to-code task scored by CodeBLEU and exact match (no code is run).

    Args:
        dataset: a JSONL file (plain or ``.gz``) in the subclass's row format; ``None`` =
            the bundled hand-written sample.
        samples_per_problem: completions drawn per problem (``n``); em@k is reported for
            each k in (1, 5, 10) with k <= n.
        holdout_fraction: share of groups held out for the final score, in [0, 1).
        n_train: groups in the few-shot pool; at most half of the non-holdout groups.
        workers: accepted for a uniform constructor and validated; scoring runs in the
            calling thread (CodeBLEU is pure Python, threads would not speed it up).
        sandbox: accepted and validated likewise; nothing is executed.
        blank_line_stop: add ``"\\n\\n"`` to the raw-style stop sequences; ``None`` = when
            no reference in the data contains a blank line.
        python_only: skip rows whose reference is not valid Python 3; ``None`` = the
            subclass's default.
        codebleu_tokenizer: tokens of CodeBLEU's n-gram components, ``"python"`` (code
            tokens) or ``"whitespace"`` (the codebleu package's default); see
            :mod:`engine.tasks.codebleu_metric`.

    Raises:
        DatasetError: the file is missing, empty, or has a malformed row.
        ConfigError: an option is out of range.
    """

    name = ""
    description = ""
    metrics: tuple[str, ...] = ("codebleu", "em@1")
    python_only_default = False
    sample_file = ""  # in data/
    #: ``(path, *, python_only) -> (problems, skipped)``; set by each subclass.
    loader: Callable[..., tuple[list[Problem], dict[str, int]]]

    def __init__(
        self,
        dataset: str | Path | None = None,
        *,
        samples_per_problem: int = 1,
        holdout_fraction: float = 0.2,
        n_train: int = 8,
        workers: int | None = None,
        sandbox: str = "auto",
        blank_line_stop: bool | None = None,
        python_only: bool | None = None,
        codebleu_tokenizer: str = "python",
    ) -> None:
        set_common_options(
            self, samples_per_problem=samples_per_problem, workers=workers, sandbox=sandbox
        )
        require(
            _unit_interval(holdout_fraction),
            f"holdout_fraction must be in [0, 1), got {holdout_fraction!r}",
        )
        require(is_whole(n_train, 0), f"n_train must be a whole number >= 0, got {n_train!r}")
        for option, value in (("blank_line_stop", blank_line_stop), ("python_only", python_only)):
            require(
                value is None or isinstance(value, bool),
                f"{option} must be true, false or None, got {value!r}",
            )
        require(
            isinstance(codebleu_tokenizer, str) and codebleu_tokenizer in TOKENIZERS,
            f"codebleu_tokenizer must be one of {', '.join(TOKENIZERS)}, "
            f"got {codebleu_tokenizer!r}",
        )
        self.codebleu_tokenizer = codebleu_tokenizer
        self.metrics = ("codebleu", *(f"em@{k}" for k in EM_KS if k <= samples_per_problem))
        self.python_only = self.python_only_default if python_only is None else python_only
        if dataset is None:
            path = DATA / self.sample_file
            problems, self.skipped = self.loader(path, python_only=self.python_only)
            self.source = (
                f"small bundled sample: {len(problems)} hand-written rows in {self.name}'s "
                f"format ({path.name}); pass the real file with --dataset"
            )
        else:
            problems, self.skipped = self.loader(dataset, python_only=self.python_only)
            self.source = str(dataset)
        if blank_line_stop is None:
            blank_line_stop = not any(_BLANK_LINE.search(p.reference.strip()) for p in problems)
        self.blank_line_stop = blank_line_stop
        self._splits = split_grouped(problems, holdout_fraction, n_train)

    # -- prompt pieces ---------------------------------------------------------------------

    def instruction(self, problem: Problem) -> str:
        """The same ``### Instruction:`` text as the raw prompt; the model answers as the
        assistant."""
        return problem.prompt

    def completion_prefix(self, problem: Problem) -> str:
        return problem.prompt

    def example_response(self, problem: Problem) -> str:
        """The reference code, bare (as after ``### Response:`` in the study's data)."""
        return problem.reference.strip()

    def stop_sequences(self, *, continuation: bool) -> list[str]:
        """Raw style: ``"\\n###"`` (the model starting another instruction block) and,
        with :attr:`blank_line_stop`, ``"\\n\\n"`` (one-line answers followed by chatter).
        Chat style: none, the answer ends at the model's end-of-turn token."""
        if not continuation:
            return []
        return [RESPONSE_STOP, BLANK_LINE_STOP] if self.blank_line_stop else [RESPONSE_STOP]

    # -- scoring ---------------------------------------------------------------------------

    def score(
        self,
        problems: Sequence[Problem],
        completions: Sequence[str],
        *,
        continuation: bool,
    ) -> list[ProblemOutcome]:
        """Extract each completion's code and compare it with the reference.

        ``fraction`` is the candidate's CodeBLEU, ``passed`` its exact match, ``status``
        ``exact``, ``inexact`` or ``empty`` (no code extracted), ``output`` the extracted
        code, and ``metrics`` holds ``em`` (0 or 1), ``codebleu`` and its components
        ``codebleu_ngram``, ``codebleu_weighted_ngram``, ``codebleu_syntax`` and
        ``codebleu_dataflow``.
        """
        check_completions(problems, completions)
        stops = self.stop_sequences(continuation=continuation)
        return [
            self._score_one(problem, completion, continuation, stops)
            for problem, completion in zip(problems, completions, strict=True)
        ]

    def _score_one(
        self, problem: Problem, completion: str, continuation: bool, stops: list[str]
    ) -> ProblemOutcome:
        start = time.perf_counter()
        code = extract_code(completion, continuation=continuation, stops=stops)
        match = exact_match(code, problem.reference)
        scores = codebleu_score(problem.reference, code, tokenizer=self.codebleu_tokenizer)
        metrics = {"em": float(match)}
        metrics.update({_metric_key(key): value for key, value in scores.items()})
        status = "empty" if not code else "exact" if match else "inexact"
        return ProblemOutcome(
            problem.id, status, match, scores["codebleu"], code[:OUTPUT_CHARS],
            time.perf_counter() - start, metrics,
        )  # fmt: skip

    def aggregate(self, outcomes: Sequence[ProblemOutcome]) -> dict[str, float]:
        """Means over problems (outcomes grouped by ``problem_id``, in order).

        ``codebleu`` and ``codebleu_<component>``: of each problem's first candidate.
        ``em@k``: :func:`em_at_k` of each problem's candidates in order.

        Raises:
            ValueError: no outcomes, or an outcome without the CodeBLEU values
                :meth:`score` puts in ``metrics``.
        """
        groups = list(group_by_problem(outcomes).values())
        keys = [_metric_key(key) for key in COMPONENTS]
        firsts = [group[0] for group in groups]
        missing = next((o for o in firsts if not set(keys) <= o.metrics.keys()), None)
        if missing is not None:
            raise ValueError(f"outcome for {missing.problem_id} has no CodeBLEU metrics")
        result = {key: sum(o.metrics[key] for o in firsts) / len(firsts) for key in keys}
        matches = [[o.passed for o in group] for group in groups]
        for k in EM_KS:
            if k <= self.samples_per_problem:
                result[f"em@{k}"] = em_at_k(matches, k)
        return result


class ConalaTask(InstructTask):
    """Conala-format intents (``intent``/``rewritten_intent``, ``snippet``) to Python."""

    name = "conala"
    description = "write a one-line Python snippet for an intent; CodeBLEU and exact match"
    python_only_default = False  # real CoNaLa snippets include Python 2 code; keep them
    sample_file = "conala-sample.jsonl"

    loader = staticmethod(load_conala)


class CodeAlpacaTask(InstructTask):
    """CodeAlpaca-format instructions (``instruction``, ``input``, ``output``) to Python."""

    name = "codealpaca"
    description = "write a short Python program for an instruction; CodeBLEU and exact match"
    python_only_default = True  # CodeAlpaca-20k mixes languages; the study used Python only
    sample_file = "codealpaca-sample.jsonl"

    loader = staticmethod(load_codealpaca)


def _metric_key(component: str) -> str:
    return component if component == "codebleu" else f"codebleu_{component}"


def _unit_interval(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value < 1
    )
