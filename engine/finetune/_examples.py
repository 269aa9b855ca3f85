"""The training data: which train problems validate, and each problem as token ids with
labels that make the loss the response tokens' only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.errors import ConfigError
from engine.tasks import unit_hash
from engine.tasks.base import Problem, Task

__all__ = [
    "IGNORE_INDEX",
    "PROMPT_STYLE",
    "Example",
    "encode_examples",
    "pad_batch",
    "response_labels",
    "split_validation",
    "train_size",
]

#: The label PyTorch's cross-entropy (and so every transformers model) ignores.
IGNORE_INDEX = -100
#: The prompt style trained on: the tuner's zero-shot chat prompt.
PROMPT_STYLE = "chat"

#: One example: ``(input_ids, labels)``.
Example = tuple[list[int], list[int]]

_VALIDATION_SALT = "finetune-validation"


def response_labels(
    prompt_ids: Sequence[int], response_ids: Sequence[int], max_length: int
) -> tuple[list[int], list[int], bool]:
    """``(input_ids, labels, truncated)`` of one example.

    ``input_ids`` is the prompt followed by the response, cut at ``max_length``;
    ``labels`` is :data:`IGNORE_INDEX` on the prompt's positions and the token id on the
    response's, so only response tokens are learned; ``truncated`` says whether anything
    was cut.

    Raises:
        ValueError: the prompt is empty (the first token has nothing to be predicted
            from) or ``max_length`` is below 1.
    """
    if not prompt_ids:
        raise ValueError("response_labels: the prompt has no tokens")
    if max_length < 1:
        raise ValueError(f"response_labels: max_length must be >= 1, got {max_length}")
    input_ids = [*prompt_ids, *response_ids]
    labels = [IGNORE_INDEX] * len(prompt_ids) + list(response_ids)
    truncated = len(input_ids) > max_length
    return input_ids[:max_length], labels[:max_length], truncated


def pad_batch(rows: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int) -> dict[str, Any]:
    """``input_ids``, ``attention_mask`` and ``labels`` tensors of ``(input_ids, labels)``
    rows, padded on the right with ``pad_id`` (labels with :data:`IGNORE_INDEX`, mask 0).

    Right padding keeps every row's positions starting at 0, as in generation after a left
    padded prompt, whatever the tokenizer's own padding side.
    """
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = [list(i) + [pad_id] * (width - len(i)) for i, _ in rows]
    labels = [list(lab) + [IGNORE_INDEX] * (width - len(lab)) for _, lab in rows]
    mask = [[1] * len(i) + [0] * (width - len(i)) for i, _ in rows]
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
    }


def encode_examples(
    task: Task, problems: list[Problem], tokenizer: Any, max_length: int
) -> tuple[list[Example], int]:
    """``(rows, truncated)``: each problem as ``(input_ids, labels)`` (see
    :mod:`engine.finetune`); rows whose response was cut away entirely are dropped (they
    teach nothing).

    Raises:
        ConfigError: no row keeps a response token (``max_length`` too small).
    """
    # Here, not at the top: the backend imports torch, and importing this package must not.
    from engine.generation import build_prompts
    from engine.generation.backends.transformers import prompt_ids

    prompts = build_prompts(task, problems, PROMPT_STYLE, tokenizer)
    rows, truncated = [], 0
    for problem, prompt in zip(problems, prompts, strict=True):
        response = tokenizer(task.example_response(problem), add_special_tokens=False)
        ids, labels, cut = response_labels(
            prompt_ids(tokenizer, prompt), [*response["input_ids"], tokenizer.eos_token_id],
            max_length,
        )  # fmt: skip
        truncated += cut
        if any(label != IGNORE_INDEX for label in labels[1:]):
            rows.append((ids, labels))
    if not rows:
        raise ConfigError(
            f"max_length {max_length} leaves no response tokens (the prompts are longer); "
            "raise --max-length"
        )
    return rows, truncated


def split_validation(
    problems: Sequence[Problem], fraction: float
) -> tuple[list[Problem], list[Problem]]:
    """``(train, validation)``: a problem goes to validation when a hash of its group
    (``meta["group"]``, else its id) is below ``fraction``, so rows of one question stay
    together. If that leaves a side empty, the group with the lowest (or highest) hash
    moves over. Order within each side is kept.

    Raises:
        ConfigError: fewer than two groups, so no split can leave one on each side.
    """
    groups = sorted({_group(p) for p in problems}, key=_validation_hash)
    if len(groups) < 2:
        raise ConfigError(
            f"fine-tuning needs at least 2 train problems (one for validation); the task's "
            f"train split has {len(problems)}: raise it with --train-size"
        )
    held = {g for g in groups if _validation_hash(g) < fraction}
    if not held:
        held = {groups[0]}
    if len(held) == len(groups):
        held.discard(groups[-1])
    train = [p for p in problems if _group(p) not in held]
    validation = [p for p in problems if _group(p) in held]
    return train, validation


def train_size(problems: Sequence[Problem]) -> int:
    """The ``n_train`` that gives a task this train split: it counts groups (a Conala
    question) where the task splits by group, problems elsewhere."""
    return len({_group(p) for p in problems})


def _group(problem: Problem) -> str:
    return str(problem.meta.get("group") or problem.id)


def _validation_hash(group: str) -> float:
    # Salted apart from the task's split hash, under which every train problem hashes
    # above the holdout fraction: reusing it would leave validation empty.
    return unit_hash(f"{_VALIDATION_SALT}:{group}")
