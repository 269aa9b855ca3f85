import pytest
import torch

from engine.errors import ConfigError, TunerError
from engine.generation import resolve_model
from engine.generation.backends import Generation, repeat_numbers
from engine.generation.backends.transformers import (
    CPU_BATCH,
    MAX_GPU_BATCH,
    TransformersBackend,
    finish_tokens,
    is_out_of_memory,
    left_pad,
    length_order,
    memory_batch_size,
)
from engine.tasks import truncate_at_stop

GREEDY = {
    "max_new_tokens": 12,
    "do_sample": False,
    "temperature": None,
    "top_p": None,
    "top_k": None,
    "repetition_penalty": 1.0,
}
HOT = {**GREEDY, "do_sample": True, "temperature": 2.0, "top_p": 1.0, "top_k": 0}
# Different lengths, out of length order, so batching and bucketing both matter.
PROMPTS = [
    "x",
    "def add(a, b):",
    "class Stack:\n    def __init__(self):\n        self.items = []\n",
    "for i in range(10):\n   ",
    "import math",
    'def greet(name: str) -> str:\n    """Say hello."""\n',
    "while x > 0:",
    "Return only code.",
]


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return TransformersBackend(resolve_model(str(tiny_model_dir)), device="cpu", batch_size=4)


def generated_ids(backend, prompt, max_new_tokens):
    """The raw token ids transformers generates greedily for one prompt."""
    ids = backend.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = backend.model.generate(
        **ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=None,
        pad_token_id=backend.tokenizer.pad_token_id,
    )  # fmt: skip
    return out[0, ids["input_ids"].shape[1] :].tolist()


# -- generation on the tiny model -------------------------------------------------------------


def test_batched_greedy_equals_one_prompt_at_a_time(backend):
    # fp32 on CPU: left padding is masked out, so the arithmetic on real tokens is identical
    # up to rounding far below the logit gaps of this model; outputs are equal.
    batched = backend.generate(PROMPTS, GREEDY, seed=0)
    single = [backend.generate([p], GREEDY, seed=0)[0] for p in PROMPTS]
    assert batched == single
    assert all(isinstance(g, Generation) for g in batched)


def test_output_order_follows_input_order(backend):
    forward = backend.generate(PROMPTS, GREEDY, seed=0)
    backward = backend.generate(PROMPTS[::-1], GREEDY, seed=0)
    assert backward == forward[::-1]
    assert len({g.text for g in forward}) > 1  # the check above would be vacuous otherwise


def test_token_counts(backend):
    outputs = backend.generate(PROMPTS, GREEDY, seed=0)
    for prompt, out in zip(PROMPTS, outputs, strict=True):
        assert out.prompt_tokens == len(
            backend.tokenizer(prompt, add_special_tokens=False).input_ids
        )
        assert out.generated_tokens == GREEDY["max_new_tokens"]  # this model never emits EOS


def test_sampling_is_reproducible_per_seed(backend):
    first = backend.generate(PROMPTS, HOT, seed=7)
    assert backend.generate(PROMPTS, HOT, seed=7) == first
    other = backend.generate(PROMPTS, HOT, seed=8)
    assert [g.text for g in other] != [g.text for g in first]


