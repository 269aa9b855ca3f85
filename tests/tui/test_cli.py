"""The ``codellmtuner`` command end to end on a tiny model built by the test."""

import json
import subprocess
import sys

import pytest
from transformers import GenerationConfig

from engine import Store
from tests import ROOT
from tui.commands import main


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tui.commands", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("cli") / "samples.db"
    code = main([
        "run", "--headless", "--candidate", f"tiny={tiny_model_dir}",
        "--candidate", f"{tiny_model_dir}@raw", "--budget", "5", "--problems", "2",
        "--holdout-problems", "2", "--param", "max_new_tokens=8:16", "--store", str(db),
        "--run-id", "cli-run",
    ])  # fmt: skip
    assert code == 0
    return db


def test_run_records_the_budget_and_a_holdout_score(finished_run):
    store = Store(finished_run)
    run = store.get_run("cli-run")
    assert run.status == "finished"
    samples = store.samples("cli-run")
    assert sum(s.stage != "holdout" for s in samples) == 5
    assert [s.stage for s in samples].count("holdout") == 1
    assert set(run.result["holdout"]) == {"avg_tests", "pass@1", "avg_tests ci_low",
                                          "avg_tests ci_high"}  # fmt: skip
    # every tuning sample scored its 2 problems, each outcome stored
    assert all(len(store.outcomes(s.id)) == 2 for s in samples if s.stage != "holdout")


def test_runs_show_and_export(finished_run, tmp_path, capsys):
    assert main(["runs", "--store", str(finished_run)]) == 0
    assert "cli-run" in capsys.readouterr().out
    assert main(["show", "cli", "--store", str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert "ranking" in out and "best:" in out and "held-out" in out
    assert "export cli-run --format generation-config|vllm|humaneval-samples|json" in out
    assert f"optuna-dashboard sqlite:///{finished_run.resolve()} shows" in out.replace("\n", "")

    out_dir = tmp_path / "export"
    assert main(["export", "cli-run", "--format", "generation-config", "-o", str(out_dir),
                 "--store", str(finished_run)]) == 0  # fmt: skip
    config = GenerationConfig.from_pretrained(out_dir)
    best = Store(finished_run).get_run("cli-run").result["best_params"]
    assert config.max_new_tokens == best["max_new_tokens"]
    assert config.do_sample == (best["temperature"] > 0)

    assert main(["export", "cli-run", "--format", "json", "-o", str(out_dir),
                 "--store", str(finished_run)]) == 0  # fmt: skip
    summary = json.loads((out_dir / "codellmtuner.json").read_text())
    assert summary["params"] == best


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--candidate", "/no/such/model", "--budget", "4"], "no/such/model"),
        (["run", "--candidate", "smollm2@sideways"], "sideways"),
        (["run", "--param", "top_p=2:3"], "top_p"),
        (["run", "--task", "poetry"], "poetry"),
        (["run", "--dataset", "/no/such.jsonl"], "such.jsonl"),
        (["show", "nope"], "no store"),
        (["watch"], "no store"),
        ([], "needs a terminal"),
        (["run", "--budget", "10 parsecs"], "10 parsecs"),
        (["run", "--budget", "-5"], "positive"),
        (["run", "--budget", "2.5"], "whole number"),
        (["run", "--samples-per-problem", "0"], "samples per problem"),
        (["run", "-c", "smollm2+no-such-adapter"], "adapter 'no-such-adapter' not found"),
        (["run", "-c", "smollm2@rag-0"], "rag-0"),
        (["run", "-c", "smollm2:fp8"], "unknown quantization 'fp8'"),
        (["run", "--train-size", "-1"], "train size must be a whole number >= 0, got -1"),
        (["run", "--eliminate", "0.7"], "elimination level must be in [0, 0.5)"),
        (["run", "--backend", "vllm", "--device", "cpu"], "--backend vllm: "),
        (["run", "--backend", "tgi"], "invalid choice: 'tgi'"),
        (["run", "--concurrency", "0"], "concurrency must be a whole number >= 1"),
        (["run", "--request-timeout", "nan"], "request timeout must be a positive number"),
        (["run", "-c", "openai:m@localhost:8000"], "expected [NAME=]openai:MODEL@http://"),
    ],
)
def test_bad_input_is_one_clear_line_and_no_store(tmp_path, args, message):
    db = tmp_path / "samples.db"
    result = _cli(*args, "--store", str(db))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not db.exists()


