"""Textual messages shared between the app's screens and widgets."""

from __future__ import annotations

from textual.message import Message

from engine import Event


class EngineEvent(Message):
    """An engine event, handed from the engine's worker thread to the UI thread."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event
