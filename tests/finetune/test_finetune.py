"""Fine-tuning: the label masking, real training runs of every method on the tiny model,
the saved adapter and its metadata, argument checks, and the ``finetune`` command."""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console

from engine.errors import ConfigError
from engine.finetune import (
    IGNORE_INDEX,
    METHODS,
    FineTuneProgress,
    encode_examples,
    finetune,
    load_for_training,
    pad_batch,
    response_labels,
    split_validation,
)
from engine.generation import (
    METADATA_FILE,
    adapter_home,
    check_unseen,
    load_model,
    resolve_adapter,
    resolve_model,
)
from engine.tasks import get_task

# The bundled Conala sample with every non-holdout question it can give to train: 19
# problems in 18 questions, short enough that 128 tokens hold most prompts and answers.
TRAIN_SIZE = 100
FAST = {"max_length": 128, "batch_size": 4}
METADATA_FIELDS = {
    "name", "method", "base_model", "base_fingerprint", "task", "dataset", "n_train",
    "train_ids", "validation_ids", "epochs", "learning_rate", "best_epoch",
    "best_validation_loss", "initial_validation_loss", "train_losses", "trainable_params",
    "total_params", "seconds", "peak_memory_mib", "device", "created",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CODELLMTUNER_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def model_source(tiny_model_dir) -> str:
    return str(tiny_model_dir)


@pytest.fixture
def task():
    return get_task("conala", n_train=TRAIN_SIZE)


def _validation_loss(task, adapter: Path, model_source: str, batch_size: int = 4) -> float:
    """The mean validation loss of the adapter in ``adapter``, loaded back with peft and
    measured here from the recorded validation ids, as the engine measures it."""
    from peft import PeftModel

    meta = json.loads((adapter / METADATA_FILE).read_text())
    quantization = METHODS[meta["method"]].quantization
    # The 4-bit layout training used: a CPU's faster inference layout rounds differently
    # (and its kernel cannot run the tiny model's 24-wide key/value projections at all).
    base, tokenizer = load_model(
        resolve_model(model_source), quantization=quantization, trainable=True
    )
    model = PeftModel.from_pretrained(base, adapter).eval()
    by_id = {p.id: p for p in task.problems("train")}
    problems = [by_id[i] for i in meta["validation_ids"]]
    rows, _ = encode_examples(task, problems, tokenizer, meta["max_length"])
    total = tokens = 0.0
    with torch.inference_mode():
        for first in range(0, len(rows), batch_size):
            batch = pad_batch(rows[first : first + batch_size], tokenizer.pad_token_id)
            n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            total += model(**batch).loss.item() * n
            tokens += n
    return total / tokens


# -- labels and masking ------------------------------------------------------------------------


def test_response_labels_mask_the_prompt_and_count_truncation():
    ids, labels, cut = response_labels([1, 2, 3], [4, 5, 6], max_length=10)
    assert ids == [1, 2, 3, 4, 5, 6]
    assert labels == [IGNORE_INDEX] * 3 + [4, 5, 6]
    assert not cut

    ids, labels, cut = response_labels([1, 2, 3], [4, 5, 6], max_length=4)
    assert (ids, labels, cut) == ([1, 2, 3, 4], [IGNORE_INDEX] * 3 + [4], True)

    ids, labels, cut = response_labels([1, 2, 3, 4, 5], [6], max_length=3)
    assert (ids, labels, cut) == ([1, 2, 3], [IGNORE_INDEX] * 3, True)

    with pytest.raises(ValueError, match="no tokens"):
        response_labels([], [4], max_length=4)


def test_pad_batch_pads_on_the_right_with_ignored_labels():
    rows = [response_labels([7, 8], [9], 10)[:2], response_labels([1, 2, 3], [4, 5], 10)[:2]]
    batch = pad_batch(rows, pad_id=0)
    assert batch["input_ids"].tolist() == [[7, 8, 9, 0, 0], [1, 2, 3, 4, 5]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].tolist() == [
        [IGNORE_INDEX, IGNORE_INDEX, 9, IGNORE_INDEX, IGNORE_INDEX],
        [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 4, 5],
    ]


def test_masked_loss_is_the_cross_entropy_of_response_tokens_only(task, model_source):
    model, tokenizer = load_model(resolve_model(model_source), device="cpu")
    rows, _ = encode_examples(task, task.problems("train")[:2], tokenizer, 128)
    batch = pad_batch(rows, tokenizer.pad_token_id)
    with torch.inference_mode():
        output = model(**batch)
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     labels=batch["input_ids"]).loss  # fmt: skip

    # By hand: the logits at t predict the token at t + 1; only response tokens count.
    losses = []
    for row, (ids, labels) in enumerate(rows):
        prompt_length = labels.index(next(x for x in labels if x != IGNORE_INDEX))
        assert labels[:prompt_length] == [IGNORE_INDEX] * prompt_length
        for t in range(prompt_length, len(ids)):
            logits = output.logits[row, t - 1]
            losses.append(torch.nn.functional.cross_entropy(logits, torch.tensor(ids[t])))
    by_hand = torch.stack(losses).mean()
    assert output.loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    # The prompt's own tokens would change the loss if they were targets.
    assert abs(full.item() - output.loss.item()) > 1e-3

    # Right padding changes nothing: each row alone has the same logits where it has tokens.
    with torch.inference_mode():
        for row, (ids, _) in enumerate(rows):
            alone = model(input_ids=torch.tensor([ids])).logits[0]
            torch.testing.assert_close(output.logits[row, : len(ids)], alone)


