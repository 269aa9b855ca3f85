"""engine.records: the nouns of a run, and what a store round-trips of them."""

from __future__ import annotations

import json
import math

from engine.records import (
    BUDGET_STAGES,
    HOLDOUT,
    SAMPLING,
    SELECTION,
    STAGES,
    TUNING,
    CandidateEstimate,
    Job,
    Sample,
    TuneResult,
)


def test_the_stages_in_order_and_which_the_budget_pays_for():
    assert STAGES == (SAMPLING, SELECTION, TUNING, HOLDOUT)
    assert BUDGET_STAGES == (SAMPLING, TUNING)


def test_a_job_and_its_sample_share_a_key():
    job = Job("r", "a", TUNING, 3, {"temperature": 0.5})
    sample = Sample("r", "a", TUNING, 3, {"temperature": 0.5}, 0.4)
    assert job.key == ("a", TUNING, 3) == (sample.candidate, sample.stage, sample.trial)


def test_a_sample_scored_on_part_of_its_problems_is_partial():
    whole = Sample("r", "a", SAMPLING, 0, {}, 0.5, problem_scores=(1.0, 0.0))
    part = Sample("r", "a", SAMPLING, 1, {}, 0.5, fidelity=0.25, problem_scores=(1.0, 0.0))
    assert not whole.partial and part.partial


def test_a_result_survives_json_nan_included():
    estimate = CandidateEstimate("a", 0.7, 0.6, 0.8, 0.65, 0.6, 5, 4, 0.8, 0.9, 3, 0.72)
    nan = CandidateEstimate("b", *[math.nan] * 5, 0, 0, math.nan, math.nan)
    result = TuneResult("r", "a", {"temperature": 0.3}, 0.71, (estimate, nan), None, 5)
    back = TuneResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.ranking[0] == estimate and back.best_params == result.best_params
    assert math.isnan(back.ranking[1].score) and back.ranking[1].n == 0
