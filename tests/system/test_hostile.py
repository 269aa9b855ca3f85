"""The hostile corpus (tests/hostile_corpus.py) through the real scoring path.

Every answer goes through ``HumanEvalTask.score`` (extraction, harness, sandbox) in each
sandbox mode this machine has, with canaries in ``tmp_path``. Tested:

- each answer is scored failed / timeout / crashed, never passed (known scorer gaps are
  strict expected failures), with bounded output;
- each effect (secret read, canary touched, loopback connection, surviving process,
  engine found) gets through exactly where ``docs/sandbox.md`` says it does;
- afterwards the engine is healthy: no process of a snippet left, no child of the
  engine left, no work dir left, the engine's memory back near its baseline;
- a few programs straight through ``engine.tasks.sandbox.execute``, where the harness would hide
  the exit code or the message;
- a whole ``Tuner`` run whose model answers only hostile code completes, with every
  sample committed and nothing passed.

Safety: snippets run with the test's own rights in process mode, so every target is in
``tmp_path``; snippets that signal check the engine's pid first and refuse; the fork bomb
is capped, and the uncapped one runs only inside bwrap as a non-root user.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.evaluation import TaskEvaluator
from engine.generation.backends import Backend, Generation
from engine.run import Tuner
from engine.store import Store
from engine.tasks import HumanEvalTask, Problem, ProblemOutcome
from engine.tasks.humaneval import OUTPUT_CHARS, bundled_dataset, load_problems
from engine.tasks.sandbox import _bwrap_version, available_mode, execute
from tests.hostile_corpus import (
    CANARY,
    CORPUS,
    FLAG,
    FLAGGED,
    GUARD,
    GUARDED,
    NETWORK,
    SECRET,
    SECRET_SEEN,
    SURVIVOR,
    Hostile,
    answer,
    by_name,
)

ROOT = os.geteuid() == 0


def _has_cap_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)  # CAP_SYS_RESOURCE = 24
    return False


PRIVILEGED = _has_cap_sys_resource()  # may raise its hard limits (root, unless confined)
OLD_BWRAP = _bwrap_version() < (0, 7)  # no --size: its tmpfs are unbounded
# The machine's conditions that some documented gaps depend on (tests/hostile_corpus.py).
CONDITIONS = frozenset({"privileged"} if PRIVILEGED else ()) | frozenset(
    {"old"} if OLD_BWRAP else ()
)
TIMEOUT = 4.0  # per answer; the endless ones cost this much, two at a time
ASSERT_TIMEOUT = 0.5
MEMORY_MB = 512
EFFECTS = (SECRET_SEEN, CANARY, NETWORK, SURVIVOR, FLAGGED, GUARDED)
MiB = 2**20

pytestmark = pytest.mark.slow


def runs_in(hostile: Hostile, mode: str) -> bool:
    return mode in hostile.modes and not (hostile.needs_non_root and ROOT)


def skip_reason(hostile: Hostile, mode: str) -> str:
    if mode not in hostile.modes:
        return f"{hostile.name} is only safe in {', '.join(sorted(hostile.modes))}"
    return f"{hostile.name} only runs as non-root: root is exempt from RLIMIT_NPROC"


# -- canaries ---------------------------------------------------------------------------------


class LoopbackServer:
    """A TCP server on 127.0.0.1 that records the first bytes of every connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    self.received.append(conn.recv(100) or b"<connected>")

    def close(self) -> None:  # idempotent
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _make_canaries(folder: Path) -> dict[str, Path]:
    victim_dir = folder / "victim_dir"
    (victim_dir / "sub").mkdir(parents=True)
    (victim_dir / "a.txt").write_text("A")
    (victim_dir / "sub" / "b.txt").write_text("B")
    (folder / "victim.txt").write_text("VICTIM")
    (folder / "landing").mkdir()
    return {
        "victim": folder / "victim.txt",
        "victim_dir": victim_dir,
        "landing": folder / "landing",
    }


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links not followed) with its content."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        found[rel] = "<dir>" if path.is_dir() else path.read_text(errors="replace")
    return found


# -- processes and memory ---------------------------------------------------------------------


