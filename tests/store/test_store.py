import sqlite3

import pytest

from engine.errors import StoreError
from engine.store import Store
from engine.store._store import Sample


def _sample(trial: int, **kw) -> Sample:
    base = dict(run_id="r1", candidate="a", stage="sampling", trial=trial,
                params={"temperature": 0.0}, score=0.5, metrics={"avg_tests": 0.5})  # fmt: skip
    return Sample(**{**base, **kw})


def test_samples_round_trip_with_outcomes(tmp_path):
    store = Store(tmp_path / "s.db")
    store.create_run("r1", budget=4, seed=0, config={"x": 1})
    saved = store.add_sample(
        _sample(0), [{"problem_id": "p1", "status": "passed", "passed": 1, "fraction": 1.0}]
    )
    assert saved.id is not None and saved.created_at > 0
    [loaded] = store.samples("r1")
    assert loaded.params == {"temperature": 0.0} and loaded.metrics == {"avg_tests": 0.5}
    assert store.outcomes(saved.id)[0]["problem_id"] == "p1"
    assert store.get_run("r1").config == {"x": 1}
    store.close()
    # WAL mode, so a viewer can read while a run writes
    assert sqlite3.connect(tmp_path / "s.db").execute("pragma journal_mode").fetchone()[0] == "wal"


def test_a_sample_is_never_recorded_twice(tmp_path):
    store = Store(tmp_path / "s.db")
    store.create_run("r1", budget=4, seed=0, config={})
    store.add_sample(_sample(0))
    with pytest.raises(StoreError, match="already has a sampling trial 0"):
        store.add_sample(_sample(0, score=0.9))
    assert [s.score for s in store.samples("r1")] == [0.5]


def test_run_lookup_by_prefix_and_latest(tmp_path):
    store = Store(tmp_path / "s.db")
    store.create_run("20260101-aaaa", budget=4, seed=0, config={})
    store.create_run("20260102-bbbb", budget=4, seed=0, config={})
    assert store.get_run("20260101").id == "20260101-aaaa"
    assert store.get_run("latest").id == "20260102-bbbb"
    with pytest.raises(StoreError, match="matches several runs"):
        store.get_run("2026")
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.get_run("nope")
    with pytest.raises(StoreError, match="already exists"):
        store.create_run("20260101-aaaa", budget=4, seed=0, config={})


def test_generation_cache(tmp_path):
    store = Store(tmp_path / "s.db")
    store.add_generations([{"key": "k1", "model": "m", "problem_id": "p", "text": "x",
                            "prompt_tokens": 3, "generated_tokens": 1}])  # fmt: skip
    assert set(store.cached_generations(["k1", "k2"])) == {"k1"}


def test_a_file_that_is_not_a_database_is_explained(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite store"):
        Store(path)


def test_messages_are_kept_per_run_in_order(tmp_path):
    store = Store(tmp_path / "s.db")
    store.add_message("a", "warning", "out of memory at batch 8; retrying with 4")
    store.add_message("b", "info", "other run")
    store.add_message("a", "info", "second")
    got = store.messages("a")
    assert [m["text"] for m in got] == ["out of memory at batch 8; retrying with 4", "second"]
    assert store.messages("a", after=got[0]["id"])[0]["text"] == "second"


def test_a_schema_1_store_gains_replicates_and_keeps_its_outcomes(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(
        "create table outcomes (sample_id integer, problem_id text, status text, passed integer,"
        " fraction float, generation text, output text, seconds float,"
        " primary key (sample_id, problem_id))"
    )
    db.execute("insert into outcomes values (1, 'p1', 'passed', 1, 1.0, 'k', '', 0.1)")
    db.commit()
    db.close()
    store = Store(path)
    assert store.outcomes(1) == [
        {"sample_id": 1, "problem_id": "p1", "status": "passed", "passed": 1, "fraction": 1.0,
         "generation": "k", "output": "", "seconds": 0.1, "replicate": 0, "metrics": {}}
    ]  # fmt: skip
    store.db["outcomes"].insert({"sample_id": 1, "problem_id": "p1", "replicate": 1})
    assert [o["replicate"] for o in store.outcomes(1)] == [0, 1]


def test_outcome_metrics_round_trip(tmp_path):
    store = Store(tmp_path / "s.db")
    store.create_run("r1", budget=4, seed=0, config={})
    outcomes = [{"problem_id": "p", "replicate": r, "status": "scored", "passed": 0,
                 "fraction": 0.5, "metrics": {"bleu": 0.5 + r}} for r in range(2)]  # fmt: skip
    saved = store.add_sample(_sample(0), outcomes)
    assert [o["metrics"] for o in store.outcomes(saved.id)] == [{"bleu": 0.5}, {"bleu": 1.5}]
