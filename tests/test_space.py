import math

import optuna
import pytest

from engine.errors import ConfigError
from engine.space import MIN_SAMPLING_TEMPERATURE, SearchSpace, generation_kwargs
from tests.objectives import random_params


def _points(space: SearchSpace, n: int = 60) -> list[dict]:
    return random_params(space, n, seed=1)


def test_default_space_mixes_greedy_and_sampling_with_conditional_params():
    points = _points(SearchSpace())
    greedy = [p for p in points if p["temperature"] == 0]
    sampled = [p for p in points if p["temperature"] > 0]
    assert greedy and sampled
    for p in greedy:
        assert "top_p" not in p and "top_k" not in p
    for p in sampled:
        assert MIN_SAMPLING_TEMPERATURE <= p["temperature"] <= 1.5
        assert 0.5 <= p["top_p"] <= 1.0
        assert 1 <= p["top_k"] <= 100 and isinstance(p["top_k"], int)
    for p in points:
        assert 64 <= p["max_new_tokens"] <= 256
        assert 1.0 <= p["repetition_penalty"] <= 1.3


def test_positive_temperature_range_never_proposes_greedy():
    points = _points(SearchSpace({"temperature": [0.2, 0.9]}), 20)
    assert all(0.2 <= p["temperature"] <= 0.9 for p in points)


def test_zero_temperature_is_greedy_only_and_fixed_values_stay_fixed():
    points = _points(SearchSpace({"temperature": 0, "max_new_tokens": 128}), 10)
    assert all(p["temperature"] == 0 and p["max_new_tokens"] == 128 for p in points)


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        ({"temperature": [1.0, 0.5]}, "greater than high"),
        ({"top_p": [0.5, 1.5]}, "must lie within"),
        ({"top_k": [0, 10]}, "must lie within"),
        ({"max_new_tokens": [10.5, 20]}, "whole numbers"),
        ({"temperature": [0.001, 1.0]}, "too close to 0"),
        ({"beams": 3}, "unknown decoding parameter"),
        ({"top_p": "high"}, "not a number"),
        ({"top_p": [0.1, 0.2, 0.3]}, "expected [low, high]"),
        ({"top_p": float("nan")}, "not a number"),
    ],
)
def test_invalid_ranges_are_rejected_with_the_parameter_named(ranges, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        SearchSpace(ranges)


def test_trial_values_inverts_suggest_so_samples_replay_into_a_study():
    space = SearchSpace()
    study = optuna.create_study()
    for params in _points(space, 20):
        values, dists = space.trial_values(params)
        study.add_trial(optuna.trial.create_trial(params=values, distributions=dists, value=1.0))
        replayed = space._decode(
            {k: v for k, v in values.items() if k != "sampling"}, params["temperature"] > 0
        )
        assert replayed == params
    assert len(study.trials) == 20


def test_toml_file_and_flag_overrides(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(
        "[space]\ntemperature = [0.0, 0.8]\ntop_k = 40\n"
        "max_new_tokens = { low = 32, high = 256, log = true }\n"
    )
    space = SearchSpace.from_toml(path)
    assert space.ranges["temperature"].high == 0.8
    assert space.ranges["top_k"].fixed and space.ranges["top_k"].low == 40
    assert space.ranges["max_new_tokens"].log
    space = SearchSpace.from_overrides(["top_p=0.9:1.0", "repetition_penalty=1.1"], base=space)
    assert (space.ranges["top_p"].low, space.ranges["top_p"].high) == (0.9, 1.0)
    assert space.ranges["repetition_penalty"].fixed
    assert space.ranges["temperature"].high == 0.8  # the file's value survives
    assert SearchSpace(space.to_dict()).to_dict() == space.to_dict()


@pytest.mark.parametrize(
    ("text", "message"),
    [("temperature = [", "not valid TOML"), ("[space]\ntop_p = [2, 3]", "must lie within")],
)
def test_bad_space_files(tmp_path, text, message):
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        SearchSpace.from_toml(path)
    with pytest.raises(ConfigError, match="does not exist"):
        SearchSpace.from_toml(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="NAME=LOW:HIGH"):
        SearchSpace.from_overrides(["temperature"])


def test_generation_kwargs_for_greedy_and_sampling():
    greedy = generation_kwargs(
        {"temperature": 0.0, "repetition_penalty": 1.1, "max_new_tokens": 99}
    )
    assert greedy["do_sample"] is False and greedy["max_new_tokens"] == 99
    assert greedy["top_p"] is None
    sampled = generation_kwargs(
        {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.0,
         "max_new_tokens": 64}
    )  # fmt: skip
    assert sampled == {
        "do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 20,
        "repetition_penalty": 1.0, "max_new_tokens": 64,
    }  # fmt: skip


def test_covariates_impute_greedy_as_untruncated_zero_temperature():
    space = SearchSpace()
    greedy = space.covariates(
        {"temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": 128}
    )
    assert greedy == [0.0, 1.0, math.log(100), 1.0, math.log(128)]
    assert space.default_params() == {
        "temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": 256,
    }  # fmt: skip
    sampling_only = SearchSpace({"temperature": [0.2, 1.0]}).default_params()
    assert sampling_only["temperature"] == 0.7 and sampling_only["top_p"] == 0.95


def test_reference_points_spread_over_the_space_and_are_the_same_every_time():
    space = SearchSpace()
    points = space.reference_unit(64)
    assert points.shape == (64, 5) and points.tolist() == space.reference_unit(64).tolist()
    # each is a configuration the space can take: mapping it to params and back is exact
    for u in points:
        assert space.unit(space.from_unit(u)) == pytest.approx(u.tolist())
    # a Sobol set puts points in every quarter of every parameter's range
    for column in points.T:
        assert sorted(set((column * 4).astype(int).clip(0, 3))) == [0, 1, 2, 3]
    fixed = SearchSpace({"temperature": 0, "top_p": 1.0, "top_k": 50, "repetition_penalty": 1.0,
                         "max_new_tokens": 128})  # fmt: skip
    assert fixed.reference_unit(8).shape == (8, 0)