def test_encode_examples_use_the_tuners_chat_prompt_and_end_with_eos(task, model_source):
    from engine.generation import build_prompts

    _, tokenizer = load_model(resolve_model(model_source), device="cpu")
    problem = task.problems("train")[0]
    rows, truncated = encode_examples(task, [problem], tokenizer, 512)
    (ids, labels), *_ = rows
    assert truncated == 0
    prompt = build_prompts(task, [problem], "chat", tokenizer)[0]
    answer = tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
    assert tokenizer.decode(ids) == prompt + task.example_response(problem) + "<|im_end|>"
    assert answer == task.example_response(problem) + "<|im_end|>"
    assert ids[-1] == tokenizer.eos_token_id

    # At 80 tokens some answers are cut and the longest prompts leave no answer at all.
    problems = task.problems("train")
    rows, truncated = encode_examples(task, problems, tokenizer, 80)
    assert truncated > len(problems) - len(rows) > 0
    assert all(len(ids) <= 80 for ids, _ in rows)
    with pytest.raises(ConfigError, match="max_length 8 leaves no response tokens"):
        encode_examples(task, problems, tokenizer, 8)


def test_validation_split_is_by_question_and_never_empty(task):
    problems = task.problems("train")
    train, validation = split_validation(problems, 0.125)
    assert train and validation
    assert {p.id for p in train} | {p.id for p in validation} == {p.id for p in problems}
    assert not {p.meta["group"] for p in train} & {p.meta["group"] for p in validation}
    assert split_validation(problems, 0.125) == (train, validation)  # deterministic
    # A tiny fraction still holds one question out; a huge one still trains on one.
    assert len({p.meta["group"] for p in split_validation(problems, 1e-9)[1]}) == 1
    assert len({p.meta["group"] for p in split_validation(problems, 1 - 1e-9)[0]}) == 1


# -- training runs -----------------------------------------------------------------------------


def test_finetune_lowers_the_loss_and_saves_the_best_checkpoint(task, model_source, tmp_path):
    reports: list[FineTuneProgress] = []
    output = tmp_path / "adapter"
    result = finetune(
        task, model_source, method="lora", output=output, epochs=4, learning_rate=3e-2,
        on_progress=reports.append, **FAST,
    )  # fmt: skip

    assert result.path == output.absolute()
    assert len(result.train_losses) == 4
    assert result.train_losses[-1] < result.train_losses[0]
    assert math.isfinite(result.initial_validation_loss)
    assert result.best_validation_loss < result.initial_validation_loss
    assert 1 <= result.best_epoch <= 4
    assert 0 < result.trainable_params < result.total_params
    assert result.seconds > 0 and result.peak_memory_mib > 0

    # The folder holds the best epoch: its loss, reloaded with peft, is the one recorded,
    # and it is trained (an untrained LoRA adapter adds nothing to the base's logits).
    reloaded = _validation_loss(task, output, model_source)
    assert reloaded == pytest.approx(result.best_validation_loss, rel=1e-5)
    from peft import PeftModel

    base, _ = load_model(resolve_model(model_source))
    probe = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.inference_mode():
        before = base(input_ids=probe).logits
        after = PeftModel.from_pretrained(base, output).eval()(input_ids=probe).logits
    assert (after - before).abs().max() > 1e-3

    meta = json.loads((output / METADATA_FILE).read_text())
    assert set(meta) >= METADATA_FIELDS
    ref = resolve_model(model_source)
    assert (meta["base_model"], meta["base_fingerprint"]) == (model_source, ref.fingerprint)
    assert (meta["task"], meta["method"], meta["epochs"]) == ("conala", "lora", 4)
    assert meta["best_epoch"] == result.best_epoch
    assert meta["train_losses"] == pytest.approx(list(result.train_losses))
    assert meta["n_train"] == result.n_train == 18  # questions, as Conala's n_train counts
    train_ids, validation_ids = set(meta["train_ids"]), set(meta["validation_ids"])
    assert train_ids and validation_ids and not train_ids & validation_ids
    assert train_ids | validation_ids == {p.id for p in task.problems("train")}

    steps = [r.step for r in reports]
    assert steps == sorted(steps) and steps[-1] == reports[-1].total_steps
    assert {r.phase for r in reports} == {"train", "validate"}
    assert reports[-1].validation_loss == pytest.approx(meta["validation_losses"][-1])
    assert [r.epoch for r in reports if r.phase == "validate"] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt", "prefix"])
