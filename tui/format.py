"""Small text formatting shared by the headless view and the app."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console

from engine import CI_HIGH, CI_LOW

if TYPE_CHECKING:
    pass

#: The width of a console that is not a terminal: wide enough that no line is ever
#: wrapped or a table cell cut short, whatever it holds.
UNWRAPPED_WIDTH = 100_000


def output_console(file: IO[str] | None = None) -> Console:
    """A console on ``file`` (default: stdout, looked up at each print). A terminal keeps
    its width; anything else (a log file, a pipe) gets one line per line printed: lines
    are not wrapped and tables are as wide as their cells.

    Rich gives a non-terminal 80 columns, which would break a run's log mid-record (a
    sample's line at its parameters, a candidate's name in a table) for whoever greps it.
    """
    console = Console(file=file)
    if console.is_terminal:
        return console
    return Console(file=file, width=UNWRAPPED_WIDTH, soft_wrap=True)


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
    """A score for a table cell: ``"–"`` for NaN (a candidate without samples), and no
    ``"-0.000"`` for a value that rounds to zero from below (an interval's end, say).

    >>> number(-0.0001), number(0.1234), number(float("nan"))
    ('0.000', '0.123', '–')
    """
    if value is None or not math.isfinite(value):
        return "–"
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def format_metrics(metrics: Mapping[str, float], limit: int | None = None) -> str:
    """``"avg_tests 0.528 (90% CI 0.41-0.64), pass@1 0.000, asserts 3"``: counts without
    decimals, a metric's interval beside it (held-out scores have one); the first
    ``limit`` metrics only (the first is the task's default objective)."""
    bounds = {k for k in metrics if k.endswith((CI_LOW, CI_HIGH))}
    items = [(k, v) for k, v in metrics.items() if k not in bounds][:limit]
    return ", ".join(f"{k} {_metric_value(v)}{_interval(metrics, k)}" for k, v in items)


def _interval(metrics: Mapping[str, float], name: str) -> str:
    low, high = metrics.get(name + CI_LOW), metrics.get(name + CI_HIGH)
    if low is None or high is None:
        return ""
    return f" (90% CI {number(low)}-{number(high)})"


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


def budget_used(store: Any, run: Any, *, explain: bool = False) -> str:
    """``"5/9 samples"``: what a stored run has spent of its budget, in the budget's unit;
    with ``explain``, a samples budget over by a fraction says why
    (:meth:`engine.Budget.format_over`)."""
    from engine import RunSpec

    budget = RunSpec.of_run(run).settings.budget
    used = budget.spent(store.samples(run.id))
    why = budget.format_over(used) if explain else ""
    return f"{budget.format_used(used)} ({why})" if why else budget.format_used(used)
