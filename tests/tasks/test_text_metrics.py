"""Summary metrics against hand-computed values, and the answer cleaning before them."""

from __future__ import annotations

import math

import pytest

from engine.tasks.text_metrics import (
    MAX_SUMMARY_CHARS,
    clean_summary,
    corpus_bleu,
    first_sentence,
    rouge_l,
    sentence_bleu,
)

REF = "the cat sat on the mat"


# -- sentence BLEU ----------------------------------------------------------------------------


def test_bleu_of_identical_strings_is_one():
    assert sentence_bleu(REF, REF) == 1.0
    assert sentence_bleu("Return x", "Return x") == 1.0  # shorter than 4 tokens: effective order


def test_bleu_of_disjoint_strings_is_zero():
    assert sentence_bleu("a b c d", "e f g h") == 0.0


def test_bleu_of_empty_hypothesis_is_zero():
    assert sentence_bleu("", REF) == 0.0
    assert sentence_bleu("  ", REF) == 0.0


def test_bleu_hand_computed_without_smoothing_needed():
    # 6 tokens each, brevity penalty 1; matches: 5/6 unigrams, 4/5 bigrams, 3/4 trigrams,
    # 2/3 4-grams -> geometric mean (5/6 * 4/5 * 3/4 * 2/3) ** (1/4) = (1/3) ** (1/4).
    assert sentence_bleu("the cat sat on the rug", REF) == pytest.approx((1 / 3) ** 0.25)


def test_bleu_exp_smoothing_of_a_zero_precision():
    # 3/6 unigrams, 2/5 bigrams, 1/4 trigrams, 0/3 4-grams; exp smoothing makes the first
    # zero precision 1 / (2 * 3) -> (1/2 * 2/5 * 1/4 * 1/6) ** (1/4) = (1/120) ** (1/4).
    assert sentence_bleu("the cat sat under a rug", REF) == pytest.approx((1 / 120) ** 0.25)


def test_bleu_brevity_penalty_of_a_short_hypothesis():
    # Effective order 2 with both precisions 1; BP = exp(1 - 6/2).
    assert sentence_bleu("the cat", REF) == pytest.approx(math.exp(-2))


def test_bleu_ignores_case():
    assert sentence_bleu("The Cat sat on the MAT", REF) == 1.0


def test_bleu_is_in_unit_interval_and_ordered():
    close = sentence_bleu("the cat sat on the rug", REF)
    far = sentence_bleu("a dog sat on a rug", REF)
    assert 0.0 < far < close < 1.0


# -- ROUGE-L ----------------------------------------------------------------------------------


def test_rouge_identical_and_disjoint():
    assert rouge_l(REF, REF) == 1.0
    assert rouge_l("a b c", "d e f") == 0.0
    assert rouge_l("", REF) == 0.0


def test_rouge_lcs_by_hand():
    # LCS("sum of numbers", "return the sum of two numbers") = 3: P = 3/3, R = 3/6,
    # F = 2 * 1 * 0.5 / 1.5 = 2/3.
    assert rouge_l("sum of numbers", "return the sum of two numbers") == pytest.approx(2 / 3)
    # Equal lengths, one substitution: LCS 5 of 6 on each side.
    assert rouge_l("the cat was on the mat", REF) == pytest.approx(5 / 6)


def test_rouge_matches_the_rouge_score_readme_example():
    # rouge-score README: target "The quick brown fox jumps over the lazy dog", prediction
    # "The quick brown dog jumps on the log." -> rougeL P 0.625, R 0.5556, F 0.5882 = 10/17.
    hyp, ref = (
        "The quick brown dog jumps on the log.",
        "The quick brown fox jumps over the lazy dog",
    )
    assert rouge_l(hyp, ref) == pytest.approx(10 / 17)


def test_rouge_stems_but_bleu_does_not():
    hyp, ref = "returns the values", "return the value"
    assert rouge_l(hyp, ref) == 1.0
    assert sentence_bleu(hyp, ref) < 0.5


# -- corpus BLEU ------------------------------------------------------------------------------


def test_corpus_bleu_of_one_pair_equals_its_sentence_bleu():
    hyp = "the cat sat under a rug"
    assert corpus_bleu([hyp], [REF]) == pytest.approx(sentence_bleu(hyp, REF))


def test_corpus_bleu_sums_counts_before_averaging():
    # Pair 1 identical (6 tokens), pair 2 disjoint (4 tokens): summed precisions 6/10, 5/8,
    # 4/6, 3/4 and BP 1, which is not the mean (0.5) of the sentence scores 1 and 0.
    hyps, refs = [REF, "a b c d"], [REF, "e f g h"]
    expected = (6 / 10 * 5 / 8 * 4 / 6 * 3 / 4) ** 0.25
    assert corpus_bleu(hyps, refs) == pytest.approx(expected)
    mean = sum(sentence_bleu(h, r) for h, r in zip(hyps, refs, strict=True)) / 2
    assert mean == pytest.approx(0.5)


def test_corpus_bleu_of_identical_corpus_is_one():
    sentences = [REF, "return the sum of two numbers", "Read a line"]
    assert corpus_bleu(sentences, sentences) == 1.0


def test_corpus_bleu_refuses_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one"):
        corpus_bleu([], [])


# -- sentences and cleaning -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Return x. Then more.", "Return x."),
        (
            "Convert references (e.g. &gt;) to text. More.",
            "Convert references (e.g. &gt;) to text.",
        ),
        ("Call os.path.join on the parts. Done.", "Call os.path.join on the parts."),
        (
            "Return the thing\n    across lines.\n\nSecond paragraph.",
            "Return the thing across lines.",
        ),
        ("No period at all", "No period at all"),
        ('Say "hi." Then go.', 'Say "hi."'),
        ("Is it true? Yes.", "Is it true?"),
    ],
)
def test_first_sentence(text, expected):
    assert first_sentence(text) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Return the sum of a and b.", "Return the sum of a and b"),
        ("This function returns the sum. It is fast.", "Returns the sum"),
        ("The `decode` method checks the input.", "Checks the input"),
        ("```\nReturn x.\n```", "Return x"),
        (
            'Here is a one-sentence summary:\n\n"Return the sum of a and b."',
            "Return the sum of a and b",
        ),
        ("**Summary:** Return `x` for *key*.", "Return x for key"),
        ("Summary (one sentence): read a line.", "Read a line"),
        (" Return the thing.\n# Args: none", "Return the thing"),
        ('# """Return the thing, e.g. a list. More."""', "Return the thing, e.g. a list"),
        ("- Parse the header.", "Parse the header"),
        ("The method resolution order of cls.", "The method resolution order of cls"),
        ("Same as a **= b.", "Same as a **= b"),
        ("", ""),
        ("```python\n```", ""),
        ("\n\n  \n", ""),
    ],
)
def test_clean_summary(answer, expected):
    assert clean_summary(answer) == expected


def test_clean_summary_is_idempotent_and_bounded():
    once = clean_summary("This function returns the `value`.")
    assert clean_summary(once) == once
    assert len(clean_summary("word " * 1000)) <= MAX_SUMMARY_CHARS


def test_cleaning_makes_a_chat_answer_score_like_the_bare_sentence():
    reference = clean_summary("Return the sum of ``a`` and ``b``.")
    answer = clean_summary("Sure! Here it is:\n```\nReturn the sum of `a` and `b`.\n```")
    assert answer == reference == "Return the sum of a and b"
    assert sentence_bleu(answer, reference) == rouge_l(answer, reference) == 1.0
