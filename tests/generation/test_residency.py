"""Residency: real tiny models loaded within a memory budget, least recently used out."""

from __future__ import annotations

import gc
import re
import weakref

import pytest
import torch

from engine import Message, SampleRecorded, Tuner
from engine.errors import ConfigError
from engine.generation import (
    Residency,
    format_memory,
    parse_memory,
    resolve_model,
    weights_bytes,
)
from engine.generation.backends.transformers import TransformersBackend
from engine.store import Store

GREEDY = {"temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": 8}


@pytest.mark.parametrize("text", ["lots", "20 parsecs", "-1GiB", "0", ""])
def test_a_size_that_is_not_one_is_refused_in_one_line(text):
    with pytest.raises(ConfigError, match="is not a size such as 20GiB|more than 0 bytes"):
        parse_memory(text)


def test_the_estimate_before_loading_is_what_the_loaded_model_takes(tiny_model_dir):
    backend = TransformersBackend(resolve_model(str(tiny_model_dir)), device="cpu")
    estimate = weights_bytes(tiny_model_dir, "float32")
    assert estimate == pytest.approx(backend.memory_bytes(), rel=0.05)
    assert weights_bytes(tiny_model_dir, "nf4") == pytest.approx(estimate / 8, rel=0.01)


def _load(folder, loaded):
    def load():
        backend = TransformersBackend(resolve_model(str(folder)), device="cpu")
        loaded.append(weakref.ref(backend.model))
        return backend

    return load


def test_models_past_the_budget_are_evicted_least_recently_used_first(
    tiny_model_dir, wide_model_dir
):
    small = weights_bytes(tiny_model_dir, "float32")
    wide = weights_bytes(wide_model_dir, "float32")
    lines, loaded = [], []
    # two fit (with what the loaded models hold beside their weights), three do not
    residency = Residency(int(1.1 * (small + wide)), on_event=lines.append)
    residency.get("tiny", "tiny", small, _load(tiny_model_dir, loaded))
    residency.get("wide", "wide", wide, _load(wide_model_dir, loaded))
    residency.get("tiny", "tiny", small, _load(tiny_model_dir, loaded))  # used, not loaded
    assert residency.resident() == ("wide", "tiny") and residency.loads == 2
    residency.get("copy", "copy", small, _load(tiny_model_dir, loaded))
    # "wide" was used longest ago, and evicting it alone makes room
    assert residency.resident() == ("tiny", "copy") and residency.evictions == 1
    assert residency.peak <= residency.budget and residency.used <= residency.budget
    gc.collect()
    assert loaded[1]() is None, "the evicted model is still referenced"
    assert [line.split(" (")[0] for line in lines] == [
        "loaded tiny", "loaded wide", "evicted wide", "loaded copy"]  # fmt: skip
    assert residency.switch_seconds > 0  # copy's load evicted wide: a switch
    evicted = r"evicted wide \(\d+\.\d KiB\) to make room for copy in \d+\.\d s"
    assert re.fullmatch(evicted, lines[2])
    assert lines[3].endswith(f"of {format_memory(residency.budget)} in use")


def test_loads_that_evict_or_load_again_count_as_switching(tiny_model_dir):
    size = weights_bytes(tiny_model_dir, "float32")
    ticks = iter(range(100))  # each reading of the clock one second later
    residency = Residency(int(2.5 * size), clock=lambda: float(next(ticks)))  # two fit
    for key in ("a", "b"):
        residency.get(key, key, size, _load(tiny_model_dir, []))
    assert residency.switch_seconds == 0  # first loads that fit: every run makes them
    residency.get("c", "c", size, _load(tiny_model_dir, []))  # evicts a
    switched = residency.switch_seconds
    assert switched > 0 and residency.reloads == 0
    lines = []
    residency.on_event = lines.append
    residency.get("a", "a", size, _load(tiny_model_dir, []))  # evicts b, loads a again
    assert residency.switch_seconds > switched and lines[-1].startswith("loaded a again (")
    assert (residency.loads, residency.reloads) == (4, 1)


