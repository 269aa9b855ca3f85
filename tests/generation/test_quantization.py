"""Quantized candidates: spelling, refusal where bitsandbytes cannot run, real 8/4-bit loads."""

from __future__ import annotations

import sys

import pytest

from engine import Tuner
from engine.errors import ConfigError, ModelLoadError
from engine.generation import check_quantization, load_model, resolve_model
from engine.generation._quantization import _unsupported_reason, parse_quantization
from engine.generation.backends.transformers import TransformersBackend


@pytest.fixture(autouse=True)
def _fresh_verdicts():
    _unsupported_reason.cache_clear()
    yield
    _unsupported_reason.cache_clear()


@pytest.mark.parametrize(
    ("text", "kind"),
    [("int8", "int8"), ("8bit", "int8"), ("NF4", "nf4"), ("4bit", "nf4"), ("", None)],
)
def test_spellings(text, kind):
    assert parse_quantization(text) == kind


def test_an_unknown_quantization_is_refused():
    with pytest.raises(ConfigError, match="use int8 .* or nf4"):
        parse_quantization("fp8")


@pytest.fixture
def without_bitsandbytes(monkeypatch):
    """The machine as it is without the package: importing it fails."""
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)


def test_refused_with_one_clear_line_where_bitsandbytes_is_missing(without_bitsandbytes):
    with pytest.raises(ConfigError) as error:
        check_quantization("nf4", "cpu")
    message = str(error.value)
    assert "bitsandbytes is not installed" in message and "\n" not in message
    assert "drop the :nf4 suffix" in message


def test_refused_on_a_device_without_kernels():
    pytest.importorskip("bitsandbytes")
    with pytest.raises(ConfigError, match="int8 quantization cannot run here: bitsandbytes"):
        check_quantization("int8", "meta")  # a device no kernel computes on


def test_a_run_refuses_before_anything_loads(without_bitsandbytes, tiny_model_dir, tmp_path):
    tuner = Tuner(task="humaneval", candidates=[f"{tiny_model_dir}:int8"], budget=4,
                  store=tmp_path / "s.db", device="cpu")  # fmt: skip
    with pytest.raises(ConfigError, match="bitsandbytes is not installed"):
        tuner.run()
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(("kind", "layer"), [("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_quantized_loading_on_this_machine(kind, layer, wide_model_dir):
    pytest.importorskip("bitsandbytes")
    ref = resolve_model(str(wide_model_dir))
    check_quantization(kind, "cpu")  # bitsandbytes >= 0.48 has CPU kernels
    model, _ = load_model(ref, device="cpu", quantization=kind)
    plain, _ = load_model(ref, device="cpu")
    q_proj = model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == layer
    assert model.get_memory_footprint() < plain.get_memory_footprint()

    backend = TransformersBackend(ref, device="cpu", quantization=kind)
    [out] = backend.generate(["def add(a, b):"], {"max_new_tokens": 4, "do_sample": False}, seed=0)
    assert 0 < out.generated_tokens <= 4
    assert backend.fingerprint.endswith(f"-{kind}")


def test_a_model_whose_layers_the_kernels_refuse_fails_while_loading(tiny_model_dir):
    """bitsandbytes' 4-bit kernel for CPUs with AVX512-BF16 needs output sizes divisible
    by 32; the tiny model's key projection has 24."""
    pytest.importorskip("bitsandbytes")
    from bitsandbytes.nn import modules

    if not getattr(modules, "has_avx512bf16", lambda: False)():
        pytest.skip("this CPU runs 4-bit layers with the kernel that takes any shape")
    with pytest.raises(ModelLoadError, match="cannot run nf4-quantized on cpu: .*drop the :nf4"):
        load_model(resolve_model(str(tiny_model_dir)), device="cpu", quantization="nf4")
