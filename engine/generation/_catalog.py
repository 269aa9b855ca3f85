"""What a picker offers: the models and adapters this machine already has.

Nothing here loads or converts a model; :mod:`engine.generation._models` resolves the one a user
picks, and :mod:`engine.generation._adapters` the adapter on top of it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import scan_cache_dir

from engine.generation._adapters import registered_adapters
from engine.generation._models import BUNDLED_PACKAGE

_MIB = 1 << 20


@dataclass(frozen=True)
class ModelChoice:
    """A model the machine has, for a picker: ``source`` is what a candidate names."""

    source: str
    description: str


def available_models(hub_cache: str | Path | None = None) -> list[ModelChoice]:
    """The bundled model (if its package is installed), the adapters ``codellmtuner
    finetune`` registered (as ``BASE+ADAPTER``) and every model in the Hugging Face cache
    that has a ``config.json``; nothing is loaded or converted.

    ``hub_cache`` overrides the cache folder (default: the hub's own setting).
    """
    found: list[ModelChoice] = []
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is not None:
        found.append(ModelChoice("smollm2", "bundled SmolLM2-135M-Instruct"))
    for adapter in registered_adapters():
        meta = adapter.metadata
        if meta.get("base_model"):
            what = f"{meta.get('method', adapter.peft_type.lower())} adapter"
            trained = f", trained on {meta['task']} (train size {meta.get('n_train', '?')})"
            description = what + (trained if meta.get("task") else "")
            found.append(ModelChoice(f"{meta['base_model']}+{adapter.source}", description))
    try:
        cache = scan_cache_dir(hub_cache)
    except Exception:  # no cache folder, or one the hub library cannot read: nothing to list
        return found
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        revisions = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
        if revisions and (revisions[0].snapshot_path / "config.json").is_file():
            size = repo.size_on_disk / _MIB
            found.append(ModelChoice(repo.repo_id, f"hub cache, {size:,.0f} MiB"))
    return found
