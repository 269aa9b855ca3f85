"""Fine-tuning: train a PEFT adapter on a task's ``train`` split.

What is trained
    A PEFT adapter of one of :data:`METHODS` on a frozen base model: only the adapter's
    parameters get gradients. ``qlora-8`` and ``qlora-4`` train LoRA on a base loaded in
    8-bit or 4-bit NF4 through bitsandbytes (with gradient checkpointing, as QLoRA does).

The examples
    One per problem of ``task.problems("train")``: the prompt the tuner will later send
    (``build_prompts(task, [problem], "chat", tokenizer)``, tokenized the way the generation
    backend tokenizes it), then ``task.example_response(problem)`` and the tokenizer's EOS
    token. Prompt and response are tokenized separately (generation continues the prompt's
    tokens), concatenated and cut on the right at ``max_length`` tokens; cut examples are
    counted. Labels (:func:`response_labels`) are -100 on every prompt token and on
    padding, so the loss is the cross-entropy of the response tokens only.

Train and validation
    :func:`split_validation` divides the train split by a hash of each problem's group (a
    Conala question; else its id). The hash is salted apart from the task's own split hash:
    train problems all hash above the task's holdout fraction, so reusing that hash would
    leave validation empty. At least one problem lands on each side.

Training
    Adafactor at a fixed learning rate over seeded, shuffled batches for ``epochs`` epochs.
    The mean validation loss (weighted by response tokens) is measured before training
    (epoch 0) and after every epoch.

What is saved where
    The folder (``output``, else ``adapter_home() / name``) always holds the checkpoint with
    the lowest validation loss so far, starting with the untrained adapter of epoch 0: the
    ``save_pretrained`` files plus :data:`engine.adapters.METADATA_FILE` (base model and its
    fingerprint, task, train and validation problem ids, losses, ...). Every save fills a
    temporary sibling folder and renames it into place, so a run killed at any point (Ctrl-C
    included) leaves the best checkpoint so far, never half of one; a kill between the two
    renames that replace an existing folder leaves the previous one as ``.NAME.old-*``.
    When the run ends, the metadata is updated with every epoch's losses and the total time.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.adapters import METADATA_FILE, adapter_home
from engine.errors import ConfigError
from engine.models import ModelRef, empty_model, load_model, resolve_device, resolve_model
from engine.tasks._options import is_positive, is_whole, require
from engine.tasks._splits import unit_hash
from engine.tasks.base import Problem, Task

__all__ = [
    "IGNORE_INDEX",
    "METHODS",
    "FineTuneProgress",
    "FineTuneResult",
    "Method",
    "encode_examples",
    "finetune",
    "load_for_training",
    "pad_batch",
    "peft_config",
    "response_labels",
    "split_validation",
    "train_size",
]

#: The label PyTorch's cross-entropy (and so every transformers model) ignores.
IGNORE_INDEX = -100
PROMPT_STYLE = "chat"
LORA_RANK, LORA_ALPHA, LORA_DROPOUT = 16, 32, 0.05
VIRTUAL_TOKENS = 20

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_VALIDATION_SALT = "finetune-validation"
_MIB = 1 << 20
_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_IA3 = ("k_proj", "v_proj", "down_proj")
_IA3_FEEDFORWARD = ("down_proj",)


@dataclass(frozen=True)
class Method:
    """A fine-tuning method: the ``peft_type`` it trains (``lora``, ``ia3``, ``prompt``,
    ``prefix``), its default ``learning_rate``, and the ``quantization`` the base is
    loaded with (``None``, ``"int8"``, ``"nf4"``)."""

    peft_type: str
    learning_rate: float
    quantization: str | None = None
    description: str = ""


_LORA = f"LoRA r={LORA_RANK}, alpha={LORA_ALPHA}, dropout {LORA_DROPOUT} on attention projections"

#: The methods by name. LoRA targets q/k/v/o_proj where the model has them, else the
#: attention modules peft knows for its model type; IA3 scales k_proj, v_proj and the MLP's
#: down_proj (peft's choice for other model types); prompt tuning learns 20 randomly
#: initialised input embeddings; prefix tuning 20 key/value vectors in every layer.
METHODS: dict[str, Method] = {
    "lora": Method("lora", 3e-4, None, _LORA),
    "ia3": Method("ia3", 3e-3, None, "IA3 on k_proj, v_proj and the MLP down projection"),
    "prompt": Method("prompt", 3e-3, None, f"prompt tuning, {VIRTUAL_TOKENS} virtual tokens"),
    "prefix": Method("prefix", 3e-2, None, f"prefix tuning, {VIRTUAL_TOKENS} virtual tokens"),
    "qlora-8": Method("lora", 3e-4, "int8", _LORA + ", base in 8-bit (bitsandbytes)"),
    "qlora-4": Method("lora", 3e-4, "nf4", _LORA + ", base in 4-bit NF4 (bitsandbytes)"),
}


@dataclass(frozen=True)
class FineTuneProgress:
    """Where a fine-tuning run is, for a progress display.

    ``phase`` is ``"train"`` after each optimizer step and ``"validate"`` when a
    validation pass starts and again when it ends (epoch 0 is the pass before training).
    ``step`` counts optimizer steps over all epochs, up to ``total_steps``. ``loss`` is the
    current epoch's mean training loss so far (``None`` before its first step);
    ``validation_loss`` the latest validation loss (``None`` before the first); ``elapsed``
    seconds since the run started.
    """

    phase: str
    epoch: int
    step: int
    total_steps: int
    loss: float | None
    validation_loss: float | None
    elapsed: float


@dataclass(frozen=True)
class FineTuneResult:
    """What a finished run produced.

    ``path`` holds the best checkpoint (epoch ``best_epoch``; 0 = untrained);
    ``adapter`` is how a candidate names it after ``+`` (the registered name when it lives
    under :func:`~engine.adapters.adapter_home`, else the folder); ``n_train`` is the train
    size a tuning run must use so its tune and holdout splits exclude the trained problems.
    ``train_losses`` holds each epoch's mean training loss; ``peak_memory_mib`` is
    ``torch.cuda.max_memory_allocated`` on CUDA, the process's peak resident set size
    (``ru_maxrss``, since the process started) on the CPU; ``truncated`` counts examples
    cut at ``max_length``, ``dropped`` those of them left without a response token (not
    trained or validated on); ``device`` is where it trained.
    """

    path: Path
    adapter: str
    method: str
    quantization: str | None
    n_train: int
    trainable_params: int
    total_params: int
    initial_validation_loss: float
    best_validation_loss: float
    best_epoch: int
    train_losses: tuple[float, ...]
    seconds: float
    peak_memory_mib: float
    truncated: int
    dropped: int
    device: str


# -- the pure pieces -------------------------------------------------------------------------


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


def _group(problem: Problem) -> str:
    return str(problem.meta.get("group") or problem.id)


def _validation_hash(group: str) -> float:
    return unit_hash(f"{_VALIDATION_SALT}:{group}")


def train_size(problems: Sequence[Problem]) -> int:
    """The ``n_train`` that gives a task this train split: it counts groups (a Conala
    question) where the task splits by group, problems elsewhere."""
    return len({_group(p) for p in problems})


# -- the run ---------------------------------------------------------------------------------


def finetune(
    task: Task,
    model: str | ModelRef,
    *,
    method: str = "lora",
    name: str | None = None,
    output: str | Path | None = None,
    overwrite: bool = False,
    epochs: int = 3,
    batch_size: int = 4,
    max_length: int = 512,
    learning_rate: float | None = None,
    validation_fraction: float = 0.125,
    seed: int = 0,
    device: str = "auto",
    on_progress: Callable[[FineTuneProgress], None] | None = None,
) -> FineTuneResult:
    """Train a ``method`` adapter for ``model`` on ``task``'s train split (see the module
    docstring for the examples, the masking and what is saved where).

    Args:
        task: the task; its ``train`` split is the data (build it with the train size the
            tuning runs will use: ``get_task(name, n_train=N)``).
        model: a model source (:func:`engine.models.resolve_model`) or a resolved ref.
        method: a key of :data:`METHODS`.
        name: the adapter's name, registered under ``adapter_home()``: letters, digits,
            ``-``, ``_`` and ``.``; default ``METHOD-TASK``.
        output: a folder to write instead of ``adapter_home() / name``.
        overwrite: replace an existing adapter folder (never a folder that holds anything
            but an adapter).
        epochs, batch_size, max_length: whole numbers >= 1 (``max_length`` >= 8), in
            tokens for ``max_length``.
        learning_rate: Adafactor's learning rate; ``None`` = the method's default.
        validation_fraction: share of train problems held out for validation, in (0, 1).
        seed: seeds the adapter's initialisation, dropout and the batch order.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        on_progress: called with a :class:`FineTuneProgress` after each step and around
            each validation pass.

    Raises:
        ConfigError: an invalid argument, too few train problems, an existing output
            without ``overwrite``, or a model the method cannot adapt; all raised before
            any weight loads.
        ModelLoadError: the model cannot be resolved or loaded.
        KeyboardInterrupt: re-raised after Ctrl-C; the folder keeps the best checkpoint.
    """
    spec = _check_arguments(
        task, model, method, name, output, overwrite, epochs, batch_size, max_length,
        learning_rate, validation_fraction, seed, device, on_progress,
    )  # fmt: skip
    ref = model if isinstance(model, ModelRef) else resolve_model(model)
    problems = task.problems("train")
    train, validation = split_validation(problems, validation_fraction)
    target = _output_folder(task, method, name, output, overwrite)
    config = peft_config(method, ref)  # finds the target modules on an empty (meta) model
    with _exclusive(target):
        run = _Run(spec, task, ref, config, target, on_progress)
        return run.execute(train, validation, train_size(problems))


@dataclass(frozen=True)
class _Spec:
    method: str
    name: str
    epochs: int
    batch_size: int
    max_length: int
    learning_rate: float
    validation_fraction: float
    seed: int
    device: str

    @property
    def quantization(self) -> str | None:
        return METHODS[self.method].quantization


def _check_arguments(
    task: Any, model: Any, method: Any, name: Any, output: Any, overwrite: Any,
    epochs: Any, batch_size: Any, max_length: Any, learning_rate: Any,
    validation_fraction: Any, seed: Any, device: Any, on_progress: Any,
) -> _Spec:  # fmt: skip
    """Every argument checked, each failure one ConfigError line; nothing is loaded."""
    require(isinstance(task, Task), f"task must be an engine Task, got {type(task).__name__}")
    require(isinstance(model, (str, ModelRef)), f"model must be a model source, got {model!r}")
    require(method in METHODS, f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if name is not None:
        require(
            isinstance(name, str) and bool(_NAME.match(name)) and not name.startswith("."),
            f"invalid adapter name {name!r}: use letters, digits, '-', '_' and '.', "
            "not starting with '.'",
        )
    require(
        output is None or (isinstance(output, (str, Path)) and str(output).strip() != ""),
        f"output must be a folder path, got {output!r}",
    )
    require(isinstance(overwrite, bool), f"overwrite must be true or false, got {overwrite!r}")
    for label, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 1),
                              ("max_length", max_length, 8), ("seed", seed, 0)):  # fmt: skip
        require(is_whole(value, low), f"{label} must be a whole number >= {low}, got {value!r}")
    require(
        learning_rate is None or is_positive(learning_rate),
        f"learning_rate must be a number above 0, got {learning_rate!r}",
    )
    require(
        _is_number(validation_fraction) and 0.0 < validation_fraction < 1.0,
        f"validation_fraction must be between 0 and 1 (exclusive), got {validation_fraction!r}",
    )
    require(on_progress is None or callable(on_progress), "on_progress must be callable")
    require(isinstance(device, str), f"device must be a string, got {device!r}")
    resolved = resolve_device(device)
    quantization = METHODS[method].quantization
    if quantization:
        from engine.quantization import check_quantization

        check_quantization(quantization, resolved)
    default_name = "-".join(part for part in (method, task.name) if part)
    return _Spec(
        method, name or default_name, epochs, batch_size, max_length,
        float(learning_rate or METHODS[method].learning_rate), float(validation_fraction),
        seed, resolved,
    )  # fmt: skip


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _output_folder(
    task: Task, method: str, name: str | None, output: str | Path | None, overwrite: bool
) -> Path:
    """The adapter folder, refused when it exists (unless ``overwrite``) or is not an
    adapter folder (even with ``overwrite``: replacing it would delete the user's files)."""
    if output is not None:
        target = Path(output).expanduser().absolute()
    else:
        target = adapter_home() / (name or "-".join(p for p in (method, task.name) if p))
    if not (target.exists() or target.is_symlink()):
        return target
    if not overwrite:
        raise ConfigError(
            f"adapter folder {target} already exists; pass --overwrite to replace it "
            "or choose another --name"
        )
    is_adapter = (target / "adapter_config.json").is_file() or (target / METADATA_FILE).is_file()
    if target.is_symlink() or not target.is_dir() or not (is_adapter or not any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not an adapter folder; refusing to replace it")
    return target


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """Hold a lock beside ``target`` so two runs never write one folder, and clear the
    temporary folders a killed run left."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create {target.parent}: {error.strerror or error}") from None
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the renames still keep folders whole
        yield
        return
    with open(target.parent / f".{target.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another finetune is writing {target}; wait for it") from None
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- PEFT configuration ----------------------------------------------------------------------


def peft_config(method: str, model: str | ModelRef | Any) -> Any:
    """The ``peft`` configuration of ``method`` (a key of :data:`METHODS`) for ``model``
    (a source, a :class:`ModelRef` built on the meta device without weights, or a loaded
    model whose modules are inspected).

    Raises:
        ConfigError: the model has no modules the method can target.
    """
    from peft import (
        IA3Config,
        LoraConfig,
        PrefixTuningConfig,
        PromptTuningConfig,
        PromptTuningInit,
        TaskType,
    )

    kind = METHODS[method].peft_type
    if kind == "prompt":
        return PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM,
            num_virtual_tokens=VIRTUAL_TOKENS,
            prompt_tuning_init=PromptTuningInit.RANDOM,
        )
    if kind == "prefix":
        return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=VIRTUAL_TOKENS)
    if isinstance(model, str):
        model = resolve_model(model)
    module = empty_model(model) if isinstance(model, ModelRef) else model
    names, model_type = _linear_names(module), getattr(module.config, "model_type", "")
    if kind == "lora":
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=LORA_RANK, lora_alpha=LORA_ALPHA,
            lora_dropout=LORA_DROPOUT, target_modules=_lora_targets(names, model_type, method),
        )  # fmt: skip
    targets, feedforward = _ia3_targets(names, model_type, method)
    return IA3Config(
        task_type=TaskType.CAUSAL_LM, target_modules=targets, feedforward_modules=feedforward
    )


def _linear_names(module: Any) -> set[str]:
    """The last name part of every linear layer (bitsandbytes' layers subclass Linear;
    GPT-2 style models use transformers' Conv1D)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return {
        name.rsplit(".", 1)[-1]
        for name, layer in module.named_modules()
        if isinstance(layer, (torch.nn.Linear, Conv1D))
    }


def _lora_targets(names: set[str], model_type: str, method: str) -> list[str]:
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as KNOWN

    found = [n for n in _ATTENTION if n in names]
    if found:
        return found
    known = list(KNOWN.get(model_type, []))
    if known and all(n.rsplit(".", 1)[-1] in names for n in known):
        return known
    raise ConfigError(
        f"--method {method}: found none of {', '.join(_ATTENTION)} in this "
        f"{model_type or 'unknown'} model and peft knows no attention modules for it; "
        "use --method prompt or prefix"
    )


def _ia3_targets(names: set[str], model_type: str, method: str) -> tuple[list[str], list[str]]:
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as KNOWN

    if all(n in names for n in _IA3):
        return list(_IA3), list(_IA3_FEEDFORWARD)
    known = list(KNOWN.get(model_type, []))
    if known and all(n.rsplit(".", 1)[-1] in names for n in known):
        return known, list(FEEDFORWARD.get(model_type, []))
    raise ConfigError(
        f"--method {method}: this {model_type or 'unknown'} model has no "
        f"{', '.join(_IA3)} and peft knows no IA3 modules for it; use --method lora or prompt"
    )


def load_for_training(
    ref: ModelRef, method: str, *, device: str = "cpu", config: Any = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)``: ``ref`` loaded as ``method`` needs it (quantized for the
    ``qlora`` methods) and wrapped with a fresh adapter (``config``, default
    :func:`peft_config`), whose parameters are the only trainable ones.

    A 4-bit base is kept in bitsandbytes' trainable weight layout.

    Raises:
        ModelLoadError: the model cannot be loaded, or not in a layout it can train in.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training

    quantization = METHODS[method].quantization
    model, tokenizer = load_model(ref, device=device, quantization=quantization, trainable=True)
    if quantization:
        # Gradient checkpointing: the memory saving that makes QLoRA worth doing.
        model = prepare_model_for_kbit_training(
            model, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    return get_peft_model(model, config or peft_config(method, model)), tokenizer


# -- training --------------------------------------------------------------------------------

_Example = tuple[list[int], list[int]]


class _Run:
    """One fine-tuning run: load, encode, train, validate, save the best."""

    def __init__(
        self,
        spec: _Spec,
        task: Task,
        ref: ModelRef,
        config: Any,
        target: Path,
        on_progress: Callable[[FineTuneProgress], None] | None,
    ) -> None:
        self.spec, self.task, self.ref, self.config, self.target = spec, task, ref, config, target
        self.on_progress = on_progress
        self.start = time.monotonic()
        self.step = self.total_steps = 0
        self.validation_losses: list[float] = []
        self.train_losses: list[float] = []

    def execute(
        self, train: list[Problem], validation: list[Problem], n_train: int
    ) -> FineTuneResult:
        import torch

        _reset_peak_memory(self.spec.device)
        torch.manual_seed(self.spec.seed)  # the adapter's initial weights
        with _quiet_training():
            self.model, tokenizer = self._load()
            _check_tokenizer(tokenizer, self.ref)
            train_rows, cut_train = encode_examples(
                self.task, train, tokenizer, self.spec.max_length
            )
            val_rows, cut_val = encode_examples(
                self.task, validation, tokenizer, self.spec.max_length
            )
            self.pad_id = tokenizer.pad_token_id
            dropped = len(train) + len(validation) - len(train_rows) - len(val_rows)
            self.metadata = self._metadata(train, validation, n_train, cut_train + cut_val)
            self.metadata["dropped"] = dropped
            self._train(train_rows, val_rows)
        self._save_metadata()  # the whole run's losses and time, beside the best weights
        trainable, total = self.metadata["trainable_params"], self.metadata["total_params"]
        return FineTuneResult(
            path=self.target, adapter=_adapter_spelling(self.target), method=self.spec.method,
            quantization=self.spec.quantization, n_train=n_train,
            trainable_params=trainable, total_params=total,
            initial_validation_loss=self.validation_losses[0],
            best_validation_loss=self.metadata["best_validation_loss"],
            best_epoch=self.metadata["best_epoch"], train_losses=tuple(self.train_losses),
            seconds=self.metadata["seconds"], peak_memory_mib=self.metadata["peak_memory_mib"],
            truncated=cut_train + cut_val, dropped=dropped, device=self.spec.device,
        )  # fmt: skip

    def _load(self) -> tuple[Any, Any]:
        spec = self.spec
        return load_for_training(self.ref, spec.method, device=spec.device, config=self.config)

    def _train(self, train_rows: list[_Example], val_rows: list[_Example]) -> None:
        from transformers.optimization import Adafactor

        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = Adafactor(
            params, lr=self.spec.learning_rate, scale_parameter=False, relative_step=False,
            warmup_init=False,
        )  # fmt: skip
        rng = random.Random(self.spec.seed)
        per_epoch = math.ceil(len(train_rows) / self.spec.batch_size)
        self.total_steps = per_epoch * self.spec.epochs
        self._validate(val_rows, epoch=0)
        for epoch in range(1, self.spec.epochs + 1):
            order = list(range(len(train_rows)))
            rng.shuffle(order)
            self.train_losses.append(self._train_epoch(train_rows, order, optimizer, epoch))
            self._validate(val_rows, epoch)

    def _train_epoch(
        self, rows: list[_Example], order: list[int], optimizer: Any, epoch: int
    ) -> float:
        self.model.train()
        total = tokens = 0.0
        for first in range(0, len(order), self.spec.batch_size):
            batch = [rows[i] for i in order[first : first + self.spec.batch_size]]
            loss, n = self._loss(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            total, tokens = total + loss.item() * n, tokens + n
            self.step += 1
            self._report("train", epoch, total / tokens, self._last_validation())
        return total / tokens

    def _validate(self, rows: list[_Example], epoch: int) -> None:
        import torch

        running = self.train_losses[-1] if self.train_losses and epoch else None
        self._report("validate", epoch, running, self._last_validation())
        self.model.eval()
        total = tokens = 0.0
        with torch.inference_mode():
            for first in range(0, len(rows), self.spec.batch_size):
                loss, n = self._loss(rows[first : first + self.spec.batch_size])
                total, tokens = total + loss.item() * n, tokens + n
        self.validation_losses.append(total / tokens)
        self._report("validate", epoch, running, total / tokens)
        if total / tokens < min(self.validation_losses[:-1], default=math.inf):
            self._save_checkpoint(epoch)

    def _loss(self, rows: Sequence[_Example]) -> tuple[Any, int]:
        """The model's mean loss over the response tokens of ``rows``, and their count
        (the model predicts position t+1 from t, so a label at position 0 is never used)."""
        batch = {k: v.to(self.spec.device) for k, v in pad_batch(rows, self.pad_id).items()}
        tokens = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        return self.model(**batch, use_cache=False).loss, tokens

    def _last_validation(self) -> float | None:
        return self.validation_losses[-1] if self.validation_losses else None

    def _report(self, phase: str, epoch: int, loss: float | None, val: float | None) -> None:
        if self.on_progress is not None:
            elapsed = time.monotonic() - self.start
            self.on_progress(
                FineTuneProgress(phase, epoch, self.step, self.total_steps, loss, val, elapsed)
            )

    # -- saving ---------------------------------------------------------------------------

    def _metadata(
        self, train: list[Problem], validation: list[Problem], n_train: int, truncated: int
    ) -> dict[str, Any]:
        dataset = getattr(self.task, "dataset", None)
        if dataset is None and self.task.source and Path(self.task.source).is_file():
            dataset = self.task.source  # tasks that keep only the file they read
        trainable, total = self.model.get_nb_trainable_parameters()
        return {
            "name": self.spec.name, "method": self.spec.method,
            "peft_type": METHODS[self.spec.method].peft_type,
            "quantization": self.spec.quantization,
            "base_model": self.ref.source, "base_fingerprint": self.ref.fingerprint,
            "task": self.task.name, "dataset": str(dataset) if dataset else None,
            "prompt_style": PROMPT_STYLE, "n_train": n_train,
            "train_ids": [p.id for p in train], "validation_ids": [p.id for p in validation],
            "epochs": self.spec.epochs, "batch_size": self.spec.batch_size,
            "max_length": self.spec.max_length, "learning_rate": self.spec.learning_rate,
            "seed": self.spec.seed, "truncated": truncated,
            "trainable_params": trainable, "total_params": total, "device": self.spec.device,
        }  # fmt: skip

    def _progress_fields(self, epoch: int | None = None) -> dict[str, Any]:
        best = min(range(len(self.validation_losses)), key=self.validation_losses.__getitem__)
        return {
            "best_epoch": best if epoch is None else epoch,
            "best_validation_loss": self.validation_losses[best if epoch is None else epoch],
            "initial_validation_loss": self.validation_losses[0],
            "validation_losses": list(self.validation_losses),
            "train_losses": list(self.train_losses),
            "epochs_completed": len(self.train_losses),
            "seconds": round(time.monotonic() - self.start, 3),
            "peak_memory_mib": round(_peak_memory_mib(self.spec.device), 1),
        }

    def _save_checkpoint(self, epoch: int) -> None:
        self.metadata.update(self._progress_fields(epoch))
        self.metadata["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _replace_folder(self.target, self._write_checkpoint)

    def _write_checkpoint(self, folder: Path) -> None:
        self.model.save_pretrained(folder)
        _write_json(folder / METADATA_FILE, self.metadata)

    def _save_metadata(self) -> None:
        self.metadata.update(self._progress_fields())
        path = self.target / METADATA_FILE
        tmp = path.with_name(f".{METADATA_FILE}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            _write_json(tmp, self.metadata)
            os.replace(tmp, path)  # one rename: the file is old or new, never partial
        finally:
            tmp.unlink(missing_ok=True)


def _check_tokenizer(tokenizer: Any, ref: ModelRef) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"finetune trains on chat prompts and the tokenizer of {ref.source!r} has no chat "
            "template; fine-tune an instruction-tuned model"
        )
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"the tokenizer of {ref.source!r} has no EOS token, so an adapter could not learn "
            "where an answer ends"
        )


def encode_examples(
    task: Task, problems: list[Problem], tokenizer: Any, max_length: int
) -> tuple[list[_Example], int]:
    """``(rows, truncated)``: each problem as ``(input_ids, labels)`` (see the module
    docstring); rows whose response was cut away entirely are dropped (they teach nothing).

    Raises:
        ConfigError: no row keeps a response token (``max_length`` too small).
    """
    from engine.prompting import build_prompts

    prompts = build_prompts(task, problems, PROMPT_STYLE, tokenizer)
    rows, truncated = [], 0
    for problem, prompt in zip(problems, prompts, strict=True):
        response = tokenizer(task.example_response(problem), add_special_tokens=False)
        ids, labels, cut = response_labels(
            _prompt_ids(tokenizer, prompt), [*response["input_ids"], tokenizer.eos_token_id],
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


def _prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The prompt's tokens as the generation backend makes them: a rendered chat prompt
    that already starts with BOS gets no special tokens added, anything else gets them."""
    bos = tokenizer.bos_token
    add_special = not (bos and prompt.startswith(bos))
    return list(tokenizer(prompt, add_special_tokens=add_special)["input_ids"])


def _replace_folder(target: Path, fill: Callable[[Path], None]) -> None:
    """Fill a temporary sibling of ``target`` and rename it into place; an existing
    ``target`` is renamed away first and deleted after."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        fill(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; an adapter folder is a normal folder
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _adapter_spelling(target: Path) -> str:
    """The registered name when ``target`` is under ``adapter_home()``, else the path."""
    home = adapter_home().absolute()
    return target.name if target.absolute().parent == home else str(target)


def _reset_peak_memory(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_mib(device: str) -> float:
    """CUDA: the peak of allocated tensors since the run started. CPU: the process's peak
    resident set size since it started (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / _MIB
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / _MIB if sys.platform == "darwin" else peak / 1024


@contextlib.contextmanager
def _quiet_training() -> Iterator[None]:
    """Hide library warnings that say nothing a user can act on while training."""
    with warnings.catch_warnings():
        # peft calls transformers' gradient checkpointing API by its deprecated names.
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*deprecated")
        yield
