"""Fine-tuning: train a PEFT adapter on a task's ``train`` split.

What is trained
    A PEFT adapter of one of :data:`METHODS` on a frozen base model: only the adapter's
    parameters get gradients. ``qlora-8`` and ``qlora-4`` train LoRA on a base loaded in
    8-bit or 4-bit NF4 through bitsandbytes (with gradient checkpointing, as QLoRA does).

The examples
    One per problem of ``task.problems("train")``: the prompt the tuner will later send
    (``build_prompts(task, [problem], "chat", tokenizer)``, tokenized the way the generation
    backend tokenizes it), then ``task.example_response(problem)`` and the tokenizer's EOS
    token. Prompt and response are tokenized separately (generation continues the prompt's
    tokens), concatenated and cut on the right at ``max_length`` tokens; cut examples are
    counted. Labels (:func:`response_labels`) are -100 on every prompt token and on
    padding, so the loss is the cross-entropy of the response tokens only.

Train and validation
    :func:`split_validation` divides the train split by a hash of each problem's group (a
    Conala question; else its id). The hash is salted apart from the task's own split hash:
    train problems all hash above the task's holdout fraction, so reusing that hash would
    leave validation empty. At least one problem lands on each side.

Training
    Adafactor at a fixed learning rate over seeded, shuffled batches for ``epochs`` epochs.
    The mean validation loss (weighted by response tokens) is measured before training
    (epoch 0) and after every epoch.

What is saved where
    The folder (``output``, else ``adapter_home() / name``) always holds the checkpoint with
    the lowest validation loss so far, starting with the untrained adapter of epoch 0: the
    ``save_pretrained`` files plus :data:`engine.generation.METADATA_FILE` (base model and its
    fingerprint, task, train and validation problem ids, losses, ...). Every save fills a
    temporary sibling folder and renames it into place, so a run killed at any point (Ctrl-C
    included) leaves the best checkpoint so far, never half of one; a kill between the two
    renames that replace an existing folder leaves the previous one as ``.NAME.old-*``.
    When the run ends, the metadata is updated with every epoch's losses and the total time.

The modules: ``_methods`` (the methods table, ``peft`` configurations, loading a base for
training), ``_examples`` (the validation split, token ids and labels), ``_output`` (the
adapter folder: refusal, lock, atomic saves) and ``_training`` (:func:`finetune` and the
training loop). Importing this package loads no machine-learning library.
"""

from engine.finetune._examples import (
    IGNORE_INDEX,
    encode_examples,
    pad_batch,
    response_labels,
    split_validation,
    train_size,
)
from engine.finetune._methods import METHODS, Method, load_for_training, peft_config
from engine.finetune._training import FineTuneProgress, FineTuneResult, finetune

__all__ = [
    "IGNORE_INDEX",
    "METHODS",
    "FineTuneProgress",
    "FineTuneResult",
    "Method",
    "encode_examples",
    "finetune",
    "load_for_training",
    "pad_batch",
    "peft_config",
    "response_labels",
    "split_validation",
    "train_size",
]
