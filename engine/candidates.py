"""Candidates: what the tuner chooses between.

A candidate is a model plus the way it is prompted. On the command line it is written
``[NAME=]MODEL[@STYLE]``:

``smollm2``                       the bundled SmolLM2-135M-Instruct, chat template
``smollm2@raw``                   the same model continuing the raw prompt
``fewshot=smollm2@fewshot-2``     two worked examples first, named ``fewshot``
``./my-model@chat``               a local transformers folder
``org/name``                      a model in the local Hugging Face cache
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import PurePath

from engine.errors import ConfigError
from engine.prompting import parse_style


@dataclass(frozen=True)
class Candidate:
    name: str
    model: str
    style: str = "chat"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def parse_candidate(spec: str) -> Candidate:
    """Parse ``[NAME=]MODEL[@STYLE]``; the style is validated, the model is not (yet)."""
    spec = spec.strip()
    name, sep, rest = spec.partition("=")
    if not sep:
        name, rest = "", spec
    model, at, style = rest.rpartition("@")
    if not at:
        model, style = rest, "chat"
    if not model:
        raise ConfigError(f"candidate {spec!r}: no model given; expected [NAME=]MODEL[@STYLE]")
    style = str(parse_style(style))
    if not name:
        base = PurePath(model.rstrip("/")).name or model
        name = base if style == "chat" else f"{base}@{style}"
    name = name.strip()
    if not name.isprintable():  # control characters, or bytes that are not UTF-8
        raise ConfigError(
            f"candidate {spec!r}: the name {name!r} has unprintable characters; "
            "name it with NAME=MODEL"
        )
    return Candidate(name=name, model=model, style=style)


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
