"""Quantized loading through ``bitsandbytes``: 8-bit (``int8``) and 4-bit NF4 (``nf4``).

A candidate asks for a quantization with a ``:int8`` or ``:nf4`` suffix (``8bit`` and
``4bit`` are accepted spellings). Whether it can work depends on the machine: the package
must import and its kernels must run on the chosen device. :func:`check_quantization`
finds out by quantizing one small layer there and running it, which takes milliseconds,
so an unsupported choice is refused with one clear line before any model loads, rather
than failing mid-run. Its verdict is cached per (kind, device).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from engine.errors import ConfigError, first_line

# bitsandbytes warns on import when an optional package of faster CPU kernels is absent
# (its own kernels work), and its int8 layers on every call that they cast float32 inputs
# to float16: nothing a user can act on, so neither is shown.
for _logger in ("bitsandbytes.backends.cpu.ops", "bitsandbytes.autograd._functions"):
    logging.getLogger(_logger).setLevel(logging.ERROR)

QUANTIZATIONS = ("int8", "nf4")
_SPELLINGS = {"int8": "int8", "8bit": "int8", "nf4": "nf4", "4bit": "nf4"}

__all__ = [
    "QUANTIZATIONS",
    "bnb_config",
    "check_quantization",
    "parse_quantization",
]


def parse_quantization(text: str | None) -> str | None:
    """``"int8"``, ``"nf4"`` (also spelled ``8bit``, ``4bit``) or ``None`` for none."""
    if text is None or text == "":
        return None
    kind = _SPELLINGS.get(str(text).strip().lower())
    if kind is None:
        raise ConfigError(f"unknown quantization {text!r}; use int8 (8-bit) or nf4 (4-bit)")
    return kind


def check_quantization(kind: str, device: str) -> None:
    """Raise :class:`ConfigError` unless ``kind`` quantization works on ``device``.

    ``device`` is a resolved device name (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    """
    reason = _unsupported_reason(parse_quantization(kind), device)
    if reason:
        raise ConfigError(
            f"{kind} quantization cannot run here: {reason}; "
            "drop the :{kind} suffix to load the model unquantized".replace("{kind}", kind)
        )


def bnb_config(kind: str, device: str) -> Any:
    """The ``transformers.BitsAndBytesConfig`` for ``kind`` on ``device``.

    4-bit computes in bfloat16 on CUDA (float16 where bf16 is unsupported) and in float32
    on the CPU, the precisions :func:`engine.generation.load_model` uses unquantized.
    """
    import torch
    from transformers import BitsAndBytesConfig

    check_quantization(kind, device)
    if parse_quantization(kind) == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.float32
    if device.startswith("cuda"):
        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute
    )


@functools.cache
def _unsupported_reason(kind: str | None, device: str) -> str:
    """Why ``kind`` cannot run on ``device``, or ``""`` when one quantized layer ran."""
    if kind is None:
        return ""
    try:
        import bitsandbytes as bnb
    except ImportError as error:
        return f"bitsandbytes is not installed ({error}); run `pip install bitsandbytes`"
    import torch

    try:
        with torch.no_grad():
            if kind == "nf4":
                layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float32, quant_type="nf4")
            else:
                layer = bnb.nn.Linear8bitLt(64, 64, has_fp16_weights=False)
            layer = layer.to(device)
            layer(torch.randn(2, 64, device=device))
    except Exception as error:  # any failure of the probe means the kernels cannot run
        version = getattr(bnb, "__version__", "?")
        return f"bitsandbytes {version} failed on {device}: {first_line(error)}"
    return ""
