"""The export dialog: where to write the best configuration."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class ExportScreen(ModalScreen[Path | None]):
    """Asks for a folder; dismisses with it (Enter) or None (Escape)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: Path, summary: str) -> None:
        super().__init__()
        self.default = default
        self.summary = summary

    def compose(self) -> ComposeResult:
        with Vertical(id="export-dialog"):
            yield Label("Export generation_config.json", classes="dialog-title")
            yield Label(self.summary, id="export-summary")
            yield Input(str(self.default), id="export-path", compact=True)
            yield Label("Enter: write  ·  Esc: cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        self.dismiss(Path(text).expanduser() if text else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
