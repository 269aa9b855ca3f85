"""Resource faults: out of memory while generating, a full disk, a damaged samples.db.

- Out of memory: a real allocation failure of torch's CPU allocator under ``RLIMIT_AS``
  (in a child process) halves the batch and generates every prompt, with the outputs of
  an unlimited run; one prompt that does not fit fails with a one-line TunerError.
- Disk full: SQLite's page limit (``PRAGMA max_page_count``, the same SQLITE_FULL a full
  disk gives) and a real full tmpfs (bubblewrap, when available). A failed write loses
  that sample only; the run takes it again and ends as an uninterrupted run would; a disk
  that stays full stops the run after a few samples, and resume finishes it.
- Damaged store: random bytes, truncation and every page of a real store overwritten in
  turn; every operation, and the CLI, explains it as a StoreError, never a raw sqlite3
  error or a traceback.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

import engine.run._tuner
from engine import Message, Store, StoreError, Tuner
from engine.generation import resolve_model
from engine.generation.backends import Backend, Generation
from engine.generation.backends.transformers import TransformersBackend, is_out_of_memory
from engine.run import RunFollower
from engine.store import StoreFullError
from engine.store._sql import TABLES
from engine.store._store import Job, Sample
from tests import ROOT
from tests.objectives import landscape

LINUX = sys.platform.startswith("linux")


def _samples(store_path: Path, run_id: str) -> list[tuple]:
    """A run's samples without ids and times: what must match between two runs."""
    store = Store(store_path)
    try:
        return [(s.candidate, s.stage, s.trial, s.params, s.score) for s in store.samples(run_id)]
    finally:
        store.close()


def _warnings(tuner: Tuner) -> list[str]:
    texts: list[str] = []
    tuner.subscribe(lambda e: isinstance(e, Message) and texts.append(e.text))
    return texts


# -- out of memory ------------------------------------------------------------------------------

# The child loads the tiny model, warms it up on a short prompt, then caps its address space
# at what it uses now plus MARGIN MiB and generates 32 long prompts in one batch. One
# thread and one malloc arena keep the address space from growing for other reasons.
OOM_CHILD = """
import json, resource, sys, torch
torch.set_num_threads(1)
from engine.generation.backends.transformers import TransformersBackend
from engine.errors import TunerError
from engine.generation._models import resolve_model
folder, margin, prompts = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
kwargs = json.loads(sys.argv[4])
warnings = []
backend = TransformersBackend(resolve_model(folder), device="cpu", batch_size=len(prompts),
                              on_warning=warnings.append)
backend.generate(["x"], kwargs, seed=0)
backend.tokenizer(prompts)  # tokenizing is not under test (the Rust tokenizer aborts on OOM)
size = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1])
limit = size * 1024 + margin * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    texts = [g.text for g in backend.generate(prompts, kwargs, seed=0)]
    print(json.dumps({"texts": texts, "batch_size": backend.batch_size, "warnings": warnings}))
except TunerError as error:
    print(json.dumps({"error": str(error), "warnings": warnings}))
"""
GREEDY = {"max_new_tokens": 8, "do_sample": False, "temperature": None, "top_p": None,
          "top_k": None, "repetition_penalty": 1.0}  # fmt: skip
# ~785 tokens each: 32 at once need ~150 MiB of activations, 4 at once ~20 MiB.
LONG_PROMPTS = [("def add(a, b):\n    return a + b\n" * 60) + f"# {i}\n" for i in range(32)]


