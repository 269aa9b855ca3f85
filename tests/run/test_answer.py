"""One answer of a run: whenever it ends, the tuner, a viewer of the store (the app),
``show`` and ``export`` name the same candidate and parameters."""

from __future__ import annotations

import json

import pytest

from engine import SampleRecorded, Store, Tuner, TuneResult
from engine.run import RunFollower
from tui.commands import main
from tui.format import format_params
from tui.run.state import RunState


def spiky(candidate: str, params: dict) -> float:
    """ "a" is poor at the default point every candidate starts from and excellent anywhere
    else, "b" the reverse of that at the start. Today's ranking, which compares candidates
    where their samples overlap (the default point), leads with "b" while "a" holds the
    best sample of all: the answer must be the leader's best, everywhere alike."""
    if candidate == "a":
        return 0.1 if params["max_new_tokens"] == 256 else 0.95
    return {"b": 0.6, "c": 0.3}[candidate] + 0.1 * params["temperature"]


def _run(path, stop_in: str | None) -> TuneResult:
    """A run that stops after its seventh sample of stage ``stop_in`` (None: never)."""
    tuner = Tuner(objective=spiky, candidates=["a", "b", "c"], budget=30, seed=3,
                  store=path, run_id="r")  # fmt: skip
    counts = {"sampling": 0, "tuning": 0}

    def stop(event):
        if isinstance(event, SampleRecorded) and event.sample.stage in counts:
            counts[event.sample.stage] += 1
            if event.sample.stage == stop_in and counts[stop_in] == 7:
                tuner.stop()

    tuner.subscribe(stop)
    return tuner.run()


def _as_the_app_sees_it(path) -> TuneResult:
    state = RunState()
    for event in RunFollower(Store(path), "r").poll():
        state.apply(event)
    return state.answer()


@pytest.mark.parametrize("stop_in", ["sampling", "tuning", None])
def test_export_the_apps_export_and_show_name_the_same_parameters(
    stop_in, tmp_path, capsys, monkeypatch
):
    path = tmp_path / "samples.db"
    live = _run(path, stop_in)
    run = Store(path).get_run("r")
    assert run.status == ("finished" if stop_in is None else "stopped")
    assert run.winner == (None if stop_in == "sampling" else live.best_candidate)

    app = _as_the_app_sees_it(path)
    assert (app.best_candidate, app.best_params) == (live.best_candidate, live.best_params)

    out = tmp_path / "export"
    assert main(["export", "r", "--format", "json", "-o", str(out), "--store", str(path)]) == 0
    exported = json.loads((out / "codellmtuner.json").read_text())
    assert (exported["candidate"], exported["params"]) == (live.best_candidate, live.best_params)

    monkeypatch.setenv("COLUMNS", "300")  # one line per row: the parameters are not wrapped
    capsys.readouterr()
    assert main(["show", "r", "--store", str(path)]) == 0
    shown = capsys.readouterr().out
    assert f"best: {live.best_candidate} {format_params(live.best_params)}" in shown
