"""Backends generate text for rendered prompts.

The interface is deliberately narrow:
:class:`~engine.generation.backends.transformers.TransformersBackend` generates in process,
:class:`~engine.generation.backends.openai.OpenAIBackend` through an OpenAI-compatible
server (vLLM, ``transformers serve``, TGI, llama.cpp). A prompt is a rendered string (see
:mod:`engine.generation._prompting`), or, for a backend whose server applies the chat
template itself (``chat_messages``), the list of chat messages; generation arguments are
already mapped to Hugging Face ``generate`` names (see
:func:`engine.space.generation_kwargs`). This module imports no machine-learning library.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: What a backend continues: a rendered prompt, or chat messages (``{"role", "content"}``)
#: for a backend with :attr:`Backend.chat_messages`.
Prompt = str | Sequence[Mapping[str, str]]


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
        chat_messages: whether chat prompts are given as lists of messages, rendered by
            the backend (a server's own chat template), instead of rendered strings.
    """

    fingerprint: str
    tokenizer: Any = None
    chat_messages: bool = False

    @abc.abstractmethod
    def generate(
        self,
        prompts: Sequence[Prompt],
        generation_kwargs: Mapping[str, Any],
        *,
        seed: int,
        stop: Sequence[str] = (),
    ) -> list[Generation]:
        """One :class:`Generation` per prompt, in the order of ``prompts``.

        The same prompts, arguments and seed give the same outputs, sampling included.
        """

    def memory_bytes(self) -> int:
        """Bytes of device memory the loaded model holds (0: none here, as for a
        served model); what a :class:`~engine.generation.Residency` counts."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Give the model's memory back to the device; the backend is not used again."""

    def check_space(self, varied: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Raise :class:`~engine.errors.ConfigError` if a parameter the search space
        varies (a name of ``varied``) would change nothing here; by default every one
        does."""


def repeat_numbers(prompts: Sequence[Prompt]) -> list[int]:
    """For each prompt, how many equal prompts come before it in ``prompts``: backends
    that seed each request sample the k-th repeat of a prompt with ``seed + k``, so the
    repeats differ and each depends on nothing else in the call.

    >>> repeat_numbers(["a", "b", "a", "a"])
    [0, 0, 1, 2]
    """
    seen: dict[str, int] = {}
    numbers = []
    for prompt in prompts:
        key = prompt if isinstance(prompt, str) else json.dumps(prompt)
        seen[key] = seen.get(key, -1) + 1
        numbers.append(seen[key])
    return numbers


__all__ = ["Backend", "Generation", "Prompt", "repeat_numbers"]