def test_runs_and_show_print_the_budget_in_its_unit(tmp_path, capsys):
    from engine import Tuner
    from tests.objectives import token_landscape

    db = tmp_path / "samples.db"
    Tuner(objective=token_landscape, candidates=["a", "b"], budget="800 tokens", store=db,
          run_id="tokens-run").run()  # fmt: skip
    spent = sum(s.generated_tokens for s in Store(db).samples("tokens-run"))
    assert spent >= 800
    assert main(["runs", "--store", str(db)]) == 0
    assert f"{spent}/800 tokens" in capsys.readouterr().out
    assert main(["show", "tokens-run", "--store", str(db)]) == 0
    assert f"{spent}/800 tokens" in capsys.readouterr().out


def test_show_says_why_a_samples_budget_is_over_by_a_fraction(tmp_path, capsys):
    from engine import Budget, Tuner
    from tests.objectives import PROBLEMS, problem_landscape

    db = tmp_path / "samples.db"
    Tuner(objective=problem_landscape, problems=PROBLEMS, candidates=["a", "b"], budget=6,
          store=db, run_id="over").run()  # fmt: skip
    # Configurations stopped early cost their share of the problems (6.5 samples today).
    used = Budget(6).spent(Store(db).samples("over"))
    assert 6 < used < 7 and used != int(used)
    assert main(["show", "over", "--store", str(db)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # as one line, however it wrapped
    assert (
        f"{used:.1f}/6 samples ({used - 6:.1f} over: samples stopped early cost the share "
        "of problems they scored, and no sample is cut short to fit the budget)"
    ) in out
    assert main(["runs", "--store", str(db)]) == 0
    assert f"{used:.1f}/6 samples" in capsys.readouterr().out  # a table cell stays short


def test_watch_needs_a_known_run_and_a_terminal(tmp_path):
    from engine import Tuner
    from tests.objectives import landscape

    db = tmp_path / "samples.db"
    Tuner(objective=landscape, candidates=["a", "b"], budget=4, store=db, run_id="r1").run()
    unknown = _cli("watch", "r9", "--store", str(db))
    assert unknown.returncode == 2 and "no run 'r9'" in unknown.stderr
    no_tty = _cli("watch", "r1", "--store", str(db))  # captured output is not a terminal
    assert no_tty.returncode == 2 and "watch needs a terminal" in no_tty.stderr


def test_tasks_lists_data_split_sizes_and_metrics(capsys):
    assert main(["tasks", "humaneval", "-n", "5"]) == 0
    out = capsys.readouterr().out
    assert "splits   train 8 · tune 121 · holdout 35" in out
    assert "metrics  avg_tests (default), pass@1, pass@2, pass@5\n" in out


def test_tasks_checks_a_dataset_and_names_the_bad_line(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"task_id": "a", "prompt": "def f():\\n"}\n')
    result = _cli("tasks", "humaneval", "--dataset", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "mine.jsonl:1: field 'canonical_solution' is missing" in result.stderr


def test_show_prints_the_covariate_balance_of_the_matched_comparison(tmp_path, capsys):
    import re

    from engine import Tuner
    from tests.objectives import landscape

    db = tmp_path / "s.db"
    Tuner(objective=landscape, candidates=["a", "b", "c"], budget=24, seed=1, store=db,
          run_id="bal").run()  # fmt: skip
    assert main(["show", "bal", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert "covariate balance" in out and "SMD before" in out and "SMD after" in out
    for name in ("temperature", "top_p", "log max_new_tokens"):
        assert re.search(rf"{re.escape(name)}\W+\d+\.\d\d\W+(\d+\.\d\d|-)", out), out
    summary = re.search(r"balance: max \|SMD\| (\d+\.\d\d) before matching", out)
    assert summary, out
    assert re.search(r"(\d+) of 24 samples on common support|no common support", out), out
