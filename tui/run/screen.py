"""The run screen: a run's progress, ranking, best parameters, plots and log, live."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, RichLog, TabbedContent, TabPane

from engine import (
    Message,
    RunFailed,
    RunFinished,
    Store,
    model_dir_of,
    stored_candidate,
    write_generation_config,
)
from engine.errors import TunerError
from tui.format import format_params
from tui.messages import EngineEvent
from tui.run.export import ExportScreen
from tui.run.params import BestLine, BestParamsTable
from tui.run.plots import OverlapPlot, RankingPlot, ScorePlot
from tui.run.ranking import RankingTable
from tui.run.sources import RunSource
from tui.run.state import RunState
from tui.run.status import RunStatus

TABS = ("scores", "ranking", "overlap", "params", "log")


class RunScreen(Screen):
    """Shows one run from a :class:`RunSource`; pause, stop and export from the keyboard."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        Binding("p", "pause", "Pause/resume"),
        Binding("s", "stop", "Stop"),
        Binding("e", "export", "Export"),
        Binding("c", "copy", "Copy params"),
        Binding("h", "history", "History"),
        Binding("n", "new_run", "New run", show=False),
        *(Binding(str(i), f"tab('{t}')", t.title(), show=False) for i, t in enumerate(TABS, 1)),
    ]

    def __init__(self, source: RunSource) -> None:
        super().__init__()
        self.source = source
        self.state = RunState(run_id=source.run_id)

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="run-top"):
            yield RunStatus(id="run-status")
            yield RankingTable(id="ranking")
            yield BestLine(id="best-line")
        with TabbedContent(id="run-tabs"):
            with TabPane("Scores [1]", id="scores"):
                yield ScorePlot(id="score-plot")
            with TabPane("Ranking [2]", id="ranking-tab"):
                yield RankingPlot(id="ranking-plot")
            with TabPane("Overlap [3]", id="overlap"):
                yield OverlapPlot(self.source.space(), id="overlap-plot")
            with TabPane("Params [4]", id="params"):
                yield BestParamsTable(id="params-table")
            with TabPane("Log [5]", id="log"):
                yield RichLog(id="log-view", wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        verb = "running" if self.source.started_here else "following"
        self.title = f"{verb} {self.source.run_id}"
        self.sub_title = self.source.store_path
        self.render_state()
        self.set_interval(1.0, self._tick)
        self.source.start(self)

    def _tick(self) -> None:
        self.query_one(RunStatus).show(self.state)

    # -- events from the engine ------------------------------------------------------------

    @on(EngineEvent)
    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        self.state.apply(event)
        if self.state.done:
            self.title = f"{self.state.stage} {self.source.run_id}"
            self.refresh_bindings()  # nothing left to pause or stop
        if isinstance(event, Message):
            self._log(event.level, event.text)
        elif isinstance(event, RunFailed):
            self._log("error", event.error)
            self.notify(event.error, title="run failed", severity="error", timeout=15)
        elif isinstance(event, RunFinished):
            self._finished(event)
        self.render_state()

    def _finished(self, event: RunFinished) -> None:
        if event.stopped:
            self._log("info", f"stopped; resume with: codellmtuner resume {event.run_id}")
        else:
            self._log("info", "finished; press e to export the best configuration")
        if self.source.started_here:  # a run opened from history needs no toast
            title = "run stopped" if event.stopped else "run finished"
            self.notify(f"best: {event.result.best_candidate}", title=title)

    def _log(self, level: str, text: str) -> None:
        style = {"warning": "yellow", "error": "bold red"}.get(level, "")
        self.query_one("#log-view", RichLog).write(Text(f"{level}: {text}", style=style))

    def render_state(self) -> None:
        s = self.state
        self.query_one(RunStatus).show(s)
        self.query_one(RankingTable).show(s)
        self.query_one(BestLine).show(s)
        self.query_one(BestParamsTable).show(s)
        self.query_one(ScorePlot).show(s)
        self.query_one(RankingPlot).show(s)
        self.query_one(OverlapPlot).show(s)

    # -- actions ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("pause", "stop"):
            return self.source.controllable and not self.state.done
        return True

    def action_pause(self) -> None:
        if self.state.paused:
            self.source.unpause()
            self.notify("resumed")
        else:
            self.source.pause()
            self.notify("pausing after the sample in progress")
        self.state.paused = not self.state.paused
        self.render_state()

    def action_stop(self) -> None:
        self.source.stop()
        self.state.paused = False
        self.notify("stopping after the sample in progress; committed samples are kept")

    def action_copy(self) -> None:
        answer = self.state.answer()
        if answer is None:
            self.notify("no sample yet", severity="warning")
            return
        self.app.copy_to_clipboard(json.dumps(answer.best_params, sort_keys=True))
        self.notify(f"copied {answer.best_candidate}: {format_params(answer.best_params)}")

    def action_export(self) -> None:
        answer = self.state.answer()
        if answer is None:
            self.notify("no sample yet; nothing to export", severity="warning")
            return
        summary = f"{answer.best_candidate}: {format_params(answer.best_params)}"
        store = self.source.store_path  # beside the store's file; a server's: right here
        base = Path() if Store.is_url(store) else Path(store).parent
        default = base / f"export-{self.state.run_id}"

        def write(folder: Path | None) -> None:
            if folder is None:
                return
            try:
                with contextlib.closing(Store(self.source.store_path)) as store:
                    run = store.get_run(self.state.run_id)
                model_dir = model_dir_of(stored_candidate(run, answer.best_candidate))
                path = write_generation_config(answer.best_params, folder, model_dir=model_dir)
            except (OSError, TunerError) as error:
                self.notify(f"cannot export: {error}", severity="error")
                return
            self._log("info", f"wrote {path}")
            self.notify(f"wrote {path}", title="exported")

        self.app.push_screen(ExportScreen(default, summary), write)

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = "ranking-tab" if tab == "ranking" else tab

    def action_history(self) -> None:
        self.app.action_history()

    def action_new_run(self) -> None:
        self.app.action_new_run()
