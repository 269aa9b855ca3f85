"""Crash and resume of real headless runs (``codellmtuner run --headless``) on a tiny model.

A run is killed with ``SIGKILL`` at the engine's fault points (``engine/_faults.py``:
after generation, before scoring, inside and right after a sample's commit, at the stage
switch), one or several times in a row, and resumed with ``codellmtuner resume`` until it
finishes. After every kill the store must hold exactly a prefix of what an uninterrupted
run commits (nothing half-written, nothing lost); after the last resume the samples,
their completions, the final ranking and the result must equal the uninterrupted run's
(the tiny model on CPU is deterministic, greedy and seeded sampling alike: checked first).
SIGINT and SIGTERM must stop a run with one line and exit code 130; a stopped run resumes to
the same end.

Every run is a real process (about 5-10 s: torch import, model load); 19 in all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine import Store
from engine._faults import ENV as CRASH_ENV
from engine.store._store import Run, Sample
from tests import ROOT
from tests.stores import committed_samples

pytestmark = pytest.mark.slow

RUN_ID = "crash"
# 2 candidates: 4 stage-1 samples, then 4 stage-3 samples of the winner (trials 2-5: the
# last two come after TPE's 4 random startup trials, so they depend on the study rebuilt
# from the store), then 1 held-out sample.
BUDGET = 8
SAMPLES = BUDGET + 1
KILLED = -signal.SIGKILL


# -- running the CLI -----------------------------------------------------------------------


def _env(crash: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    # One torch thread: on a small shared machine a tiny model runs twice as fast.
    env["OMP_NUM_THREADS"] = "1"
    if crash:
        env[CRASH_ENV] = crash
    return env


def _run_args(model: Path, db: Path, problems: int = 2) -> list[str]:
    # 2 problems: one chunk per sample; more (``rungs``): several, with a look between
    return [
        "run", "--headless", "--candidate", f"tiny={model}", "--candidate", f"{model}@raw",
        "--budget", str(BUDGET), "--problems", str(problems), "--holdout-problems", "2",
        "--param", "max_new_tokens=8:16", "--seed", "3", "--device", "cpu",
        "--run-id", RUN_ID, "--store", str(db),
    ]  # fmt: skip


def _resume_args(db: Path) -> list[str]:
    return ["resume", RUN_ID, "--headless", "--store", str(db)]


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "tui.commands", *args]


def _cli(args: list[str], crash: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(args), cwd=ROOT, env=_env(crash), capture_output=True, text=True, timeout=600
    )


# -- what a store holds --------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """A run as its store holds it, in comparable form."""

    run: Run
    ids: list[int]  # sample ids in commit order: a committed sample keeps its id
    samples: list[tuple]  # (candidate, stage, trial, params, score, metrics, completions)
    costs: list[tuple[int, int]]  # (generated_tokens, cached) of each sample
    ranked: int  # samples covered by the latest ranking (0: none yet)
    ranking: list[dict[str, Any]]  # the latest ranking's entries
    generations: frozenset[str]  # keys of the completion cache


def _view(store: Store, sample: Sample) -> tuple:
    """A sample without its timing and cache accounting, with its completions' texts."""
    keys = [o["generation"] for o in store.outcomes(sample.id)]
    cache = store.cached_generations(keys)
    texts = tuple(cache[k]["text"] for k in keys)
    return (sample.candidate, sample.stage, sample.trial, sample.params, sample.score,
            sample.metrics, texts)  # fmt: skip


def _snapshot(db: Path) -> Snapshot:
    with contextlib.closing(Store(db)) as store:
        samples = store.samples(RUN_ID)
        rankings = store.rankings(RUN_ID)
        keys = {row["key"] for row in store.db.query("select key from generations")}
        return Snapshot(
            run=store.get_run(RUN_ID),
            ids=[s.id for s in samples],
            samples=[_view(store, s) for s in samples],
            costs=[(s.generated_tokens, s.cached) for s in samples],
            ranked=rankings[-1]["n_samples"] if rankings else 0,
            ranking=rankings[-1]["entries"] if rankings else [],
            generations=frozenset(keys),
        )


# -- checks --------------------------------------------------------------------------------


def _assert_prefix(now: Snapshot, before: Snapshot | None, reference: Snapshot, n: int) -> None:
    """After a kill: exactly the reference's first ``n`` samples, earlier ones untouched."""
    assert now.samples == reference.samples[:n]
    if before is not None:
        assert now.ids[: len(before.ids)] == before.ids  # no committed sample lost or rewritten