def test_each_method_trains_and_saves_an_adapter_that_loads(method, task, model_source):
    result = finetune(task, model_source, method=method, epochs=1, learning_rate=1e-2, **FAST)

    assert result.path == adapter_home() / f"{method}-conala"
    assert 0 < result.trainable_params < result.total_params
    assert math.isfinite(result.train_losses[0])
    config = json.loads((result.path / "adapter_config.json").read_text())
    peft_type = {"lora": "LORA", "ia3": "IA3", "prompt": "PROMPT_TUNING", "prefix": "PREFIX_TUNING"}
    assert config["peft_type"] == peft_type[method]
    reloaded = _validation_loss(task, result.path, model_source)
    assert reloaded == pytest.approx(result.best_validation_loss, rel=1e-5)
    assert resolve_adapter(f"{method}-conala").metadata["method"] == method


@pytest.mark.parametrize("method", ["qlora-8", "qlora-4"])
def test_qlora_trains_on_a_quantized_base(method, task, model_source):
    result = finetune(task, model_source, method=method, epochs=1, learning_rate=1e-2, **FAST)

    assert result.quantization == METHODS[method].quantization
    assert 0 < result.trainable_params < result.total_params
    reloaded = _validation_loss(task, result.path, model_source)
    assert reloaded == pytest.approx(result.best_validation_loss, rel=1e-4)


def test_a_validation_pass_leaves_4bit_gradients_unchanged(model_source):
    """bitsandbytes switches a 4-bit layer to an inference-only layout on its first eval
    forward pass on the CPU; gradients through the base after validation must not change."""
    model, _ = load_for_training(resolve_model(model_source), "qlora-4")
    batch = pad_batch([response_labels([5, 6, 7, 8], [9, 10, 11], 16)[:2]], pad_id=0)

    def gradients() -> dict[str, torch.Tensor]:
        torch.manual_seed(0)  # the same LoRA dropout masks
        model.train()
        model.zero_grad()
        model(**batch, use_cache=False).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    before = gradients()
    model.eval()
    with torch.inference_mode():
        model(**batch)
    after = gradients()
    first_layer = [n for n in before if ".layers.0." in n and "lora_A" in n]
    assert first_layer  # their gradient flows back through layer 1's 4-bit projections
    for name in before:
        torch.testing.assert_close(after[name], before[name], msg=name)


def test_ctrl_c_keeps_the_best_checkpoint_so_far(task, model_source, tmp_path):
    output = tmp_path / "adapter"

    def stop_in_epoch_two(report: FineTuneProgress) -> None:
        if report.phase == "train" and report.epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(task, model_source, output=output, epochs=3, learning_rate=3e-2,
                 on_progress=stop_in_epoch_two, **FAST)  # fmt: skip

    meta = json.loads((output / METADATA_FILE).read_text())
    assert meta["epochs_completed"] == 1 and meta["best_epoch"] in (0, 1)
    assert _validation_loss(task, output, model_source) == pytest.approx(
        meta["best_validation_loss"], rel=1e-5
    )
    assert not [
        p.name for p in tmp_path.iterdir() if p.name.startswith((".adapter.tmp", ".adapter.old"))
    ]


def test_overwrite_replaces_an_existing_adapter(task, model_source, tmp_path):
    output = tmp_path / "adapter"
    finetune(task, model_source, method="ia3", output=output, epochs=1, **FAST)
    finetune(task, model_source, method="lora", output=output, epochs=1, overwrite=True, **FAST)
    assert json.loads((output / METADATA_FILE).read_text())["method"] == "lora"
    assert json.loads((output / "adapter_config.json").read_text())["peft_type"] == "LORA"


