"""Helpers for driving the Textual app in tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from engine import Store, Tuner
from tests.objectives import landscape


async def wait_until(pilot, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Let the app run until ``predicate()`` holds; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        await pilot.pause(0.05)


def run_app(app, test, size=(80, 24)) -> None:
    """Run ``await test(pilot)`` inside ``app.run_test`` synchronously."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await test(pilot)

    asyncio.run(main())


#: Realistic candidate names for screens, each mapped to a synthetic landscape.
NAMES = {"smollm2@chat": "b", "smollm2@fewshot-1": "a", "smollm2@raw": "c"}


def named_landscape(candidate: str, params: dict) -> float:
    return landscape(NAMES[candidate], params)


def finished_store(path: Path, run_id: str = "20261123-120000-demo", budget: int = 12) -> Path:
    """A store holding one finished objective run with fixed timestamps (for snapshots)."""
    Tuner(objective=named_landscape, candidates=list(NAMES), budget=budget, seed=1,
          store=path, run_id=run_id).run()  # fmt: skip
    store = Store(path)
    with store.db.conn:
        store.db.execute("update runs set created_at = 1795435200, updated_at = 1795435300")
        store.db.execute("update samples set created_at = 1795435200 + 5 * id, seconds = 4.5")
    store.add_message(run_id, "warning", "out of memory at batch 8; retrying with 4")
    store.close()
    return path
