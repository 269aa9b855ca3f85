"""The Textual app driven through Textual's pilot: setup, live run, history, export."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from textual.widgets import DataTable, Input, Select, SelectionList, Static

from engine import Store, Tuner
from tests import ROOT
from tests.apphelpers import finished_store, run_app, wait_until
from tests.objectives import landscape
from tui.app import CodeLLMTunerApp
from tui.history.screen import HistoryScreen
from tui.run.screen import RunScreen
from tui.run.sources import FollowedRun
from tui.setup.screen import SetupScreen


def slow_landscape(candidate, params):
    time.sleep(0.25)
    return landscape(candidate, params)


def _run_screen(app) -> RunScreen:
    assert isinstance(app.screen, RunScreen), app.screen
    return app.screen


def test_a_live_run_fills_the_ranking_and_pauses_resumes_and_stops(tmp_path):
    path = tmp_path / "samples.db"
    tuner = Tuner(objective=slow_landscape, candidates=["a", "b", "c"], budget=40, seed=0,
                  store=path, run_id="live")  # fmt: skip
    app = CodeLLMTunerApp(str(path), tuner=tuner)

    async def test(pilot):
        screen = _run_screen(app)
        state = screen.state
        await wait_until(pilot, lambda: len(state.samples) >= 3)
        table = screen.query_one("#ranking", DataTable)
        assert table.row_count == 3
        assert {str(table.get_row_at(i)[1]) for i in range(3)} == {"a", "b", "c"}

        await pilot.press("p")
        await wait_until(pilot, lambda: tuner._running.is_set() is False)
        await pilot.pause(0.6)  # the sample in progress commits, then nothing more
        paused_at = len(state.samples)
        await pilot.pause(0.8)
        assert len(state.samples) == paused_at
        assert "paused" in str(screen.query_one("#run-status", Static).render())

        await pilot.press("p")
        await wait_until(pilot, lambda: len(state.samples) > paused_at)

        await pilot.press("s")
        # The engine thread posts its stop event just before it ends.
        await wait_until(pilot, lambda: state.done and not app.live.running)
        assert state.stopped
        assert str(table.get_row_at(0)[1]) == state.ranking[0].candidate
        seen.extend(state.samples)

    seen = []
    run_app(app, test)
    store = Store(path)
    assert store.get_run("live").status == "stopped"
    assert store.samples("live") == seen and 0 < len(seen) < 40  # all shown, all kept


def test_export_writes_a_generation_config_that_loads(tmp_path):
    from transformers import GenerationConfig

    path = finished_store(tmp_path / "samples.db")
    app = CodeLLMTunerApp(str(path), watch="latest")
    out = tmp_path / "exported"

    async def test(pilot):
        screen = _run_screen(app)
        await wait_until(pilot, lambda: screen.state.done)
        await pilot.press("e")
        field = app.screen.query_one("#export-path", Input)
        field.value = str(out)
        await pilot.press("enter")
        await wait_until(pilot, lambda: (out / "generation_config.json").exists())
        params = screen.state.answer().best_params
        config = GenerationConfig.from_pretrained(out)
        assert config.max_new_tokens == params["max_new_tokens"]
        assert config.do_sample == (params["temperature"] > 0)

    run_app(app, test)


def test_history_lists_runs_and_opens_one_with_its_final_ranking(tmp_path):
    path = finished_store(tmp_path / "samples.db")
    Tuner(objective=landscape, candidates=["a", "b"], budget=4, store=path, run_id="second").run()
    result = Store(path).get_run("20261123-120000-demo").result
    app = CodeLLMTunerApp(str(path))

    async def test(pilot):
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, HistoryScreen)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 2
        assert str(table.get_row_at(0)[0]) == "second"  # newest first
        await pilot.press("down", "enter")
        screen = _run_screen(app)
        assert isinstance(screen.source, FollowedRun)
        await wait_until(pilot, lambda: screen.state.done)
        assert screen.state.result.best_candidate == result["best_candidate"]
        assert [e.candidate for e in screen.state.ranking] == [
            e["candidate"] for e in result["ranking"]
        ]
        assert len(screen.state.ranking_history) == 12  # the ranking after every sample
        assert ("warning", "out of memory at batch 8; retrying with 4") in screen.state.messages

    run_app(app, test)


def test_an_invalid_model_folder_is_refused_and_nothing_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "weights.txt").write_text("hello")
    app = CodeLLMTunerApp("samples.db")

    async def test(pilot):
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        await app.workers.wait_for_complete()  # models found in the caches are listed
        before = list(screen.query_one("#candidates", SelectionList)._options)
        source = screen.query_one("#model-source", Input)
        source.focus()
        source.value = str(tmp_path / "notamodel")
        await pilot.press("enter")
        note = screen.query_one("#model-note", Static)
        await wait_until(pilot, lambda: "config.json" in str(note.render()))
        assert "not a model folder" in str(note.render())
        assert list(screen.query_one("#candidates", SelectionList)._options) == before
        assert source.has_class("-invalid")

    run_app(app, test)
    assert not (tmp_path / "samples.db").exists()


def test_the_task_note_shows_splits_or_why_a_dataset_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.jsonl").write_text('{"intent": "sort l"}\n')
    app = CodeLLMTunerApp("samples.db")

    async def test(pilot):
        screen = app.screen
        await wait_until(pilot, lambda: screen.task_note)
        assert screen.task_note == "train 8 · tune 121 · holdout 35 · avg_tests"
        train = screen.query_one("#train-size", Input)
        train.focus()
        train.value = "40"
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.task_note.startswith("train 40 · tune 89"))
        screen.query_one("#task", Select).value = "conala"
        await wait_until(pilot, lambda: screen.task_note.endswith("codebleu"))
        dataset = screen.query_one("#dataset", Input)
        dataset.focus()
        dataset.value = "mine.jsonl"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "mine.jsonl:1" in screen.task_note)
        assert "field 'snippet' is missing" in screen.task_note and dataset.has_class("-invalid")

    run_app(app, test)
    assert not (tmp_path / "samples.db").exists()


def test_form_errors_are_shown_and_nothing_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = CodeLLMTunerApp("samples.db")

    async def test(pilot):
        screen = app.screen
        error = screen.query_one("#setup-error", Static)
        screen.query_one("#temperature-low", Input).value = "2"
        await pilot.press("ctrl+r")
        assert "temperature: low 2" in str(error.render())
        screen.query_one("#temperature-low", Input).value = "0"
        screen.query_one("#budget", Input).value = "2"
        await pilot.press("ctrl+r")
        assert "budget 2 is too small for 3 candidates" in str(error.render())
        screen.query_one("#candidates", SelectionList).deselect_all()
        await pilot.press("ctrl+r")
        assert "pick at least one candidate" in str(error.render())
        assert isinstance(app.screen, SetupScreen)

    run_app(app, test)
    assert not (tmp_path / "samples.db").exists()


@pytest.mark.slow
def test_setup_starts_a_real_run_of_a_tiny_model(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    app = CodeLLMTunerApp("samples.db")

    async def test(pilot):
        screen = app.screen
        candidates = screen.query_one("#candidates", SelectionList)
        candidates.deselect_all()
        source = screen.query_one("#model-source", Input)
        source.value = str(tiny_model_dir)
        source.focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: f"{tiny_model_dir}@chat" in candidates.selected)
        candidates.select(f"{tiny_model_dir}@raw")
        screen.query_one("#budget", Input).value = "4"
        screen.query_one("#problems", Input).value = "1"
        screen.query_one("#max_new_tokens-high", Input).value = "16"
        screen.query_one("#max_new_tokens-low", Input).value = "8"
        await pilot.press("ctrl+r")
        run = _run_screen(app)
        # The run is a process of its own, followed through the store.
        assert isinstance(run.source, FollowedRun) and run.source.launched is not None
        await wait_until(pilot, lambda: run.state.done, timeout=240)
        assert run.state.error is None, run.state.error
        assert len(run.state.tuning_samples()) == 4
        assert run.query_one("#ranking", DataTable).row_count == 2

    run_app(app, test)
    assert app.live.launched.process.wait(timeout=60) == 0
    store = Store(tmp_path / "samples.db")
    assert len(store.samples(store.get_run("latest").id)) == 5  # 4 + the held-out score


@pytest.mark.slow
def test_watch_follows_a_run_of_another_process_and_detaching_leaves_it_running(tmp_path):
    path = tmp_path / "samples.db"
    script = (
        "import time\n"
        "from engine import Tuner\n"
        "from tests.objectives import landscape\n"
        "def slow(c, p):\n    time.sleep(0.3)\n    return landscape(c, p)\n"
        f"Tuner(objective=slow, candidates=['a','b'], budget=40, store={str(path)!r},"
        " run_id='far').run()\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not (path.exists() and Store(path).db["runs"].count_where("id = 'far'")):
            assert time.monotonic() < deadline and writer.poll() is None
            time.sleep(0.1)
        app = CodeLLMTunerApp(str(path), watch="far")

        async def test(pilot):
            screen = _run_screen(app)
            assert not screen.source.started_here
            await wait_until(pilot, lambda: len(screen.state.samples) >= 3)
            seen = len(screen.state.samples)
            await wait_until(pilot, lambda: len(screen.state.samples) > seen)

        run_app(app, test)
        assert writer.poll() is None  # detaching did not stop the writer ...
        app = CodeLLMTunerApp(str(path), watch="far")

        async def stop(pilot):
            screen = _run_screen(app)
            await wait_until(pilot, lambda: len(screen.state.samples) >= 1)
            await pilot.press("s")  # ... and stopping it from a viewer does
            await wait_until(pilot, lambda: screen.state.done and screen.state.stopped)

        run_app(app, stop)
        assert writer.wait(timeout=60) == 0
        assert Store(path).get_run("far").status == "stopped"
        assert len(Store(path).samples("far")) < 40
    finally:
        writer.kill()
