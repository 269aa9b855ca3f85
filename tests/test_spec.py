"""engine.spec: a run's spec is stored as its config and read back whole."""

from __future__ import annotations

import json

import pytest

from engine import Budget, Candidate, ConfigError, RunSettings, RunSpec, SearchSpace
from engine.records import Run


def _run(config: dict, *, budget: float = 9, seed: int = 0) -> Run:
    return Run("r", 0.0, "running", "sampling", budget, seed, config)


def test_a_spec_survives_its_stored_config():
    spec = RunSpec(
        candidates=(Candidate(name="raw", model="smollm2", style="raw"),
                    Candidate(name="q", model="m", quantization="nf4")),
        settings=RunSettings.of(budget="20000 tokens", seed=7, eliminate=0.1),
        space=SearchSpace({"temperature": [0.2, 0.9]}),
        task="humaneval",
    )  # fmt: skip
    config = json.loads(json.dumps(spec.to_dict()))  # as the store keeps it
    assert RunSpec.of_run(_run(config, budget=20000, seed=7)) == spec
    assert spec.names == ["raw", "q"]


def test_the_row_gives_the_seed_and_an_old_runs_budget():
    spec = RunSpec.of_run(_run({"candidates": [], "objective": True}, budget=12, seed=3))
    assert spec.settings.budget == Budget(12, "samples") and spec.settings.seed == 3
    assert spec.objective is True and spec.task is None and spec.problems == 0


def test_an_option_a_run_predates_takes_the_value_that_reproduces_it():
    spec = RunSpec.of_run(_run({"candidates": [], "task": "humaneval"}))
    assert spec.settings.eliminate == 0.0 and spec.settings.fidelity == "off"
    assert spec.objective is False


def test_a_stored_config_with_a_bad_value_is_a_clear_error():
    with pytest.raises(ConfigError, match="sampler"):
        RunSpec.of_run(_run({"candidates": [], "sampler": "annealing"}))
