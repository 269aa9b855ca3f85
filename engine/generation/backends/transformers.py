"""Batched, seeded generation with a local ``transformers`` model."""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from engine.errors import ConfigError, TunerError, first_line
from engine.generation._adapters import AdapterRef, attach_adapter
from engine.generation._models import ModelRef, load_model
from engine.generation.backends import Backend, Generation
from engine.tasks import truncate_at_stop


class TransformersBackend(Backend):
    """Generates with a causal LM loaded once through :func:`engine.generation.load_model`.

    Prompts are sorted by token length and generated ``batch_size`` at a time with left
    padding (similar lengths waste little compute on padding); outputs come back in input
    order. Each batch seeds torch's RNG with ``seed + batch_index``, so a call is
    reproducible; a sampled output depends on the seed and on which prompts share its batch,
    not only on its own prompt. On out-of-memory the batch size is halved (and stays
    halved for later calls), with a warning through ``on_warning``.

    Args:
        ref: the resolved model.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        batch_size: the most prompts generated at once; 0 finds it per call: what the
            free memory holds on CUDA (:func:`memory_batch_size`), :data:`CPU_BATCH` on
            the CPU.
        on_warning: receives one-line warnings.
        dtype: overrides the default precision (float32 on CPU, bf16/fp16 on CUDA).
        quantization: ``"int8"`` or ``"nf4"`` to load the weights through bitsandbytes.
        adapter: a PEFT adapter attached to the model.
        threads: torch's CPU threads (0: leave torch's default, one per core). It is
            process-wide; on a CPU shared with other work, fewer threads can be several
            times faster than oversubscribed ones.
    """

    def __init__(
        self,
        ref: ModelRef,
        *,
        device: str = "auto",
        batch_size: int = 8,
        on_warning: Callable[[str], None] | None = None,
        dtype: Any = None,
        quantization: str | None = None,
        adapter: AdapterRef | None = None,
        threads: int = 0,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 0:
            raise ConfigError(f"batch size must be a whole number >= 0, got {batch_size!r}")
        if threads:
            torch.set_num_threads(threads)
        self.ref = ref
        self.batch_size = batch_size
        self.on_warning = on_warning or (lambda _text: None)
        self.model, self.tokenizer = load_model(
            ref, device=device, dtype=dtype, quantization=quantization
        )
        # Precision, quantization and device change greedy outputs too: part of the identity.
        dtype_name = str(self.model.dtype).removeprefix("torch.")
        self.fingerprint = f"{ref.fingerprint}-{self.model.device.type}-{dtype_name}"
        if quantization:
            self.fingerprint += f"-{quantization}"
        if adapter is not None:
            self.model = attach_adapter(self.model, adapter)
            self.fingerprint += f"-{adapter.fingerprint}"
        self._stop_criteria: dict[tuple[str, ...], Any] = {}

    def memory_bytes(self) -> int:
        """The model's parameters and buffers, adapter included."""
        return int(self.model.get_memory_footprint())

    def close(self) -> None:
        """Drop the model and hand its memory back: the allocator's cache on CUDA."""
        cuda = self.model.device.type == "cuda"
        del self.model
        self._stop_criteria.clear()
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    def generate(
        self,
        prompts: Sequence[str],
        generation_kwargs: Mapping[str, Any],
        *,
        seed: int,
        stop: Sequence[str] = (),
    ) -> list[Generation]:
        kwargs = _checked_kwargs(generation_kwargs)
        stop = tuple(s for s in stop if s)
        encoded = [self._encode(p, i) for i, p in enumerate(prompts)]
        order = length_order([len(ids) for ids in encoded])
        results: list[Generation | None] = [None] * len(prompts)
        start = batch_index = 0
        while start < len(order):
            size = self.batch_size or self._fitting_batch(
                len(encoded[order[start]]) + int(kwargs["max_new_tokens"])
            )
            rows = order[start : start + size]
            try:
                outputs = self._generate_rows(
                    [encoded[i] for i in rows], kwargs, seed + batch_index, stop
                )
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                self._back_off(error, len(rows), max(len(encoded[i]) for i in rows), kwargs)
                continue
            for i, output in zip(rows, outputs, strict=True):
                results[i] = output
            start += len(rows)
            batch_index += 1
        return results  # type: ignore[return-value]  # every slot was filled

    # -- one batch ---------------------------------------------------------------------------

    def _generate_rows(
        self, rows: list[list[int]], kwargs: dict[str, Any], seed: int, stop: tuple[str, ...]
    ) -> list[Generation]:
        pad_id = self.tokenizer.pad_token_id
        input_ids, attention_mask = left_pad(rows, pad_id)
        batch = {
            "input_ids": input_ids.to(self.model.device),
            "attention_mask": attention_mask.to(self.model.device),
        }
        cuda = self.model.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.model.device] if cuda else []):
            torch.manual_seed(seed)
            new_tokens = self._generate_batch(batch, {**kwargs, **self._stopping(stop)})
        eos_ids = self._eos_ids(kwargs)
        return [
            self._finish(row.tolist(), len(prompt), eos_ids, pad_id, stop)
            for row, prompt in zip(new_tokens.cpu(), rows, strict=True)
        ]

    def _generate_batch(
        self, batch: dict[str, torch.Tensor], kwargs: dict[str, Any]
    ) -> torch.Tensor:
        """Run ``model.generate`` on one padded batch; returns only the new tokens."""
        try:
            with torch.inference_mode():
                pad = {"pad_token_id": self.tokenizer.pad_token_id}
                output = self.model.generate(**batch, **{**pad, **kwargs})
        except ValueError as error:  # transformers validates the generation arguments
            raise ConfigError(f"invalid generation arguments: {first_line(error)}") from error
        return output[:, batch["input_ids"].shape[1] :]

    def _finish(
        self, tokens: list[int], prompt_tokens: int, eos_ids: set[int], pad_id: int, stop
    ) -> Generation:
        def decode(ids: list[int]) -> str:
            return self.tokenizer.decode(
                ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )

        text, generated = finish_tokens(tokens, decode, eos_ids=eos_ids, pad_id=pad_id, stop=stop)
        return Generation(text=text, prompt_tokens=prompt_tokens, generated_tokens=generated)

    # -- helpers -----------------------------------------------------------------------------

    def _fitting_batch(self, tokens: int) -> int:
        """The batch size for rows of up to ``tokens`` tokens when none is set."""
        if self.model.device.type != "cuda":
            return CPU_BATCH
        free, _total = torch.cuda.mem_get_info(self.model.device)
        config = self.model.config.get_text_config()
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        width = self.model.dtype.itemsize
        # Keys and values of every layer, plus room for one token's activations per row.
        per_token = 2 * config.num_hidden_layers * kv_heads * head_dim + 8 * config.hidden_size
        return memory_batch_size(free, tokens, per_token * width)

    def _encode(self, prompt: str, index: int) -> list[int]:
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt {index} is a {type(prompt).__name__}, not a string")
        ids = prompt_ids(self.tokenizer, prompt)
        if not ids:
            raise ConfigError(f"prompt {index} is empty after tokenization")
        return ids

    def _stopping(self, stop: tuple[str, ...]) -> dict[str, Any]:
        """``stopping_criteria`` for ``stop``, built once per set of stop sequences (building
        one scans the whole vocabulary)."""
        if not stop:
            return {}
        if stop not in self._stop_criteria:
            from transformers import StoppingCriteriaList, StopStringCriteria

            criterion = StopStringCriteria(tokenizer=self.tokenizer, stop_strings=list(stop))
            self._stop_criteria[stop] = StoppingCriteriaList([criterion])
        return {"stopping_criteria": self._stop_criteria[stop]}

    def _eos_ids(self, kwargs: Mapping[str, Any]) -> set[int]:
        eos = kwargs.get("eos_token_id", self.model.generation_config.eos_token_id)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if eos is None:
            return set()
        return {int(e) for e in eos} if isinstance(eos, (list, tuple)) else {int(eos)}

    def _back_off(self, error: BaseException, rows: int, length: int, kwargs: Mapping) -> None:
        if rows <= 1:
            raise TunerError(
                f"out of memory generating one prompt of {length} tokens "
                f"(max_new_tokens={kwargs['max_new_tokens']}) on {self.model.device}; lower "
                "max_new_tokens or use a smaller model or another device"
            ) from error
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.batch_size = rows // 2
        self.on_warning(
            f"out of memory generating {rows} prompts at once; retrying with batch size "
            f"{self.batch_size}"
        )


