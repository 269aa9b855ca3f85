"""Mirror a run's samples into Optuna's own tables, for Optuna's own tools.

The store's tables (:mod:`engine.store._store`) are the truth about a run; Optuna's tools read
only Optuna's schema. :class:`OptunaMirror` copies each candidate's budget samples into a
study of Optuna's tables in the *same* database, so that::

    optuna-dashboard sqlite:////abs/path/samples.db
    optuna.load_study(storage="sqlite:////abs/path/samples.db", study_name="<run_id>/<name>")

show them: one study per candidate, one trial per sample, its score as the value and the
running mean of its per-problem scores as intermediate values.

Opening the mirror creates Optuna's tables (``optuna.storages.RDBStorage``) next to the
store's. With Optuna 5.1 they are ``studies``, ``study_directions``,
``study_user_attributes``, ``study_system_attributes``, ``trials``, ``trial_params``,
``trial_values``, ``trial_intermediate_values``, ``trial_user_attributes``,
``trial_system_attributes``, ``trial_heartbeats``, ``version_info`` and
``alembic_version``: none clashes with the store's (``meta``, ``runs``, ``samples``,
``outcomes``, ``generations``, ``rankings``, ``messages``, ``controls``, ``jobs``,
``workers``), and the store checks only that its own are present, so each side ignores
the other's tables (tests/store/test_mirror.py checks both).

The mirror is a convenience: a failure must never stop a run. Every public method raises
only :class:`~engine.errors.StoreError`, with a one-line message, so a caller can warn once
and go on; a later :meth:`OptunaMirror.sync` adds whatever an earlier failed one did not.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import URL, make_url

from engine.errors import StoreError, first_line
from engine.events import Event, RunStarted, SampleRecorded
from engine.records import Sample

if TYPE_CHECKING:
    from engine.space import SearchSpace
    from engine.store._store import Store

__all__ = ["MIRRORED_STAGES", "MirrorSubscriber", "OptunaMirror", "dashboard_url", "running_means"]

#: The stages whose samples are mirrored: those that spend the budget. A held-out score
#: is measured on other problems, so it is no point of the candidate's tuning landscape.
MIRRORED_STAGES = ("sampling", "tuning")

#: Seconds a write to a SQLite store waits for another process's write (a run, a worker,
#: optuna-dashboard) before it fails: the store is written by several processes at once.
SQLITE_TIMEOUT = 60
#: Seconds to wait for a PostgreSQL server to accept the connection: a server that is
#: down must cost a run a warning, not minutes of a TCP timeout.
POSTGRES_CONNECT_TIMEOUT = 10
#: Times to try creating Optuna's tables: processes that open a new store at once race
#: to create them, and each loser fails on a table or row the winner just made.
OPEN_ATTEMPTS = 5
#: What a database says to the loser of that race.
_RACE_LOST = ("already exists", "unique constraint", "duplicate key")


class _Study:
    """A mirrored study: its id and the ids of the samples it already holds."""

    def __init__(self, study_id: int, mirrored: set[int]) -> None:
        self.id = study_id
        self.mirrored = mirrored


class OptunaMirror:
    """One Optuna study per candidate of a run, named ``"<run_id>/<candidate>"`` (direction
    maximize), in Optuna's own tables of the store's database.

    Each budget sample (stage ``"sampling"`` or ``"tuning"``) becomes one ``COMPLETE``
    trial (``FAIL`` if its score is NaN, which Optuna refuses as a value) with:

    * ``params`` and ``distributions``: :meth:`SearchSpace.trial_values
      <engine.space.SearchSpace.trial_values>` of the sample's params, as the run's own
      studies hold them;
    * ``value``: the sample's score;
    * ``intermediate_values``: ``{k: mean of the first k + 1 problem scores}``, how the
      score evolved problem by problem (none for an objective without problems);
    * ``user_attrs``: each entry of the sample's ``metrics``, then ``sample_id``,
      ``stage``, ``cached``, ``prompt_tokens``, ``generated_tokens``, ``seconds``,
      ``switch_seconds`` and ``fidelity`` (these win over a metric of the same name:
      ``sample_id`` is how the mirror knows what it already copied);
    * ``datetime_start`` and ``datetime_complete``: when the sample was being evaluated.

    One instance serves one process (it caches which samples each study holds); it is not
    thread-safe. Two processes mirroring the same candidate at once may both copy a
    sample: a run's samples are mirrored by the run's own process.

    Args:
        url: An SQLAlchemy URL: ``"sqlite:////abs/path/samples.db"`` or
            ``"postgresql+psycopg://user@host:port/db"`` (:meth:`url_of` gives the one
            of a store).

    Raises:
        StoreError: The database cannot be opened, or its Optuna tables were written by
            an incompatible Optuna version.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._studies: dict[str, _Study] = {}
        with self._explained("open"):
            self._storage = _open(url)

    @staticmethod
    def url_of(store: str) -> str | None:
        """The SQLAlchemy URL of a store given as a path or URL, ``None`` for an in-memory
        store (no other process could read its mirror).

        ``"samples.db"`` gives ``"sqlite:////abs/samples.db"`` (absolute, so that
        optuna-dashboard finds it from any folder); ``"postgresql://..."`` gives
        ``"postgresql+psycopg://..."`` (psycopg 3, the driver this project installs);
        any other URL is returned as it is.
        """
        if store in ("", ":memory:"):
            return None
        if "://" not in store:
            # URL.create escapes what a path may hold and a URL may not ("?", "#", "%").
            path = os.path.abspath(os.path.expanduser(store))
            return URL.create("sqlite", database=path).render_as_string(hide_password=False)
        url = make_url(store)
        if url.drivername.lower() in ("postgresql", "postgres"):  # as the store reads it
            url = url.set(drivername="postgresql+psycopg")
        return url.render_as_string(hide_password=False)

    def sync(
        self, run_id: str, candidate: str, samples: Sequence[Sample], space: SearchSpace
    ) -> int:
        """Add to the study ``"<run_id>/<candidate>"`` (creating it if needed) each budget
        sample of ``samples`` it does not hold yet, in the order they were committed.

        ``samples`` may be the run's whole list: samples of other runs or candidates and
        held-out samples are ignored. Calling it again with the same or more samples adds
        only the new ones; it reads which samples a study holds once per instance, so a
        call after each sample costs one short transaction per new sample.

        Returns:
            How many trials it added.

        Raises:
            StoreError: A sample without an id (only committed samples can be mirrored),
                or a write that failed; the trials added before the failure stay, and
                the next call adds the rest.
        """
        mine = [
            s
            for s in samples
            if s.run_id == run_id and s.candidate == candidate and s.stage in MIRRORED_STAGES
        ]
        if any(s.id is None for s in mine):
            raise StoreError(
                f"Optuna mirror: a sample of {candidate} has no id; mirror the samples the "
                "store returns (committed samples)"
            )
        if not mine:
            return 0  # nothing to add: not even an empty study, so no write at all
        by_id = {s.id: s for s in mine if s.id is not None}
        name = f"{run_id}/{candidate}"
        with self._explained(f"mirror {name} into"):
            study = self._study(name)
            added = 0
            for sample_id in sorted(by_id.keys() - study.mirrored):  # the commit order
                # One transaction per trial (Optuna's create_new_trial): the database's
                # write lock is never held for more than one trial's rows.
                trial = _trial(by_id[sample_id], space)
                self._storage.create_new_trial(study.id, template_trial=trial)
                study.mirrored.add(sample_id)  # only once it is committed
                added += 1
            return added

    def close(self) -> None:
        """Close the database connections the mirror holds (idempotent)."""
        with self._explained("close"):
            self._storage.remove_session()
            self._storage.engine.dispose()

    # -- helpers -----------------------------------------------------------------------------

    def _study(self, name: str) -> _Study:
        """The study ``name``, created if missing; read from the database once."""
        study = self._studies.get(name)
        if study is not None:
            return study
        try:
            study_id = self._storage.create_new_study([StudyDirection.MAXIMIZE], study_name=name)
            mirrored: set[int] = set()
        except optuna.exceptions.DuplicatedStudyError:
            # Created by an earlier process (a resumed run): learn what it holds, once.
            study_id = self._storage.get_study_id_from_name(name)
            trials = self._storage.get_all_trials(study_id, deepcopy=False)
            mirrored = {t.user_attrs["sample_id"] for t in trials if "sample_id" in t.user_attrs}
        study = self._studies[name] = _Study(study_id, mirrored)
        return study

    @contextlib.contextmanager
    def _explained(self, doing: str) -> Iterator[None]:
        """Turn any failure inside into a one-line StoreError that says what to do."""
        try:
            yield
        except StoreError:
            raise
        except Exception as error:  # the contract: only StoreError leaves
            # Broad on purpose: SQLAlchemy, the database driver, Optuna and alembic (its
            # schema check) each raise their own types, and a mirror that raised any of
            # them would stop the run it only reports on.
            raise _store_error(doing, self.url, error) from error


