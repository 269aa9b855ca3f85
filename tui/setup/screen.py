"""The setup screen: pick candidates, a task, a budget and the decoding space; start."""

from __future__ import annotations

from collections.abc import Iterator

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import (
    Collapsible,
    Footer,
    Header,
    Input,
    Label,
    Select,
    SelectionList,
    Static,
)
from textual.widgets.selection_list import Selection

from engine import (
    DEFAULT_CANDIDATES,
    DEFAULT_TASK,
    OPTIONS,
    TASKS,
    OpenAIBackend,
    Option,
    Tuner,
    available_models,
    get_task,
    parse_candidate,
    resolve_model,
)
from engine.errors import ConfigError, TunerError
from tui.setup.space_editor import SpaceEditor

#: Prompt styles offered for every model; a candidate is a (model, style) pair.
STYLES = ("chat", "fewshot-1", "rag-1", "raw")
#: (model, style) of the candidates ``codellmtuner run`` compares by default: selected at start.
PRESELECTED = {(c.model, c.style) for c in map(parse_candidate, DEFAULT_CANDIDATES)}
DEFAULT_MODEL = parse_candidate(DEFAULT_CANDIDATES[0]).model


class SetupScreen(Screen):
    """Everything a run needs, with the defaults of ``codellmtuner run`` filled in."""

    BINDINGS = [
        Binding("ctrl+r", "start", "Start run", priority=True),
        Binding("ctrl+o", "history", "History", priority=True),
    ]

    def __init__(self, store_path: str = "samples.db") -> None:
        super().__init__()
        self.store_path = store_path
        self.models: list[str] = []
        self.task_note = ""  # what the task note shows, once the task's data is read

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="setup-body"):
            with Vertical(id="setup-models"):
                yield Label("Candidates (space toggles)", classes="section")
                yield SelectionList[str](id="candidates")
                yield Input(
                    placeholder="+ model folder or org/name, Enter",
                    id="model-source", compact=True,
                )  # fmt: skip
                yield Static("", id="model-note")
            with VerticalScroll(id="setup-settings"):
                yield Label("Run", classes="section")
                with Grid(id="run-fields"):
                    yield Label("task")
                    yield Select(
                        [(name, name) for name in sorted(TASKS)], value=DEFAULT_TASK,
                        allow_blank=False, id="task", compact=True,
                    )  # fmt: skip
                    for option in OPTIONS:
                        if option.main:
                            yield from _labelled(option)
                    yield Label("store")
                    yield Input(self.store_path, id="store", compact=True)
                yield Static("", id="task-note")
                yield Label("Decoding space", classes="section")
                yield SpaceEditor(id="space")
                with Collapsible(title="more run options", id="more"), Grid(id="more-fields"):
                    for option in OPTIONS:
                        if not option.main:
                            yield from _labelled(option)
                    yield Label("run id")
                    yield Input(placeholder="a timestamp", id="run-id", compact=True)
        yield Static("", id="setup-error")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "new run"
        self._add_model(DEFAULT_MODEL, "bundled", select=True)
        self.discover_models()
        self.task_changed()

    @work(thread=True, exclusive=True, group="discover")
    def discover_models(self) -> None:
        """Scan the Hugging Face cache off the UI thread (it can be large)."""
        for choice in available_models():
            if choice.source != DEFAULT_MODEL:
                self.app.call_from_thread(self._add_model, choice.source, choice.description)

    def _add_model(self, source: str, description: str, select: bool = False) -> None:
        if source in self.models:
            return
        self.models.append(source)
        options = self.query_one("#candidates", SelectionList)
        for style in STYLES:
            spec = f"{source}@{style}"
            label = f"{source} · {style}" + (f"  ({description})" if style == STYLES[0] else "")
            preselected = select and (source, style) in PRESELECTED
            options.add_option(Selection(label, spec, initial_state=preselected))

    # -- adding a model by path -------------------------------------------------------------

    @on(Input.Submitted, "#model-source")
    def model_entered(self, event: Input.Submitted) -> None:
        source = event.value.strip()
        if source:
            self.query_one("#model-note", Static).update(f"checking {source} …")
            self.check_model(source)

    @work(thread=True, exclusive=True, group="check-model")
    def check_model(self, source: str) -> None:
        """Resolve a model folder or cached id, or probe the server of a served model
        (``openai:MODEL@URL``), off the UI thread."""
        try:
            served = parse_candidate(source)
            if served.server:
                OpenAIBackend(served.server, served.model)  # asks the server what it does
                where = f"served at {served.server}"
            else:
                where = str(resolve_model(source).path)
        except TunerError as error:
            self.app.call_from_thread(self._model_rejected, str(error))
            return
        self.app.call_from_thread(self._model_accepted, source, where)

    def _model_rejected(self, message: str) -> None:
        self.query_one("#model-note", Static).update(f"[red]{escape(message)}[/]")
        self.query_one("#model-source", Input).add_class("-invalid")

    def _model_accepted(self, source: str, path: str) -> None:
        self.query_one("#model-source", Input).remove_class("-invalid").value = ""
        self.query_one("#model-note", Static).update(f"added {source} ({path})")
        self._add_model(source, "folder", select=False)
        options = self.query_one("#candidates", SelectionList)
        options.select(f"{source}@{STYLES[0]}")

    # -- the task and its data -------------------------------------------------------------

    @on(Select.Changed, "#task")
    @on(Input.Submitted, "#dataset")
    @on(Input.Submitted, "#train-size")
    def task_changed(self) -> None:
        self.describe_task(*self._task_choice())

    def _task_choice(self) -> tuple[str, str | None, str]:
        dataset = self.query_one("#dataset", Input).value.strip() or None
        train = self.query_one("#train-size", Input).value.strip()
        return str(self.query_one("#task", Select).value), dataset, train

    @work(thread=True, exclusive=True, group="task")
    def describe_task(self, name: str, dataset: str | None, train: str) -> None:
        """Load the task's data off the UI thread (building a corpus can take seconds)
        and show its split sizes and default metric, or why the data is refused."""
        choice = (name, dataset, train)
        try:
            task = get_task(name, dataset=dataset, **({"n_train": int(train)} if train else {}))
        except (TunerError, ValueError) as error:
            note = f"[red]{escape(str(error))}[/]"
            self.app.call_from_thread(self._task_described, choice, note, False, "")
            return
        train_n, tune, holdout = (len(task.problems(s)) for s in ("train", "tune", "holdout"))
        note = f"train {train_n} · tune {tune} · holdout {holdout} · {task.metrics[0]}"
        self.app.call_from_thread(self._task_described, choice, note, True, task.description)

    def _task_described(
        self, choice: tuple[str, str | None, str], note: str, ok: bool, description: str
    ) -> None:
        if choice != self._task_choice():
            return  # a slower answer about a task or file no longer chosen
        self.query_one("#task-note", Static).update(note)
        self.query_one("#task-note", Static).tooltip = description or None
        self.query_one("#dataset", Input).set_class(not ok, "-invalid")
        self.task_note = note

    # -- starting ---------------------------------------------------------------------------

    def action_start(self) -> None:
        try:
            tuner = self.build_tuner()
        except TunerError as error:
            self.query_one("#setup-error", Static).update(f"[red]error:[/] {escape(str(error))}")
            return
        self.query_one("#setup-error", Static).update("")
        self.app.start_run(tuner)

    def build_tuner(self) -> Tuner:
        """A tuner from the form; raises :class:`TunerError` with what to fix."""
        candidates = self.query_one("#candidates", SelectionList).selected
        if not candidates:
            raise ConfigError("pick at least one candidate (space toggles one)")
        return Tuner(
            task=self.query_one("#task", Select).value,
            candidates=candidates,
            store=self.query_one("#store", Input).value.strip() or "samples.db",
            space=self.query_one(SpaceEditor).space(),
            run_id=self.query_one("#run-id", Input).value.strip() or None,
            **{option.name: self._value(option) for option in OPTIONS},
        )

    def _value(self, option: Option) -> object:
        field = self.query_one(f"#{_field_id(option)}")
        return option.read(str(field.value))  # type: ignore[attr-defined]

    def action_history(self) -> None:
        self.app.action_history()


def _field_id(option: Option) -> str:
    """The field's id: its flag's name (``--problems`` is ``#problems``)."""
    return option.flag.removeprefix("--")


def _labelled(option: Option) -> Iterator[Widget]:
    """``option``'s label and field, showing its default (or what an empty field means)."""
    yield Label(option.label)
    if option.choices:
        yield Select(
            [(c, c) for c in option.choices], value=option.text(option.default), allow_blank=False,
            id=_field_id(option), compact=True, tooltip=option.help,
        )  # fmt: skip
        return
    kind = {int: "integer", float: "number"}.get(option.parse, "text")
    yield Input(
        option.text(option.default), placeholder=option.none_means, type=kind,  # type: ignore[arg-type]
        id=_field_id(option), compact=True, tooltip=option.help,
    )  # fmt: skip
