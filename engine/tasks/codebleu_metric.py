"""CodeBLEU of one candidate against one reference, through the ``codebleu`` package.

:func:`codebleu_score` returns the package's ``calc_codebleu(references=[reference],
predictions=[candidate], lang=..., tokenizer=...)`` (default weights 0.25 each) under
short key names. The n-gram components need a tokenizer:

* ``"python"`` (default, :func:`python_tokens`): Python's own tokens. The package's
  default splits on whitespace, which gives one-line snippets so few "words" that an
  exact copy of ``list(itertools.product(a, b))`` scores only 0.64 (0.56 for
  ``s[::-1]``); with code tokens both score 1.0.
* ``"whitespace"``: the package's default ``str.split``, for numbers comparable with
  results computed with the package's defaults.

Two things differ from calling the package directly:

* an empty or whitespace-only candidate scores 0 on every component. The package would
  give it 0.25, because it adds ``dataflow_match_score or 1``: a data-flow score of 0 counts
  as a full match (meant for references without data flow, it also rewards a candidate
  that matches none of the reference's data flows). Non-empty candidates keep that
  behaviour so the numbers stay comparable with studies that used the package.
* the package logs a warning on the root logger for every reference without data flow
  (most one-line snippets); that one message is filtered out while we call it.

Calls are serialized by a module lock: the package is pure Python (threads would not
speed it up) and the lock keeps the logging filter's install and removal paired. One call
costs about 1.3 ms for a one-line pair and 3.5 ms for a ten-line program (measured on a
2-core development machine), plus about 30 ms for the first call of a process.

BLEU counts n-grams up to 4, so a reference of fewer than four tokens cannot reach 1 even
against itself (``'a' in d`` scores 0.78); compare scores on the same problems only.
"""

from __future__ import annotations

import io
import logging
import threading
import tokenize
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from engine.errors import ConfigError

__all__ = ["COMPONENTS", "TOKENIZERS", "codebleu_score", "python_tokens"]

#: Our key -> the package's key, for the score and its four components.
COMPONENTS = {
    "codebleu": "codebleu",
    "ngram": "ngram_match_score",
    "weighted_ngram": "weighted_ngram_match_score",
    "syntax": "syntax_match_score",
    "dataflow": "dataflow_match_score",
}
_NO_DATAFLOW = "There is no reference data-flows"  # the package's per-call warning
_LOCK = threading.Lock()
_LAYOUT = {
    tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT,
    tokenize.ENDMARKER, tokenize.ENCODING, tokenize.COMMENT,
}  # fmt: skip


def python_tokens(code: str) -> list[str]:
    """The token strings of ``code`` by Python's :mod:`tokenize`, without layout tokens
    (newlines, indentation) or comments; ``code.split()`` when it does not tokenize (an
    unclosed bracket or string, inconsistent indentation). Characters Python has no token
    for (``$``, a stray quote) are kept as one-character tokens."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return code.split()
    return [t.string for t in tokens if t.type not in _LAYOUT and t.string.strip()]


#: Tokenizer name -> function, for the n-gram components.
TOKENIZERS: dict[str, Callable[[str], list[str]]] = {
    "python": python_tokens,
    "whitespace": str.split,
}


def codebleu_score(
    reference: str, candidate: str, *, lang: str = "python", tokenizer: str = "python"
) -> dict[str, float]:
    """CodeBLEU of ``candidate`` against ``reference``, with its four components.

    Returns ``{"codebleu", "ngram", "weighted_ngram", "syntax", "dataflow"}``, each in
    [0, 1]; all 0 for an empty or whitespace-only ``candidate``. ``dataflow`` is the
    package's value as reported; where it is 0, ``codebleu`` counted it as 1.

    Raises:
        ConfigError: ``reference`` is empty (CodeBLEU is undefined), ``lang`` is not a
            language the package supports, or ``tokenizer`` is not in :data:`TOKENIZERS`.
    """
    if tokenizer not in TOKENIZERS:
        raise ConfigError(f"codebleu: unknown tokenizer {tokenizer!r}; use {', '.join(TOKENIZERS)}")
    if not reference.strip():
        raise ConfigError("codebleu_score: the reference is empty")
    if not candidate.strip():
        return dict.fromkeys(COMPONENTS, 0.0)
    from codebleu import calc_codebleu  # imported here: loading it costs ~20 ms
    from codebleu.utils import AVAILABLE_LANGS

    if lang not in AVAILABLE_LANGS:
        raise ConfigError(f"codebleu: unknown language {lang!r}; use one of {AVAILABLE_LANGS}")
    # The package encodes to UTF-8 strictly; a lone surrogate (possible in JSON text) would
    # raise, so it becomes "?" as in any lossy decode of model output.
    reference, candidate = (_encodable(text) for text in (reference, candidate))
    with _LOCK, _quiet_dataflow_warning():
        scores = calc_codebleu([reference], [candidate], lang=lang, tokenizer=TOKENIZERS[tokenizer])
    return {ours: float(scores[theirs]) for ours, theirs in COMPONENTS.items()}


def _encodable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


class _DropNoDataflow(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _NO_DATAFLOW not in record.getMessage()


@contextmanager
def _quiet_dataflow_warning() -> Iterator[None]:
    """Drop only the package's data-flow warning, only on the root logger, only meanwhile."""
    root = logging.getLogger()
    quiet = _DropNoDataflow()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)
