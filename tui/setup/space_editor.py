"""Editable decoding ranges: one row per parameter, low and high, defaults filled in."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import Input, Label

from engine import PARAM_NAMES, SearchSpace
from engine.errors import ConfigError

LABELS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "repetition_penalty": "rep. penalty",
    "max_new_tokens": "max tokens",
}


class SpaceEditor(Grid):
    """Low/high inputs for every parameter; :meth:`space` validates them into a
    :class:`SearchSpace` (low == high fixes a parameter; temperature 0 means greedy)."""

    def compose(self) -> ComposeResult:
        defaults = SearchSpace().to_dict()
        yield Label("parameter", classes="grid-head")
        yield Label("low", classes="grid-head")
        yield Label("high", classes="grid-head")
        for name in PARAM_NAMES:
            r = defaults[name]
            yield Label(LABELS[name])
            yield Input(_fmt(r["low"]), id=f"{name}-low", compact=True, type="number")
            yield Input(_fmt(r["high"]), id=f"{name}-high", compact=True, type="number")

    def space(self) -> SearchSpace:
        """The ranges as typed; raises :class:`ConfigError` naming the bad parameter."""
        ranges: dict[str, Any] = {}
        for name in PARAM_NAMES:
            low = self._value(name, "low")
            high = self._value(name, "high")
            ranges[name] = [low, high]
        return SearchSpace(ranges)

    def _value(self, name: str, end: str) -> float:
        text = self.query_one(f"#{name}-{end}", Input).value.strip()
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{LABELS[name]}: {end} {text!r} is not a number") from None
        return int(value) if value.is_integer() else value


def _fmt(value: float) -> str:
    return f"{value:g}"
