"""Evaluation workers: processes that take a store's jobs, evaluate them and commit the
samples.

A run with workers (``workers`` other than 1, :class:`~engine.settings.RunSettings`)
writes each sample it wants to the store as a :class:`~engine.records.Job`
(:mod:`engine.run._execution`). A :class:`Worker` claims one with a lease of ``lease``
seconds, renews the lease with its heartbeat (:data:`HEARTBEAT`) while it evaluates, and
commits the sample and the end of the job in one transaction. A worker killed mid-job
stops renewing: once its lease has run out, the next worker that asks takes the job. A
worker that lost its lease commits nothing (:class:`~engine.store.LeaseLostError`), and
the unique (run, candidate, stage, trial) of a sample makes a second commit impossible
anyway: every sample is committed exactly once.

A worker keeps what it built for each run (the evaluator, and through it the models it
loaded, within its device's memory budget: :class:`~engine.generation.Residency`) and
prefers the jobs of candidates whose model it holds, so two workers and three models do
not trade models back and forth. A local worker that dies gives its job back at once
(:meth:`Workers.check`); one on another host, when its lease runs out. :class:`Workers`
are the ones a run starts on its own machine (``codellmtuner run --workers N``);
``codellmtuner worker --store URL`` starts one by hand, on any host that reaches the store.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from engine.errors import ConfigError, TunerError
from engine.evaluation import Evaluation, Evaluator, build_evaluator
from engine.records import Job
from engine.selection import EarlyStop, sample_chunks
from engine.spec import RunSpec
from engine.store import LeaseLostError, Store, StoreError, TransientStoreError

__all__ = ["DEFAULT_LEASE", "HEARTBEAT", "Worker", "Workers"]

#: How a run starts its workers, and how to start one by hand on the run's own host.
PROGRAM = "python -m engine.run.worker"

#: Seconds between two heartbeats of a worker; one while it evaluates a job also renews
#: the job's lease (more often where the lease is shorter than four of them).
HEARTBEAT = 2.5
#: Seconds a claim lasts without a renewal: how long the job of a worker killed on another
#: host waits before another worker takes it (a local worker's goes back at once), and how
#: old a worker's last heartbeat may be for the worker to count as alive. Four heartbeats:
#: a renewal may be 7.5 s late before the job lapses, where the slowest of
#: benchmarks.lease took 19 ms on PostgreSQL and 1.8 s on SQLite, with four other
#: processes committing back to back.
DEFAULT_LEASE = 4 * HEARTBEAT
#: Seconds between two looks for a job while there is none: short, since the run writes
#: the next job as soon as it has taken in the last sample.
IDLE_POLL = 0.05
#: A run's jobs wait this long for a first worker before the run says how to start one.
NO_WORKER_GRACE = 30.0
#: Local workers a run restarts after they died, before it gives up on them.
MAX_RESTARTS = 3


@dataclass
class _RunState:
    """What a worker built for one run: its evaluator and the problem chunks of a sample."""

    evaluator: Evaluator
    chunks: list[list[int]] | None
    held: set[str] = field(default_factory=set)  # candidates evaluated here (maybe evicted)


class Worker:
    """Takes jobs from the store at ``store`` and evaluates them, until stopped.

    Args:
        store: the store's path or URL.
        device: where models run (``cuda:1``); the run's own setting if ``None``.
        run_id: serve this run only, and stop once it is no longer running; else every
            running run of the store, until :meth:`stop` (or SIGINT / SIGTERM).
        lease: seconds a claim lasts without a renewal (:data:`DEFAULT_LEASE`).
        parent: stop once the process with this pid has ended (the run that started
            the worker: a worker must not outlive a run killed with SIGKILL).
        say: where the worker's one-line notices go (standard error by default).
    """

    def __init__(
        self,
        store: str,
        *,
        device: str | None = None,
        run_id: str | None = None,
        lease: float = DEFAULT_LEASE,
        parent: int | None = None,
        say: Callable[[str], None] | None = None,
    ) -> None:
        if not lease > 0:
            raise TunerError(f"lease must be a positive number of seconds, got {lease!r}")
        self.store = store
        self.device = device
        self.run_id = run_id
        self.lease = lease
        self.beat = min(HEARTBEAT, lease / 4)  # seconds between heartbeats
        self.parent = parent
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.id = worker_id(socket.gethostname(), os.getpid(), device)
        self.runs: dict[str, _RunState] = {}
        self.committed = 0
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish the job in progress, then stop."""
        self._stop.set()

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Add a worker's options to ``parser`` (for ``python -m engine.run.worker`` and
        ``codellmtuner worker``): one flag per argument of :class:`Worker`."""
        parser.add_argument(
            "--store",
            default="samples.db",
            help="the store's path, or a postgresql:// URL (default: samples.db)",
        )
        parser.add_argument(
            "--device", default=None, help="where models run (cuda:1, cpu); default: the run's own"
        )
        parser.add_argument(
            "--run", dest="run_id", default=None, help="serve this run only, and stop when it ends"
        )
        parser.add_argument(
            "--lease",
            type=float,
            default=DEFAULT_LEASE,
            help=f"seconds a claim lasts without renewal (default {DEFAULT_LEASE:g})",
        )
        # The run that starts a worker: the worker stops when it ends.
        parser.add_argument("--parent", type=int, default=None, help=argparse.SUPPRESS)
        return parser

    @classmethod
    def serve(cls, args: argparse.Namespace) -> int:
        """Run a worker with the parsed options of :meth:`add_arguments` until it is
        stopped (SIGTERM finishes the job in progress; Ctrl-C hands it back at once);
        returns the samples it committed. Bad input and an unusable store raise
        :class:`TunerError`."""
        worker = cls(args.store, device=args.device, run_id=args.run_id, lease=args.lease,
                     parent=args.parent)  # fmt: skip
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        return worker.run()

    def run(self) -> int:
        """Serve until stopped (or, with ``run_id``, until that run ends); returns the
        number of samples this worker committed."""
        store = Store(self.store, on_wait=lambda text: self.say(f"warning: {text}"))
        try:
            store.heartbeat(self.id, host=socket.gethostname(), pid=os.getpid(),
                            device=self.device or "auto")  # fmt: skip
            beat = time.monotonic()
            while not self._stop.is_set() and self._parent_alive():
                held = {c for state in self.runs.values() for c in state.held
                        if state.evaluator.holds(c)}  # fmt: skip
                job = store.claim_job(self.id, self.lease, run_id=self.run_id, prefer=held)
                if job is not None:
                    self._serve(store, job)
                    continue
                if self._run_over(store):
                    break
                if time.monotonic() - beat > self.beat:
                    store.heartbeat(self.id)
                    beat = time.monotonic()
                self._stop.wait(IDLE_POLL)
        finally:
            with contextlib.suppress(StoreError):
                store.remove_worker(self.id)
            store.close()
        return self.committed

    def _run_over(self, store: Store) -> bool:
        """Whether the one run this worker serves has ended (one not yet created has
        not: a worker may start first, under a scheduler say)."""
        if self.run_id is None or not store.has_run(self.run_id):
            return False
        return store.get_run(self.run_id).status != "running"

    def _parent_alive(self) -> bool:
        return self.parent is None or os.getppid() == self.parent

    def _serve(self, store: Store, job: Job) -> None:
        """Evaluate ``job`` and commit its sample; a job that cannot be evaluated fails
        with its one-line reason, which stops its run."""
        try:
            store.heartbeat(self.id, job=job.id)  # so that viewers see what it works on
            # The lease is renewed from now on: building a run's evaluator takes a while.
            with _Lease(self.store, job, self.lease, self.id, every=self.beat):
                state = self._state(store, job.run_id)
                reference = store.sample(job.reference) if job.reference else None
                chunks = state.chunks if job.split == "tune" else None
                evaluation = state.evaluator.evaluate(
                    job.candidate, job.params, split=job.split, chunks=chunks,
                    keep_going=EarlyStop(reference),
                )  # fmt: skip
        except TransientStoreError as error:  # intact but unusable now: another may do it
            self.say(f"warning: {_what(job)} given back: {error}")
            with contextlib.suppress(StoreError):
                store.release_job(job)
            return
        except Exception as error:
            message = str(error) if isinstance(error, TunerError) else (
                f"{type(error).__name__}: {error}"
            )  # fmt: skip
            with contextlib.suppress(StoreError):
                store.release_job(job, error=f"{_what(job)} failed on {self.id}: {message}")
            return
        except BaseException:  # interrupted: hand the job straight to another worker
            with contextlib.suppress(StoreError):
                store.release_job(job)
            raise
        state.held.add(job.candidate)
        self._commit(store, job, evaluation)

    def _commit(self, store: Store, job: Job, evaluation: Evaluation) -> None:
        try:
            store.add_sample(evaluation.sample(job), evaluation.outcomes, job=job,
                             stage=job.stage)  # fmt: skip
        except LeaseLostError as error:
            self.say(f"warning: {error}; its sample is dropped")
            return
        except TransientStoreError as error:  # disk full, locked: the job is done again
            self.say(f"warning: {_what(job)} was not recorded ({error}); given back")
            with contextlib.suppress(StoreError):
                store.release_job(job)
            return
        self.committed += 1

    def _state(self, store: Store, run_id: str) -> _RunState:
        """What this worker needs for ``run_id``, built on its first job."""
        if run_id not in self.runs:
            spec = RunSpec.of_run(store.get_run(run_id))
            if self.device is not None:
                spec = replace(spec, settings=replace(spec.settings, device=self.device))
            if spec.objective is True:
                raise ConfigError(
                    f"run {run_id} tuned a Python objective given as a function: workers "
                    "evaluate one given by its import path, objective='module:function'"
                )
            evaluator = build_evaluator(spec, on_warning=lambda text: self.say(f"warning: {text}"),
                                        on_info=self.say)  # fmt: skip
            evaluator.prepare(spec.space)
            evaluator.attach(store)
            settings = spec.settings
            chunks = sample_chunks(evaluator.problem_count("tune"), settings.seed,
                                   settings.fidelity)  # fmt: skip
            self.runs[run_id] = _RunState(evaluator, chunks)
        return self.runs[run_id]


class _Lease:
    """Renews a job's lease, with the worker's heartbeat, every ``every`` seconds from a
    thread (with its own connection: an SQLite connection stays in its thread) while the
    job is evaluated."""

    def __init__(self, store: str, job: Job, lease: float, worker: str, every: float) -> None:
        self.location, self.job, self.lease, self.worker = store, job, lease, worker
        self.every = every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _renew(self) -> None:
        store = None
        try:
            store = Store(self.location)
            while not self._done.wait(self.every):
                with contextlib.suppress(TransientStoreError):  # try again next time
                    if not store.renew_lease(self.job, self.lease):
                        return  # taken by another worker: the commit will be refused
                    store.heartbeat(self.worker, job=self.job.id)
        except StoreError:
            return
        finally:
            if store is not None:
                store.close()


def worker_id(host: str, pid: int, device: str | None) -> str:
    """How a worker is named in the store: its host, process and device."""
    return f"{host}:{pid}:{device or 'auto'}"


def _what(job: Job) -> str:
    return f"{job.candidate} {job.stage} trial {job.trial}"


class Workers:
    """The workers a run starts on its own machine: ``count`` processes of
    ``python -m engine.run.worker`` serving run ``run_id`` of the store at ``store``, the
    i-th on ``devices[i % len(devices)]`` (the run's device if ``devices`` is empty).

    With ``count`` 0 the run starts none and relies on workers started elsewhere
    (``codellmtuner worker``); it can take as many jobs at once as there are workers
    alive.
    """

    def __init__(
        self,
        store: str,
        run_id: str,
        count: int,
        *,
        devices: Sequence[str] = (),
        lease: float = DEFAULT_LEASE,
    ) -> None:
        self.store, self.run_id, self.count = store, run_id, count
        self.devices = list(devices)
        self.lease = lease
        self.processes: list[subprocess.Popen] = []
        self.restarts = 0
        self.started = 0.0
        self._warned_none = False

    def start(self) -> None:
        self.started = time.monotonic()
        self.processes = [self._spawn(i) for i in range(self.count)]

    def _spawn(self, i: int) -> subprocess.Popen:
        command = [sys.executable, "-m", "engine.run.worker", "--store", self.store,
                   "--run", self.run_id, "--lease", str(self.lease),
                   "--parent", str(os.getpid())]  # fmt: skip
        if self.devices:
            command += ["--device", self.devices[i % len(self.devices)]]
        # The run's own import path, so that an objective given as "module:function"
        # imports in the worker as it did here.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)

    def capacity(self, store: Store) -> int:
        """How many jobs may be in flight: one per worker started here or alive."""
        alive = len(store.live_workers(within=DEFAULT_LEASE))
        return max(1, self.count, alive)

    def check(self, store: Store) -> list[str]:
        """Restart the workers started here that died; warnings to show."""
        warnings = []
        for i, process in enumerate(self.processes):
            code = process.poll()
            if code is None:
                continue
            if self.restarts >= MAX_RESTARTS:
                raise TunerError(
                    f"local workers died {self.restarts + 1} times (the last with exit code "
                    f"{code}); committed samples are kept: `codellmtuner resume {self.run_id}`"
                )
            self.restarts += 1
            # It is known to be dead: its job goes back now, not when its lease runs out.
            device = self.devices[i % len(self.devices)] if self.devices else None
            given_back = store.release_worker_jobs(
                worker_id(socket.gethostname(), process.pid, device)
            )
            back = " (its job went back to the queue)" if given_back else ""
            warnings.append(f"worker {i} exited with code {code}; starting another{back}")
            self.processes[i] = self._spawn(i)
        waited = time.monotonic() - self.started
        lonely = not self.count and not self._warned_none and waited > NO_WORKER_GRACE
        if lonely and not store.live_workers(within=DEFAULT_LEASE):
            self._warned_none = True
            warnings.append(
                f"no worker has come for run {self.run_id} in {waited:.0f} s: start one "
                f"with `codellmtuner worker --store {self.store}`"
            )
        return warnings

    def stop(self) -> None:
        """Stop the workers started here: SIGTERM (each finishes or hands back its job),
        then SIGKILL after 10 s."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    try:
        Worker.serve(Worker.add_arguments(argparse.ArgumentParser(prog=PROGRAM)).parse_args())
    except TunerError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