# -- bad input ---------------------------------------------------------------------------------


@pytest.fixture
def nothing_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr("engine.finetune._methods.load_model", refuse)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "sgd"}, "unknown method 'sgd'; use one of lora, ia3, prompt"),
        ({"epochs": 0}, "epochs must be a whole number >= 1, got 0"),
        ({"epochs": 1.5}, "epochs must be a whole number >= 1"),
        ({"batch_size": 0}, "batch_size must be a whole number >= 1"),
        ({"max_length": 4}, "max_length must be a whole number >= 8"),
        ({"validation_fraction": 0.0}, "validation_fraction must be between 0 and 1"),
        ({"validation_fraction": 1}, "validation_fraction must be between 0 and 1"),
        ({"validation_fraction": -0.5}, "validation_fraction must be between 0 and 1"),
        ({"name": "team/lora"}, "invalid adapter name 'team/lora'"),
        ({"name": ".hidden"}, "invalid adapter name"),
        ({"learning_rate": 0.0}, "learning_rate must be a number above 0"),
        ({"learning_rate": float("nan")}, "learning_rate must be a number above 0"),
        ({"seed": -1}, "seed must be a whole number >= 0"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
    ],
)
def test_bad_arguments_are_refused_before_the_model_is_touched(task, nothing_loads, options,
                                                               message):  # fmt: skip
    # A model that does not exist: the argument error must come before resolving it.
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")):
        finetune(task, "/no/such/model", **options)


def test_existing_folders_are_not_replaced(task, model_source, tmp_path, nothing_loads):
    existing = tmp_path / "adapter"
    existing.mkdir()
    (existing / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        finetune(task, model_source, output=existing)

    home = tmp_path / "home"
    (home / "notes.txt").parent.mkdir()
    (home / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not an adapter folder; refusing to replace it"):
        finetune(task, model_source, output=home, overwrite=True)
    assert (home / "notes.txt").read_text() == "mine"
    assert {p.name for p in tmp_path.iterdir()} - {"cache"} == {"adapter", "home"}


def test_too_few_train_problems_asks_for_a_larger_train_size(model_source, nothing_loads):
    with pytest.raises(ConfigError, match="train split has 1: raise it with --train-size"):
        finetune(get_task("conala", n_train=1), model_source)


# -- the command -------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    from tui.commands.finetune import add_parser

    parser = argparse.ArgumentParser(prog="codellmtuner")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_command_trains_registers_and_prints_how_to_use_it(model_source):
    from tui.commands import finetune as finetune_command

    args = _parse(["finetune", "--task", "conala", "-m", model_source, "--epochs", "1",
                   "--train-size", str(TRAIN_SIZE), "--max-length", "128"])  # fmt: skip
    out = io.StringIO()
    assert finetune_command.finetune(args, Console(file=out, width=300)) == 0

    text = out.getvalue()
    assert "15 training and 4 validation problems" in text
    assert f"-c lora={model_source}+lora-conala --train-size 18" in text
    assert "trainable parameters" in text and "val loss" in text

    # The printed train size reproduces the trained split: tune and holdout are unseen.
    adapter = resolve_adapter("lora-conala")
    same = get_task("conala", n_train=18)
    assert {p.id for p in same.problems("train")} == set(adapter.metadata["train_ids"]) | set(
        adapter.metadata["validation_ids"]
    )
    for split in ("tune", "holdout"):
        check_unseen(adapter, [p.id for p in same.problems(split)], split)
    with pytest.raises(ConfigError, match="was trained on"):
        check_unseen(adapter, [p.id for p in same.problems("train")], "tune")


def test_command_defaults():
    from tui.commands.finetune import METHOD_NAMES

    assert tuple(METHODS) == METHOD_NAMES
    rates = {name: m.learning_rate for name, m in METHODS.items()}  # as --lr's help says
    assert rates == {"lora": 3e-4, "ia3": 3e-3, "prompt": 3e-3, "prefix": 3e-2,
                     "qlora-8": 3e-4, "qlora-4": 3e-4}  # fmt: skip
    args = _parse(["finetune"])
    assert (args.task, args.model, args.method, args.train_size) == (
        "humaneval",
        "smollm2",
        "lora",
        64,
    )
    assert (args.epochs, args.batch_size, args.max_length, args.lr) == (3, 4, 512, None)
    with pytest.raises(SystemExit):
        _parse(["finetune", "--method", "sgd"])
