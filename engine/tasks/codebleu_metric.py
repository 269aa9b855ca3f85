"""CodeBLEU of one candidate against one reference, through the ``codebleu`` package.

:func:`codebleu_score` returns the package's ``calc_codebleu(references=[reference],
predictions=[candidate], lang=...)`` unchanged (default weights 0.25 each, whitespace
tokenizer), under short key names, with two exceptions:

* an empty or whitespace-only candidate scores 0 on every component. The package would
  give it 0.25, because it adds ``dataflow_match_score or 1``: a data-flow score of 0 counts
  as a full match (meant for references without data flow, it also rewards a candidate
  that matches none of the reference's data flows). Non-empty candidates keep that
  behaviour so the numbers stay comparable with studies that used the package.
* the package logs a warning on the root logger for every reference without data flow
  (most one-line snippets); that one message is filtered out while we call it.

Calls are serialized by a module lock: the package is pure Python (threads would not
speed it up) and the lock keeps the logging filter's install and removal paired. One call
costs about 1 ms for a one-line or few-line pair on this project's CI machine, plus about
30 ms for the first call of a process (loading the tree-sitter grammar).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from engine.errors import ConfigError

__all__ = ["COMPONENTS", "codebleu_score"]

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


def codebleu_score(reference: str, candidate: str, *, lang: str = "python") -> dict[str, float]:
    """CodeBLEU of ``candidate`` against ``reference``, with its four components.

    Returns ``{"codebleu", "ngram", "weighted_ngram", "syntax", "dataflow"}``, each in
    [0, 1]; all 0 for an empty or whitespace-only ``candidate``.

    Raises:
        ConfigError: ``reference`` is empty (CodeBLEU is undefined) or ``lang`` is not a
            language the package supports.
    """
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
        scores = calc_codebleu([reference], [candidate], lang=lang)
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
