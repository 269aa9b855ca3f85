"""Runs with workers on a real PostgreSQL store (tests/postgres.py starts the server on
loopback): two "hosts" (worker processes with caches of their own) sharing one store,
the server stopped for 10 s in the middle of a run, and the run's studies read back by
``optuna.load_study`` and by a real optuna-dashboard."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from engine import Message, Store, Tuner, dashboard_url
from engine.space import SearchSpace
from engine.store import OptunaMirror
from tests.dashboard import get_json, optuna_dashboard
from tests.workers import SLEEPY, check_once_each, in_thread, query, wait_for, worker

pytestmark = pytest.mark.slow

CANDIDATES = ["a", "b", "c"]


def _tuner(url: str, run_id: str, budget: int, **options) -> Tuner:
    return Tuner(objective=SLEEPY, candidates=CANDIDATES, budget=budget, store=url, seed=0,
                 run_id=run_id, **options)  # fmt: skip


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()
        process.wait()
        process.stderr.close()


def test_two_hosts_share_one_postgresql_store(postgres_url: str, tmp_path: Path):
    budget = 12
    tuner = _tuner(postgres_url, "shared", budget, workers=0)
    thread, out = in_thread(tuner)
    hosts = []
    for host in ("gpu1", "gpu2"):  # each with its own cache folder and working folder
        (tmp_path / host).mkdir()
        hosts.append(worker(postgres_url, None, lease=10, sleep=0.5,
                            CODELLMTUNER_CACHE=str(tmp_path / host / "cache"),
                            HOME=str(tmp_path / host)))  # fmt: skip
    try:
        thread.join(timeout=180)
        assert not thread.is_alive() and "error" not in out, out
    finally:
        _stop(hosts)
    check_once_each(postgres_url, "shared", budget)
    who = query(postgres_url, "select distinct worker from jobs where run_id = ?", ["shared"])
    assert {w.split(":")[1] for (w,) in who} == {str(h.pid) for h in hosts}  # both took jobs

    # Each candidate's samples are an Optuna study in the same database.
    url = OptunaMirror.url_of(postgres_url)
    samples = {c: [] for c in CANDIDATES}
    for sample in _samples(postgres_url, "shared"):
        samples[sample.candidate].append(sample)
    for candidate, mine in samples.items():
        trials = optuna.load_study(storage=url, study_name=f"shared/{candidate}").trials
        assert [t.user_attrs["sample_id"] for t in trials] == [s.id for s in mine]
        for trial, sample in zip(trials, mine, strict=True):
            assert trial.params == SearchSpace().trial_values(sample.params)[0]
            assert trial.value == sample.score
    _dashboard_lists(url, {f"shared/{c}": len(s) for c, s in samples.items()})


def _samples(url: str, run_id: str) -> list:
    with contextlib.closing(Store(url)) as store:
        return store.samples(run_id)


def _dashboard_lists(url: str, expected: dict[str, int]) -> None:
    """A real optuna-dashboard on ``url`` lists these studies with these trial counts."""
    with optuna_dashboard(url) as api:
        studies = get_json(api)["study_summaries"]
        assert {s["study_name"]: s["directions"] for s in studies} == dict.fromkeys(
            expected, ["maximize"]
        )
        for study in studies:
            trials = get_json(f"{api}/{study['study_id']}")["trials"]
            assert len(trials) == expected[study["study_name"]]


def test_a_postgresql_server_stopped_for_ten_seconds_mid_run(postgres_server, postgres_url):
    """Workers and the run wait for the server and go on: every sample once, and the run
    shows one warning line."""
    budget = 12
    tuner = _tuner(postgres_url, "outage", budget, workers=0)
    warnings: list[str] = []
    tuner.subscribe(lambda e: warnings.append(e.text) if isinstance(e, Message) else None)
    thread, out = in_thread(tuner)
    workers = [worker(postgres_url, "outage", lease=30, sleep=1.0) for _ in range(2)]
    try:
        wait_for(lambda: len(_samples(postgres_url, "outage")) >= 3, what="3 samples")
        postgres_server.stop()
        time.sleep(10)
        postgres_server.start()
        thread.join(timeout=180)
        assert not thread.is_alive() and "error" not in out, out
    finally:
        if not postgres_server.running:
            postgres_server.start()
        _stop(workers)
    check_once_each(postgres_url, "outage", budget)
    waits = [w for w in warnings if "does not answer" in w]
    assert len(waits) == 1, warnings
    assert dashboard_url(postgres_url).startswith("postgresql+psycopg://postgres@127.0.0.1")