def test_sampling_does_not_disturb_the_callers_rng(backend):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    backend.generate(PROMPTS[:2], HOT, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_eos_ends_a_row_and_is_counted(backend):
    prompt = PROMPTS[3]
    ids = generated_ids(backend, prompt, 12)
    k = next(i for i in range(1, len(ids)) if ids[i] not in ids[:i])  # first new token
    [out] = backend.generate([prompt], {**GREEDY, "eos_token_id": ids[k]}, seed=0)
    assert out.generated_tokens == k + 1
    assert out.text == backend.tokenizer.decode(ids[:k], skip_special_tokens=True)


def test_stop_sequence_cuts_the_text_and_stops_generation(backend):
    prompt = PROMPTS[3]
    [full] = backend.generate([prompt], {**GREEDY, "max_new_tokens": 24}, seed=0)
    stop = full.text[4:8]
    assert stop and full.text.index(stop) == 4
    [out] = backend.generate([prompt], {**GREEDY, "max_new_tokens": 24}, seed=0, stop=[stop])
    assert out.text == full.text[:4]
    # generated_tokens is exactly the tokens up to the one that completed the stop sequence.
    n = out.generated_tokens
    assert n < 24
    [upto] = backend.generate([prompt], {**GREEDY, "max_new_tokens": n}, seed=0)
    [before] = backend.generate([prompt], {**GREEDY, "max_new_tokens": n - 1}, seed=0)
    assert stop in upto.text and stop not in before.text


def test_stop_sequences_in_a_batch_only_cut_their_own_rows(backend):
    full = backend.generate(PROMPTS, GREEDY, seed=0)
    stop = full[3].text[4:8]
    cut = backend.generate(PROMPTS, GREEDY, seed=0, stop=[stop])
    for f, c in zip(full, cut, strict=True):
        assert c.text == truncate_at_stop(f.text, [stop])[0]
        assert (c.generated_tokens < f.generated_tokens) == (stop in f.text)


def test_empty_input_and_invalid_arguments(backend):
    assert backend.generate([], GREEDY, seed=0) == []
    with pytest.raises(ConfigError, match="max_new_tokens"):
        backend.generate(["x"], {"do_sample": False}, seed=0)
    with pytest.raises(ConfigError, match="num_return_sequences"):
        backend.generate(["x"], {**GREEDY, "num_return_sequences": 2}, seed=0)
    with pytest.raises(ConfigError, match="invalid generation arguments: .*temperature"):
        backend.generate(["x"], {**HOT, "temperature": -1.0}, seed=0)
    with pytest.raises(ConfigError, match="empty after tokenization"):
        backend.generate([""], GREEDY, seed=0)


def test_fingerprint_names_weights_device_and_precision(backend):
    assert backend.fingerprint == f"{backend.ref.fingerprint}-cpu-float32"


def test_batch_size_is_validated(tiny_model_dir):
    with pytest.raises(ConfigError, match="batch size"):
        TransformersBackend(resolve_model(str(tiny_model_dir)), device="cpu", batch_size=-1)


def test_an_unset_batch_size_is_the_cpu_default_here_and_outputs_do_not_change(backend):
    auto = TransformersBackend(backend.ref, device="cpu", batch_size=0)
    assert auto._fitting_batch(tokens=100) == CPU_BATCH
    kwargs = {**GREEDY, "max_new_tokens": 6}
    assert auto.generate(PROMPTS, kwargs, seed=0) == backend.generate(PROMPTS, kwargs, seed=0)


@pytest.mark.parametrize(
    ("free", "tokens", "per_token", "rows"),
    [
        (10 * 2**30, 1024, 2**20, 8),  # 8 GiB usable / 1 GiB per row
        (2**30, 4096, 2**20, 1),  # not even one row: one, and the back-off decides
        (80 * 2**30, 128, 2**10, MAX_GPU_BATCH),  # capped
    ],
)
def test_the_memory_batch_size_is_what_four_fifths_of_the_free_memory_hold(
    free, tokens, per_token, rows
):
    assert memory_batch_size(free, tokens, per_token) == rows


def test_threads_set_torchs_cpu_threads(backend):
    before = torch.get_num_threads()
    try:
        TransformersBackend(backend.ref, device="cpu", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_attention_runs_through_sdpa(backend):
    assert backend.model.config._attn_implementation == "sdpa"


# -- out-of-memory back-off ------------------------------------------------------------------


class SmallMemoryBackend(TransformersBackend):
    """Runs out of memory on batches larger than ``fits``: the injected fault."""

    fits = 2

    def _generate_batch(self, batch, kwargs):
        if batch["input_ids"].shape[0] > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super()._generate_batch(batch, kwargs)


def test_out_of_memory_halves_the_batch_and_succeeds(tiny_model_dir, backend):
    warnings = []
    small = SmallMemoryBackend(
        resolve_model(str(tiny_model_dir)), device="cpu", batch_size=8, on_warning=warnings.append
    )
    assert small.generate(PROMPTS, GREEDY, seed=0) == backend.generate(PROMPTS, GREEDY, seed=0)
    assert small.batch_size == 2
    assert warnings == [
        "out of memory generating 8 prompts at once; retrying with batch size 4",
        "out of memory generating 4 prompts at once; retrying with batch size 2",
    ]
    small.generate(PROMPTS, GREEDY, seed=0)
    assert len(warnings) == 2  # the smaller batch size is kept


def test_out_of_memory_at_batch_size_one_fails_clearly(tiny_model_dir):
    never = SmallMemoryBackend(resolve_model(str(tiny_model_dir)), device="cpu", batch_size=2)
    never.fits = 0
    with pytest.raises(TunerError, match="out of memory generating one prompt of .*max_new_tok"):
        never.generate(["x", "y"], GREEDY, seed=0)


def test_other_errors_are_not_retried(tiny_model_dir):
    class Broken(TransformersBackend):
        calls = 0

        def _generate_batch(self, batch, kwargs):
            self.calls += 1
            raise RuntimeError("index out of range")

    broken = Broken(resolve_model(str(tiny_model_dir)), device="cpu", batch_size=4)
    with pytest.raises(RuntimeError, match="index out of range"):
        broken.generate(PROMPTS, GREEDY, seed=0)
    assert broken.calls == 1 and broken.batch_size == 4


# -- pure helpers ------------------------------------------------------------------------------


def test_is_out_of_memory():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: not enough memory: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_truncate_at_stop():
    assert truncate_at_stop("a\nclass B\ndef f", ["\ndef", "\nclass"]) == ("a", True)
    assert truncate_at_stop("abc", ["x", ""]) == ("abc", False)
    assert truncate_at_stop("abc", []) == ("abc", False)
    assert truncate_at_stop("stop", ["stop"]) == ("", True)


def test_length_order_longest_first_ties_by_index():
    assert length_order([3, 5, 3, 1, 5]) == [1, 4, 0, 2, 3]
    assert length_order([]) == []


def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def letters(ids):
    """A toy decoder: token t is the letter chr(ord('a') + t)."""
    return "".join(chr(ord("a") + t) for t in ids)


@pytest.mark.parametrize(
    ("tokens", "eos", "pad", "stop", "expected"),
    [
        ([0, 1, 2, 3], {25}, 24, (), ("abcd", 4)),  # ran to max_new_tokens
        ([0, 1, 25, 24, 24], {25}, 24, (), ("ab", 3)),  # EOS is counted, padding is not
        ([0, 1, 25, 25, 25], {25}, 25, (), ("ab", 3)),  # pad == EOS
        ([25, 24], {25}, 24, (), ("", 1)),  # EOS first
        ([0, 1, 2, 3, 24, 24], {25}, 24, ("cd",), ("ab", 4)),  # stopped by "cd", then padded
        ([0, 1, 2, 3, 25, 25], {25}, 25, ("cd",), ("ab", 4)),  # ... padded with pad == EOS
        ([0, 1, 2, 3, 4, 5], {25}, 24, ("bc", "e"), ("a", 3)),  # earliest stop wins
        ([0, 1, 2], set(), None, (), ("abc", 3)),  # no EOS known
    ],
)
def test_finish_tokens(tokens, eos, pad, stop, expected):
    assert finish_tokens(tokens, letters, eos_ids=eos, pad_id=pad, stop=stop) == expected


# -- the bundled model ---------------------------------------------------------------------------


@pytest.mark.bundled
def test_bundled_model_answers_a_chat_prompt():
    ref = resolve_model("smollm2")
    backend = TransformersBackend(ref, device="cpu", batch_size=2)
    messages = [{"role": "user", "content": "Write a Python function add(a, b) that adds."}]
    prompt = backend.tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )
    kwargs = {**GREEDY, "max_new_tokens": 48}
    [out] = backend.generate([prompt], kwargs, seed=0)
    assert "def add" in out.text and 0 < out.generated_tokens <= 48
    [cut] = backend.generate([prompt], kwargs, seed=0, stop=["def add"])
    assert cut.text == out.text[: out.text.index("def add")]
    assert cut.generated_tokens < out.generated_tokens


def test_repeat_numbers_count_equal_prompts_before_each_messages_included():
    chat = [{"role": "user", "content": "x"}]
    assert repeat_numbers(["a", "b", "a", chat, "a", list(chat)]) == [0, 0, 1, 0, 2, 1]
