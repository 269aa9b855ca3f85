"""Code summarization: write a one-sentence summary of a Python function.

A problem's ``prompt`` is a function's source without its docstring; its ``reference`` is
one sentence. Scoring compares the model's cleaned answer
(:func:`~engine.tasks.text_metrics.clean_summary`) with the reference by ROUGE-L F1 and
smoothed sentence BLEU-4 (:mod:`engine.tasks.text_metrics`); nothing is executed, so no
sandbox is used.

The built-in data needs no network: real functions of the Python standard library of
the running interpreter (``sysconfig.get_paths()["stdlib"]``), parsed with :mod:`ast`.
The reference is the first sentence of the docstring, the input the source with the
docstring lines removed. Test suites, ``idlelib``, ``lib2to3``, installed packages,
codec tables and demos are not read; functions are filtered for quality (see
:func:`build_corpus`) and every function left out is counted by reason in
``task.skipped``. From what remains, ``size`` functions are chosen by a seeded hash of
their id, so the same Python version always yields the same problems, and another
version mostly the same ones. Ids read ``json/decoder.py:JSONDecoder.decode``.

A user JSONL file (``dataset=path``, plain or ``.gz``) has the fields ``id``, ``code`` and
``summary``. Splits are fixed by the ids (:mod:`engine.tasks._splits`).
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import sys
import sysconfig
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engine.errors import DatasetError, is_whole, require
from engine.tasks._code import parse_python
from engine.tasks._jsonl import RowError, load_jsonl, require_str
from engine.tasks._options import set_common_options
from engine.tasks._splits import split_by_hash
from engine.tasks.base import (
    Problem,
    ProblemOutcome,
    Task,
    check_completions,
    group_by_problem,
    mean_over_problems,
)
from engine.tasks.text_metrics import (
    clean_summary,
    corpus_bleu,
    first_sentence,
    rouge_l,
    sentence_bleu,
)

__all__ = [
    "CONTINUATION_STOPS",
    "DEFAULT_SIZE",
    "EXCLUDED_DIRS",
    "Corpus",
    "SummarizationTask",
    "build_corpus",
    "load_problems",
    "sample_corpus",
    "stdlib_root",
]

DEFAULT_SIZE = 600
DEFAULT_SEED = 0
#: Folders of the standard library that are not read: tests, code that is not the
#: library's own (installed packages, IDLE, 2to3's grammar-driven fixers), data tables
#: (codecs, pydoc topics) and demo scripts.
EXCLUDED_DIRS = frozenset(
    {
        "test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages",
        "__pycache__", "encodings", "pydoc_data", "turtledemo", "ensurepip", "__phello__",
        "distutils",
    }
)  # fmt: skip
REFERENCE_WORDS = (4, 30)  # a shorter first sentence says little ("Constructor.")
SOURCE_LINES = (3, 40)  # of the function without its docstring; longer ones bloat prompts
#: Raw continuations: the summary is a comment line; stop at the blank line or code after.
CONTINUATION_STOPS = ("\n\n", "\ndef ", "\nclass ", "\n@")
_COMPOUND = (
    ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try,
    ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
    ast.Match, *((ast.TryStar,) if hasattr(ast, "TryStar") else ()),  # try/except* is 3.11+
)  # fmt: skip
_SAMPLE_SALT = "codellmtuner-summarization-v1"
_LABEL = re.compile(r"^[A-Z]\w*:\s")  # "Internal: read data." or "Preconditions: - ..."


class SummarizationTask(Task):
    """One-sentence summaries of Python functions, scored by ROUGE-L and BLEU.

    Args:
        dataset: a JSONL file with ``id``, ``code``, ``summary``; ``None`` = functions of
            the installed Python standard library.
        samples_per_problem: completions drawn per problem; metrics average them.
        holdout_fraction: share of problems held out for the final score, in [0, 1).
        n_train: size of the few-shot pool; at most half of the non-holdout problems.
        workers: accepted for the common task signature; scoring runs no code and is
            done in this thread.
        sandbox: accepted (and validated) for the common task signature; unused.
        size: problems drawn from the standard library (``None`` = all that pass the
            filters); ignored for a ``dataset`` file.
        seed: the seed of that draw.

    Raises:
        DatasetError: the file is missing, empty, or has a malformed row; or the standard
            library has no usable function.
        ConfigError: an option is out of range.
    """

    name = "summarization"
    description = "summarize a Python function in one sentence; ROUGE-L and BLEU"
    metrics = ("rougeL", "bleu", "corpus_bleu")

    def __init__(
        self,
        dataset: str | Path | None = None,
        *,
        samples_per_problem: int = 1,
        holdout_fraction: float = 0.2,
        n_train: int = 8,
        workers: int | None = None,
        sandbox: str = "auto",
        size: int | None = DEFAULT_SIZE,
        seed: int = DEFAULT_SEED,
    ) -> None:
        set_common_options(
            self, samples_per_problem=samples_per_problem, workers=workers, sandbox=sandbox
        )
        require(
            size is None or (is_whole(size) and size >= 1),
            f"size must be a whole number >= 1 or None: {size!r}",
        )
        require(is_whole(seed), f"seed must be a whole number: {seed!r}")
        if dataset is None:
            corpus = sample_corpus(size, seed)
            self.dataset: Path | None = None
            problems = list(corpus.problems)
            self.skipped = dict(corpus.skipped)
            self.source = (
                f"Python {sys.version_info.major}.{sys.version_info.minor} standard library "
                f"({len(problems)} functions, seed {seed})"
            )
        else:
            self.dataset = Path(dataset)
            problems = load_problems(self.dataset)
            self.skipped = {}
            self.source = str(self.dataset)
        self._splits = split_by_hash(problems, holdout_fraction, n_train)
        # The scored form of each reference, by id: aggregate needs it for corpus BLEU.
        self._references = {p.id: clean_summary(p.reference) for p in problems}

    # -- prompt pieces ---------------------------------------------------------------------

    def instruction(self, problem: Problem) -> str:
        return (
            "Summarize what the following Python function does in one sentence, written "
            'like the first line of its docstring (imperative mood, e.g. "Return ..."). '
            f"Answer with the sentence only.\n\n```python\n{problem.prompt.strip()}\n```"
        )

    def completion_prefix(self, problem: Problem) -> str:
        # A comment after the code is what base code models continue most naturally;
        # ending on ":" keeps the answer on the same line (no trailing space: tokenizers
        # attach the space to the next word).
        return f"{problem.prompt.rstrip()}\n\n\n# Summary of the function above in one sentence:"

    def example_response(self, problem: Problem) -> str:
        return problem.reference.strip()

    def stop_sequences(self, *, continuation: bool) -> list[str]:
        """For raw continuations: a blank line or the start of more code (the summary may
        also start on the next comment line, so a lone newline is not a stop). None for
        chat answers; their first sentence is kept."""
        return list(CONTINUATION_STOPS) if continuation else []

    # -- scoring ---------------------------------------------------------------------------

    def score(
        self,
        problems: Sequence[Problem],
        completions: Sequence[str],
        *,
        continuation: bool,
    ) -> list[ProblemOutcome]:
        """Clean each completion to one sentence and compare it with the reference.

        ``fraction`` and ``metrics["rougeL"]`` are the ROUGE-L F1, ``metrics["bleu"]`` the
        sentence BLEU; ``output`` is the cleaned sentence (what corpus BLEU is computed
        on); ``passed`` is an exact match after cleaning, ignoring case; ``status`` is
        ``"empty"`` when nothing is left after cleaning, else ``"scored"``.
        ``continuation`` does not change the cleaning: both styles end in one sentence.
        """
        check_completions(problems, completions)
        return [self._score_one(p, c) for p, c in zip(problems, completions, strict=True)]

    def _score_one(self, problem: Problem, completion: str) -> ProblemOutcome:
        hypothesis = clean_summary(completion)
        reference = self._references.get(problem.id)
        if reference is None:
            reference = clean_summary(problem.reference)
        rouge = rouge_l(hypothesis, reference)
        bleu = sentence_bleu(hypothesis, reference)
        exact = bool(hypothesis) and hypothesis.lower() == reference.lower()
        return ProblemOutcome(
            problem.id, "scored" if hypothesis else "empty", exact, rouge, hypothesis,
            metrics={"rougeL": rouge, "bleu": bleu},
        )  # fmt: skip

    def aggregate(self, outcomes: Sequence[ProblemOutcome]) -> dict[str, float]:
        """``rougeL`` / ``bleu``: mean over problems of the mean over a problem's samples.
        ``corpus_bleu``: BLEU over all outcomes at once, each hypothesis paired with its
        problem's reference. ``exact_match``: mean over problems of the share of samples
        equal to the reference (reported only).

        Raises:
            ValueError: no outcomes, or an outcome of a problem this task does not have.
        """
        by_problem = group_by_problem(outcomes)
        unknown = sorted(by_problem.keys() - self._references.keys())
        if unknown:
            raise ValueError(f"outcomes of unknown problems: {', '.join(unknown[:5])}")
        groups = list(by_problem.values())
        references = [self._references[o.problem_id] for o in outcomes]
        return {
            "rougeL": mean_over_problems(groups, lambda o: o.metrics.get("rougeL", o.fraction)),
            "bleu": mean_over_problems(groups, lambda o: o.metrics.get("bleu", 0.0)),
            "corpus_bleu": corpus_bleu([o.output for o in outcomes], references),
            "exact_match": mean_over_problems(groups, lambda o: float(o.passed)),
        }


# -- user files -----------------------------------------------------------------------------


def load_problems(path: str | Path) -> list[Problem]:
    """Read and validate a JSONL file of ``{"id", "code", "summary"}`` rows.

    Raises:
        DatasetError: naming the file, line and field of a malformed row (and how many
            more there are); also for a missing, unreadable or empty file and for a
            repeated ``id``.
    """
    seen: set[str] = set()

    def parse(row: dict, where: str) -> Problem:
        problem_id, code = require_str(row, "id"), require_str(row, "code")
        summary = require_str(row, "summary")
        if not clean_summary(summary):
            raise RowError("field 'summary' has no words")
        if problem_id in seen:
            raise RowError(f"id {problem_id!r} appears twice")
        seen.add(problem_id)
        return Problem(problem_id, code, reference=" ".join(summary.split()))

    return load_jsonl(path, parse)


# -- the standard library corpus ----------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """Problems built from a source tree and the count of what was left out, by reason."""

    problems: tuple[Problem, ...]
    skipped: tuple[tuple[str, int], ...]


def stdlib_root() -> Path:
    """The folder of the running interpreter's pure-Python standard library.

    Raises:
        DatasetError: the folder does not exist (an embedded or stripped Python).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise DatasetError(f"{root}: the Python standard library sources are not installed")
    return root


