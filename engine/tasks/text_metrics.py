"""Text similarity metrics for one-sentence summaries, and the answer cleaning before them.

All scores are in [0, 1] (sacreBLEU's 0..100 is divided by 100) and compare a model's
*hypothesis* with one *reference* sentence:

``sentence_bleu``
    sacreBLEU sentence BLEU-4: 13a tokenization, lowercased, ``exp`` smoothing (NIST /
    Chen & Cherry method 3: a zero n-gram precision counts as ``1 / (2^k * total)`` for the
    k-th such order) and effective order (orders the hypothesis is too short to have are
    left out), as sacreBLEU itself recommends for single sentences.
``corpus_bleu``
    sacreBLEU corpus BLEU-4 with the same tokenization, case and smoothing: n-gram counts
    and lengths are summed over all pairs before the precisions and the brevity penalty
    are taken, so it is *not* the mean of the sentence scores.
``rouge_l``
    ROUGE-L F1 of the ``rouge-score`` package with the Porter stemmer: tokens are
    lowercased alphanumeric runs, P = LCS / len(hyp), R = LCS / len(ref), F = 2PR / (P + R).

:func:`clean_summary` turns a raw model answer (markdown, quotes, a "This function ..."
opening, several sentences) into the one sentence that is scored; :func:`first_sentence`
is the sentence splitter it shares with the dataset builder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

__all__ = [
    "MAX_SUMMARY_CHARS",
    "clean_summary",
    "corpus_bleu",
    "first_sentence",
    "rouge_l",
    "sentence_bleu",
]

MAX_SUMMARY_CHARS = 500  # a cleaned answer is cut here; no one-sentence summary is longer

# Words that end in "." without ending the sentence ("e.g. a list").
_ABBREVIATIONS = frozenset({"e.g", "i.e", "cf", "vs", "approx", "resp", "incl", "esp"})
# A sentence ends at ., ! or ? (with closing quotes/brackets) followed by space or the end.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")
_FENCE_LINE = re.compile(r"^\s*(```|~~~)")
_LABEL = re.compile(
    r"^(?:(?:one[- ]sentence\s+)?summary|answer|docstring|description)(?:\s*\([^)]*\))?\s*:\s*",
    re.I,
)
_MARKER = re.compile(r"^(?:#+|//+|/\*+|\*+(?=\s)|[-•>](?=\s)|\d+[.)](?=\s))\s*")
_TRIPLE_QUOTES = re.compile(r"^[rRbBuU]?(?:\"\"\"|''')|(?:\"\"\"|''')$")
# "This function returns ...", "The `decode` method checks ...": the subject goes, the verb
# stays (only before a lowercase word ending in "s", so "The method resolution order" and
# "The function object's ..." keep their subject).
_SUBJECT = re.compile(
    r"^(?:this|the)\s+(?:python\s+)?(?:[\w.]+\s+)?(?:function|method|code|routine)[\s,:]+"
    r"(?=[a-z]+s\b)",
    re.I,
)
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")  # markdown **bold**
_EMPHASIS = re.compile(r"(?<![\w*])\*(\w[^*]*?)\*(?![\w*])")  # reST/markdown *word*
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’"}


def first_sentence(text: str) -> str:
    """The first sentence of the first paragraph of ``text``, whitespace collapsed.

    A sentence ends at ``.``, ``!`` or ``?`` followed by whitespace or the end of the
    paragraph, except after an abbreviation such as ``e.g.``; a paragraph without such an
    end is one sentence. Dotted names (``os.path.join``) do not end a sentence.
    """
    paragraph = re.split(r"\n\s*\n", text.strip(), maxsplit=1)[0]
    paragraph = " ".join(paragraph.split())
    for match in _SENTENCE_END.finditer(paragraph):
        words = paragraph[: match.start()].split()
        if words and words[-1].lower().lstrip("([{\"'") in _ABBREVIATIONS:
            continue
        return paragraph[: match.end()]
    return paragraph


def clean_summary(text: str) -> str:
    """The sentence a model's answer stands for, ready to score.

    In order: code-fence lines are dropped; so are opening lines that end with ``:``
    (``"Here is a summary:"``) when more follows; the first remaining non-empty line is
    kept; a leading comment or list marker (``#``, ``//``, ``-``, ``1.``), a label
    (``Summary:``), triple quotes, backticks, ``**bold**`` and ``*emphasis*`` markup and
    quotes around the whole are removed; a leading ``This function``/``The method``
    subject is dropped (references are docstring lines in the imperative, "Return ...");
    then :func:`first_sentence`, without its final punctuation, first letter capitalised,
    at most :data:`MAX_SUMMARY_CHARS` characters. References go through the same
    function, so a period, markup or a capital never decides a score.
    """
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    lines = [line for line in lines if line and not _FENCE_LINE.match(line)]
    while len(lines) > 1 and lines[0].endswith(":"):
        lines.pop(0)
    if not lines:
        return ""
    line = lines[0]
    previous = None
    while line != previous:  # markers can nest: '# """Summary: ...'
        previous = line
        line = _MARKER.sub("", line)
        line = _LABEL.sub("", line)
        line = _TRIPLE_QUOTES.sub("", line).strip()
        line = _EMPHASIS.sub(r"\1", _STRONG.sub(r"\1", line).replace("`", ""))
        line = _unquote(line)
    line = _SUBJECT.sub("", line)
    sentence = first_sentence(line).rstrip(".!?;:, ")
    sentence = _unquote(sentence)  # a quote that closed after the period
    return (sentence[:1].upper() + sentence[1:])[:MAX_SUMMARY_CHARS].strip()


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        return text[1:-1].strip()
    return text


# -- metrics ----------------------------------------------------------------------------------


def sentence_bleu(hypothesis: str, reference: str) -> float:
    """Smoothed sentence BLEU-4 of ``hypothesis`` against ``reference``, in [0, 1].

    0.0 when either is empty (nothing to match).
    """
    if not hypothesis.strip() or not reference.strip():
        return 0.0
    score = _bleu(sentence=True).sentence_score(hypothesis, [reference]).score
    return _unit(score / 100.0)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 of the pairs ``(hypotheses[i], references[i])``, in [0, 1].

    Raises:
        ValueError: the sequences differ in length or are empty.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("corpus_bleu needs at least one pair")
    score = _bleu(sentence=False).corpus_score(list(hypotheses), [list(references)]).score
    return _unit(score / 100.0)


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 (stemmed) of ``hypothesis`` against ``reference``, in [0, 1]."""
    if not hypothesis.strip() or not reference.strip():
        return 0.0
    # rouge-score's argument order is (target, prediction).
    return _unit(_rouge().score(reference, hypothesis)["rougeL"].fmeasure)


def _unit(value: float) -> float:
    """Clamp to [0, 1]: sacreBLEU returns 100.00000000000004 for identical strings."""
    return min(1.0, max(0.0, float(value)))


@lru_cache(maxsize=2)
def _bleu(*, sentence: bool) -> Any:
    # Imported lazily: sacrebleu pulls in a tokenizer registry that is slow to import.
    from sacrebleu.metrics import BLEU

    return BLEU(lowercase=True, tokenize="13a", smooth_method="exp", effective_order=sentence)


@lru_cache(maxsize=1)
def _rouge() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
