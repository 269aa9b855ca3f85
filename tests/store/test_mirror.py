"""The Optuna mirror (engine.store._mirror): a real run's samples, copied into Optuna's tables of
the same SQLite file, read back by optuna.load_study and by the optuna-dashboard CLI."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from engine import Tuner
from engine.errors import StoreError
from engine.space import SearchSpace
from engine.store import OptunaMirror, Store
from engine.store._mirror import MIRRORED_STAGES, running_means
from engine.store._store import SCHEMA_NAMES
from tests.dashboard import get_json, optuna_dashboard

PROBLEMS = 6


def plain(candidate: str, params: dict) -> float:
    return (1.0 if candidate == "a" else 0.5) - (params["temperature"] - 0.7) ** 2


def per_problem(candidate: str, params: dict, indices: list[int]) -> list[float]:
    """A score per problem that differs from problem to problem, so the running mean moves."""
    base = plain(candidate, params)
    return [base + 0.1 * (i % 3) for i in indices]


def tune(store: Path, **options) -> tuple[str, list]:
    """Run a real tiny tuning run into ``store``; its id and its stored samples."""
    options = {"objective": plain, **options}
    result = Tuner(candidates=["a", "b"], budget=10, store=store, seed=0, **options).run()
    with contextlib.closing(Store(store)) as s:
        return result.run_id, s.samples(result.run_id)


def mirror_all(url: str, run_id: str, samples: list) -> dict[str, int]:
    mirror = OptunaMirror(url)
    try:
        return {c: mirror.sync(run_id, c, samples, SearchSpace()) for c in ("a", "b")}
    finally:
        mirror.close()


def budget_samples(samples: list, candidate: str) -> list:
    return [s for s in samples if s.candidate == candidate and s.stage in MIRRORED_STAGES]


def tables(db: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}


# -- url_of -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("store", "url"),
    [
        ("/data/samples.db", "sqlite:////data/samples.db"),
        ("/data/a b?#/s.db", "sqlite:////data/a b%3F%23/s.db"),
        (":memory:", None),
        ("postgresql://tuner@db.lan:5432/runs", "postgresql+psycopg://tuner@db.lan:5432/runs"),
        ("postgres://tuner:pw@db.lan/runs", "postgresql+psycopg://tuner:pw@db.lan/runs"),
        ("POSTGRESQL://tuner@db.lan/runs", "postgresql+psycopg://tuner@db.lan/runs"),
        ("postgresql+psycopg://tuner@db.lan/runs", "postgresql+psycopg://tuner@db.lan/runs"),
        ("sqlite:////data/samples.db", "sqlite:////data/samples.db"),
    ],
)
def test_url_of(store, url):
    assert OptunaMirror.url_of(store) == url


def test_url_of_a_relative_path_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert OptunaMirror.url_of("samples.db") == f"sqlite:///{tmp_path}/samples.db"


def test_running_means():
    assert running_means([1.0, 0.0, 0.5]) == {0: 1.0, 1: 0.5, 2: 0.5}
    assert running_means(()) == {}


# -- a real run, mirrored -----------------------------------------------------------------------


def test_a_run_is_mirrored_into_optuna_studies(tmp_path):
    db = tmp_path / "samples.db"
    run_id, samples = tune(db)  # the run mirrors each sample as it takes it in
    url = OptunaMirror.url_of(str(db))
    assert url == f"sqlite:///{db}"

    # Optuna's tables came next to ours, and none of them is one of ours.
    optunas = tables(db) - {"meta", "runs", "samples", "outcomes", "generations", "rankings",
                            "messages", "controls", "jobs", "workers"}  # fmt: skip
    assert {"studies", "trials", "trial_user_attributes"} <= optunas
    assert not optunas & SCHEMA_NAMES
    assert mirror_all(url, run_id, samples) == {"a": 0, "b": 0}  # nothing left to add
    for candidate in ("a", "b"):
        expected = budget_samples(samples, candidate)
        assert len(expected) > 0
        study = optuna.load_study(storage=url, study_name=f"{run_id}/{candidate}")
        assert study.direction == optuna.study.StudyDirection.MAXIMIZE
        assert len(study.trials) == len(expected)
        for sample, trial in zip(expected, study.trials, strict=True):  # in commit order
            values, _ = SearchSpace().trial_values(sample.params)
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.params == values
            assert trial.value == sample.score
            assert trial.intermediate_values == {}  # an objective without problems
            assert trial.user_attrs == {
                **sample.metrics, "sample_id": sample.id, "stage": sample.stage,
                "cached": sample.cached, "prompt_tokens": sample.prompt_tokens,
                "generated_tokens": sample.generated_tokens, "seconds": sample.seconds,
                "fidelity": sample.fidelity, "switch_seconds": sample.switch_seconds,
            }  # fmt: skip
            assert trial.datetime_complete.timestamp() == pytest.approx(sample.created_at)

    # Idempotent: the same instance, and a fresh one (a resumed run), add nothing again.
    mirror = OptunaMirror(url)
    assert mirror.sync(run_id, "a", samples, SearchSpace()) == 0
    assert mirror.sync(run_id, "a", samples, SearchSpace()) == 0
    # A held-out sample is outside the budget: never mirrored.
    holdout = replace(samples[0], stage="holdout", id=10**6)
    assert mirror.sync(run_id, "a", [*samples, holdout], SearchSpace()) == 0
    mirror.close()
    assert len(optuna.load_study(storage=url, study_name=f"{run_id}/a").trials) == len(
        budget_samples(samples, "a")
    )

    # Our store still opens (writing nothing: its schema is current) and reads the file.
    with contextlib.closing(Store(db)) as store:
        assert store.samples(run_id) == samples
        assert store.get_run(run_id).status == "finished"


def test_problem_scores_become_intermediate_values(tmp_path):
    db = tmp_path / "samples.db"
    run_id, samples = tune(db, objective=per_problem, problems=PROBLEMS)
    url = OptunaMirror.url_of(str(tmp_path / "mirror.db"))  # not the run's own mirror
    mirror = OptunaMirror(url)
    first = budget_samples(samples, "a")
    # After each sample, as the run calls it: one new trial per call.
    assert [mirror.sync(run_id, "a", first[: k + 1], SearchSpace()) for k in range(len(first))] == [
        1
    ] * len(first)
    mirror.close()

    trials = optuna.load_study(storage=url, study_name=f"{run_id}/a").trials
    for sample, trial in zip(first, trials, strict=True):
        assert sample.problem_scores  # the objective has problems
        steps = trial.intermediate_values
        assert list(steps) == list(range(len(sample.problem_scores)))
        assert steps == pytest.approx(running_means(sample.problem_scores))
        assert steps[len(steps) - 1] == pytest.approx(sample.score)  # the mean of them all
        assert trial.user_attrs["fidelity"] == sample.fidelity


# -- optuna-dashboard ---------------------------------------------------------------------------


def test_optuna_dashboard_shows_the_mirror_while_the_store_is_written(tmp_path):
    db = tmp_path / "samples.db"
    run_id, samples = tune(db)  # mirrored by the run itself
    url = OptunaMirror.url_of(str(db))

    with optuna_dashboard(url) as api:
        studies = get_json(api)["study_summaries"]
        assert sorted(s["study_name"] for s in studies) == [f"{run_id}/a", f"{run_id}/b"]
        for study in studies:
            candidate = study["study_name"].rsplit("/", 1)[1]
            assert study["directions"] == ["maximize"]
            detail = get_json(f"{api}/{study['study_id']}")
            assert len(detail["trials"]) == len(budget_samples(samples, candidate))

        # While the dashboard holds the file open (and reads it), the run still writes.
        with contextlib.closing(Store(db, timeout=5)) as store:
            started = time.monotonic()
            store.add_message(run_id, "info", "written while optuna-dashboard runs")
            assert time.monotonic() - started < 5
        get_json(f"{api}/{studies[0]['study_id']}")
        # And the mirror too: a new sample's trial shows up in the dashboard.
        extra = replace(samples[-1], candidate="b", id=10**6, created_at=time.time())
        mirror = OptunaMirror(url)
        started = time.monotonic()
        assert mirror.sync(run_id, "b", [*samples, extra], SearchSpace()) == 1
        assert time.monotonic() - started < 5
        mirror.close()
        b = next(s for s in studies if s["study_name"].endswith("/b"))
        expected = len(budget_samples(samples, "b")) + 1
        deadline = time.monotonic() + 10  # the dashboard caches a study's trials for 2 s
        while len(get_json(f"{api}/{b['study_id']}")["trials"]) != expected:
            assert time.monotonic() < deadline, "the new trial never showed up"
            time.sleep(0.5)


# -- failures -----------------------------------------------------------------------------------


def test_a_database_that_cannot_be_opened_is_one_clear_line(tmp_path):
    url = OptunaMirror.url_of(str(tmp_path / "missing" / "samples.db"))
    with pytest.raises(StoreError) as error:
        OptunaMirror(url)
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "missing") in message
    assert "folder exists" in message  # what to do


def test_only_committed_samples_are_mirrored(tmp_path):
    db = tmp_path / "samples.db"
    Store(db).close()
    mirror = OptunaMirror(OptunaMirror.url_of(str(db)))
    sample = replace(_any_sample(), id=None)
    with pytest.raises(StoreError, match="no id"):
        mirror.sync(sample.run_id, sample.candidate, [sample], SearchSpace())
    assert mirror.sync("other-run", "a", [], SearchSpace()) == 0
    mirror.close()


def _any_sample():
    from engine.records import Sample

    params = SearchSpace().default_params()
    return Sample(run_id="r", candidate="a", stage="sampling", trial=0, params=params, score=0.5)


def test_processes_opening_a_new_store_at_once_all_get_the_mirror(tmp_path):
    """Runs started together race to create Optuna's tables; the losers must retry, not
    fail. Threads with their own connections race as processes do, at a lower cost."""
    for attempt in range(2):
        db = tmp_path / f"samples{attempt}.db"
        Store(db).close()
        url = OptunaMirror.url_of(str(db))
        start, errors = threading.Barrier(4), []

        def open_mirror(url=url, start=start, errors=errors) -> None:
            start.wait()
            try:
                OptunaMirror(url).close()
            except StoreError as error:
                errors.append(error)

        threads = [threading.Thread(target=open_mirror) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
