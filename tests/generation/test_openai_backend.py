"""The OpenAI-compatible server backend, against a real ``transformers serve`` on loopback.

The server serves the tests' tiny model; the same folder loaded in process is the
reference, so greedy outputs must agree token for token. Misbehaving servers are the real
one behind a :class:`~tests.servers.Relay` that drops fields, answers 503 or never answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.errors import ConfigError, ServerError
from engine.generation import parse_candidate, resolve_model
from engine.generation.backends.openai import OpenAIBackend
from engine.generation.backends.transformers import TransformersBackend
from engine.space import generation_kwargs
from engine.store import Store
from tests import ROOT
from tests.servers import Relay, free_port, transformers_serve
from tests.stores import committed_samples

pytest.importorskip("fastapi", reason="transformers serve needs transformers[serving]")
pytestmark = pytest.mark.slow

GREEDY = generation_kwargs({"temperature": 0, "max_new_tokens": 12})
HOT = generation_kwargs({"temperature": 1.5, "top_p": 1.0, "top_k": 0, "max_new_tokens": 12})
RAW = ["def add(a, b):", "class Stack:\n    def __init__(self):", "import math"]
CHAT = [[{"role": "user", "content": "Write a function that adds two numbers."}]]


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    server = transformers_serve(tiny_model_dir, tmp_path_factory.mktemp("serve") / "log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def backend(served):
    return OpenAIBackend(served.url, served.model, concurrency=4)


# -- candidates ------------------------------------------------------------------------------


def test_a_served_candidate_names_its_model_server_and_style():
    c = parse_candidate("qwen=openai:Qwen/Qwen2.5-Coder-1.5B@http://gpu3:8000/v1/@raw")
    assert (c.name, c.model, c.server, c.style) == (
        "qwen", "Qwen/Qwen2.5-Coder-1.5B", "http://gpu3:8000/v1", "raw",
    )  # fmt: skip
    assert parse_candidate("openai:org/m@https://h/v1").name == "m"
    for bad in ("openai:m", "openai:m@gpu3:8000", "openai:@http://h/v1", "openai:m@ftp://h"):
        with pytest.raises(ConfigError, match="openai:MODEL@http://HOST:PORT/v1"):
            parse_candidate(bad)


# -- what the probe finds ------------------------------------------------------------------


def test_the_probe_finds_what_transformers_serve_does(backend):
    f = backend.features
    assert f.extras == "generation_config"  # it refuses top_k as a field
    assert f.samples and f.seed and f.top_k and f.repetition_penalty
    assert not f.n  # measured: one choice for n=2
    assert f.ignored() == []
    backend.check_space(["temperature", "top_p", "top_k", "repetition_penalty"])


def test_greedy_completions_agree_with_the_model_loaded_in_process(backend, tiny_model_dir):
    local = TransformersBackend(resolve_model(str(tiny_model_dir)), device="cpu", batch_size=4)
    chat = [local.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
            for m in CHAT]  # fmt: skip
    served = backend.generate(RAW + CHAT, GREEDY, seed=0, stop=["\n\n"])
    mine = local.generate(RAW + chat, GREEDY, seed=0, stop=["\n\n"])
    assert [g.text for g in served] == [g.text for g in mine]
    assert [g.generated_tokens for g in served] == [g.generated_tokens for g in mine]
    assert [g.prompt_tokens for g in served[:3]] == [g.prompt_tokens for g in mine[:3]]


def test_sampling_is_seeded_per_request_and_repeats_differ(backend):
    prompts = ["def add(a, b):"] * 3
    first = [g.text for g in backend.generate(prompts, HOT, seed=5)]
    again = [g.text for g in backend.generate(prompts, HOT, seed=5)]
    assert first == again
    assert len(set(first)) == 3  # the k-th repeat samples with seed + k
    assert [g.text for g in backend.generate(prompts, HOT, seed=6)] != first


# -- servers that differ ---------------------------------------------------------------------


def _without(*fields: str):
    return lambda body: {k: v for k, v in body.items() if k not in fields}


def test_a_server_that_ignores_seed_is_found_and_warned_about(served):
    warnings: list[str] = []
    with Relay(served.url, edit=_without("seed")) as relay:
        b = OpenAIBackend(relay.url, served.model, on_warning=warnings.append)
        assert b.features.samples and not b.features.seed
        b.generate(["x"], HOT, seed=0)
        b.generate(["y"], HOT, seed=0)
    assert len(warnings) == 1 and "ignores seed" in warnings[0]


def test_a_knob_the_server_ignores_is_refused_if_the_space_tunes_it(served):
    # Without its generation_config, transformers serve neither samples nor takes top_k;
    # the relay accepts the field, so only what the answers show can tell.
    with Relay(served.url, edit=_without("generation_config")) as relay:
        b = OpenAIBackend(relay.url, served.model)
    assert set(b.features.ignored()) == {"temperature", "top_p", "top_k", "repetition_penalty"}
    b.check_space([])  # greedy only, nothing tuned: nothing to refuse
    with pytest.raises(ConfigError, match=r"ignores top_k .* --param top_k=1000"):
        b.check_space(["top_k"])


def test_busy_answers_are_retried(served):
    with Relay(served.url) as relay:
        b = OpenAIBackend(relay.url, served.model, retry_delays=(0.1, 0.1, 0.1))
        relay.fail = 2
        assert b.generate(["x"], GREEDY, seed=0)[0].generated_tokens > 0
        relay.fail = 9
        with pytest.raises(ServerError, match="refused /completions with HTTP 503: busy"):
            b.generate(["x"], GREEDY, seed=0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda s: (f"http://127.0.0.1:{free_port()}/v1", s.model), "is unreachable"),
        (lambda s: (s.url, "no-such-model"), "does not serve 'no-such-model'; it serves"),
    ],
    ids=["no server", "unknown model"],
)
def test_bad_servers_are_one_clear_line(served, make, message):
    url, model = make(served)
    with pytest.raises(ServerError, match=message) as caught:
        OpenAIBackend(url, model)
    assert "\n" not in str(caught.value)


def test_a_server_that_never_answers_times_out(served):
    with Relay(served.url, hang=True) as relay:
        start = time.monotonic()
        with pytest.raises(ServerError, match=r"no answer within 1 s"):
            OpenAIBackend(relay.url, served.model, timeout=1)
    assert time.monotonic() - start < 10  # the probe does not retry


# -- whole runs through the command line -----------------------------------------------------


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tui.commands", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _run(served_url: str, model: str, local: Path, db: Path, *more: str) -> list[str]:
    return [
        "run", "--headless", "--candidate", f"served=openai:{model}@{served_url}@raw",
        "--candidate", f"local={local}@raw", "--budget", "6", "--problems", "2",
        "--holdout-problems", "2", "--param", "max_new_tokens=8:16", "--param", "temperature=0",
        "--seed", "1", "--device", "cpu", "--run-id", "srv", "--store", str(db), *more,
    ]  # fmt: skip


def _scores(db: Path) -> dict[str, list[tuple]]:
    with contextlib.closing(Store(db)) as store:
        samples = store.samples("srv")
    by: dict[str, list[tuple]] = {}
    for s in samples:
        by.setdefault(s.candidate, []).append((s.stage, repr(sorted(s.params.items())), s.score))
    return by


def test_a_run_with_a_served_and_a_local_candidate(served, tiny_model_dir, tmp_path):
    db = tmp_path / "s.db"
    done = _cli(*_run(served.url, served.model, tiny_model_dir, db))
    assert done.returncode == 0, done.stderr[-2000:]
    by = _scores(db)
    assert set(by) >= {"served", "local"}
    # The same weights, greedy: a configuration scores the same through either path.
    local = {p: s for _stage, p, s in by["local"]}
    shared = [(s, local[p]) for _stage, p, s in by["served"] if p in local]
    assert shared and all(a == b for a, b in shared)


def test_bad_servers_stop_the_run_before_the_store_opens(served, tiny_model_dir, tmp_path):
    db = tmp_path / "s.db"
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with Relay(served.url, hang=True) as silent:
        for url, model, words in ((dead, served.model, "is unreachable"),
                                  (served.url, "nope", "does not serve 'nope'"),
                                  (silent.url, served.model, "no answer within 1 s")):  # fmt: skip
            done = _cli(*_run(url, model, tiny_model_dir, db, "--request-timeout", "1"))
            assert done.returncode != 0
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], lines
            assert not db.exists()


def test_a_server_killed_mid_run_fails_the_sample_cleanly_and_the_run_resumes(
    tiny_model_dir, tmp_path
):
    port = free_port()
    server = transformers_serve(tiny_model_dir, tmp_path / "log", port=port)
    db = tmp_path / "s.db"
    args = _run(server.url, server.model, tiny_model_dir, db, "--param", "temperature=0:1")
    run = subprocess.Popen([sys.executable, "-m", "tui.commands", *args], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not committed_samples(db) and time.monotonic() < deadline:
            time.sleep(0.2)
        server.stop()  # kill -9, mid-run
        _out, err = run.communicate(timeout=300)
    finally:
        server.stop()
        if run.poll() is None:
            os.kill(run.pid, signal.SIGKILL)
    kept = _scores(db)
    assert run.returncode != 0  # the run stopped on the dead server, with one line
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and "is unreachable" in lines[-1], err[-2000:]
    assert "resume" in lines[-1]
    server = transformers_serve(tiny_model_dir, tmp_path / "log", port=port)
    try:
        done = _cli("resume", "srv", "--headless", "--store", str(db))
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    after = _scores(db)
    for name, samples in kept.items():  # every committed sample survived as it was
        assert after[name][: len(samples)] == samples


# -- the app -----------------------------------------------------------------------------------


def test_the_app_adds_a_served_model_after_asking_its_server(served, tmp_path, monkeypatch):
    from textual.widgets import Input, SelectionList, Static

    from tests.apphelpers import run_app, wait_until
    from tui.app import CodeLLMTunerApp

    monkeypatch.chdir(tmp_path)
    app = CodeLLMTunerApp("samples.db")
    spec = f"openai:{served.model}@{served.url}"

    async def test(pilot):
        screen = app.screen
        await app.workers.wait_for_complete()
        source = screen.query_one("#model-source", Input)
        note = screen.query_one("#model-note", Static)
        source.focus()
        source.value = f"openai:no-such-model@{served.url}"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "does not serve" in str(note.render()), timeout=60)
        source.value = spec
        await pilot.press("enter")
        await wait_until(pilot, lambda: "added" in str(note.render()), timeout=60)
        options = screen.query_one("#candidates", SelectionList)
        assert f"{spec}@chat" in options.selected
        assert screen.build_tuner().candidates[-1].server == served.url

    run_app(app, test)
