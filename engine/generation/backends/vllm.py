"""Generation with vLLM in process (``pip install codellmtuner[vllm]``, CUDA only).

vLLM batches continuously with a paged KV cache, several times faster than ``generate``
on the same GPU. Prompts are handed over as token ids made by
:func:`~engine.generation.backends.transformers.prompt_ids`, so both backends see the same tokens (a
rendered chat prompt already holds its BOS); each request carries its own seed, so a
sampled output depends on its prompt, its seed and its place among the repeats of that
prompt, never on which other prompts share the call.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import ConfigError, ModelLoadError, first_line
from engine.generation._models import ModelRef
from engine.generation.backends import Backend, Generation, Prompt, repeat_numbers
from engine.generation.backends.transformers import prompt_ids
from engine.tasks import truncate_at_stop


def vllm_available() -> bool:
    """Whether vLLM is installed (without importing it: that takes seconds)."""
    return importlib.util.find_spec("vllm") is not None


class VLLMBackend(Backend):
    """Generates with ``vllm.LLM`` on the model folder of ``ref``.

    Args:
        ref: the resolved model.
        device: ``"cuda"`` or ``"cuda:N"``.
        gpu_memory_utilization: the share of the GPU's memory vLLM may take (weights and
            KV cache); the rest stays for the sandbox and other work.
    """

    def __init__(
        self, ref: ModelRef, *, device: str = "cuda", gpu_memory_utilization: float = 0.8
    ) -> None:
        if not device.startswith("cuda"):
            raise ConfigError(f"vLLM generates on CUDA devices, not {device!r}")
        if ":" in device:  # vLLM takes the first visible GPU
            import os

            os.environ["CUDA_VISIBLE_DEVICES"] = device.partition(":")[2]
        try:
            from vllm import LLM

            self.llm = LLM(
                model=str(ref.path), dtype="auto", seed=0,
                gpu_memory_utilization=gpu_memory_utilization,
            )  # fmt: skip
        except (OSError, ValueError, RuntimeError) as error:
            raise ModelLoadError(f"vLLM cannot load {ref.source!r}: {first_line(error)}") from error
        self.share = gpu_memory_utilization
        self.tokenizer = self.llm.get_tokenizer()
        dtype = str(self.llm.llm_engine.model_config.dtype).removeprefix("torch.")
        self.fingerprint = f"{ref.fingerprint}-vllm-{dtype}"

    def memory_bytes(self) -> int:
        """vLLM holds its share of the GPU (weights and KV cache) whatever the model."""
        import torch

        return int(self.share * torch.cuda.mem_get_info()[1])

    def close(self) -> None:
        """Shut the engine down and hand its memory back to the GPU."""
        import gc

        import torch

        del self.llm
        gc.collect()
        torch.cuda.empty_cache()

    def generate(
        self,
        prompts: Sequence[Prompt],
        generation_kwargs: Mapping[str, Any],
        *,
        seed: int,
        stop: Sequence[str] = (),
    ) -> list[Generation]:
        """The k-th repeat of a prompt in the call samples with ``seed + k``."""
        from vllm import SamplingParams

        if int(generation_kwargs.get("num_beams") or 1) > 1:
            raise ConfigError("the vLLM backend does not search beams; use --backend transformers")
        fields = sampling_fields(generation_kwargs, stop)
        requests, params = [], []
        for prompt, k in zip(prompts, repeat_numbers(prompts), strict=True):
            if not isinstance(prompt, str):
                raise ConfigError("the vLLM backend takes rendered prompts, not chat messages")
            requests.append({"prompt_token_ids": prompt_ids(self.tokenizer, prompt)})
            params.append(SamplingParams(**fields, seed=seed + k))
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        results = []
        for request, output in zip(requests, outputs, strict=True):
            completion = output.outputs[0]
            text, _found = truncate_at_stop(completion.text, stop)
            results.append(
                Generation(text, len(request["prompt_token_ids"]), len(completion.token_ids))
            )
        return results


def sampling_fields(kwargs: Mapping[str, Any], stop: Sequence[str] = ()) -> dict[str, Any]:
    """vLLM ``SamplingParams`` fields for Hugging Face ``generate`` kwargs: greedy is
    temperature 0; ``top_k`` -1 is every token.

    >>> sampling_fields({"do_sample": False, "max_new_tokens": 8, "repetition_penalty": 1.1})
    {'temperature': 0.0, 'top_p': 1.0, 'top_k': -1, 'repetition_penalty': 1.1, 'max_tokens': 8}
    """
    sampled = bool(kwargs.get("do_sample"))
    fields: dict[str, Any] = {
        "temperature": float(kwargs["temperature"]) if sampled else 0.0,
        "top_p": float(kwargs.get("top_p") or 1.0) if sampled else 1.0,
        "top_k": int(kwargs.get("top_k") or -1) if sampled else -1,
        "repetition_penalty": float(kwargs.get("repetition_penalty") or 1.0),
        "max_tokens": int(kwargs["max_new_tokens"]),
    }
    if stop:
        fields["stop"] = list(stop)
    return fields
