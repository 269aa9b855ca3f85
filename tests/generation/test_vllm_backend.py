"""vLLM in process: the field mapping everywhere, generation where vLLM and CUDA are."""

from __future__ import annotations

import pytest

from engine.generation.backends.vllm import sampling_fields, vllm_available
from engine.space import generation_kwargs


def test_greedy_maps_to_temperature_zero_and_every_token():
    fields = sampling_fields(generation_kwargs({"temperature": 0, "max_new_tokens": 64}))
    assert fields == {"temperature": 0.0, "top_p": 1.0, "top_k": -1,
                      "repetition_penalty": 1.0, "max_tokens": 64}  # fmt: skip


def test_sampling_keeps_its_knobs_and_the_stop_strings():
    params = {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1,
              "max_new_tokens": 128}  # fmt: skip
    fields = sampling_fields(generation_kwargs(params), ["\ndef"])
    assert fields == {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1,
                      "max_tokens": 128, "stop": ["\ndef"]}  # fmt: skip


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.bundled
@pytest.mark.skipif(not (vllm_available() and _cuda()), reason="vLLM runs on CUDA, where installed")
def test_vllm_greedy_completions_agree_with_transformers():
    from engine.generation import resolve_model
    from engine.generation.backends.transformers import TransformersBackend
    from engine.generation.backends.vllm import VLLMBackend

    ref = resolve_model("smollm2")
    prompts = ["def add(a, b):", "def is_prime(n):", "class Stack:"]
    kwargs = generation_kwargs({"temperature": 0, "max_new_tokens": 32})
    backend = VLLMBackend(ref)
    fast = backend.generate(prompts, kwargs, seed=0, stop=["\ndef"])
    slow = TransformersBackend(ref, device="cuda", dtype="float32").generate(
        prompts, kwargs, seed=0, stop=["\ndef"]
    )
    agree = sum(a.text == b.text for a, b in zip(fast, slow, strict=True))
    assert agree >= 2  # bf16 against fp32 kernels may part after many tokens
    sampled = generation_kwargs({"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 16})
    assert backend.generate(prompts * 2, sampled, seed=1) == backend.generate(
        prompts * 2, sampled, seed=1
    )