def _assert_equal_to_reference(final: Snapshot, reference: Snapshot) -> None:
    keys = [(s[0], s[1], s[2]) for s in final.samples]
    assert [k for k, n in Counter(keys).items() if n > 1] == []  # no duplicates
    stages = Counter(s[1] for s in final.samples)
    assert stages["sampling"] + stages["tuning"] == BUDGET and stages["holdout"] == 1
    assert final.run.status == "finished"
    assert final.samples == reference.samples
    assert final.generations == reference.generations  # nothing generated that it would not
    assert final.ranked == BUDGET and final.ranking == reference.ranking
    assert (final.run.stage, final.run.winner) == (reference.run.stage, reference.run.winner)
    assert final.run.result == reference.run.result  # winner, best params, held-out metrics


def _crash_and_resume(
    model: Path, db: Path, steps: list[tuple[str, int]], reference: Snapshot, problems: int = 2
) -> list[Snapshot]:
    """Start the run, then resume it: each step kills that process at a fault point and
    expects ``n`` samples committed. A last resume without faults finishes the run.
    Returns the snapshot after each kill, then the final one."""
    snapshots: list[Snapshot] = []
    for i, (crash, n) in enumerate(steps):
        args = _resume_args(db) if i else _run_args(model, db, problems)
        result = _cli(args, crash)
        assert result.returncode == KILLED, (crash, result.returncode, result.stderr[-2000:])
        snapshots.append(_snapshot(db))
        _assert_prefix(snapshots[-1], snapshots[-2] if i else None, reference, n)
    result = _cli(_resume_args(db))
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = sum(s[1] != "holdout" for s in snapshots[-1].samples)
    if resumed:
        assert f"resuming with {resumed} samples" in result.stdout
    snapshots.append(_snapshot(db))
    assert snapshots[-1].ids[: len(snapshots[-2].ids)] == snapshots[-2].ids
    _assert_equal_to_reference(snapshots[-1], reference)
    return snapshots


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """The uninterrupted run every resumed run must end up equal to."""
    db = tmp_path_factory.mktemp("reference") / "samples.db"
    result = _cli(_run_args(tiny_model_dir, db))
    assert result.returncode == 0, result.stderr[-2000:]
    snapshot = _snapshot(db)
    assert len(snapshot.samples) == SAMPLES
    return snapshot


# -- tests ---------------------------------------------------------------------------------


def test_two_uninterrupted_runs_agree(tiny_model_dir: Path, tmp_path: Path, reference: Snapshot):
    # The premise of every comparison below: the same seed gives the same run, sampled
    # completions included (the reference samples with temperature > 0 too).
    assert any(s[3]["temperature"] > 0 for s in reference.samples)
    db = tmp_path / "samples.db"
    assert _cli(_run_args(tiny_model_dir, db)).returncode == 0
    again = _snapshot(db)
    _assert_equal_to_reference(again, reference)
    assert again.costs == reference.costs


def test_a_kill_before_the_cache_write_generates_again(
    tiny_model_dir: Path, tmp_path: Path, reference: Snapshot
):
    # Killed after the first generation, before anything reached the store.
    first, final = _crash_and_resume(tiny_model_dir, tmp_path / "s.db", [("generated:1", 0)],
                                     reference)  # fmt: skip
    assert first.generations == frozenset() and first.run.status == "running"
    assert final.costs == reference.costs  # regenerated: the same tokens, none from cache


def test_a_kill_while_scoring_does_not_generate_again(
    tiny_model_dir: Path, tmp_path: Path, reference: Snapshot
):
    # The second sample's completions were cached, then the process died before scoring.
    killed, final = _crash_and_resume(tiny_model_dir, tmp_path / "s.db", [("scoring:2", 1)],
                                      reference)  # fmt: skip
    assert len(killed.generations) == len(reference.samples[0][6]) + len(reference.samples[1][6])
    problems = len(reference.samples[1][6])
    assert reference.costs[1][0] > 0
    assert final.costs[1] == (0, problems)  # resumed: 0 tokens generated, every one cached
    assert final.costs[2:] == reference.costs[2:]


def test_a_kill_between_chunks_loses_at_most_that_chunk(tiny_model_dir: Path, tmp_path: Path):
    # 5 problems are scored in two chunks (4, then 1: engine.selection.rungs). Killed after
    # the third sample's first chunk: its 4 problems' completions are kept, and the
    # resumed run generates only the fifth, then ends as the uninterrupted run did.
    db = tmp_path / "reference.db"
    assert _cli(_run_args(tiny_model_dir, db, problems=5)).returncode == 0
    reference = _snapshot(db)
    killed, final = _crash_and_resume(tiny_model_dir, tmp_path / "s.db", [("chunk:3", 2)],
                                      reference, problems=5)  # fmt: skip
    committed = sum(len(s[6]) for s in killed.samples)
    assert len(killed.generations) == committed + 4  # and the killed sample's first chunk
    assert final.costs[2][1] == 4 and final.costs[:2] == reference.costs[:2]


