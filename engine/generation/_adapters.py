"""PEFT adapters: where they live, whether they fit a model, and attaching them.

An adapter is a folder written by ``peft`` (``adapter_config.json`` plus weights): LoRA,
IA3, prompt tuning, prefix tuning or any other type ``peft`` loads. One made by
``codellmtuner finetune`` also holds :data:`METADATA_FILE`, which records the base model
it was trained on (source and fingerprint), the task and the problems it saw. Adapters
registered by name live under :func:`adapter_home`.

:func:`check_adapter_fits` tells a mismatched base from a matching one before any weight
loads: it builds the base model on PyTorch's ``meta`` device (no memory, no weights),
wraps it with the adapter's configuration, and compares the shapes the adapter would need
with the shapes stored in its weight file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, ModelLoadError, first_line
from engine.generation._models import (
    ModelRef,
    cache_root,
    empty_model,
    model_fingerprint,
    quiet_transformers,
)

METADATA_FILE = "codellmtuner.json"
CONFIG_FILE = "adapter_config.json"
_NAME = re.compile(r"^[\w.-]+$")

__all__ = [
    "METADATA_FILE",
    "AdapterRef",
    "adapter_home",
    "attach_adapter",
    "check_adapter_fits",
    "check_unseen",
    "registered_adapters",
    "resolve_adapter",
]


@dataclass(frozen=True)
class AdapterRef:
    """A resolved adapter: the user's ``source``, its folder, its ``peft_type``
    (``"LORA"``, ``"IA3"``, ...), a ``fingerprint`` of its files and the finetune
    ``metadata`` (empty for an adapter made elsewhere)."""

    source: str
    path: Path
    peft_type: str
    fingerprint: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


def adapter_home() -> Path:
    """The folder of registered adapters: ``<cache>/adapters/<name>/``."""
    return cache_root() / "adapters"


def resolve_adapter(source: str) -> AdapterRef:
    """Resolve an adapter folder, or the name of a registered one, without loading it.

    Raises:
        ModelLoadError: nothing of that name, or a folder without a readable
            ``adapter_config.json``.
    """
    path = Path(source).expanduser()
    if not path.is_dir() and _NAME.match(source) and (adapter_home() / source).is_dir():
        path = adapter_home() / source
    if not path.is_dir():
        known = ", ".join(a.source for a in registered_adapters()) or "none yet"
        raise ModelLoadError(
            f"adapter {source!r} not found: not a folder and not a registered adapter "
            f"(registered: {known}); train one with `codellmtuner finetune`"
        )
    config = _read_json(path / CONFIG_FILE, f"adapter {source!r}")
    peft_type = config.get("peft_type")
    if not isinstance(peft_type, str):
        raise ModelLoadError(f"adapter {source!r}: {CONFIG_FILE} has no peft_type")
    metadata = _read_json(path / METADATA_FILE, f"adapter {source!r}", missing_ok=True)
    return AdapterRef(source, path.resolve(), peft_type, model_fingerprint(path), metadata)


def registered_adapters() -> list[AdapterRef]:
    """The adapters under :func:`adapter_home`, by name; unreadable folders are left out
    (a half-written one from a killed ``finetune`` has no config yet)."""
    home = adapter_home()
    found = []
    for folder in sorted(home.iterdir()) if home.is_dir() else []:
        if folder.is_dir() and not folder.name.startswith(".") and _NAME.match(folder.name):
            try:
                found.append(resolve_adapter(folder.name))
            except ModelLoadError:
                continue
    return found


def check_adapter_fits(adapter: AdapterRef, model: ModelRef) -> None:
    """Raise :class:`ConfigError` when ``adapter`` does not fit ``model``.

    An adapter with finetune metadata must name a base with ``model``'s fingerprint.
    Any adapter must target modules ``model`` has, with the shapes its weights have.
    """
    trained_on = adapter.metadata.get("base_fingerprint")
    if trained_on and trained_on != model.fingerprint:
        raise ConfigError(
            f"adapter {adapter.source!r} was trained on "
            f"{adapter.metadata.get('base_model', 'another model')!r}, not on "
            f"{model.source!r} (weights differ); use it with its own base model"
        )
    expected = _expected_shapes(adapter, model)
    stored = _stored_shapes(adapter)
    wrong = sorted(k for k in stored if stored[k] != expected.get(k))
    if wrong:
        key = wrong[0]
        raise ConfigError(
            f"adapter {adapter.source!r} does not fit model {model.source!r}: "
            f"{len(wrong)} of its tensors differ, e.g. {key} is {list(stored[key])}, "
            f"the model needs {list(expected[key]) if key in expected else 'no such tensor'}; "
            "use the base model it was trained on"
        )


def check_unseen(adapter: AdapterRef, problem_ids: Iterable[str], split: str) -> None:
    """Raise :class:`ConfigError` when ``adapter`` was trained on any of ``problem_ids``
    (scoring it there would measure memory, not skill)."""
    seen = set(adapter.metadata.get("train_ids", [])) | set(
        adapter.metadata.get("validation_ids", [])
    )
    overlap = [pid for pid in problem_ids if pid in seen]
    if overlap:
        n_train = adapter.metadata.get("n_train")
        fix = f"run with --train-size {n_train}, as" if n_train else "use the split"
        raise ConfigError(
            f"adapter {adapter.source!r} was trained on {len(overlap)} of this run's "
            f"{split} problems ({', '.join(overlap[:3])}{', ...' if len(overlap) > 3 else ''}); "
            f"{fix} when it was trained"
        )


def attach_adapter(model: Any, adapter: AdapterRef) -> Any:
    """``model`` wrapped with ``adapter`` for inference (a ``peft.PeftModel``)."""

    from peft import PeftModel

    try:
        with quiet_transformers(), _no_future_warnings():
            wrapped = PeftModel.from_pretrained(model, adapter.path, is_trainable=False)
    except (ValueError, RuntimeError, KeyError, OSError) as error:
        raise ModelLoadError(
            f"cannot load adapter {adapter.source!r}: {first_line(error)}"
        ) from error
    if wrapped.active_peft_config.is_prompt_learning:
        _name_the_cache_for_peft(wrapped)
    return wrapped.eval()


# -- helpers ---------------------------------------------------------------------------------


def _name_the_cache_for_peft(wrapped: Any) -> None:
    """Let ``peft`` see the generation cache under the name it reads.

    Newer ``transformers`` hands the KV cache to ``prepare_inputs_for_generation`` as
    ``cache`` instead of ``past_key_values``. ``peft`` decides from ``past_key_values``
    whether the prefix still has to be injected, so it never sees the cache: it injects the
    prefix under the old name on every step, the model keeps the new-named (prefix-less)
    cache, and a prefix-tuned model generates as if untuned. Renaming the key on the way
    into ``peft``'s step and back on the way out restores its intended flow; where
    ``transformers`` still says ``past_key_values`` nothing is renamed.
    """
    base_step = wrapped.base_model_prepare_inputs_for_generation
    peft_step = wrapped.prepare_inputs_for_generation

    @functools.wraps(base_step)  # generate() checks its kwargs against this signature
    def base_step_with_old_name(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return _renamed(base_step(*args, **kwargs), "cache", "past_key_values")

    @functools.wraps(peft_step)
    def peft_step_with_new_name(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return _renamed(peft_step(*args, **kwargs), "past_key_values", "cache")

    wrapped.base_model_prepare_inputs_for_generation = base_step_with_old_name
    wrapped.prepare_inputs_for_generation = peft_step_with_new_name


def _renamed(inputs: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    if old in inputs and new not in inputs:
        inputs[new] = inputs.pop(old)
    return inputs


def _expected_shapes(adapter: AdapterRef, model: ModelRef) -> dict[str, tuple[int, ...]]:
    """The adapter tensors ``model`` needs, by saved name, computed on the meta device."""
    from peft import PeftConfig, get_peft_model, get_peft_model_state_dict

    config = PeftConfig.from_pretrained(adapter.path)
    if config.is_prompt_learning:  # derive the sizes from the model, not the saved config
        config.token_dim = config.num_layers = config.num_attention_heads = None
        config.num_transformer_submodules = None
    base = empty_model(model)
    try:
        with _no_future_warnings():
            wrapped = get_peft_model(base, config)
    except (ValueError, RuntimeError, KeyError, TypeError) as error:
        raise ConfigError(
            f"adapter {adapter.source!r} does not fit model {model.source!r}: {first_line(error)}"
        ) from None
    return {k: tuple(v.shape) for k, v in get_peft_model_state_dict(wrapped).items()}


@contextlib.contextmanager
def _no_future_warnings() -> Iterator[None]:
    """Hide the deprecation warnings peft's calls into transformers raise: they concern
    those libraries' authors, and would only alarm a user."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _stored_shapes(adapter: AdapterRef) -> dict[str, tuple[int, ...]]:
    safetensors_file = adapter.path / "adapter_model.safetensors"
    if safetensors_file.is_file():
        from safetensors import safe_open

        with safe_open(str(safetensors_file), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    bin_file = adapter.path / "adapter_model.bin"
    if bin_file.is_file():
        import torch

        state = torch.load(bin_file, map_location="meta", weights_only=True)
        return {k: tuple(v.shape) for k, v in state.items()}
    raise ModelLoadError(f"adapter {adapter.source!r}: no adapter_model weights in {adapter.path}")


def _read_json(path: Path, what: str, *, missing_ok: bool = False) -> dict[str, Any]:
    if not path.is_file():
        if missing_ok:
            return {}
        raise ModelLoadError(f"{what}: {path.parent} is not a PEFT adapter (no {path.name})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{what}: {path.name} cannot be read: {error}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{what}: {path.name} is not a JSON object")
    return data
