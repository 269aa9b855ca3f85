"""Multi-fidelity over problems (engine.selection._fidelity): the seeded order, the rungs, the
paired test, and runs whose hopeless configurations stop early and resume exactly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from engine import Message, SampleRecorded, Store, Tuner
from engine.errors import ConfigError, TunerError
from engine.records import Sample
from engine.selection import plan, rungs
from engine.selection._fidelity import (
    full_estimate,
    full_scores,
    problem_effects,
    problem_order,
    stop_p_value,
)
from tests.objectives import PROBLEMS, problem_landscape


def test_the_problem_order_is_a_seeded_permutation():
    assert problem_order(24, 3) == problem_order(24, 3)
    assert problem_order(24, 3) != problem_order(24, 4)
    assert sorted(problem_order(24, 3)) == list(range(24))


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, (1,)), (4, (4,)), (5, (4, 5)), (6, (4, 6)), (20, (4, 8, 16, 20)),
     (164, (11, 22, 44, 88, 164))],
)  # fmt: skip
def test_rungs_double_from_four_problems_to_all(n, expected):
    assert rungs(n) == expected


def test_a_plan_scores_every_problem_once_in_the_run_order():
    auto, off = plan(20, 5, "auto"), plan(20, 5, "off")
    assert [len(c) for c in auto] == [4, 4, 8, 4]
    assert sum(auto, []) == off[0] == problem_order(20, 5)
    with pytest.raises(ValueError, match="fidelity"):
        plan(20, 5, "sometimes")


def test_the_stop_test_is_the_one_sided_signed_rank_test():
    assert stop_p_value([0] * 5, [1] * 5) == pytest.approx(1 / 32)  # 5 losses of 5
    assert stop_p_value([1] * 5, [0] * 5) == pytest.approx(1.0)  # 5 wins
    assert stop_p_value([1, 0], [1, 0]) == 1.0  # no problem differs: no evidence
    # Ties are left out, as in Wilcoxon's test: 3 losses and 5 ties weigh as 3 losses.
    assert stop_p_value([0, 0, 0, 1, 1, 1, 1, 1], [1] * 8) == pytest.approx(1 / 8)
    scores, reference = [0.2, 0.5, 0.1, 0.9, 0.3, 0.0], [0.6, 0.4, 0.8, 1.0, 0.7, 0.5, 0.9]
    expected = wilcoxon(np.subtract(scores, reference[:6]), alternative="less").pvalue
    assert stop_p_value(scores, reference) == pytest.approx(expected)  # paired on the prefix


def test_a_stopped_sample_is_estimated_with_its_problems_effects_taken_out():
    assert problem_effects([]) is None
    assert problem_effects([[1, 0, 1, 0], [1, 1, 1, 1]]).tolist() == [0.25, -0.25, 0.25, -0.25]
    # Under the additive model (configuration level + problem effect) the first problems
    # give the mean over all of them exactly, whatever their difficulty.
    rng = np.random.default_rng(0)
    effect = rng.normal(0, 0.2, 12)
    effect -= effect.mean()
    complete = [level + effect for level in (0.3, 0.5, 0.6)]
    partial = 0.45 + effect[:4]
    assert full_estimate(partial, problem_effects(complete)) == pytest.approx(0.45)
    assert full_estimate(partial, None) == pytest.approx(partial.mean())  # no complete sample


def test_a_stopped_samples_estimate_stays_within_the_scores_range():
    # passed the two easiest problems' effects' worth less: its estimate falls below 0
    complete = [Sample("r", "a", "sampling", 0, {}, 0.5, problem_scores=(1.0, 1.0, 0.0, 0.0))]
    stopped = Sample("r", "b", "sampling", 0, {}, 0.0, fidelity=0.5, problem_scores=(0.0, 0.0))
    assert full_scores([*complete, stopped]) == [0.5, -0.5]
    assert full_scores([*complete, stopped], (0.0, 1.0)) == [0.5, 0.0]


def _run(fidelity: str, store=None, run_id=None, **options):
    tuner = Tuner(objective=problem_landscape, problems=PROBLEMS, candidates=["a", "b", "c"],
                  budget=15, seed=2, fidelity=fidelity, store=store, run_id=run_id,
                  **options)  # fmt: skip
    samples, messages = [], []
    tuner.subscribe(lambda e: isinstance(e, SampleRecorded) and samples.append(e.sample))
    tuner.subscribe(lambda e: isinstance(e, Message) and messages.append(e.text))
    return tuner, tuner.run(), samples, messages


def test_hopeless_configurations_stop_early_and_cost_their_share():
    _, result, samples, messages = _run("auto")
    partial = [s for s in samples if s.partial]
    assert partial, "no configuration stopped early"
    for s in partial:
        m = len(s.problem_scores)
        assert m in rungs(PROBLEMS)[:-1] and s.fidelity == m / PROBLEMS
        assert s.score == pytest.approx(np.mean(s.problem_scores))
    stopped = [t for t in messages if " stopped after " in t]
    assert len(stopped) == len(partial)
    assert f"/{PROBLEMS} problems" in stopped[0] and "signed-rank p = " in stopped[0]
    # Another candidate's configuration stops against the leader's incumbent, which it
    # must beat to change the answer, not only against its own.
    assert any(" of b trial " in t for t in stopped if not t.startswith("b "))
    # A samples budget counts a stopped sample as its share: more configurations fit
    # (the last may overshoot it by less than one sample, as any last sample may).
    assert 15 <= round(sum(s.fidelity for s in samples if s.stage != "holdout"), 9) < 16
    assert len(samples) > 15
    assert result.best_candidate == "b"


def test_a_candidates_first_sample_stops_against_the_leaders_incumbent():
    # "a" passes three problems in four at any parameters; "z" fails everything (a prompt
    # format the model cannot follow): it has no incumbent of its own, yet its default
    # point is clearly below the leader's.
    def a_or_hopeless_z(candidate, params, indices):
        return [float(candidate == "a" and i % 4 != 0) for i in indices]

    tuner = Tuner(objective=a_or_hopeless_z, problems=PROBLEMS, candidates=["a", "z"], budget=4,
                  seed=2)  # fmt: skip
    samples = []
    tuner.subscribe(lambda e: isinstance(e, SampleRecorded) and samples.append(e.sample))
    result = tuner.run()
    first = {s.candidate: s for s in samples if s.trial == 0}
    assert not first["a"].partial  # the run's first sample: nothing to compare with yet
    assert first["z"].partial and len(first["z"].problem_scores) < PROBLEMS
    assert result.best_candidate == "a"


def test_every_sample_scores_every_problem_in_the_run_order_with_fidelity_off():
    asked = []

    def recording(candidate, params, indices):
        asked.append(list(indices))
        return problem_landscape(candidate, params, indices)

    tuner = Tuner(objective=recording, problems=PROBLEMS, candidates=["a", "b"], budget=6,
                  fidelity="off", seed=4)  # fmt: skip
    tuner.run()
    assert asked == [problem_order(PROBLEMS, 4)] * 6


def test_the_first_chunk_is_the_same_problems_for_every_candidate():
    first = {}

    def recording(candidate, params, indices):
        first.setdefault(candidate, list(indices))
        return problem_landscape(candidate, params, indices)

    Tuner(objective=recording, problems=PROBLEMS, candidates=["a", "b", "c"], budget=6,
          seed=4).run()  # fmt: skip
    assert first["a"] == first["b"] == first["c"] == plan(PROBLEMS, 4)[0]


def test_a_stopped_multi_fidelity_run_resumes_to_the_same_samples(tmp_path):
    db = tmp_path / "s.db"
    _, full, _, _ = _run("auto", store=db, run_id="full")
    tuner = Tuner(objective=problem_landscape, problems=PROBLEMS, candidates=["a", "b", "c"],
                  budget=15, seed=2, store=db, run_id="split")  # fmt: skip
    tuner.subscribe(lambda e: isinstance(e, SampleRecorded) and e.sample.trial == 3
                    and tuner.stop())  # fmt: skip
    tuner.run()
    resumed = Tuner.resume("split", store=db, objective=problem_landscape).run()
    store = Store(db)
    view = lambda run: [(s.candidate, s.params, s.fidelity, s.problem_scores)  # noqa: E731
                        for s in store.samples(run)]  # fmt: skip
    assert any(f < 1 for _, _, f, _ in view("full"))
    assert view("split") == view("full")
    assert (resumed.best_candidate, resumed.best_params) == (full.best_candidate, full.best_params)


def test_an_objective_must_score_each_problem_it_is_given():
    def short(candidate, params, indices):
        return [0.5]

    with pytest.raises(TunerError, match="1 scores for a where 4 problems were asked"):
        Tuner(objective=short, problems=PROBLEMS, candidates=["a", "b"], budget=4).run()
    with pytest.raises(ConfigError, match="problems= is for an objective"):
        Tuner(task="humaneval", candidates=["smollm2"], problems=5)
    with pytest.raises(ConfigError, match="problems must be a whole number"):
        Tuner(objective=problem_landscape, candidates=["a", "b"], problems=-1).run()
    with pytest.raises(ConfigError, match="unknown fidelity 'sometimes'"):
        Tuner(objective=problem_landscape, candidates=["a"], fidelity="sometimes")
