"""Prompt styles: how a task's problems become the strings a model continues.

``chat``
    zero-shot: one user turn, ``task.instruction(problem)``, rendered with the tokenizer's
    chat template and the assistant turn opened.
``fewshot-K`` (``fewshot`` = ``fewshot-3``)
    the same, after K worked examples (user turn ``task.instruction(ex)``, assistant turn
    ``task.example_response(ex)``) drawn from the task's ``train`` split. The examples are
    chosen by the seed, are the same for every problem, and never include the problem
    itself.
``raw``
    plain completion of ``task.completion_prefix(problem)``; the output *continues* the
    prefix (:attr:`PromptStyle.continuation`), for base models without a chat template.

A tokenizer without a chat template cannot render ``chat`` or ``fewshot``: that raises
:class:`~engine.errors.ConfigError` pointing at ``@raw`` rather than inventing a plain-text
chat format the model was never trained on (its answers would look like a worse model).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from engine.errors import ConfigError

if TYPE_CHECKING:  # engine.candidates imports this module; keep it free of task imports
    from engine.tasks.base import Problem, Task

DEFAULT_SHOTS = 3
MAX_SHOTS = 16
_FEWSHOT = re.compile(r"^fewshot(?:-(\d+))?$")


@dataclass(frozen=True)
class PromptStyle:
    """A validated prompt style; ``str(style)`` is its canonical spelling."""

    kind: Literal["chat", "raw", "fewshot"]
    shots: int = 0

    @property
    def continuation(self) -> bool:
        """True when the model's output continues the prompt text (raw completion)."""
        return self.kind == "raw"

    def __str__(self) -> str:
        return f"fewshot-{self.shots}" if self.kind == "fewshot" else self.kind


def parse_style(text: str | PromptStyle) -> PromptStyle:
    """Parse ``chat``, ``raw``, ``fewshot`` or ``fewshot-K`` (1 <= K <= 16)."""
    if isinstance(text, PromptStyle):
        return text
    spelled = str(text).strip().lower()
    if spelled in ("chat", "raw"):
        return PromptStyle(spelled)  # type: ignore[arg-type]
    match = _FEWSHOT.match(spelled)
    if not match:
        raise ConfigError(f"unknown prompt style {text!r}; use chat, raw, fewshot or fewshot-K")
    shots = _count(match.group(1)) if match.group(1) else DEFAULT_SHOTS
    if not 1 <= shots <= MAX_SHOTS:
        raise ConfigError(
            f"prompt style {text!r}: K must be between 1 and {MAX_SHOTS} (use chat for zero-shot)"
        )
    return PromptStyle("fewshot", shots)


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
) -> list[str]:
    """Render one prompt string per problem, ready for :meth:`Backend.generate`.

    ``tokenizer`` supplies the chat template (unused, and may be ``None``, for ``raw``);
    ``seed`` chooses the few-shot examples.
    """
    style = parse_style(style)
    if style.continuation:
        return [task.completion_prefix(p) for p in problems]
    _require_chat_template(tokenizer, style)
    drawn = _draw_examples(task, style.shots, seed) if style.kind == "fewshot" else []
    prompts = []
    for problem in problems:
        examples = [ex for ex in drawn if ex.id != problem.id][: style.shots]
        if len(examples) < style.shots:
            raise ConfigError(
                f"prompt style {style} needs {style.shots} train problems besides the one "
                f"asked; task {task.name or type(task).__name__} has {len(drawn)}"
            )
        prompts.append(_render(tokenizer, _messages(task, examples, problem)))
    return prompts


def _draw_examples(task: Task, shots: int, seed: int) -> list[Problem]:
    """``shots`` train problems plus one spare, replacing an example that is the problem
    being asked; the same for every problem so the examples form a common prefix."""
    pool = task.problems("train")
    return random.Random(seed).sample(pool, min(len(pool), shots + 1))


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
