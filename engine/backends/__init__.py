"""Backends generate text for rendered prompts.

The interface is deliberately narrow so a server backend (vLLM, any OpenAI-compatible
endpoint) can sit beside :class:`~engine.backends.transformers.TransformersBackend`:
prompts are fully rendered strings (see :mod:`engine.prompting`), generation arguments
are already mapped to Hugging Face ``generate`` names (see :func:`engine.space.generation_kwargs`).
This module imports no machine-learning library.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Generation:
    """One prompt's output.

    ``text`` is the generated continuation only, cut before the first stop sequence;
    ``prompt_tokens`` the prompt's length in tokens; ``generated_tokens`` the tokens the
    model actually produced for this prompt (up to and including its EOS, or up to the
    token that completed a stop sequence), never counting padding.
    """

    text: str
    prompt_tokens: int
    generated_tokens: int


class Backend(abc.ABC):
    """Generates continuations for batches of prompts.

    Attributes:
        fingerprint: identifies everything that determines the outputs besides the
            prompt, the generation arguments, the stop sequences and the seed (weights,
            tokenizer, numeric precision). It keys the completion cache.
        tokenizer: the tokenizer prompts are rendered with (its chat template), or
            ``None`` for a backend that renders server-side.
    """

    fingerprint: str
    tokenizer: Any = None

    @abc.abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        generation_kwargs: Mapping[str, Any],
        *,
        seed: int,
        stop: Sequence[str] = (),
    ) -> list[Generation]:
        """One :class:`Generation` per prompt, in the order of ``prompts``.

        The same prompts, arguments and seed give the same outputs, sampling included.
        """


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest occurrence of any stop sequence.

    Returns ``(text, found)``. Empty stop sequences are ignored. Backends cut their
    generations with it and tasks cut raw continuations with it, so both cut alike.

    >>> truncate_at_stop("a = 1\\ndef g():", ["\\ndef", "\\nclass"])
    ('a = 1', True)
    """
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


__all__ = ["Backend", "Generation", "truncate_at_stop"]