def _generate_under_limit(tiny_model_dir: Path, margin_mib: int) -> dict[str, Any]:
    env = {**os.environ, "MALLOC_ARENA_MAX": "1", "OMP_NUM_THREADS": "1"}
    args = [str(tiny_model_dir), str(margin_mib), json.dumps(LONG_PROMPTS), json.dumps(GREEDY)]
    done = subprocess.run(
        [sys.executable, "-c", OOM_CHILD, *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not LINUX, reason="RLIMIT_AS and /proc/self/status are Linux's")
def test_a_real_cpu_out_of_memory_halves_the_batch_and_generates_everything(tiny_model_dir):
    got = _generate_under_limit(tiny_model_dir, margin_mib=50)
    assert "texts" in got, got
    assert got["batch_size"] < len(LONG_PROMPTS)  # it backed off (to 16, 8 or 4)
    assert got["warnings"][0] == (
        f"out of memory generating {len(LONG_PROMPTS)} prompts at once; retrying with batch "
        f"size {len(LONG_PROMPTS) // 2}"
    )
    assert len(got["warnings"]) == (len(LONG_PROMPTS) // got["batch_size"]).bit_length() - 1
    # Greedy outputs do not depend on the batch: the same as generating without a limit.
    free = TransformersBackend(resolve_model(str(tiny_model_dir)), device="cpu", batch_size=4)
    assert got["texts"] == [g.text for g in free.generate(LONG_PROMPTS, GREEDY, seed=0)]


@pytest.mark.skipif(not LINUX, reason="RLIMIT_AS and /proc/self/status are Linux's")
def test_one_prompt_that_does_not_fit_in_memory_fails_with_one_line(tiny_model_dir):
    got = _generate_under_limit(tiny_model_dir, margin_mib=0)
    assert got["error"].startswith("out of memory generating one prompt of "), got
    assert "lower max_new_tokens" in got["error"] and "\n" not in got["error"]
    assert len(got["warnings"]) == 5  # 32 -> 16 -> 8 -> 4 -> 2 -> 1, then it gave up


def test_the_allocation_failures_torch_and_python_raise_are_out_of_memory():
    # Word for word what torch 2 raises on CPU when a memory limit refuses an allocation.
    cpu = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
        "memory: you tried to allocate 157753600 bytes. Error code 12 (Cannot allocate memory)"
    )
    assert is_out_of_memory(cpu) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("Expected all tensors to be on the same device"))


# -- disk full: SQLite's page limit ----------------------------------------------------------


