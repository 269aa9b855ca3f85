"""Snapshots of the main screens at 80x24 (SSH) and 120x40.

Update after an intended change with ``pytest tests/tui/test_app_snapshots.py
--snapshot-update`` and review the SVGs under ``tests/__snapshots__``.
"""

from __future__ import annotations

import time

import pytest

from tests.apphelpers import finished_store, wait_until
from tui.app import CodeLLMTunerApp
from tui.run.screen import RunScreen

SIZES = [(80, 24), (120, 40)]


@pytest.fixture
def quiet_machine(tmp_path, monkeypatch):
    """The same screens on every machine: empty hub and adapter caches, UTC, a relative
    store."""
    import huggingface_hub.constants

    import engine.generation._adapters

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(engine.generation._adapters, "adapter_home", lambda: tmp_path / "adapters")
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    monkeypatch.undo()
    time.tzset()


async def _run_finished(pilot) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, RunScreen)
    await wait_until(pilot, lambda: screen.state.done)
    await pilot.pause(0.2)


async def _task_described(pilot) -> None:
    await wait_until(pilot, lambda: pilot.app.screen.task_note)
    await pilot.pause(0.1)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_setup_screen(snap_compare, quiet_machine, size):
    app = CodeLLMTunerApp("samples.db")
    assert snap_compare(app, terminal_size=size, run_before=_task_described)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_screen(snap_compare, quiet_machine, size):
    finished_store(quiet_machine / "samples.db")
    app = CodeLLMTunerApp("samples.db", watch="latest")
    assert snap_compare(app, terminal_size=size, run_before=_run_finished)


def test_run_screen_overlap_tab(snap_compare, quiet_machine):
    finished_store(quiet_machine / "samples.db")
    app = CodeLLMTunerApp("samples.db", watch="latest")

    async def overlap(pilot) -> None:
        await _run_finished(pilot)
        await pilot.press("3")

    assert snap_compare(app, terminal_size=(80, 24), run_before=overlap)


def test_export_dialog(snap_compare, quiet_machine):
    finished_store(quiet_machine / "samples.db")
    app = CodeLLMTunerApp("samples.db", watch="latest")

    async def export(pilot) -> None:
        await _run_finished(pilot)
        await pilot.press("e")

    assert snap_compare(app, terminal_size=(80, 24), run_before=export)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_history_screen(snap_compare, quiet_machine, size):
    finished_store(quiet_machine / "samples.db")
    app = CodeLLMTunerApp("samples.db")
    assert snap_compare(app, terminal_size=size, press=["ctrl+o"])
