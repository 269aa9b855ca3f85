"""The history screen: past runs in the store; open one to see and replay it."""

from __future__ import annotations

import contextlib
import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from engine import RunSpec, Store
from engine.errors import TunerError
from tui.format import budget_used, format_metrics

# The long candidates list last, so an 80-column terminal shows what matters first.
COLUMNS = ("run", "status", "budget", "winner", "held-out", "started", "task", "candidates")


class HistoryScreen(Screen):
    """Every run of one store, newest first. Enter opens a run."""

    BINDINGS = [
        Binding("enter", "open", "Open", show=True, priority=True),
        Binding("r", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, store_path: str) -> None:
        super().__init__()
        self.store_path = store_path

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="history-note")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "history"
        self.sub_title = self.store_path
        table = self.query_one(DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        self.action_refresh()

    def action_refresh(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        if not Store.exists(self.store_path):
            self.query_one("#history-note", Static).update(f"no store at {self.store_path} yet")
            return
        try:
            with contextlib.closing(Store(self.store_path)) as store:
                runs = store.runs()
                used = {run.id: budget_used(store, run) for run in runs}
        except TunerError as error:
            self.query_one("#history-note", Static).update(f"error: {error}")
            return
        for run in reversed(runs):
            spec = RunSpec.of_run(run)
            holdout = (run.result or {}).get("holdout") or {}
            table.add_row(
                run.id,
                run.status,
                used[run.id],
                run.winner or "",
                format_metrics(holdout, limit=2),
                time.strftime("%m-%d %H:%M", time.localtime(run.created_at)),
                spec.task or "objective",
                ", ".join(spec.names),
                key=run.id,
            )
        plural = "run" if len(runs) == 1 else "runs"
        note = f"{len(runs)} {plural} in {self.store_path}" if runs else "no runs yet"
        self.query_one("#history-note", Static).update(note + "  ·  Enter opens a run")

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        run_id = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.app.watch_run(run_id)

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
