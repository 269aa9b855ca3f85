"""Writing the answer of a run where other tools can use it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.space import generation_kwargs

FORMATS = ("generation-config", "json")


def write_generation_config(params: Mapping[str, Any], directory: str | Path) -> Path:
    """Save ``params`` as ``generation_config.json`` in ``directory``.

    ``transformers.GenerationConfig.from_pretrained(directory)`` loads it back.
    """
    from transformers import GenerationConfig

    kwargs = {k: v for k, v in generation_kwargs(params).items() if v is not None}
    config = GenerationConfig(**kwargs)
    config.validate(strict=True)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory)
    return directory / "generation_config.json"


def write_json(summary: Mapping[str, Any], directory: str | Path) -> Path:
    """Save a run's answer (candidate, model, params, scores) as ``codellmtuner.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "codellmtuner.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return path
