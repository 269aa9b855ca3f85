"""PEFT adapters as candidates: spelling, resolving, fitting a base, generating, leakage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine import Tuner
from engine.errors import ConfigError, ModelLoadError
from engine.generation import (
    METADATA_FILE,
    check_adapter_fits,
    check_unseen,
    load_model,
    parse_candidate,
    resolve_adapter,
    resolve_model,
)
from engine.generation._adapters import attach_adapter, registered_adapters
from engine.generation.backends.transformers import TransformersBackend

PEFT_TYPES = ("lora", "ia3", "prompt", "prefix")


def _peft_config(kind: str):
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig

    # Non-identity initial weights, so an attached adapter visibly changes the outputs.
    return {
        "lora": lambda: LoraConfig(
            r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        ),
        "ia3": lambda: IA3Config(
            target_modules=["k_proj", "v_proj", "down_proj"],
            feedforward_modules=["down_proj"],
            init_ia3_weights=False,
        ),
        "prompt": lambda: PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
        "prefix": lambda: PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4),
    }[kind]()


def _save_adapter(base_dir: Path, kind: str, out: Path) -> Path:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    get_peft_model(model, _peft_config(kind)).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {kind: _save_adapter(tiny_model_dir, kind, root / kind) for kind in PEFT_TYPES}


# -- spelling --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("smollm2", ("smollm2", "smollm2", "chat", None, None)),
        ("lora=smollm2+lora-he", ("lora", "smollm2", "chat", "lora-he", None)),
        (
            "smollm2+./ad/ia3@rag-2:nf4",
            ("smollm2+ia3@rag-2:nf4", "smollm2", "rag-2", "./ad/ia3", "nf4"),
        ),
        ("q=org/name:8bit", ("q", "org/name", "chat", None, "int8")),
        (
            "smollm2@fewshot-2:int8",
            ("smollm2@fewshot-2:int8", "smollm2", "fewshot-2", None, "int8"),
        ),
    ],
)
def test_candidate_spelling(spec, expected):
    c = parse_candidate(spec)
    assert (c.name, c.model, c.style, c.adapter, c.quantization) == expected


def test_a_folder_whose_name_has_a_plus_is_one_model(tmp_path, monkeypatch):
    (tmp_path / "a+b").mkdir()
    monkeypatch.chdir(tmp_path)
    assert parse_candidate("a+b").adapter is None
    assert parse_candidate("a+c").adapter == "c"


def test_an_empty_adapter_is_refused():
    with pytest.raises(ConfigError, match="no adapter after"):
        parse_candidate("smollm2+")


def test_candidates_sharing_weights_share_a_key():
    assert parse_candidate("a=m+x@raw").weights == parse_candidate("b=m+x").weights
    assert parse_candidate("m+x").weights != parse_candidate("m+x:nf4").weights


# -- resolving and fitting -------------------------------------------------------------------


@pytest.mark.parametrize("kind", PEFT_TYPES)
def test_each_peft_type_fits_its_base_and_not_a_wider_one(kind, adapters, tiny_model_dir,
                                                          wide_model_dir):  # fmt: skip
    adapter = resolve_adapter(str(adapters[kind]))
    assert adapter.peft_type == {"lora": "LORA", "ia3": "IA3", "prompt": "PROMPT_TUNING",
                                 "prefix": "PREFIX_TUNING"}[kind]  # fmt: skip
    check_adapter_fits(adapter, resolve_model(str(tiny_model_dir)))
    with pytest.raises(ConfigError, match="does not fit model"):
        check_adapter_fits(adapter, resolve_model(str(wide_model_dir)))


def test_an_adapter_for_modules_the_model_lacks_is_refused(tiny_model_dir, tmp_path):
    from peft import LoraConfig

    adapter_dir = _save_adapter(tiny_model_dir, "lora", tmp_path / "lora")
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    config["target_modules"] = ["c_attn"]  # a GPT-2 module name
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config))
    # the config stays a valid LoRA config: what is refused is the model, not the file
    assert LoraConfig.from_pretrained(str(adapter_dir)).target_modules == {"c_attn"}
    with pytest.raises(ConfigError, match="does not fit model"):
        check_adapter_fits(resolve_adapter(str(adapter_dir)), resolve_model(str(tiny_model_dir)))


def test_finetune_metadata_naming_another_base_is_refused(adapters, tiny_model_dir, tmp_path):
    import shutil

    folder = shutil.copytree(adapters["lora"], tmp_path / "lora")
    meta = {"base_model": "other-model", "base_fingerprint": "0123456789abcdef"}
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="was trained on 'other-model'"):
        check_adapter_fits(resolve_adapter(str(folder)), resolve_model(str(tiny_model_dir)))


def test_not_an_adapter(tmp_path, monkeypatch):
    monkeypatch.setenv("CODELLMTUNER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match="not a PEFT adapter"):
        resolve_adapter(str(tmp_path))
    with pytest.raises(ModelLoadError, match="registered: none yet"):
        resolve_adapter("no-such-adapter")


def test_registered_adapters_resolve_by_name(adapters, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("CODELLMTUNER_CACHE", str(tmp_path))
    shutil.copytree(adapters["ia3"], tmp_path / "adapters" / "ia3-task")
    (tmp_path / "adapters" / ".ia3-task.tmp-1").mkdir()  # a killed save: not listed
    assert [a.source for a in registered_adapters()] == ["ia3-task"]
    assert resolve_adapter("ia3-task").path == (tmp_path / "adapters" / "ia3-task").resolve()


def test_an_adapter_never_scores_problems_it_was_trained_on(adapters, tmp_path):
    import shutil

    folder = shutil.copytree(adapters["lora"], tmp_path / "lora")
    meta = {"train_ids": ["P/1", "P/2"], "validation_ids": ["P/3"], "n_train": 12}
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    adapter = resolve_adapter(str(folder))
    check_unseen(adapter, ["P/4", "P/5"], "tune")
    with pytest.raises(ConfigError, match=r"trained on 2 of this run's tune .*--train-size 12"):
        check_unseen(adapter, ["P/3", "P/4", "P/1"], "tune")


# -- generating ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", PEFT_TYPES)
def test_backend_generates_what_the_adapted_model_computes(kind, adapters, tiny_model_dir):
    """Greedy output through the backend equals a hand-written greedy loop over the
    adapted model's logits, and differs in identity from the bare model."""
    ref = resolve_model(str(tiny_model_dir))
    adapter = resolve_adapter(str(adapters[kind]))
    backend = TransformersBackend(ref, adapter=adapter)
    prompt = "def add(a, b):"
    [out] = backend.generate([prompt], {"max_new_tokens": 6, "do_sample": False}, seed=0)

    ids = backend.tokenizer(prompt, return_tensors="pt").input_ids
    with torch.inference_mode():
        for _ in range(6):
            next_id = backend.model(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    assert out.text == backend.tokenizer.decode(ids[0, -6:])
    assert backend.fingerprint != TransformersBackend(ref).fingerprint
    assert adapter.fingerprint in backend.fingerprint


def test_lora_changes_the_logits(adapters, tiny_model_dir):
    model, tokenizer = load_model(resolve_model(str(tiny_model_dir)))
    ids = tokenizer("for i in range(10):", return_tensors="pt").input_ids
    with torch.inference_mode():
        bare = model(input_ids=ids).logits
        adapted = attach_adapter(model, resolve_adapter(str(adapters["lora"])))(
            input_ids=ids
        ).logits
    assert not torch.allclose(bare, adapted)


# -- in a run --------------------------------------------------------------------------------


def _leaky_adapter(adapters: dict[str, Path], tmp_path: Path, problem_id: str) -> Path:
    import shutil

    folder = shutil.copytree(adapters["lora"], tmp_path / "leaky")
    (folder / METADATA_FILE).write_text(json.dumps({"train_ids": [problem_id], "n_train": 40}))
    return folder


def test_a_run_refuses_a_leaky_adapter_before_opening_its_store(adapters, tiny_model_dir,
                                                                 tmp_path):  # fmt: skip
    from engine.tasks import get_task

    first_tune = get_task("humaneval").problems("tune")[0].id
    adapter = _leaky_adapter(adapters, tmp_path, first_tune)
    tuner = Tuner(task="humaneval", candidates=[f"{tiny_model_dir}+{adapter}"], budget=4,
                  store=tmp_path / "s.db", tune_size=2, holdout_size=1)  # fmt: skip
    with pytest.raises(ConfigError, match="--train-size 40"):
        tuner.run()
    assert not (tmp_path / "s.db").exists()


@pytest.mark.slow
def test_a_run_tunes_an_adapter_beside_its_base(adapters, tiny_model_dir, tmp_path):
    tuner = Tuner(
        task="humaneval",
        candidates=[f"base={tiny_model_dir}@raw", f"lora={tiny_model_dir}+{adapters['lora']}@raw"],
        budget=5, store=tmp_path / "s.db", tune_size=2, holdout_size=1,
        space={"max_new_tokens": 8, "temperature": 0.0},
    )  # fmt: skip
    result = tuner.run()
    assert {r.candidate for r in result.ranking} == {"base", "lora"}


def test_the_app_lists_registered_adapters_on_their_base(adapters, tmp_path, monkeypatch):
    import shutil

    from engine.generation import available_models

    monkeypatch.setenv("CODELLMTUNER_CACHE", str(tmp_path))
    folder = shutil.copytree(adapters["lora"], tmp_path / "adapters" / "lora-conala")
    meta = {"base_model": "smollm2", "method": "lora", "task": "conala", "n_train": 30}
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    listed = {m.source: m.description for m in available_models(tmp_path / "no-hub")}
    assert listed["smollm2+lora-conala"] == "lora adapter, trained on conala (train size 30)"
