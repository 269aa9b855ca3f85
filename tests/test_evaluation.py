"""TaskEvaluator on a tiny model: real generation, real sandboxed scoring, the cache."""

import pytest

from engine.backends.transformers import TransformersBackend
from engine.candidates import parse_candidate
from engine.evaluation import TaskEvaluator
from engine.models import resolve_model
from engine.store import Store
from engine.tasks import get_task

GREEDY = {"temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": 12}
SAMPLED = {"temperature": 0.9, "top_p": 0.95, "top_k": 50, "repetition_penalty": 1.0,
           "max_new_tokens": 12}  # fmt: skip


@pytest.fixture
def evaluator(tiny_model_dir, tmp_path):
    loads = []

    def load(source):
        loads.append(source)
        return TransformersBackend(resolve_model(source), batch_size=4)

    candidates = [parse_candidate(f"chat={tiny_model_dir}"),
                  parse_candidate(f"raw={tiny_model_dir}@raw")]  # fmt: skip
    ev = TaskEvaluator(get_task("humaneval"), candidates, load_backend=load, tune_size=3,
                       holdout_size=2, seed=0)  # fmt: skip
    ev.prepare()
    ev.attach(Store(tmp_path / "s.db"))
    ev.loads = loads
    return ev


def test_a_repeated_deterministic_config_generates_zero_tokens(evaluator):
    first = evaluator.evaluate("chat", GREEDY, split="tune")
    assert first.generated_tokens > 0 and first.cached == 0
    second = evaluator.evaluate("chat", GREEDY, split="tune")
    assert second.generated_tokens == 0 and second.cached == 3
    assert second.metrics == first.metrics
    assert [o["generation"] for o in second.outcomes] == [o["generation"] for o in first.outcomes]


def test_model_loads_once_for_all_its_prompt_styles(evaluator):
    evaluator.evaluate("chat", GREEDY, split="tune")
    evaluator.evaluate("raw", GREEDY, split="tune")
    evaluator.evaluate("raw", SAMPLED, split="holdout")
    assert len(evaluator.loads) == 1


def test_evaluation_reports_metrics_cost_and_per_problem_outcomes(evaluator):
    result = evaluator.evaluate("raw", SAMPLED, split="holdout")
    assert set(result.metrics) == {"avg_tests", "pass@1"}
    assert result.score == result.metrics["avg_tests"]
    assert len(result.outcomes) == 2 and result.prompt_tokens > 0
    assert all(o["status"] in {"passed", "failed", "timeout", "crashed"} for o in result.outcomes)


def test_unknown_metric_is_rejected(tiny_model_dir):
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="no metric 'bleu'"):
        TaskEvaluator(get_task("humaneval"), [parse_candidate(str(tiny_model_dir))],
                      load_backend=lambda s: None, metric="bleu")  # fmt: skip