class PageLimitedStore(Store):
    """A store that can be made full: ``max_page_count`` caps the pages its connection may
    use, and a write that needs one more fails with SQLITE_FULL, as on a full disk."""

    opened: ClassVar[list[PageLimitedStore]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        PageLimitedStore.opened.append(self)

    def fill(self) -> None:
        pages = self.db.execute("pragma page_count").fetchone()[0]
        self.db.execute(f"pragma max_page_count = {pages}")

    def free(self) -> None:
        self.db.execute("pragma max_page_count = 1073741823")


@pytest.fixture
def limited(monkeypatch) -> type[PageLimitedStore]:
    """Runs open PageLimitedStores; ``opened[-1]`` is the store of the run going on."""
    monkeypatch.setattr(engine.run._tuner, "Store", PageLimitedStore)
    monkeypatch.setattr(PageLimitedStore, "opened", [])
    return PageLimitedStore


def test_a_sample_the_disk_cannot_hold_leaves_no_part_of_itself(tmp_path):
    store = PageLimitedStore(tmp_path / "samples.db")
    store.create_run("r", budget=4, seed=0, config={})
    first = Sample(run_id="r", candidate="a", stage="sampling", trial=0, params={}, score=0.5)
    store.add_sample(first)
    store.fill()
    # The sample's row fits in a page with room left; its outcome's output does not.
    outcome = {"problem_id": "p", "status": "failed", "passed": 0, "fraction": 0.0,
               "output": "Traceback ...\n" * 2000}  # fmt: skip
    second = Sample(run_id="r", candidate="a", stage="sampling", trial=1, params={}, score=0.7)
    with pytest.raises(StoreFullError, match="disk full, the write was not made"):
        store.add_sample(second, [outcome], stage="tuning")
    assert [s.trial for s in store.samples("r")] == [0]  # all of it or none of it
    assert store.db.execute("select count(*) from outcomes").fetchone()[0] == 0
    assert store.get_run("r").stage == "sampling"
    store.free()
    saved = store.add_sample(second, [outcome], stage="tuning")  # the same write, later
    assert len(store.outcomes(saved.id)) == 1 and store.get_run("r").stage == "tuning"


# Names this long make every sample row (and its index key) spill onto new pages, so every
# sample write needs a page the full store cannot give.
LONG = {"a" * 1500: "a", "b" * 1500: "b"}


def long_landscape(candidate: str, params: dict) -> float:
    return landscape(LONG[candidate], params)


def faulty(schedule: dict[int, str]) -> Callable[[str, dict], float]:
    """``long_landscape`` that fills or frees the run's store on the given calls (1-based)."""
    calls = 0

    def objective(candidate: str, params: dict) -> float:
        nonlocal calls
        calls += 1
        if calls in schedule:
            getattr(PageLimitedStore.opened[-1], schedule[calls])()
        return long_landscape(candidate, params)

    return objective


def _reference(tmp_path: Path, budget: int = 12) -> list[tuple]:
    path = tmp_path / "reference.db"
    Tuner(objective=long_landscape, candidates=list(LONG), budget=budget, seed=3, store=path,
          run_id="ref").run()  # fmt: skip
    return _samples(path, "ref")


def test_a_full_disk_fails_the_sample_not_the_run(tmp_path, limited):
    path = tmp_path / "samples.db"
    # Full while evaluations 5-6 and 9-10 are committed: 4 samples lost, never 3 in a row.
    schedule = {5: "fill", 7: "free", 9: "fill", 11: "free"}
    tuner = Tuner(objective=faulty(schedule), candidates=list(LONG), budget=12, seed=3,
                  store=path, run_id="full")  # fmt: skip
    warnings = _warnings(tuner)
    result = tuner.run()

    lost = [w for w in warnings if "was not recorded" in w]
    assert len(lost) == 4 and all("disk full" in w and "takes it again" in w for w in lost)
    assert result.n_samples == 12
    store = Store(path)
    assert store.get_run("full").status == "finished"
    # Nothing lost, nothing twice, and the same samples as a run that never hit a full disk
    # (the lost trials were told to the optimizer as failed, so it proposes them again).
    assert _samples(path, "full") == _reference(tmp_path)


def test_a_disk_that_stays_full_stops_the_run_and_resume_finishes_it(tmp_path, limited):
    path = tmp_path / "samples.db"
    tuner = Tuner(objective=faulty({5: "fill"}), candidates=list(LONG), budget=12, seed=3,
                  store=path, run_id="stays-full")  # fmt: skip
    warnings = _warnings(tuner)
    with pytest.raises(StoreFullError) as raised:
        tuner.run()

    message = str(raised.value)
    assert message.startswith("3 samples in a row could not be recorded (")
    assert f"codellmtuner resume stays-full --store {path}" in message and "\n" not in message
    assert sum("was not recorded" in w for w in warnings) == 2  # the third one stopped it
    store = Store(path)
    assert len(store.samples("stays-full")) == 4  # the committed ones are all there
    # Recording the failure needs space too: the run is "failed", or still "running" as
    # after a kill; resume takes either.
    assert store.get_run("stays-full").status in ("failed", "running")

    resumed = Tuner.resume("stays-full", store=path, objective=long_landscape)  # space is back
    assert resumed.run().n_samples == 12
    assert store.get_run("stays-full").status == "finished"
    assert _samples(path, "stays-full") == _reference(tmp_path)


class ScriptedBackend(Backend):
    """Returns the same long completion for every prompt (the model is not under test
    here), filling or freeing the run's store on the given ``generate`` calls."""

    schedule: ClassVar[dict[int, str]] = {}
    calls: ClassVar[int] = 0

    def __init__(self, ref: Any, **kwargs: Any) -> None:
        self.fingerprint = "scripted"

    def generate(
        self, prompts: Sequence[str], generation_kwargs: Any, *, seed: int, stop: Sequence = ()
    ) -> list[Generation]:
        ScriptedBackend.calls += 1
        if ScriptedBackend.calls in self.schedule:
            getattr(PageLimitedStore.opened[-1], self.schedule[ScriptedBackend.calls])()
        # long enough that every completion-cache row needs a new page
        text = "    return None\n" + "    # nothing to see\n" * 100
        return [Generation(text=text, prompt_tokens=5, generated_tokens=100) for _ in prompts]


def _task_run(tiny_model_dir: Path, path: Path, run_id: str) -> Tuner:
    candidates = [f"p={tiny_model_dir}@raw", f"q={tiny_model_dir}@raw"]
    return Tuner(task="humaneval", candidates=candidates, budget=5, seed=0, tune_size=2,
                 holdout_size=1, store=path, run_id=run_id)  # fmt: skip


def test_a_full_disk_while_caching_completions_fails_only_that_sample(
    tmp_path, limited, monkeypatch, tiny_model_dir
):
    monkeypatch.setattr(
        "engine.generation.backends.transformers.TransformersBackend", ScriptedBackend
    )
    # Generation 1 is the shared greedy default; the 2nd is p's first sampled trial: the
    # cache write after it fails, and its retry (the 3rd) finds space again.
    monkeypatch.setattr(ScriptedBackend, "schedule", {2: "fill", 3: "free"})
    monkeypatch.setattr(ScriptedBackend, "calls", 0)
    path = tmp_path / "samples.db"
    tuner = _task_run(tiny_model_dir, path, "cache-full")
    warnings = _warnings(tuner)
    tuner.run()

    (lost,) = [w for w in warnings if "was not recorded" in w]
    assert lost.startswith("p sampling trial 1 was not recorded") and "disk full" in lost
    store = Store(path)
    assert store.get_run("cache-full").status == "finished"
    # every scored completion is in the cache: nothing refers to a write that failed
    keys = {o["generation"] for s in store.samples("cache-full") for o in store.outcomes(s.id)}
    assert set(store.cached_generations(sorted(keys))) == keys
    monkeypatch.setattr(ScriptedBackend, "schedule", {})
    _task_run(tiny_model_dir, tmp_path / "reference.db", "ref").run()
    assert _samples(path, "cache-full") == _samples(tmp_path / "reference.db", "ref")


# -- disk full: a real full file system ----------------------------------------------------------

# Runs inside bubblewrap with DISK a small tmpfs: the objective fills it with a ballast
# file on its 5th call and deletes the ballast on its 7th.
ENOSPC_CHILD = """
import errno, json, os, sys
from engine import Message, Store, Tuner
from tests.objectives import landscape
disk = sys.argv[1]
ballast = os.path.join(disk, "ballast")
calls = 0

def fill():
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
    for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
        try:
            while True:
                os.write(fd, b"x" * size)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    os.close(fd)

def objective(candidate, params):
    global calls
    calls += 1
    if calls == 5:
        fill()
    if calls == 7:
        os.remove(ballast)
    return landscape(candidate, params)

path = os.path.join(disk, "samples.db")
tuner = Tuner(objective=objective, candidates=["a", "b"], budget=12, seed=3, store=path,
              run_id="enospc")
warnings = []
tuner.subscribe(lambda e: isinstance(e, Message) and warnings.append(e.text))
tuner.run()
store = Store(path)
samples = [(s.candidate, s.stage, s.trial, s.params, s.score) for s in store.samples("enospc")]
print(json.dumps({"warnings": warnings, "status": store.get_run("enospc").status,
                  "samples": samples}))
"""


def _bwrap_tmpfs(folder: Path, size: int) -> list[str] | None:
    """A bubblewrap prefix mounting a ``size``-byte tmpfs on ``folder``, if this host can."""
    bwrap = shutil.which("bwrap")
    if bwrap is None or not LINUX:
        return None
    prefix = [bwrap, "--dev-bind", "/", "/", "--size", str(size), "--tmpfs", str(folder)]
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    return prefix if probe.returncode == 0 else None


def test_a_real_full_file_system_fails_samples_not_the_run(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    prefix = _bwrap_tmpfs(disk, 2 * 2**20)
    if prefix is None:
        pytest.skip("bubblewrap cannot mount a size-limited tmpfs here")
    done = subprocess.run(
        [*prefix, sys.executable, "-c", ENOSPC_CHILD, str(disk)], cwd=ROOT,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])

    lost = [w for w in got["warnings"] if "was not recorded" in w]
    assert 1 <= len(lost) <= 2 and all("disk full" in w for w in lost), got["warnings"]
    assert got["status"] == "finished"
    reference = tmp_path / "reference.db"
    Tuner(objective=landscape, candidates=["a", "b"], budget=12, seed=3, store=reference,
          run_id="ref").run()  # fmt: skip
    assert got["samples"] == json.loads(json.dumps(_samples(reference, "ref")))


# -- a damaged store ------------------------------------------------------------------------------


def _good_store(folder: Path) -> bytes:
    """The bytes of a real store (one finished run, WAL checkpointed into the file)."""
    path = folder / "good.db"
    Tuner(objective=landscape, candidates=["a", "b"], budget=30, seed=0, store=path,
          run_id="r").run()  # fmt: skip
    store = Store(path)
    # Only the store's own pages: the Optuna mirror's tables (engine.store._mirror) are not read
    # by anything damage could reach here.
    tables = store.db.execute("select name from sqlite_master where type = 'table'")
    for table in {row[0] for row in tables} - set(TABLES):
        store.db.execute(f"drop table {table}")
    store.db.execute("vacuum")
    store.db.execute("pragma wal_checkpoint(TRUNCATE)")
    store.close()
    return path.read_bytes()


def _use(path: Path) -> None:
    """Everything a run, a viewer and the CLI do with a store."""
    store = Store(path, timeout=1)
    try:
        store.runs()
        run = store.get_run("r")
        store.samples(run.id)
        store.rankings(run.id)
        store.messages(run.id)
        RunFollower(store, run.id).poll()
        store.add_job(Job("r", "a", "tuning", 99, {"temperature": 0.0}))  # what workers do
        store.heartbeat("worker", host="host", pid=1, device="cpu")
        store.live_workers(within=60)
        store.claim_job("worker", lease=1)
        store.jobs(run.id)
        store.retry_jobs(run.id)
        store.add_sample(Sample(run_id="r", candidate="a", stage="tuning", trial=99,
                                params={"temperature": 0.0}, score=0.5))  # fmt: skip
        store.add_message("r", "info", "still here")
        store.update_run("r", status="stopped")
    finally:
        store.close()


def test_every_damaged_page_of_a_store_is_explained_not_raised_raw(tmp_path):
    good = _good_store(tmp_path)
    page = 4096
    damaged: dict[str, bytes] = {}
    rng = random.Random(7)
    for i in range(len(good) // page):
        garbage = bytes(rng.getrandbits(8) for _ in range(page))
        damaged[f"page {i} random"] = good[: i * page] + garbage + good[(i + 1) * page :]
        damaged[f"page {i} zeroed"] = good[: i * page] + bytes(page) + good[(i + 1) * page :]
    for fraction in (0.1, 0.5, 0.9):
        damaged[f"truncated to {fraction}"] = good[: int(len(good) * fraction)]
    damaged["random bytes"] = bytes(rng.getrandbits(8) for _ in range(8 * page))
    damaged["another format's header"] = b"SQLite format 4\0" + good[16:]

    outcomes: Counter[str] = Counter()
    for name, data in damaged.items():
        path = tmp_path / "damaged.db"
        path.write_bytes(data)
        try:
            _use(path)
            outcomes["usable"] += 1  # the damage hit a page nothing here reads
        except StoreError as error:
            outcomes["explained"] += 1
            assert "not a usable SQLite store" in str(error), (name, error)
            assert "move it aside or pick --store" in str(error)
        for leftover in tmp_path.glob("damaged.db*"):
            leftover.unlink()
    print(f"\n{len(damaged)} damaged stores: {dict(outcomes)}")  # for the notes (-s)
    assert outcomes["explained"] >= len(damaged) * 3 // 4  # most damage must be noticed


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui.commands", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_the_cli_explains_a_damaged_store_in_one_line(tmp_path):
    good = _good_store(tmp_path)
    noise = tmp_path / "noise.db"
    noise.write_bytes(random.Random(1).randbytes(8192))
    torn = tmp_path / "torn.db"  # the second half of the file is gone
    torn.write_bytes(good[: len(good) // 2])
    for store, command in [
        (noise, ["runs"]), (noise, ["watch", "latest"]), (torn, ["show", "latest"]),
        (torn, ["resume", "r", "--headless"]),
    ]:  # fmt: skip
        done = _cli(*command, "--store", str(store))
        assert (done.returncode, done.stdout) == (2, ""), (command, done)
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"error: {store} is not a usable SQLite store"), line
