"""Small text formatting shared by the headless view and the app."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def duration(seconds: float | None) -> str:
    """``"42s"``, ``"3m05s"``, ``"2h07m"``; ``"?"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def number(value: float, digits: int = 3) -> str:
    """A score for a table cell: ``"–"`` for NaN (a candidate without samples)."""
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def format_metrics(metrics: Mapping[str, float], limit: int | None = None) -> str:
    """``"avg_tests 0.528, pass@1 0.000, asserts 3"``: counts without decimals; the
    first ``limit`` metrics only (the first is the task's default objective)."""
    items = list(metrics.items())[:limit]
    return ", ".join(f"{k} {_metric_value(v)}" for k, v in items)


def _metric_value(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) > 1:
        return str(int(value))
    return number(value)


def format_params(params: Mapping[str, Any]) -> str:
    """``T=0.70 top_p=0.95 top_k=40 rep=1.05 max=256`` (``greedy`` for T=0)."""
    t = float(params.get("temperature", 0.0))
    parts = ["greedy"] if t == 0 else [f"T={t:.2f}"]
    if "top_p" in params:
        parts.append(f"top_p={float(params['top_p']):.2f}")
    if "top_k" in params:
        parts.append(f"top_k={int(params['top_k'])}")
    if "repetition_penalty" in params:
        parts.append(f"rep={float(params['repetition_penalty']):.2f}")
    if "max_new_tokens" in params:
        parts.append(f"max={int(params['max_new_tokens'])}")
    return " ".join(parts)


def budget_used(store: Any, run: Any) -> str:
    """``"5/9 samples"``: what a stored run has spent of its budget, in the budget's unit."""
    from engine import Budget

    budget = Budget.of_run(run)
    return budget.format_used(budget.spent(store.samples(run.id)))