# -- pure helpers ---------------------------------------------------------------------------

#: Prompts generated at once on the CPU when no batch size is set.
CPU_BATCH = 16
#: The most prompts generated at once on a GPU when no batch size is set.
MAX_GPU_BATCH = 64


def memory_batch_size(free_bytes: int, tokens: int, bytes_per_token: int) -> int:
    """How many rows of ``tokens`` tokens at ``bytes_per_token`` fit in four fifths of
    ``free_bytes`` (a fifth stays spare for what the estimate leaves out), between 1 and
    :data:`MAX_GPU_BATCH`. It is an estimate: the out-of-memory back-off is the net.

    >>> memory_batch_size(10 * 2**30, tokens=1024, bytes_per_token=2**20)
    8
    """
    rows = int(0.8 * free_bytes) // max(1, tokens * bytes_per_token)
    return max(1, min(MAX_GPU_BATCH, rows))


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The token ids of a rendered prompt, as generation sees them (fine-tuning encodes its
    prompts with this too, so an adapter trains on the tokens it is later given).

    A rendered chat prompt already starts with BOS where the template wants one, so it
    gets no special tokens added; a raw prompt gets the tokenizer's usual ones (BOS for
    Llama-style models).
    """
    bos = tokenizer.bos_token
    add_special = not (bos and prompt.startswith(bos))
    return list(tokenizer(prompt, add_special_tokens=add_special)["input_ids"])


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices sorted by decreasing length (ties by index): batches of similar lengths,
    and the most memory-hungry batch first, so an out-of-memory shows up at once."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` with rows right-aligned (padding on the left)."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, width - len(row) :] = 1
    return input_ids, attention_mask


def finish_tokens(
    tokens: Sequence[int],
    decode: Callable[[list[int]], str],
    *,
    eos_ids: set[int],
    pad_id: int | None,
    stop: Sequence[str] = (),
) -> tuple[str, int]:
    """The text and the count of really generated tokens of one row of ``generate`` output.

    A row ends at its first EOS (generated, so counted) or at the first pad token
    ``generate`` wrote after the row stopped (not counted). If a stop sequence occurs in
    the text, the text is cut before it and the count is the shortest prefix of tokens
    whose text contains it: the token that completed the stop sequence is the last one
    generated, whatever padding (maybe equal to EOS) follows.
    """
    tokens = list(tokens)
    end, ended_by_eos = len(tokens), False
    for j, token in enumerate(tokens):
        if token in eos_ids or token == pad_id:
            end, ended_by_eos = j, token in eos_ids
            break
    text, found = truncate_at_stop(decode(tokens[:end]), stop)
    if not found:
        return text, end + int(ended_by_eos)
    lo, hi = 1, end  # the shortest prefix containing a stop sequence lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if truncate_at_stop(decode(tokens[:mid]), stop)[1]:
            hi = mid
        else:
            lo = mid + 1
    return text, lo


#: How allocators word a failed allocation: CUDA and MPS ("... out of memory"), torch's CPU
#: allocator ("DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes.
#: Error code 12 (Cannot allocate memory)", what a memory limit such as ``ulimit -v`` gives).
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """True for a failed allocation: torch's ``OutOfMemoryError`` (CUDA), Python's
    ``MemoryError``, and allocator ``RuntimeError`` s saying so (CPU, MPS)."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(words in text for words in _OUT_OF_MEMORY)


def _checked_kwargs(generation_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(generation_kwargs, Mapping):
        raise ConfigError("generation_kwargs must be a mapping of generate() arguments")
    kwargs = dict(generation_kwargs)
    if "max_new_tokens" not in kwargs:
        raise ConfigError("generation_kwargs must set max_new_tokens")
    if int(kwargs.get("num_return_sequences") or 1) != 1:
        raise ConfigError("num_return_sequences must be 1: a backend returns one text per prompt")
    return kwargs