def _proc_entries() -> Iterator[Path]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield entry


def processes_with(marker: str) -> list[int]:
    """Live host processes whose command line contains ``marker`` (zombies have none)."""
    found = []
    for entry in _proc_entries():
        with contextlib.suppress(OSError):
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid``, zombies included (an unreaped child is a leak)."""
    found = []
    for entry in _proc_entries():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def kill_all(pids: Sequence[int]) -> None:
    for pid in pids:  # only pids found by a marker this test made up
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_until(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable in /proc/meminfo")


# -- scoring the corpus -----------------------------------------------------------------------


def humaneval_0() -> Problem:
    return next(p for p in load_problems(bundled_dataset()) if p.id == "HumanEval/0")


@dataclass
class CorpusRun:
    """What scoring the corpus in one mode produced and left behind."""

    mode: str
    outcomes: dict[str, ProblemOutcome] = field(default_factory=dict)
    observed: dict[str, dict[str, bool]] = field(default_factory=dict)
    survivors: dict[str, list[int]] = field(default_factory=dict)
    leftover_children: list[int] = field(default_factory=list)
    leftover_workdirs: list[str] = field(default_factory=list)
    rss_growth: int = 0
    mem_drop: int = 0
    seconds: float = 0.0


@pytest.fixture(scope="module", params=["process", "bwrap"])
def corpus_run(request, tmp_path_factory) -> Iterator[CorpusRun]:
    """The corpus scored in one mode, with what it left behind (cleaned up after)."""
    mode = request.param
    if mode == "bwrap" and available_mode() != "bwrap":
        pytest.skip("bubblewrap does not work on this machine")
    base = tmp_path_factory.mktemp(f"hostile-{mode}")
    hostiles = [h for h in CORPUS if runs_in(h, mode)]
    tag = uuid.uuid4().hex[:12]
    markers = {h.name: f"hostile-{tag}-{h.name}" for h in hostiles}
    run = CorpusRun(mode)
    server = LoopbackServer()
    try:
        _score_corpus(run, hostiles, base, markers, server)
        server.close()  # every connection recorded
        _observe(run, hostiles, base, markers, server)
    finally:
        server.close()
        for marker in markers.values():  # whatever escaped, before the asserts
            kill_all(processes_with(marker))
    for name, outcome in run.outcomes.items():  # shown with -s: the table in docs/sandbox.md
        seen = sorted(k for k, v in run.observed[name].items() if v)
        print(f"{mode:8} {name:24} {outcome.status:8} {outcome.seconds:5.1f}s {seen}")
    yield run


def _score_corpus(
    run: CorpusRun, hostiles: list[Hostile], base: Path, markers: dict[str, str],
    server: LoopbackServer,
) -> None:  # fmt: skip
    home, work = base / "home", base / "work"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(SECRET + "\n")
    work.mkdir()
    answers = []
    for h in hostiles:
        canaries = {
            **_make_canaries(base / h.name), "secret_file": home / ".ssh" / "id_rsa",
            "port": server.port, "marker": markers[h.name], "engine": os.getpid(),
            "engine_pgid": os.getpgid(0), "name": h.name, "FLAG": FLAG, "GUARD": GUARD,
        }  # fmt: skip
        answers.append(answer(h, canaries))
    task = HumanEvalTask(
        sandbox=run.mode, timeout=TIMEOUT, assert_timeout=ASSERT_TIMEOUT, workers=2,
        memory_mb=MEMORY_MB,
    )  # fmt: skip
    problem = humaneval_0()
    gc.collect()
    rss, available = rss_bytes(), mem_available()
    start = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(work))  # the sandbox's work dirs land here
        patch.setenv("HOME", str(home))  # what the engine has, the sandbox must not pass on
        outcomes = task.score([problem] * len(hostiles), answers, continuation=False)
    run.seconds = time.monotonic() - start
    run.outcomes = {h.name: o for h, o in zip(hostiles, outcomes, strict=True)}
    run.leftover_workdirs = os.listdir(work)
    gc.collect()
    run.rss_growth = rss_bytes() - rss
    run.mem_drop = available - mem_available()


def _observe(
    run: CorpusRun, hostiles: list[Hostile], base: Path, markers: dict[str, str],
    server: LoopbackServer,
) -> None:  # fmt: skip
    """Which effect each snippet had; processes get a moment to die first."""
    wait_until(lambda: not any(processes_with(m) for m in markers.values()), 3.0)
    pristine = _snapshot(_make_canaries(base / "pristine")["victim"].parent)
    for h in hostiles:
        output = run.outcomes[h.name].output
        run.survivors[h.name] = processes_with(markers[h.name])
        run.observed[h.name] = {
            SECRET_SEEN: SECRET in output,
            CANARY: _snapshot(base / h.name) != pristine,
            NETWORK: h.name.encode() in server.received,
            SURVIVOR: bool(run.survivors[h.name]),
            FLAGGED: FLAG in output,
            GUARDED: GUARD in output,
        }
    run.leftover_children = children_of(os.getpid())


@pytest.mark.parametrize("hostile", CORPUS, ids=lambda h: h.name)
def test_each_answer_is_scored_without_passing(corpus_run: CorpusRun, hostile: Hostile, request):
    if not runs_in(hostile, corpus_run.mode):
        pytest.skip(skip_reason(hostile, corpus_run.mode))
    outcome = corpus_run.outcomes[hostile.name]
    assert len(outcome.output) <= OUTPUT_CHARS
    if hostile.gap:  # strict: closing the gap makes this test fail, so the docs get updated
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"known gap: {hostile.gap}"))
    assert not outcome.passed and outcome.fraction < 1, outcome
    assert outcome.status in hostile.statuses, outcome


@pytest.mark.parametrize("hostile", CORPUS, ids=lambda h: h.name)
def test_effects_get_through_only_where_documented(corpus_run: CorpusRun, hostile: Hostile):
    if not runs_in(hostile, corpus_run.mode):
        pytest.skip(skip_reason(hostile, corpus_run.mode))
    expected = {
        effect: hostile.effect == effect and hostile.escapes_in(corpus_run.mode, CONDITIONS)
        for effect in EFFECTS
    }
    assert corpus_run.observed[hostile.name] == expected, corpus_run.outcomes[hostile.name]


def test_engine_and_machine_stay_healthy(corpus_run: CorpusRun):
    allowed = {
        h.name for h in CORPUS if h.effect == SURVIVOR and h.escapes_in(corpus_run.mode, CONDITIONS)
    }
    survivors = {name: pids for name, pids in corpus_run.survivors.items() if pids}
    assert set(survivors) <= allowed, survivors  # (they were killed by the fixture)
    assert corpus_run.leftover_children == [], "the engine has children (or zombies) left"
    assert corpus_run.leftover_workdirs == [], "a sandbox work dir was left behind"
    assert corpus_run.rss_growth < 200 * MiB, corpus_run.rss_growth
    # Other workers share the machine: only a leak of gigabytes is a finding here.
    assert corpus_run.mem_drop < 3 * 1024 * MiB, corpus_run.mem_drop


def test_secret_and_engine_are_out_of_reach_under_bwrap(corpus_run: CorpusRun):
    if corpus_run.mode != "bwrap":
        pytest.skip("process mode can read the user's files and signal the engine")
    outputs = [o.output for o in corpus_run.outcomes.values()]
    assert not any(SECRET in text or GUARD in text for text in outputs)


# -- straight through the sandbox ----------------------------------------------------------


@pytest.fixture(params=["process", "bwrap"])
def mode(request) -> str:
    if request.param == "bwrap" and available_mode() != "bwrap":
        pytest.skip("bubblewrap does not work on this machine")
    return request.param


_GUARD_PARENT = f"import os, signal\nif os.getppid() == {os.getpid()}:\n    os._exit(3)\n"

# name: (program, memory_mb, expected (status, exit code), text expected in stderr)
DIRECT: dict[str, tuple[str, int, tuple[str, int | None], str]] = {
    "memory_bomb_top": ("hoard = bytearray(2**40)", 256, ("crashed", -9), "memory limit"),
    "kill_parent": (
        _GUARD_PARENT + "os.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(5)",
        256, ("crashed", -9), "",
    ),
    "stop_parent": (
        _GUARD_PARENT + "os.kill(os.getppid(), signal.SIGSTOP)", 256, ("timeout", None), "",
    ),
    "ctypes_segfault": ("import ctypes\nctypes.string_at(0)", 256, ("crashed", -11), ""),
    "abort": ("import os\nos.abort()", 256, ("crashed", -6), ""),
    "recursion_bomb": (
        "import sys\nsys.setrecursionlimit(10**6)\ndef down(n):\n    return list(map(down, [n]))\n"
        "down(0)",
        256, ("crashed", -11), "",
    ),
    "huge_file": (
        "open('big', 'wb').write(bytes(2**26))", 256, ("crashed", -signal.SIGXFSZ), "",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", DIRECT)
def test_direct_program_gets_the_right_status(mode: str, name: str):
    code, memory_mb, expected, message = DIRECT[name]
    outcome = execute(code, timeout=3, memory_mb=memory_mb, mode=mode)
    assert (outcome.status, outcome.exit_code) == expected, outcome
    assert message in outcome.stderr
    assert children_of(os.getpid()) == []


def test_direct_flood_keeps_the_start_and_the_end(mode: str):
    code = "import os\nos.write(1, b'start ')\nfor _ in range(100):\n    os.write(1, b'x' * 2**20)"
    outcome = execute(code + "\nos.write(1, b' end')", timeout=5, mode=mode)
    assert outcome.status == "passed"
    assert outcome.stdout.startswith("start ") and outcome.stdout.endswith(" end")
    assert "bytes dropped" in outcome.stdout


def test_direct_work_dir_fill_is_bounded_under_bwrap(mode: str):
    if mode == "bwrap" and OLD_BWRAP:
        pytest.skip("bubblewrap < 0.7 cannot bound a tmpfs: the work dir stays on disk")
    code = "for i in range(6):\n    open(f'f{i}', 'wb').write(bytes(15 * 2**20))"
    outcome = execute(code, timeout=10, mode=mode)
    if mode == "bwrap":  # the work dir is a 64 MiB tmpfs there
        assert outcome.status == "failed" and "No space left on device" in outcome.stderr
    else:  # process mode writes the 90 MiB to disk (each file under the size limit)
        assert outcome.status == "passed", outcome.stderr


def test_direct_rlimits_can_be_raised_only_with_cap_sys_resource_in_process_mode(mode: str):
    code = (
        "import resource\ninf = resource.RLIM_INFINITY\n"
        "resource.setrlimit(resource.RLIMIT_AS, (inf, inf))\nprint('raised')"
    )
    outcome = execute(code, timeout=5, mode=mode)
    if mode == "process" and PRIVILEGED:
        assert outcome.status == "passed" and outcome.stdout == "raised\n"
    else:
        assert outcome.status == "failed" and "ValueError" in outcome.stderr


def test_direct_fork_bomb_is_contained_by_the_process_limit_under_bwrap(mode: str):
    if mode != "bwrap" or ROOT:
        pytest.skip("only bwrap as a non-root user limits the process count (docs/sandbox.md)")
    code = (
        "import os, time\nassert os.getpid() < 300  # in a PID namespace\nrefused = 0\n"
        "for _ in range(200):\n    try:\n        if os.fork() == 0:\n            time.sleep(30)\n"
        "    except OSError:\n        refused += 1\nprint(refused)\nos._exit(0)"
    )
    outcome = execute(code, timeout=10, mode=mode)
    assert outcome.status == "passed", outcome
    assert int(outcome.stdout) > 0, outcome  # forks were refused at the limit


# -- a whole run ----------------------------------------------------------------------------

_TUNER_CORPUS = (
    "os_exit_zero", "kill_parent", "memory_bomb_top", "ctypes_segfault", "setsid_child",
    "huge_stdout", "fork_bomb", "delete_tree", "infinite_loop_top", "read_ssh_key",
)  # fmt: skip


class ChatTokenizer:
    """Just enough of a tokenizer for chat prompts: the template joins the turns."""

    chat_template = "plain"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant: "


class HostileBackend(Backend):
    """A model that answers every prompt with the next hostile answer of a list."""

    fingerprint = "hostile-script-v1"

    def __init__(self, answers: Sequence[str]) -> None:
        self.tokenizer = ChatTokenizer()
        self.answers = list(answers)
        self.calls = 0

    def generate(
        self, prompts: Sequence[str], generation_kwargs: Mapping[str, Any], *, seed: int,
        stop: Sequence[str] = (),
    ) -> list[Generation]:  # fmt: skip
        out = []
        for _ in prompts:
            text = self.answers[self.calls % len(self.answers)]
            self.calls += 1
            out.append(Generation(text, prompt_tokens=10, generated_tokens=len(text) // 4))
        return out


class ScriptedTuner(Tuner):
    """A Tuner whose candidates all generate with one scripted backend."""

    backend: HostileBackend

    def _evaluator(self) -> TaskEvaluator:
        s = self.settings
        return TaskEvaluator(
            self.task, self.candidates, load_backend=lambda spec: self.backend,
            seed=s.seed, tune_size=s.tune_size, holdout_size=s.holdout_size,
        )  # fmt: skip


def _hostile_dataset(path: Path, n: int) -> Path:
    """``n`` copies of HumanEval/0 under other ids (and prompts: equal prompts would
    share one cached completion)."""
    p = humaneval_0()
    rows = [
        {"task_id": f"Hostile/{i}", "prompt": f"# copy {i}\n{p.prompt}",
         "canonical_solution": p.reference, "test": p.tests, "entry_point": p.entry_point}
        for i in range(n)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_tuner_run_over_hostile_answers_completes(tmp_path, tiny_model_dir):
    mode = available_mode()
    victim_dir = _make_canaries(tmp_path / "canaries")["victim_dir"]
    secret = tmp_path / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_text(SECRET)
    marker = f"hostile-{uuid.uuid4().hex[:12]}"
    canaries = {
        "victim": tmp_path / "canaries" / "victim.txt", "victim_dir": victim_dir,
        "landing": tmp_path / "canaries" / "landing", "secret_file": secret, "port": 9,
        "marker": marker, "engine": os.getpid(), "engine_pgid": os.getpgid(0), "name": "run",
        "FLAG": FLAG, "GUARD": GUARD,
    }  # fmt: skip
    answers = [answer(by_name(name), canaries) for name in _TUNER_CORPUS]
    task = HumanEvalTask(
        _hostile_dataset(tmp_path / "hostile.jsonl", 8), holdout_fraction=0.25, n_train=0,
        timeout=3.0, assert_timeout=ASSERT_TIMEOUT, workers=2, memory_mb=MEMORY_MB, sandbox=mode,
    )  # fmt: skip
    tuner = ScriptedTuner(
        task=task, candidates=[f"a={tiny_model_dir}@chat", f"b={tiny_model_dir}@chat"],
        budget=8, store=tmp_path / "s.db", tune_size=2, holdout_size=1, seed=1,
    )  # fmt: skip
    tuner.backend = HostileBackend(answers)
    result = tuner.run()

    with contextlib.closing(Store(tmp_path / "s.db")) as store:
        run = store.get_run(result.run_id)
        samples = store.samples(result.run_id)
        outcomes = [o for s in samples for o in store.outcomes(s.id)]
    assert run.status == "finished"
    assert len([s for s in samples if s.stage != "holdout"]) == 8
    assert [s.stage for s in samples].count("holdout") == 1
    assert tuner.backend.calls >= len(_TUNER_CORPUS)  # every answer was scored at least once
    assert outcomes and all(not o["passed"] for o in outcomes)
    assert {o["status"] for o in outcomes} == {"failed", "timeout", "crashed"}, outcomes
    assert all(s.metrics["pass@1"] == 0 and s.score < 1 for s in samples)
    survivors = processes_with(marker)
    kill_all(survivors)
    assert survivors == [] and children_of(os.getpid()) == []
    assert _snapshot(victim_dir) == {"a.txt": "A", "sub": "<dir>", "sub/b.txt": "B"} or (
        mode == "process"  # process mode lets delete_tree through (docs/sandbox.md)
    )
