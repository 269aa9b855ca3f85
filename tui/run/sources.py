"""Where a run screen's events come from: a run followed through the store (started by
the app as a process of its own, or elsewhere), or an objective's tuner running in this
process.

Both post :class:`~tui.messages.EngineEvent` messages to the screen from another
thread, so the UI thread never waits on generation, scoring or SQLite.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from abc import ABC, abstractmethod

from textual.widget import Widget
from textual.worker import Worker, get_current_worker

from engine import (
    Event,
    Message,
    RunFailed,
    RunFinished,
    RunFollower,
    RunSpec,
    SearchSpace,
    Store,
    Tuner,
    TunerError,
)
from engine.errors import first_line
from tui.messages import EngineEvent
from tui.run.launch import LaunchedRun

#: Seconds between two reads of the store when following a run.
POLL_INTERVAL = 0.5


class RunSource(ABC):
    """A run the screen can show; :attr:`controllable` sources also pause and stop, and
    :attr:`started_here` ones were started by this app."""

    controllable = False
    started_here = True
    run_id: str
    store_path: str

    @abstractmethod
    def start(self, target: Widget) -> None:
        """Start posting the run's events to ``target`` (from a worker)."""

    @property
    def running(self) -> bool:
        return False

    def pause(self) -> None:
        """Hold before the next sample (controllable sources only)."""
        raise NotImplementedError

    def unpause(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Finish after the sample in progress (controllable sources only)."""
        raise NotImplementedError

    @abstractmethod
    def space(self) -> SearchSpace:
        """The decoding space of the run (for the propensity overlap)."""


class LiveRun(RunSource):
    """A :class:`~engine.Tuner` of a Python objective running in a thread of this process
    (a callable cannot be handed to another process; task runs are :class:`FollowedRun`).

    A plain thread rather than a Textual worker, because it must outlive the UI: after
    the app closes, the engine finishes and commits the sample in progress (see
    :meth:`wait`) instead of being torn down with the event loop.
    """

    controllable = True

    def __init__(self, tuner: Tuner) -> None:
        self.tuner = tuner
        self.run_id = tuner.run_id
        self.store_path = tuner.store_path
        self.finished = False  # the budget was spent (not stopped, not failed)
        self.error: str | None = None
        self._target: Widget | None = None
        self._thread: threading.Thread | None = None

    def start(self, target: Widget) -> None:
        self._target = target
        self.tuner.subscribe(self._forward)
        self._thread = threading.Thread(target=self._work, name="engine", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            self.tuner.run()
        except Exception as error:  # most failures were reported as events already
            if self.error is None:
                detail = f"{type(error).__name__}: {first_line(error)}"
                self._forward(RunFailed(self.run_id, detail))

    def _forward(self, event: Event) -> None:
        if isinstance(event, RunFailed):
            self.error = event.error
        elif isinstance(event, RunFinished):
            self.finished = not event.stopped
        target = self._target
        if target is None:
            return
        try:
            target.post_message(EngineEvent(event))
        except RuntimeError:  # the app's event loop is closed: nobody is watching
            self._target = None

    def detach(self) -> None:
        """Stop forwarding events (the app is closing); the run goes on."""
        self._target = None

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pause(self) -> None:
        self.tuner.pause()

    def unpause(self) -> None:
        self.tuner.unpause()

    def stop(self) -> None:
        self.tuner.stop()

    def space(self) -> SearchSpace:
        return self.tuner.space


class FollowedRun(RunSource):
    """A run in a store, read every :data:`POLL_INTERVAL` seconds. Pausing and stopping
    are requests written to the store, which the run's process reads between samples.

    ``launched`` is the process when this app started the run (see
    :mod:`tui.run.launch`).
    """

    controllable = True

    def __init__(self, store_path: str, run_id: str, launched: LaunchedRun | None = None) -> None:
        self.store_path = store_path
        self.launched = launched
        with contextlib.closing(Store(store_path)) as store:
            self.run = store.get_run(run_id)  # fails here, with a clear message, if unknown
        self.run_id = self.run.id

    @property
    def started_here(self) -> bool:  # type: ignore[override]
        return self.launched is not None

    def pause(self) -> None:
        self._request("pause")

    def unpause(self) -> None:
        self._request(None)

    def stop(self) -> None:
        self._request("stop")

    def _request(self, request: str | None) -> None:
        with contextlib.closing(Store(self.store_path)) as store:
            store.request(self.run_id, request)

    def start(self, target: Widget) -> None:
        def work() -> None:
            worker = get_current_worker()
            with contextlib.closing(Store(self.store_path)) as store:
                follower = RunFollower(store, self.run_id)
                while not worker.is_cancelled:
                    try:
                        events = follower.poll()
                    except (TunerError, sqlite3.Error) as error:
                        # A busy or briefly unreadable store: say so and try again.
                        events = [Message(self.run_id, "warning", f"reading the store: {error}")]
                    for event in events:
                        target.post_message(EngineEvent(event))
                    if self.launched is not None:
                        self.launched.exited()  # reaps an ended process: its pid is free
                    _sleep(worker, POLL_INTERVAL)

        target.run_worker(work, thread=True, name="follow", group="engine")

    def space(self) -> SearchSpace:
        return RunSpec.of_run(self.run).space


def _sleep(worker: Worker, seconds: float) -> None:
    """Sleep, waking early when the worker is cancelled (the screen closed)."""
    end = time.monotonic() + seconds
    while not worker.is_cancelled and time.monotonic() < end:
        time.sleep(0.05)
