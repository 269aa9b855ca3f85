"""Train / tune / holdout splits fixed by the data, not by a run's seed.

Each problem gets a number u in [0, 1) from a SHA-256 of its id; ``u < holdout_fraction``
is ``holdout``; of the rest, the ``n_train`` with the smallest u form the few-shot and
retrieval pool ``train`` and the others are ``tune``. Adding problems to a file never
moves an existing problem into or out of ``holdout``. Within a split problems are ordered
by u, so any prefix (a ``tune_size``) is a pseudo-random sample rather than the first
problems of the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from engine.errors import ConfigError
from engine.tasks.base import Problem

__all__ = ["split_by_hash", "unit_hash"]

_SALT = "codellmtuner-split-v1"


def split_by_hash(
    problems: Sequence[Problem], holdout_fraction: float, n_train: int
) -> dict[str, list[Problem]]:
    """``{"train": ..., "tune": ..., "holdout": ...}``; ``n_train`` is capped at half of
    the non-holdout problems so a small file keeps most of it for tuning."""
    if not 0.0 <= holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction must be in [0, 1), got {holdout_fraction!r}")
    if not isinstance(n_train, int) or n_train < 0:
        raise ConfigError(f"n_train must be a whole number >= 0, got {n_train!r}")
    ranked = sorted(problems, key=lambda p: (unit_hash(p.id), p.id))
    holdout = [p for p in ranked if unit_hash(p.id) < holdout_fraction]
    rest = [p for p in ranked if unit_hash(p.id) >= holdout_fraction]
    n_train = min(n_train, len(rest) // 2)
    return {"train": rest[:n_train], "tune": rest[n_train:], "holdout": holdout}


def unit_hash(problem_id: str) -> float:
    """A number in [0, 1) fixed by ``problem_id``."""
    digest = hashlib.sha256(f"{_SALT}:{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64
