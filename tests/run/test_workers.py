"""Evaluation workers with real processes: jobs claimed with a lease, a worker killed with
SIGKILL mid-job, local workers started (and restarted) by the run, a run killed with its
jobs in flight and resumed, and a task run on a real model whose samples agree with the
run's own. After each, every sample the run wants is committed exactly once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from engine import Store, Tuner
from engine.errors import ConfigError, TunerError
from engine.run.worker import DEFAULT_LEASE
from tests.objectives import landscape
from tests.workers import ROOT, SLEEPY, check_once_each, env, in_thread, query, wait_for, worker

pytestmark = pytest.mark.slow

CANDIDATES = ["a", "b", "c"]


def test_four_workers_one_killed_mid_job_every_sample_once(tmp_path: Path):
    db, budget = tmp_path / "samples.db", 16
    tuner = Tuner(objective=SLEEPY, candidates=CANDIDATES, budget=budget, store=db, seed=0,
                  workers=0, run_id="four")  # fmt: skip
    thread, out = in_thread(tuner)
    workers = [worker(db, "four") for _ in range(4)]
    try:
        victim = workers[0]
        claimed = "select id from jobs where status = 'claimed' and worker like ?"
        wait_for(lambda: query(db, claimed, [f"%:{victim.pid}:%"]), what="a job of worker 0")
        (job_id,) = query(db, claimed, [f"%:{victim.pid}:%"])[0]
        victim.send_signal(signal.SIGKILL)
        thread.join(timeout=120)
        assert not thread.is_alive() and "error" not in out, out
    finally:
        for process in workers:
            process.kill()
            process.wait()
    assert out["result"].best_candidate == "b"
    check_once_each(db, "four", budget)
    # the killed worker's job went to another once its 2 s lease ran out
    attempts, taker = query(db, "select attempts, worker from jobs where id = ?", [job_id])[0]
    assert attempts == 2 and f":{victim.pid}:" not in taker


def test_a_run_starts_its_workers_and_replaces_one_that_dies(tmp_path: Path):
    db, budget = tmp_path / "samples.db", 12
    os.environ["CODELLMTUNER_TEST_SLEEP"] = "0.5"  # the local workers inherit it
    try:
        tuner = Tuner(objective=SLEEPY, candidates=CANDIDATES, budget=budget, store=db, seed=0,
                      workers=2, run_id="local")  # fmt: skip
        messages: list[str] = []
        tuner.subscribe(lambda e: messages.append(getattr(e, "text", "")))
        thread, out = in_thread(tuner)
        running = "select pid from workers where job is not null"
        wait_for(lambda: query(db, running), what="a local worker on a job")
        killed = query(db, running)[0][0]
        os.kill(killed, signal.SIGKILL)
        killed_at = time.monotonic()
        thread.join(timeout=120)
        after_the_kill = time.monotonic() - killed_at
    finally:
        del os.environ["CODELLMTUNER_TEST_SLEEP"]
    assert "error" not in out, out
    check_once_each(db, "local", budget)
    assert any("exited with code -9; starting another" in m for m in messages), messages
    # The run saw its worker die and gave the job back at once: it did not wait out the
    # lease (the rest of the run is a dozen half-second evaluations on two workers).
    assert any(m.endswith("(its job went back to the queue)") for m in messages), messages
    (claims,) = query(db, "select max(attempts) from jobs")[0]
    assert claims == 2 and after_the_kill < DEFAULT_LEASE, after_the_kill
    # the others stopped with the run; only the killed one could not say so
    assert query(db, "select pid from workers") == [(killed,)]


def test_an_unsettled_choice_waits_for_the_stage_1_samples_in_flight(tmp_path: Path):
    # Every candidate scores the same, so no leader is settled when stage 1 has proposed
    # its last sample; b's samples take 20 times longer than the others': one of them is
    # still in flight then, and the winner is chosen once it is in.
    db = tmp_path / "samples.db"
    Tuner(objective="tests.objectives:flat_late_b", candidates=CANDIDATES, budget=8,
          store=db, seed=0, workers=2, run_id="flat").run()  # fmt: skip
    last_stage1 = query(db, "select max(created_at) from samples where stage = 'sampling'")
    first_stage3 = query(db, "select min(created_at) from jobs where stage = 'tuning'")
    assert last_stage1[0][0] < first_stage3[0][0]


_COORDINATOR = """
import sys
import time
from engine import Tuner
run = Tuner.resume("killed", store=sys.argv[1]) if sys.argv[2] == "resume" else Tuner(
    objective="tests.objectives:sleepy_landscape", candidates=["a", "b", "c"], budget=14,
    store=sys.argv[1], seed=0, workers=3, run_id="killed")
