"""The run: :func:`finetune` checks its arguments, then trains with Adafactor over seeded,
shuffled batches and keeps the checkpoint with the lowest validation loss."""

from __future__ import annotations

import contextlib
import math
import random
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, is_positive, is_whole, require
from engine.finetune._examples import (
    IGNORE_INDEX,
    PROMPT_STYLE,
    Example,
    encode_examples,
    pad_batch,
    split_validation,
    train_size,
)
from engine.finetune._methods import METHODS, load_for_training, peft_config
from engine.finetune._output import (
    adapter_spelling,
    exclusive,
    output_folder,
    save_checkpoint,
    save_metadata,
)
from engine.generation import ModelRef, resolve_device, resolve_model
from engine.tasks.base import Problem, Task

__all__ = ["FineTuneProgress", "FineTuneResult", "finetune"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_MIB = 1 << 20


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
    under :func:`~engine.generation.adapter_home`, else the folder); ``n_train`` is the train
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
    """Train a ``method`` adapter for ``model`` on ``task``'s train split (see
    :mod:`engine.finetune` for the examples, the masking and what is saved where).

    Args:
        task: the task; its ``train`` split is the data (build it with the train size the
            tuning runs will use: ``get_task(name, n_train=N)``).
        model: a model source (:func:`engine.generation.resolve_model`) or a resolved ref.
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
    target = output_folder(spec.name, output, overwrite)
    config = peft_config(method, ref)  # finds the target modules on an empty (meta) model
    with exclusive(target):
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
        from engine.generation import check_quantization

        check_quantization(quantization, resolved)
    default_name = "-".join(part for part in (method, task.name) if part)
    return _Spec(
        method, name or default_name, epochs, batch_size, max_length,
        float(learning_rate or METHODS[method].learning_rate), float(validation_fraction),
        seed, resolved,
    )  # fmt: skip


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
            path=self.target, adapter=adapter_spelling(self.target), method=self.spec.method,
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

    def _train(self, train_rows: list[Example], val_rows: list[Example]) -> None:
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
        self, rows: list[Example], order: list[int], optimizer: Any, epoch: int
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

    def _validate(self, rows: list[Example], epoch: int) -> None:
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

    def _loss(self, rows: Sequence[Example]) -> tuple[Any, int]:
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
        save_checkpoint(self.target, self.model, self.metadata)

    def _save_metadata(self) -> None:
        self.metadata.update(self._progress_fields())
        save_metadata(self.target, self.metadata)


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
