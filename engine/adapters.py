"""PEFT adapters: where they live, what they were trained on, and attaching them.

An adapter is a folder written by ``peft`` (``adapter_config.json`` plus weights). One made
by ``codellmtuner finetune`` also holds :data:`METADATA_FILE`, which records the base model
it was trained on (source and fingerprint), the task and the problems it saw.
Adapters registered by name live under :func:`adapter_home`.
"""

from __future__ import annotations

from pathlib import Path

from engine.models import cache_root

METADATA_FILE = "codellmtuner.json"


def adapter_home() -> Path:
    """The folder of registered adapters: ``<cache>/adapters/<name>/``."""
    return cache_root() / "adapters"
