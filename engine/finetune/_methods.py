"""The fine-tuning methods: the :data:`METHODS` table, each method's ``peft`` configuration,
and the base model loaded the way a method trains it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError
from engine.generation import ModelRef, empty_model, load_model, resolve_model

__all__ = ["METHODS", "Method", "load_for_training", "peft_config"]

LORA_RANK, LORA_ALPHA, LORA_DROPOUT = 16, 32, 0.05
VIRTUAL_TOKENS = 20

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