class MirrorSubscriber:
    """Keeps the mirror of run ``run_id`` up to date: a subscriber of the run's events.

    When the run starts (:class:`~engine.events.RunStarted`) it mirrors the samples the
    store already holds (those of an earlier execution), then each budget sample as it is
    recorded (:class:`~engine.events.SampleRecorded`). A failure costs one warning, the
    first time, through ``warn``: the store has every sample, and the next sync of the
    candidate adds what this one did not (a database that was briefly away, say).
    """

    def __init__(
        self,
        mirror: OptunaMirror,
        store: Store,
        run_id: str,
        space: SearchSpace,
        warn: Callable[[str], None],
    ) -> None:
        self.mirror, self.store, self.run_id, self.space = mirror, store, run_id, space
        self.warn = warn
        self.samples: list[Sample] = []  # the run's samples recorded so far
        self._warned = False

    @classmethod
    def open(
        cls,
        location: str,
        store: Store,
        run_id: str,
        space: SearchSpace,
        warn: Callable[[str], None],
    ) -> MirrorSubscriber | None:
        """The subscriber that mirrors into the database of the store at ``location``;
        ``None`` for an in-memory store, or (after a warning) where the mirror cannot
        be opened."""
        url = OptunaMirror.url_of(location)
        if url is None:
            return None
        try:
            return cls(OptunaMirror(url), store, run_id, space, warn)
        except StoreError as error:
            warn(_may_miss(error))
            return None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.samples = self.store.samples(self.run_id)
            self._sync(event.candidates)
        elif isinstance(event, SampleRecorded) and event.sample.stage in MIRRORED_STAGES:
            self.samples.append(event.sample)
            self._sync([event.sample.candidate])

    def close(self) -> None:
        with contextlib.suppress(StoreError):
            self.mirror.close()

    def _sync(self, candidates: Sequence[str]) -> None:
        for name in candidates:
            try:
                self.mirror.sync(self.run_id, name, self.samples, self.space)
            except StoreError as error:
                self._failed(error)

    def _failed(self, error: StoreError) -> None:
        if not self._warned:
            self._warned = True
            self.warn(_may_miss(error))


