"""The Textual app: setup, run and history screens over one store."""

from __future__ import annotations

import contextlib

from textual.app import App
from textual.binding import Binding

from engine import Store, Tuner, is_live, live_status
from engine.errors import TunerError
from tui.history.screen import HistoryScreen
from tui.run.launch import launch
from tui.run.screen import RunScreen
from tui.run.sources import FollowedRun, LiveRun, RunSource
from tui.setup.screen import SetupScreen


class CodeLLMTunerApp(App):
    """Pick candidates and a task, start the run as a process of its own and follow its
    ranking live; quitting leaves the run going.

    Args:
        store: the SQLite store the setup screen defaults to and history reads.
        tuner: start this run at once (``codellmtuner run``) or continue it (``resume``).
        watch: follow this run of ``store`` (``codellmtuner watch``).
    """

    TITLE = "CodeLLMTuner"
    CSS_PATH = [
        "styles/app.tcss", "styles/setup.tcss", "styles/run.tcss", "styles/history.tcss",
    ]  # fmt: skip
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+t", "toggle_theme", "Light/dark", show=False),
    ]

    def __init__(
        self, store: str = "samples.db", *, tuner: Tuner | None = None, watch: str | None = None
    ) -> None:
        super().__init__()
        self.store_path = store
        self.live: RunSource | None = None  # the run this app started, if any
        self._start_with = tuner
        self._watch = watch

    def on_mount(self) -> None:
        self.push_screen(SetupScreen(self.store_path))
        if self._start_with is not None:
            self.start_run(self._start_with)
        elif self._watch is not None:
            self.watch_run(self._watch, store=self.store_path)

    # -- navigation -------------------------------------------------------------------------

    def start_run(self, tuner: Tuner) -> None:
        """Start ``tuner``'s run and show it. A task run becomes a process of its own
        (see :mod:`tui.run.launch`); an objective's run, which cannot leave this
        process, runs in a thread of it."""
        self.store_path = tuner.store_path
        try:
            self.live = self._launched(tuner) if tuner.objective is None else LiveRun(tuner)
        except TunerError as error:
            self.notify(str(error), title="cannot start", severity="error", timeout=15)
            return
        self.push_screen(RunScreen(self.live))

    def _launched(self, tuner: Tuner) -> FollowedRun:
        with contextlib.closing(Store(tuner.store_path)) as store:
            known = store.has_run(tuner.run_id)
            status = live_status(store, store.get_run(tuner.run_id)) if known else ""
        if is_live(status):  # resumed while it runs: follow it
            return FollowedRun(tuner.store_path, tuner.run_id)
        if not known:
            tuner.save()
        return FollowedRun(tuner.store_path, tuner.run_id, launch(tuner.run_id, tuner.store_path))

    def watch_run(self, run_id: str, store: str | None = None) -> None:
        """Show a run of the store, following it if it is still going elsewhere."""
        if self.live is not None and self.live.run_id == run_id and self._live_screen():
            self._show_live()
            return
        try:
            source = FollowedRun(store or self.store_path, run_id)
        except TunerError as error:
            self.notify(str(error), severity="error")
            return
        self.push_screen(RunScreen(source))

    def _live_screen(self) -> bool:
        return any(isinstance(s, RunScreen) and s.source is self.live for s in self.screen_stack)

    def _show_live(self) -> None:
        while not (isinstance(self.screen, RunScreen) and self.screen.source is self.live):
            self.pop_screen()

    def action_history(self) -> None:
        if not isinstance(self.screen, HistoryScreen):
            self.push_screen(HistoryScreen(self.store_path))

    def action_new_run(self) -> None:
        while not isinstance(self.screen, SetupScreen):
            self.pop_screen()

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    async def action_quit(self) -> None:
        if isinstance(self.live, LiveRun) and self.live.running:
            # The engine finishes the sample in progress and commits it (tui.commands.app).
            self.live.stop()
        self.exit()  # a run in a process of its own goes on: tui.commands.app says where
