"""A run's dealings with the world while it executes: its row in the store, the requests
viewers make through the store, and its events.

The stage machine (:mod:`engine.run._execution`) decides; a :class:`Session` records
and tells. Its events go to the tuner's subscribers, to the store (warnings and notices,
so a viewer attached from elsewhere sees them) and to the Optuna mirror
(:class:`engine.store.MirrorSubscriber`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import TunerError
from engine.events import Event, Message, RunFailed, RunFinished, Subscriber
from engine.records import Run, TuneResult
from engine.spec import RunSpec
from engine.store import MirrorSubscriber, Store, TransientStoreError

__all__ = ["REQUEST_POLL", "RunPlan", "Session", "StopRequested"]

#: Seconds between two looks at the store while a run is paused on request.
REQUEST_POLL = 0.5


class StopRequested(Exception):
    """Raised between samples when the run was asked to stop."""


@dataclass(frozen=True)
class RunPlan:
    """What an execution runs: run ``run_id`` of ``spec``, in the store at ``location``
    (a path or URL, as the user gave it)."""

    run_id: str
    spec: RunSpec
    location: str


class Session:
    """The run of ``plan`` in the open ``store``.

    Args:
        emit: hands an event to the run's subscribers.
        checkpoint: obeys this process's requests: raises :class:`StopRequested` to stop
            the run, and blocks while it is paused.
    """

    def __init__(
        self,
        plan: RunPlan,
        store: Store,
        *,
        emit: Subscriber,
        checkpoint: Callable[[], None],
    ) -> None:
        self.run_id, self.spec, self.location = plan.run_id, plan.spec, plan.location
        self.store = store
        self._emit_to_subscribers, self._check_here = emit, checkpoint
        self.subscribers: list[Subscriber] = [self._keep_message]
        self.mirror: MirrorSubscriber | None = None
        self._outage = False  # a warning about the store is not written to it
        store.on_wait = self._store_waits

    # -- the run's row ------------------------------------------------------------------------

    def open(self) -> Run:
        """Create the run's row, or reopen it; claim it for this process; open the mirror."""
        store, settings = self.store, self.spec.settings
        if not store.has_run(self.run_id):
            run = store.create_run(self.run_id, budget=settings.budget.amount,
                                   seed=settings.seed, config=self.spec.to_dict())  # fmt: skip
        else:
            store.update_run(self.run_id, status="running", error=None)
            run = store.get_run(self.run_id)
        store.claim_run(self.run_id, os.getpid(), socket.gethostname())
        self.mirror = MirrorSubscriber.open(self.location, store, self.run_id, self.spec.space,
                                            self.warn)  # fmt: skip
        if self.mirror is not None:
            self.subscribers.append(self.mirror)
        return run

    def close(self) -> None:
        if self.mirror is not None:
            self.mirror.close()

    def finished(self, result: TuneResult) -> None:
        """Record the answer; the run is over."""
        try:
            self.store.update_run(self.run_id, status="finished", result=result.to_dict())
        except TransientStoreError as error:
            message = f"the result could not be recorded ({error}); {self.resume_hint()}"
            self.failed(message)
            raise type(error)(message) from error
        self.emit(RunFinished(self.run_id, result))

    def stopped(self) -> None:
        # The mirror first: a Ctrl-C in the middle of its write leaves its transaction
        # open, holding the write lock of a SQLite store that recording the stop needs.
        self.close()
        # Left "running" if the store cannot take it: a resume treats both alike.
        with contextlib.suppress(TransientStoreError):
            self.store.update_run(self.run_id, status="stopped")

    def failed(self, message: str) -> None:
        # Recording the failure may fail too (the store is full, locked or damaged): the
        # error still reaches the subscribers and the caller.
        with contextlib.suppress(TunerError):
            if self.store.has_run(self.run_id):
                self.store.update_run(self.run_id, status="failed", error=message)
        self.emit(RunFailed(self.run_id, message))

    def resume_hint(self) -> str:
        option = "" if self.location == "samples.db" else f" --store {self.location}"
        return f"then `codellmtuner resume {self.run_id}{option}` continues the run"

    # -- events -------------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        self._emit_to_subscribers(event)
        for subscriber in self.subscribers:
            subscriber(event)

    def say(self, text: str) -> None:
        self.emit(Message(self.run_id, "info", text))

    def warn(self, text: str) -> None:
        self.emit(Message(self.run_id, "warning", text))

    def _keep_message(self, event: Event) -> None:
        if isinstance(event, Message) and not self._outage:
            # A full or locked store must not turn a warning into a failure: subscribers
            # (the CLI, the app) still receive it.
            with contextlib.suppress(TransientStoreError):
                self.store.add_message(self.run_id, event.level, event.text)

    def _store_waits(self, text: str) -> None:
        """The store's server does not answer and the store waits for it: one warning,
        for the subscribers only (writing it to the store would wait too)."""
        self._outage = True
        try:
            self.warn(text)
        finally:
            self._outage = False

    # -- requests -----------------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Between samples: obey the requests made here and through the store."""
        self._check_here()
        request = self._request()  # one read of the store per sample
        if request == "pause":
            self.say("paused on request")
            while request == "pause":
                time.sleep(REQUEST_POLL)
                self._check_here()
                request = self._request()
            self.say("going on")
        if request == "stop":
            raise StopRequested

    def _request(self) -> str | None:
        try:
            return self.store.control(self.run_id).request
        except TransientStoreError:  # a store busy for a minute: ask again next time
            return None
