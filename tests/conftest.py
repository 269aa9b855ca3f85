"""Shared fixtures.

``tiny_model_dir`` is a real (random-weight) causal LM saved with ``save_pretrained``: a
2-layer Llama with a byte-level BPE tokenizer trained here and a ChatML chat template.
It needs no network and no bundled model, and loads through the same code as any model.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

# A PostgreSQL server for the store's tests (skipped, saying what to install, without one).
from tests.postgres import postgres_server, postgres_url  # noqa: F401

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Enough varied text that the BPE learns a few hundred merges over code-like input.
_CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "def is_prime(n):\n    if n < 2:\n        return False\n    return True\n",
    "for i in range(10):\n    print(i * i)\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    'def greet(name: str) -> str:\n    """Say hello."""\n    return f"Hello {name}"\n',
    "Write a Python function that returns the sum of a list of numbers.",
    "Complete the function below. Return only code.",
    "import math\nx = math.sqrt(16)\nwhile x > 0:\n    x -= 1\n",
]


def _tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    # No pad token on purpose: loading must fall back to EOS, as for many real models.
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A folder holding a tiny random-weight Llama causal LM and its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = _tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def wide_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model's architecture at hidden size 64 (head_dim 16, MLP 128): adapters
    made for the tiny model do not fit it, and every layer size is a multiple of 32, as
    bitsandbytes' CPU 4-bit kernel requires."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.hidden_size, config.intermediate_size, config.head_dim = 64, 128, 16
    folder = tmp_path_factory.mktemp("wide-llama")
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The skipped tests counted by reason, one line each, most first.

    Whole groups skip where a system package is missing (bubblewrap for the sandbox,
    PostgreSQL for the shared store: the README names them); ``-ra`` lists each skip by
    its place in the code, and a hundred lines of those hide what is missing.
    """
    reasons = Counter(_skip_reason(r) for r in terminalreporter.stats.get("skipped", ()))
    if not reasons:
        return
    terminalreporter.section("skipped, by reason", sep="-")
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"{count:5d}  {reason}")


def _skip_reason(report: pytest.TestReport) -> str:
    # A skip's longrepr is (path, line, "Skipped: reason"); pytest.skip() and a skipif
    # mark alike.
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")
