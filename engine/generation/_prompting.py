"""Prompt styles: how a task's problems become the strings a model continues.

``chat``
    zero-shot: one user turn, ``task.instruction(problem)``, rendered with the tokenizer's
    chat template and the assistant turn opened.
``fewshot-K`` (``fewshot`` = ``fewshot-3``; ``icl`` / ``icl-K`` are other spellings)
    the same, after K worked examples (user turn ``task.instruction(ex)``, assistant turn
    ``task.example_response(ex)``) drawn at random from the task's ``train`` split. The
    examples are chosen by the seed, are the same for every problem, and never include
    the problem itself. ``str()`` spells it ``fewshot-K`` whichever spelling was parsed.
``rag-K`` (``rag`` = ``rag-3``)
    worked examples rendered like ``fewshot-K``, but for each problem the K train
    problems whose instructions are most similar to its own (retrieval-augmented, see
    :mod:`engine.generation._retrieval`), never the problem itself. They are shown least similar
    first, so the most similar example sits right before the question. The retriever is
    fitted on the train split's instructions once per :func:`build_prompts` call.
``raw``
    plain completion of ``task.completion_prefix(problem)``; the output *continues* the
    prefix (:attr:`PromptStyle.continuation`), for base models without a chat template.

A tokenizer without a chat template cannot render ``chat``, ``fewshot`` or ``rag``: that
raises :class:`~engine.errors.ConfigError` pointing at ``@raw`` rather than inventing a
plain-text chat format the model was never trained on (its answers would look like a worse
model).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from engine.errors import ConfigError

if TYPE_CHECKING:  # engine.generation._candidates imports this module; keep it free of task imports
    from engine.generation._retrieval import Retriever
    from engine.generation.backends import Prompt
    from engine.tasks.base import Problem, Task

DEFAULT_SHOTS = 3
MAX_SHOTS = 16
_WITH_SHOTS = re.compile(r"^(fewshot|icl|rag)(?:-(\d+))?$")
_ALIASES = {"icl": "fewshot"}  # ICL-k: k in-context examples drawn at random = fewshot-k


@dataclass(frozen=True)
class PromptStyle:
    """A validated prompt style; ``str(style)`` is its canonical spelling."""

    kind: Literal["chat", "raw", "fewshot", "rag"]
    shots: int = 0

    @property
    def continuation(self) -> bool:
        """True when the model's output continues the prompt text (raw completion)."""
        return self.kind == "raw"

    def __str__(self) -> str:
        return f"{self.kind}-{self.shots}" if self.shots else self.kind


def parse_style(text: str | PromptStyle) -> PromptStyle:
    """Parse ``chat``, ``raw``, ``fewshot[-K]``, ``icl[-K]`` (= ``fewshot[-K]``) or
    ``rag[-K]``; K defaults to 3 and must be 1 to 16."""
    if isinstance(text, PromptStyle):
        return text
    spelled = str(text).strip().lower()
    if spelled in ("chat", "raw"):
        return PromptStyle(spelled)  # type: ignore[arg-type]
    match = _WITH_SHOTS.match(spelled)
    if not match:
        raise ConfigError(
            f"unknown prompt style {text!r}; use chat, raw, fewshot-K (or icl-K) or rag-K"
        )
    shots = _count(match.group(2)) if match.group(2) else DEFAULT_SHOTS
    if not 1 <= shots <= MAX_SHOTS:
        raise ConfigError(
            f"prompt style {text!r}: K must be between 1 and {MAX_SHOTS} (use chat for zero-shot)"
        )
    kind = _ALIASES.get(match.group(1), match.group(1))
    return PromptStyle(kind, shots)  # type: ignore[arg-type]