@lru_cache(maxsize=8)
def sample_corpus(size: int | None = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> Corpus:
    """``size`` problems of the standard-library corpus, the ones whose id has the
    smallest seeded hash (all of them when ``size`` is ``None`` or larger); sorted by id.
    ``skipped`` adds ``not_sampled``: the usable functions that were not drawn.

    Raises:
        DatasetError: no usable function was found.
    """
    corpus = build_corpus(stdlib_root())
    if not corpus.problems:
        raise DatasetError(f"{stdlib_root()}: no standard-library function passed the filters")

    def rank(problem: Problem) -> bytes:
        return hashlib.sha256(f"{_SAMPLE_SALT}:{seed}:{problem.id}".encode()).digest()

    size = len(corpus.problems) if size is None else min(size, len(corpus.problems))
    drawn = sorted(sorted(corpus.problems, key=rank)[:size], key=lambda p: p.id)
    skipped = (*corpus.skipped, ("not_sampled", len(corpus.problems) - size))
    return Corpus(tuple(drawn), skipped)


@lru_cache(maxsize=4)
def build_corpus(root: Path) -> Corpus:
    """Every usable function under ``root`` (recursively), sorted by id.

    Files in :data:`EXCLUDED_DIRS` folders and ``test_*.py`` files are not read. Module-
    level functions and methods of (nested) classes are considered, not functions nested
    in functions. One is left out, counted under the first reason that applies, when:

    - ``unreadable_file`` / ``unparseable_file``: its file is not UTF-8 or not valid
      Python for this interpreter (every function of it, counted once per file);
    - ``dunder_name`` / ``private_name``: it or its class is ``__x__`` / ``_x`` (special
      methods and internal helpers have formulaic or terse docstrings);
    - ``no_docstring``;
    - ``reference_form``: the first sentence is not prose (see :func:`_reference`): a
      signature, a grammar rule, a labelled note, a doctest, an introduction to a list;
    - ``reference_length``: it has fewer or more words than :data:`REFERENCE_WORDS`;
    - ``inline_docstring``: code shares a line with the docstring;
    - ``trivial_body``: without the docstring the body is one simple statement (``pass``,
      ``return other(...)``, ``raise NotImplementedError``, one assignment);
    - ``source_length``: the source without docstring has a line count outside
      :data:`SOURCE_LINES`;
    - ``duplicate_code``: the same source (after removing the docstring) as a function
      with a smaller id (``_pyio`` copies ``io``, for example).
    """
    kept: list[Problem] = []
    skipped: Counter[str] = Counter()
    for path in _python_files(root):
        relative = path.relative_to(root).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
            tree = parse_python(text, filename=relative)
        except (UnicodeDecodeError, OSError):
            skipped["unreadable_file"] += 1
            continue
        except (SyntaxError, ValueError):
            skipped["unparseable_file"] += 1
            continue
        lines = text.splitlines()
        for qualname, node, private in _functions(tree.body, ""):
            reason, problem = _problem(relative, qualname, node, private, lines)
            if problem is None:
                skipped[reason] += 1
            else:
                kept.append(problem)
    kept.sort(key=lambda p: p.id)
    unique: list[Problem] = []
    seen_code: set[str] = set()
    for problem in kept:
        if problem.prompt in seen_code:
            skipped["duplicate_code"] += 1
        else:
            seen_code.add(problem.prompt)
            unique.append(problem)
    return Corpus(tuple(unique), tuple(sorted(skipped.items())))


def _python_files(root: Path) -> list[Path]:
    """``.py`` files under ``root``, pruning excluded folders before descending (the
    stdlib folder may hold a large ``site-packages``), in a sorted order."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS]
        for name in files:
            if name.endswith(".py") and not name.startswith("test_"):
                found.append(Path(folder) / name)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, Function, bool]]:
    """``(qualname, node, in_private_class)`` for functions and class methods, in order."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node, False
        elif isinstance(node, ast.ClassDef):
            for qualname, child, private in _functions(node.body, f"{prefix}{node.name}."):
                yield qualname, child, private or node.name.startswith("_")


def _problem(
    relative: str, qualname: str, node: Function, private_class: bool, lines: list[str]
) -> tuple[str, Problem | None]:
    """``("", problem)`` for a usable function, else ``(reason, None)``."""
    name = node.name
    if name.startswith("__") and name.endswith("__"):
        return "dunder_name", None
    if name.startswith("_") or private_class:
        return "private_name", None
    docstring = ast.get_docstring(node, clean=True)
    if not docstring:
        return "no_docstring", None
    reference = _reference(docstring)
    if reference is None:
        return "reference_form", None
    if not REFERENCE_WORDS[0] <= len(reference.split()) <= REFERENCE_WORDS[1]:
        return "reference_length", None
    doc = node.body[0]
    before = lines[doc.lineno - 1][: doc.col_offset]
    after = lines[doc.end_lineno - 1][doc.end_col_offset :]  # type: ignore[operator]
    if before.strip() or (after.strip() and not after.strip().startswith("#")):
        return "inline_docstring", None
    rest = node.body[1:]
    if len(rest) <= 1 and not any(isinstance(s, _COMPOUND) for s in rest):
        return "trivial_body", None
    source = _source_without(node, doc, lines)
    if not SOURCE_LINES[0] <= source.count("\n") <= SOURCE_LINES[1]:
        return "source_length", None
    problem = Problem(
        f"{relative}:{qualname}", source, reference=reference,
        meta={"path": relative, "qualname": qualname, "line": node.lineno},
    )  # fmt: skip
    return "", problem


def _reference(docstring: str) -> str | None:
    """The docstring's first sentence, or ``None`` when it is not a prose sentence: it
    must start with a capital letter (not a signature such as ``makedirs(name [, mode])``,
    a grammar rule such as ``addr-spec = local-part "@" domain``, or a lowercase
    fragment), must not start with a label (``Internal: ...``), contain ``->``, ``=>`` or
    a doctest prompt, or end with ``:`` (it introduces a list)."""
    sentence = first_sentence(docstring)
    if not sentence[:1].isupper() or _LABEL.match(sentence) or sentence.endswith(":"):
        return None
    if any(mark in sentence for mark in ("->", "=>", ">>>")):
        return None
    return sentence


def _source_without(node: Function, doc: ast.stmt, lines: list[str]) -> str:
    """The function's lines (decorators included) minus the docstring's, dedented by the
    ``def``'s own indentation: a line that lacks it (inside a multi-line string) is kept
    as it is, where :func:`textwrap.dedent` would give up on the whole function."""
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    end = node.end_lineno or node.lineno
    after = lines[doc.end_lineno : end]  # type: ignore[misc]
    while after and not after[0].strip():  # the blank line that followed the docstring
        after.pop(0)
    kept = lines[start - 1 : doc.lineno - 1] + after
    indent = lines[node.lineno - 1][: node.col_offset]
    out = [line[len(indent) :] if line.startswith(indent) else line for line in kept]
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(line.rstrip() for line in out) + "\n"
