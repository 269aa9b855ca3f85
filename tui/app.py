"""The Textual app: setup, run and history screens over one store."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding

from engine import Tuner
from engine.errors import TunerError
from tui.history.screen import HistoryScreen
from tui.run.screen import RunScreen
from tui.run.sources import FollowedRun, LiveRun
from tui.setup.screen import SetupScreen


class CodeLLMTunerApp(App):
    """Pick candidates and a task, run the tuner in a worker, watch the PSM ranking live.

    Args:
        store: the SQLite store the setup screen defaults to and history reads.
        tuner: start this run at once (``codellmtuner run``).
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
        self.live: LiveRun | None = None
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
        """Run ``tuner`` in a worker and show it; one live run at a time."""
        if self.live is not None and self.live.running:
            self.notify("a run is already going; stop it first (s)", severity="warning")
            return
        self.store_path = tuner.store_path
        self.live = LiveRun(tuner)
        self.push_screen(RunScreen(self.live))

    def watch_run(self, run_id: str, store: str | None = None) -> None:
        """Show a run of the store, following it if it is still going elsewhere."""
        if self.live is not None and self.live.run_id == run_id and self.live.running:
            self._show_live()
            return
        try:
            source = FollowedRun(store or self.store_path, run_id)
        except TunerError as error:
            self.notify(str(error), severity="error")
            return
        self.push_screen(RunScreen(source))

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
        if self.live is not None and self.live.running:
            # The engine finishes the sample in progress and commits it; see tui.cli.
            self.live.stop()
        self.exit()