def test_kills_at_the_stage_switch_in_stage_three_and_during_holdout(
    tiny_model_dir: Path, tmp_path: Path, reference: Snapshot
):
    steps = [
        ("committed:4", 4),  # last stage-1 sample committed, its ranking not yet written
        ("selected:1", 4),  # resumed, the winner stored, then killed before stage 3
        ("commit:2", 5),  # stage 3: killed inside the second sample's transaction
        ("scoring:4", 8),  # stage 3 finished, the held-out completions cached, then killed
    ]
    after = _crash_and_resume(tiny_model_dir, tmp_path / "s.db", steps, reference)
    assert after[0].ranked == 3 and after[0].run.winner is None
    assert after[1].run.winner == reference.run.winner and after[1].run.stage == "tuning"
    assert after[1].ranked == 4 and after[1].ranking != []
    assert after[3].run.status == "running" and after[3].run.result is None
    assert after[-1].costs[-1] == (0, len(reference.samples[-1][6]))  # held-out from cache


def test_a_run_killed_at_every_point_in_turn(
    tiny_model_dir: Path, tmp_path: Path, reference: Snapshot
):
    steps = [
        ("generated:4", 3),  # stage 1, the fourth sample's completions lost
        ("commit:1", 3),  # the same sample generated again, killed inside its transaction
        ("scoring:3", 5),  # stage 3's second sample cached, killed before scoring
        ("committed:4", 9),  # the held-out sample committed, the result not yet stored
    ]
    after = _crash_and_resume(tiny_model_dir, tmp_path / "s.db", steps, reference)
    assert after[3].run.result is None and after[3].run.status == "running"


def test_a_kill_while_a_model_loads_then_resume_loses_nothing(
    tiny_model_dir: Path, wide_model_dir: Path, tmp_path: Path
):
    # Two models of which one fits --device-memory: each move between the candidates
    # evicts one and loads the other. Killed during the third load (the first reload),
    # the resumed run ends as the uninterrupted one with the same budget did.
    from engine.generation import weights_bytes

    one_fits = f"{int(1.5 * weights_bytes(wide_model_dir, 'float32'))}B"

    def args(db: Path) -> list[str]:
        return [
            "run", "--headless", "--candidate", f"tiny={tiny_model_dir}",
            "--candidate", f"wide={wide_model_dir}@raw", "--budget", str(BUDGET),
            "--problems", "2", "--holdout-problems", "2", "--param", "max_new_tokens=8:16",
            "--seed", "3", "--device", "cpu", "--device-memory", one_fits,
            "--run-id", RUN_ID, "--store", str(db),
        ]  # fmt: skip

    reference_db, db = tmp_path / "reference.db", tmp_path / "s.db"
    uninterrupted = _cli(args(reference_db))
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
    assert "evicted tiny" in uninterrupted.stdout and "loaded tiny" in uninterrupted.stdout
    reference = _snapshot(reference_db)
    killed = _cli(args(db), "loading:3")
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    before = _snapshot(db)
    assert 0 < len(before.samples) < SAMPLES
    _assert_prefix(before, None, reference, len(before.samples))
    resumed = _cli(_resume_args(db))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _snapshot(db)
    assert after.ids[: len(before.ids)] == before.ids
    _assert_equal_to_reference(after, reference)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_and_sigterm_stop_with_one_line_and_the_run_resumes(
    tiny_model_dir: Path, tmp_path: Path, reference: Snapshot, signum: signal.Signals
):
    db = tmp_path / "s.db"
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        # Its own session: the signal reaches the run only, and what it leaves is findable.
        proc = subprocess.Popen(_command(_run_args(tiny_model_dir, db)), cwd=ROOT, env=_env(),
                                stdout=stdout, stderr=stderr, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 300
        while committed_samples(db) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signum)
        code = proc.wait(timeout=120)
    stopped = _snapshot(db)
    assert code == 130, (code, err.read_text()[-2000:])
    # One line on stderr, telling how to resume; no traceback anywhere.
    lines = err.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stopped"), lines
    assert lines[0].endswith(f"codellmtuner resume {RUN_ID} --store {db}")
    assert "Traceback" not in out.read_text()
    with pytest.raises(ProcessLookupError):  # nothing of the run is left running
        os.killpg(proc.pid, 0)
    assert stopped.run.status == "stopped"
    n = len(stopped.samples)
    assert 1 <= n < SAMPLES
    _assert_prefix(stopped, None, reference, n)
    if signum == signal.SIGTERM:
        return  # past the stop, the same path as SIGINT: resumed once, below, is enough

    assert _cli(_resume_args(db)).returncode == 0
    final = _snapshot(db)
    assert final.ids[:n] == stopped.ids
    _assert_equal_to_reference(final, reference)