def _may_miss(error: StoreError) -> str:
    return f"optuna-dashboard may miss samples of this run: {error}; the store keeps them all"


def _open(url: str) -> RDBStorage:
    """Optuna's storage at ``url``, its tables created if missing."""
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            return RDBStorage(url, engine_kwargs=_engine_kwargs(url))
        except Exception as error:  # raised as it is once it is not a lost race
            lost = any(m in _detail(error).lower() for m in _RACE_LOST)
            if not lost or attempt == OPEN_ATTEMPTS:
                raise
            # The winner is still creating tables: let it finish, then find them there
            # (create_all skips the tables that exist).
            time.sleep(0.1 * attempt + 0.1 * random.random())
    raise AssertionError("unreachable")


def _engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for ``url``'s database."""
    try:
        backend = make_url(url).get_backend_name()
    except Exception:  # a bad URL fails, explained, in RDBStorage itself
        return {}
    if backend == "sqlite":
        # Other processes write the file at the same time (WAL): wait for their lock
        # rather than fail at once with "database is locked".
        return {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    if backend == "postgresql":
        # pool_pre_ping: a run lasts hours; a pooled connection the server dropped
        # meanwhile is replaced instead of failing a sync.
        return {"connect_args": {"connect_timeout": POSTGRES_CONNECT_TIMEOUT},
                "pool_pre_ping": True}  # fmt: skip
    return {}


def _trial(sample: Sample, space: SearchSpace) -> FrozenTrial:
    """The trial that mirrors ``sample`` (see :class:`OptunaMirror`)."""
    values, distributions = space.trial_values(sample.params)
    scored = not math.isnan(sample.score)
    # Metrics are floats; anything else is kept as it is rather than fail every sync.
    user_attrs: dict[str, Any] = {
        k: float(v) if isinstance(v, int | float) else v for k, v in sample.metrics.items()
    }
    user_attrs.update(
        sample_id=sample.id, stage=sample.stage, cached=sample.cached,
        prompt_tokens=sample.prompt_tokens, generated_tokens=sample.generated_tokens,
        seconds=sample.seconds, switch_seconds=sample.switch_seconds, fidelity=sample.fidelity,
    )  # fmt: skip
    trial = optuna.trial.create_trial(
        state=TrialState.COMPLETE if scored else TrialState.FAIL,
        value=sample.score if scored else None,
        params=values,
        distributions=distributions,
        user_attrs=user_attrs,
        intermediate_values=running_means(sample.problem_scores),
    )
    if sample.created_at > 0:  # a committed sample: when it was evaluated, not mirrored
        trial.datetime_complete = datetime.datetime.fromtimestamp(sample.created_at)
        trial.datetime_start = trial.datetime_complete - datetime.timedelta(
            seconds=max(sample.seconds, 0.0)
        )
    return trial


def running_means(scores: Sequence[float]) -> dict[int, float]:
    """``{k: mean of scores[0..k]}``: a sample's score as it stood after each problem."""
    means: dict[int, float] = {}
    total = 0.0
    for step, score in enumerate(scores):
        total += score
        means[step] = total / (step + 1)
    return means


def _store_error(doing: str, url: str, error: Exception) -> StoreError:
    """A one-line StoreError for ``error``, met while doing ``doing`` on ``url``."""
    detail = _detail(error)
    lowered = detail.lower()
    if "unable to open" in lowered:
        hint = "check that the store's folder exists and is writable"
    elif "locked" in lowered or "busy" in lowered:
        hint = "another process (optuna-dashboard?) held its lock too long; the next sync retries"
    elif "optuna storage upgrade" in lowered or "schema" in lowered:
        hint = "its Optuna tables are from another Optuna version: upgrade them or use a new store"
    elif "connection" in lowered or "connect" in lowered:
        hint = "check that the database server is up and the URL is right"
    else:
        hint = "the run goes on, but Optuna's tools will not show its samples"
    return StoreError(f"Optuna mirror: cannot {doing} {_shown(url)}: {detail}; {hint}")


def _detail(error: BaseException) -> str:
    """The first line of what the database said about ``error``."""
    # Optuna wraps a database error in StorageInternalError with a generic message:
    # the database's own first line says more.
    while isinstance(error, optuna.exceptions.StorageInternalError) and error.__cause__:
        error = error.__cause__
    return first_line(error).rstrip(".")


def dashboard_url(store: str) -> str | None:
    """What to give ``optuna-dashboard`` for the store at ``store`` (a path or URL), its
    password hidden; ``None`` for an in-memory store."""
    url = OptunaMirror.url_of(store)
    return _shown(url) if url else None


def _shown(url: str) -> str:
    """``url`` as a message may quote it: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL has no password to hide
        return url