def _count(digits: str) -> int:
    """``digits`` as an int, or one past :data:`MAX_SHOTS` when it has too many digits
    (``int`` refuses over 4300 of them, and anything over 6 is out of range anyway)."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 6 else MAX_SHOTS + 1


def build_prompts(
    task: Task,
    problems: Sequence[Problem],
    style: PromptStyle | str,
    tokenizer: Any,
    *,
    seed: int = 0,
    retriever: Retriever | None = None,
    as_messages: bool = False,
) -> list[Prompt]:
    """Render one prompt per problem, ready for :meth:`Backend.generate`.

    ``tokenizer`` supplies the chat template (unused, and may be ``None``, for ``raw`` or
    ``as_messages``); ``seed`` chooses the few-shot examples; ``retriever`` finds the
    ``rag`` examples (``None``: :func:`~engine.generation._retrieval.default_retriever`) and
    is fitted here on the train split's instructions. With ``as_messages``, a chat style's
    prompt is its list of messages, for a backend that applies a server's template
    (:attr:`Backend.chat_messages`); ``raw`` prompts are strings either way.
    """
    style = parse_style(style)
    if style.continuation:
        return [task.completion_prefix(p) for p in problems]
    if not as_messages:
        _require_chat_template(tokenizer, style)
    if style.kind == "rag":
        chosen = _retrieved_examples(task, problems, style.shots, retriever)
    else:
        chosen = _drawn_examples(task, problems, style.shots, seed)
    conversations = [
        _messages(task, examples, problem)
        for problem, examples in zip(problems, chosen, strict=True)
    ]
    return conversations if as_messages else [_render(tokenizer, m) for m in conversations]


def _drawn_examples(
    task: Task, problems: Sequence[Problem], shots: int, seed: int
) -> list[list[Problem]]:
    """The seeded random examples of each problem (none for ``shots=0``): ``shots`` train
    problems plus one spare, replacing an example that is the problem being asked; the
    same for every problem so the examples form a common prefix."""
    pool = task.problems("train") if shots else []
    drawn = random.Random(seed).sample(pool, min(len(pool), shots + 1))
    chosen = []
    for problem in problems:
        examples = [ex for ex in drawn if ex.id != problem.id][:shots]
        if len(examples) < shots:
            raise _too_few(task, f"fewshot-{shots}", shots, len(drawn))
        chosen.append(examples)
    return chosen


def _retrieved_examples(
    task: Task, problems: Sequence[Problem], shots: int, retriever: Retriever | None
) -> list[list[Problem]]:
    """Each problem's ``shots`` most similar train problems, other than itself, least
    similar first so that the most similar one is right before the question."""
    pool = task.problems("train")
    position = {p.id: i for i, p in enumerate(pool)}
    exclude = [position.get(p.id) for p in problems]
    if any(len(pool) - (skip is not None) < shots for skip in exclude):
        raise _too_few(task, f"rag-{shots}", shots, len(pool))
    if not problems:  # spares loading an embedding model for nothing
        return []
    if retriever is None:
        from engine.generation._retrieval import default_retriever

        retriever = default_retriever()
    retriever.fit([task.instruction(p) for p in pool])
    queries = [task.instruction(p) for p in problems]
    found = retriever.neighbours(queries, shots, exclude=exclude)
    return [[pool[i] for i in reversed(indices)] for indices in found]


def _too_few(task: Task, style: str, shots: int, available: int) -> ConfigError:
    return ConfigError(
        f"prompt style {style} needs {shots} train problems besides the one asked; "
        f"task {task.name or type(task).__name__} has {available}"
    )


def _messages(task: Task, examples: Sequence[Problem], problem: Problem) -> list[dict[str, str]]:
    messages = []
    for ex in examples:
        messages.append({"role": "user", "content": task.instruction(ex)})
        messages.append({"role": "assistant", "content": task.example_response(ex)})
    messages.append({"role": "user", "content": task.instruction(problem)})
    return messages


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _require_chat_template(tokenizer: Any, style: PromptStyle) -> None:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"prompt style {style} needs a chat template and this model's tokenizer has none; "
            "use MODEL@raw for a base model"
        )