def test_a_model_that_cannot_fit_alone_is_refused_before_it_loads(tiny_model_dir):
    size = weights_bytes(tiny_model_dir, "float32")
    residency = Residency(size // 2)
    with pytest.raises(ConfigError) as error:
        residency.get("tiny", "tiny", size, _load(tiny_model_dir, []))
    assert str(error.value) == (
        f"tiny needs {format_memory(size)} of device memory, more than the "
        f"{format_memory(size // 2)} budget: give a larger --device-memory, or a quantized "
        "variant of the model (e.g. @nf4)"
    )
    assert residency.loads == 0


def _run(store, candidates, device_memory, *subscribers, **options):
    tuner = Tuner(task="humaneval", candidates=candidates, budget=6, seed=3, store=store,
                  device="cpu", device_memory=device_memory, tune_size=2, holdout_size=1,
                  sampler="random", stage1_fraction=1.0, fidelity="off",
                  **options)  # fmt: skip
    for subscriber in subscribers:
        tuner.subscribe(subscriber)
    return tuner, tuner.run()


def _tensor_bytes() -> int:
    """Bytes of the CPU tensors alive in this process (each storage once): what it holds,
    whatever the residency's own accounting says."""
    storages = {}
    for thing in gc.get_objects():
        if issubclass(type(thing), torch.Tensor) and thing.device.type == "cpu":
            storage = thing.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def _held_after_each_sample(held: list[int]):
    """A subscriber: the tensor bytes alive beyond today's, after each sample."""
    gc.collect()
    before = _tensor_bytes()
    return lambda e: isinstance(e, SampleRecorded) and held.append(_tensor_bytes() - before)


def test_a_run_whose_models_fit_one_at_a_time_evaluates_every_candidate_as_if_all_fit(
    tiny_model_dir, wide_model_dir, tmp_path
):
    candidates = [f"tiny={tiny_model_dir}@raw", f"wide={wide_model_dir}@raw"]
    budget = int(1.5 * weights_bytes(wide_model_dir, "float32"))
    one_fits = format_memory(budget).replace(" ", "")
    events, tight_held, roomy_held = [], [], []
    # every sample chosen afresh (no blocks), so that both runs choose alike
    tight, _ = _run(tmp_path / "tight.db", candidates, one_fits, events.append,
                    _held_after_each_sample(tight_held), switch_block=1)  # fmt: skip
    roomy, _ = _run(tmp_path / "roomy.db", candidates, "auto",
                    _held_after_each_sample(roomy_held), switch_block=1)  # fmt: skip
    # What the process holds stays within the budget (the two models together do not)
    assert 0 < max(tight_held) <= budget < max(roomy_held), (tight_held, roomy_held)
    lines = [e.text for e in events if isinstance(e, Message) and e.level == "info"]
    assert sum(line.startswith("evicted ") for line in lines) >= 2
    assert sum(line.startswith("loaded ") for line in lines) >= 3

    def samples(path, run_id):
        return [(s.candidate, s.params, s.score) for s in Store(path).samples(run_id)]

    tight_samples = samples(tmp_path / "tight.db", tight.run_id)
    assert {candidate for candidate, _, _ in tight_samples} == {"tiny", "wide"}
    assert tight_samples == samples(tmp_path / "roomy.db", roomy.run_id)
    # the samples that switched models carry what it cost (the first one had nothing to
    # evict); the roomy run's none
    switched = [s.switch_seconds for s in Store(tmp_path / "tight.db").samples(tight.run_id)]
    assert switched[0] == 0 and all(x > 0 for x in switched[1:4])
    assert not any(s.switch_seconds for s in Store(tmp_path / "roomy.db").samples(roomy.run_id))


def test_a_model_too_large_for_the_budget_stops_the_run_before_the_store(tiny_model_dir, tmp_path):
    store = tmp_path / "never.db"
    with pytest.raises(ConfigError, match=r"^tiny needs .* more than the 1\.0 KiB budget"):
        _run(store, [f"tiny={tiny_model_dir}@raw"], "1KiB")
    assert not store.exists()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="the CUDA allocator's memory needs CUDA")
def test_on_cuda_an_evicted_model_gives_its_memory_back(tiny_model_dir, wide_model_dir):
    # On the CPU transformers maps safetensors weights from their file, so the process's
    # memory says little; on CUDA the allocator's count is exact.
    import torch

    size = weights_bytes(wide_model_dir, "float32")
    residency = Residency(int(1.5 * size))
    before = torch.cuda.memory_allocated()
    highest = 0
    for folder in (tiny_model_dir, wide_model_dir, tiny_model_dir):
        residency.get(str(folder), folder.name, size,
                      lambda f=folder: TransformersBackend(resolve_model(str(f)), device="cuda",
                                                           dtype="float32"))  # fmt: skip
        highest = max(highest, torch.cuda.memory_allocated() - before)
    assert residency.evictions == 2 and highest <= residency.budget
    residency.close()
    assert torch.cuda.memory_allocated() - before < 2**20


@pytest.mark.gpu
@pytest.mark.bundled
@pytest.mark.skipif(not _cuda(), reason="vLLM runs on CUDA, where installed")
def test_a_vllm_engine_is_shut_down_and_loaded_again():
    from engine.generation.backends.vllm import VLLMBackend, vllm_available

    if not vllm_available():
        pytest.skip("vLLM runs on CUDA, where installed")
    ref = resolve_model("smollm2")
    residency = Residency(None)
    first = residency.get("vllm", "smollm2", 0, lambda: VLLMBackend(ref))
    text = first.generate(["def add(a, b):"], {"do_sample": False, "max_new_tokens": 16}, seed=0)
    residency.close()
    again = residency.get("vllm", "smollm2", 0, lambda: VLLMBackend(ref))
    assert again.generate(["def add(a, b):"], {"do_sample": False, "max_new_tokens": 16},
                          seed=0) == text  # fmt: skip