run.run()
"""


def test_a_run_killed_with_jobs_in_flight_resumes_them(tmp_path: Path):
    db = tmp_path / "samples.db"
    command = [sys.executable, "-c", _COORDINATOR, str(db)]
    first = subprocess.Popen([*command, "new"], cwd=ROOT, env=env(2.0))
    # A job claimed in the last half second has over a second of evaluation left: killed
    # then, the run leaves it in flight. (Any job in flight would not do: the workers
    # start together, so their jobs end within milliseconds of each other.)
    fresh = ("select count(*) from jobs where status = 'pending' "
             "or (status = 'claimed' and lease_until > ?)")  # fmt: skip
    try:
        wait_for(lambda: db.exists() and query(db, "select count(*) from samples")[0][0] >= 4
                 and query(db, fresh, [time.time() + DEFAULT_LEASE - 0.5])[0][0] > 0,
                 what="4 samples and a job just claimed")  # fmt: skip
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        first.kill()
    in_flight = query(db, "select count(*) from jobs where status != 'done'")[0][0]
    assert in_flight > 0  # proposed, not yet taken in: the resumed run keeps them
    # the workers it started stop on their own: their run's process is gone
    wait_for(lambda: not query(db, "select * from workers"), timeout=30, what="workers gone")
    resumed = subprocess.run([*command, "resume"], cwd=ROOT, env=env(0.2), timeout=300)
    assert resumed.returncode == 0
    check_once_each(db, "killed", 14)


def test_a_job_that_fails_stops_the_run_with_its_reason(tmp_path: Path):
    db = tmp_path / "samples.db"
    tuner = Tuner(objective="tests.objectives:broken_landscape", candidates=CANDIDATES,
                  budget=9, store=db, seed=0, workers=2, run_id="broken")  # fmt: skip
    with pytest.raises(TunerError, match=r"^c sampling trial 0 failed on .*: ValueError: c can"):
        tuner.run()
    with contextlib.closing(Store(db)) as store:
        run = store.get_run("broken")
    assert run.status == "failed" and "c cannot be evaluated" in run.error
    assert query(db, "select count(*) from workers") == [(0,)]


def test_a_job_that_kills_every_worker_stops_the_run_after_three(tmp_path: Path):
    """One worker at a time, a new one whenever the last died: the third death on the
    same job stops the run."""
    db = tmp_path / "samples.db"
    tuner = Tuner(objective="tests.objectives:crashing_landscape", candidates=CANDIDATES,
                  budget=9, store=db, seed=0, workers=0, run_id="crash")  # fmt: skip
    thread, out = in_thread(tuner)
    workers = [worker(db, "crash", lease=1.0)]
    try:
        while thread.is_alive() and len(workers) < 5:
            if workers[-1].poll() is not None:
                workers.append(worker(db, "crash", lease=1.0))
            time.sleep(0.1)
        thread.join(timeout=60)
    finally:
        for process in workers:
            process.kill()
            process.wait()
    assert str(out.get("error")).startswith(
        "c sampling trial 0: the worker evaluating it stopped 3 times"
    ), out
    assert [process.returncode for process in workers][:3] == [3, 3, 3]


@pytest.mark.parametrize(
    ("objective", "store", "message"),
    [
        (landscape, "samples.db", "import path"),
        (SLEEPY, None, "give the run a store"),
        ("tests.objectives:nothing", "samples.db", "has no 'nothing'"),
        ("no_such_module:f", "samples.db", "cannot import no_such_module"),
        ("landscape", "samples.db", "'module:function'"),
    ],
)
def test_what_workers_cannot_take_is_one_clear_line(tmp_path, objective, store, message):
    with pytest.raises(ConfigError, match=message):
        Tuner(objective=objective, candidates=CANDIDATES, budget=9, workers=2,
              store=store and tmp_path / store).run()  # fmt: skip


def test_a_worker_on_a_store_it_cannot_open_says_so_in_one_line(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "tui.commands", "worker", "--store", str(tmp_path / "no" / "x.db")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "cannot open store" in result.stderr


def test_a_task_run_with_two_workers_scores_as_the_run_itself(tiny_model_dir: Path, tmp_path):
    """Real models in two worker processes: the shared default point of each candidate
    scores what the run scores in its own process."""
    args = [
        "run", "--headless", "-c", f"tiny={tiny_model_dir}", "-c", f"{tiny_model_dir}@raw",
        "--budget", "6", "--problems", "2", "--holdout-problems", "2", "--device", "cpu",
        "--param", "max_new_tokens=8:16", "--seed", "3",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for workers, name in (("1", "alone"), ("2", "two")):
        result = subprocess.run(
            [sys.executable, "-m", "tui.commands", *args, "--workers", workers, "--run-id", name,
             "--store", str(tmp_path / f"{name}.db")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    with (
        contextlib.closing(Store(tmp_path / "alone.db")) as a,
        contextlib.closing(Store(tmp_path / "two.db")) as b,
    ):
        first = {s.candidate: s for s in a.samples("alone") if s.trial == 0}
        second = {s.candidate: s for s in b.samples("two") if s.trial == 0 and s.stage != "holdout"}
        assert len(b.samples("two", stage="holdout")) == 1
        keys = Counter((s.candidate, s.stage, s.trial) for s in b.samples("two"))
    assert set(keys.values()) == {1}
    assert set(first) == set(second) and len(first) == 2
    for name, sample in first.items():
        assert second[name].params == sample.params
        assert second[name].score == sample.score
        assert second[name].generated_tokens == sample.generated_tokens
