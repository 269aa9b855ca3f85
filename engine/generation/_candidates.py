"""Candidates: what the tuner chooses between.

A candidate is a model, optionally adapted (a PEFT adapter) and quantized, plus the way it
is prompted. On the command line it is written ``[NAME=]MODEL[+ADAPTER][@STYLE][:QUANT]``:

``smollm2``                       the bundled SmolLM2-135M-Instruct, chat template
``smollm2@raw``                   the same model continuing the raw prompt
``icl=smollm2@fewshot-2``         two seeded train examples first (ICL-2), named ``icl``
``rag=smollm2@rag-3``             the three most similar train examples first (RAG-3)
``lora=smollm2+lora-humaneval``   with a registered adapter (``codellmtuner finetune``)
``smollm2+./adapters/ia3``        with an adapter folder
``smollm2:nf4``                   loaded 4-bit (NF4) through bitsandbytes; ``:int8`` 8-bit
``./my-model@chat``               a local transformers folder
``org/name``                      a model in the local Hugging Face cache
``qwen=openai:Qwen/Qwen2.5-Coder-1.5B@http://gpu3:8000/v1``
                                  a model an OpenAI-compatible server serves (vLLM,
                                  ``transformers serve``, ...): ``openai:MODEL@URL[@STYLE]``;
                                  no adapter or quantization (the server has its weights)

A folder whose own name contains ``+`` is read as a whole when it exists.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePath

from engine.errors import ConfigError
from engine.generation._prompting import parse_style
from engine.generation._quantization import parse_quantization

SERVED = "openai:"

SPEC = "[NAME=]MODEL[+ADAPTER][@STYLE][:QUANT] or [NAME=]openai:MODEL@URL[@STYLE]"


@dataclass(frozen=True)
class Candidate:
    """``model`` is a model source (:func:`engine.generation.resolve_model`), ``adapter`` an
    adapter folder or registered name (:func:`engine.generation.resolve_adapter`),
    ``quantization`` ``"int8"``, ``"nf4"`` or ``None``, ``style`` a prompt style;
    ``server`` the base URL of the OpenAI-compatible server serving ``model`` (its id
    there), or ``None`` for a model loaded in process."""

    name: str
    model: str
    style: str = "chat"
    adapter: str | None = None
    quantization: str | None = None
    server: str | None = None

    @property
    def weights(self) -> tuple[str, str | None, str | None, str | None]:
        """What is loaded: candidates with equal ``weights`` share one loaded model (or
        one server connection)."""
        return (self.model, self.adapter, self.quantization, self.server)

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def parse_candidate(spec: str) -> Candidate:
    """Parse ``[NAME=]MODEL[+ADAPTER][@STYLE][:QUANT]`` or ``[NAME=]openai:MODEL@URL[@STYLE]``;
    the style, quantization and URL are validated, the model and adapter are not (yet)."""
    spec = spec.strip()
    name, sep, rest = spec.partition("=")
    if not sep:
        name, rest = "", spec
    if rest.startswith(SERVED):
        candidate = _served(spec, name, rest.removeprefix(SERVED))
    else:
        candidate = _loaded(spec, name, rest)
    if not candidate.name.isprintable():  # control characters, or bytes that are not UTF-8
        raise ConfigError(
            f"candidate {spec!r}: the name {candidate.name!r} has unprintable characters; "
            "name it with NAME=MODEL"
        )
    return candidate


def _loaded(spec: str, name: str, rest: str) -> Candidate:
    """``MODEL[+ADAPTER][@STYLE][:QUANT]``: a model loaded in process."""
    rest, quantization = _split_quantization(rest)
    model, at, style = rest.rpartition("@")
    if not at:
        model, style = rest, "chat"
    model, adapter = _split_adapter(model)
    if not model:
        raise ConfigError(f"candidate {spec!r}: no model given; expected {SPEC}")
    if adapter == "":
        raise ConfigError(f"candidate {spec!r}: no adapter after '+'; expected {SPEC}")
    style = str(parse_style(style))
    name = name.strip() or _default_name(model, adapter, style, quantization)
    return Candidate(name, model, style, adapter, quantization)


def _served(spec: str, name: str, rest: str) -> Candidate:
    """``MODEL@URL[@STYLE]`` after ``openai:``. The URL must be http(s) with a host and is
    kept without a trailing slash; a style is a last ``@`` part with no ``/`` or ``:``."""
    head, at, style = rest.rpartition("@")
    if not at or "/" in style or ":" in style or "@" not in head:
        head, style = rest, "chat"
    model, at, url = head.partition("@")
    parts = urllib.parse.urlsplit(url)
    if not model or not at or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"candidate {spec!r}: expected [NAME=]{SERVED}MODEL@http://HOST:PORT/v1[@STYLE]"
        )
    style = str(parse_style(style))
    name = name.strip() or _default_name(model, None, style, None)
    return Candidate(name, model, style, server=url.rstrip("/"))


def _split_quantization(text: str) -> tuple[str, str | None]:
    head, colon, tail = text.rpartition(":")
    if not colon or _exists(text):  # a folder whose name has a colon
        return text, None
    return head, parse_quantization(tail)


def _split_adapter(model: str) -> tuple[str, str | None]:
    """``MODEL+ADAPTER`` split at the first ``+``, unless the whole names a folder."""
    base, plus, adapter = model.partition("+")
    if not plus or _exists(model):
        return model, None
    return base, adapter


def _exists(path: str) -> bool:
    """Whether ``path`` names a file or folder; ``False`` for names no file can have
    (too long, a NUL byte, ``~unknown-user``)."""
    try:
        return Path(path).expanduser().exists()
    except (OSError, RuntimeError, ValueError):
        return False


def _default_name(model: str, adapter: str | None, style: str, quantization: str | None) -> str:
    name = PurePath(model.rstrip("/")).name or model
    if adapter:
        name += "+" + (PurePath(adapter.rstrip("/")).name or adapter)
    if style != "chat":
        name += f"@{style}"
    return name + (f":{quantization}" if quantization else "")


def unique_names(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Check that names are unique (they key studies and samples)."""
    candidates = list(candidates)
    seen: set[str] = set()
    for c in candidates:
        if c.name in seen:
            raise ConfigError(f"two candidates are named {c.name!r}; name one with NAME=MODEL")
        seen.add(c.name)
    if not candidates:
        raise ConfigError("no candidates given; add --candidate MODEL[@STYLE] (e.g. smollm2)")
    return candidates
