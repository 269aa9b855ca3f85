"""The run's header line: stage, budget spent and left, elapsed and remaining time."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from engine import format_amount
from tui.format import duration
from tui.run.ranking import bar
from tui.run.state import RunState

STAGE_STYLES = {"finished": "green", "stopped": "yellow", "failed": "red", "paused": "yellow"}


class RunStatus(Static):
    """Re-rendered on every event and once a second (for the clocks)."""

    def show(self, state: RunState) -> None:
        self.update(status_text(state, time.time()))


def status_text(state: RunState, now: float) -> Text:
    stage = "paused" if state.paused and not state.done else state.stage
    detail = f" ({state.stage_detail})" if state.stage_detail and not state.done else ""
    used, budget = state.budget_used, state.budget
    unit = state.budget_unit
    amount = f"{format_amount(used, unit)}/{format_amount(budget, unit)} {unit}"
    fraction = used / budget if budget else 0.0
    left = "" if state.done else f" · ~{duration(state.remaining(now))} left"
    return Text.assemble(
        (f"{stage}", f"bold {STAGE_STYLES.get(stage, 'cyan')}"),
        detail,
        "  ",
        (bar(fraction, 12), "green"),
        f" {amount} · {duration(state.elapsed(now))} elapsed{left}",
    )
