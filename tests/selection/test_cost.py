"""engine.selection._cost: the cost per problem of a configuration, learned from the samples."""

from __future__ import annotations

import numpy as np
import pytest

from engine.selection import CostModel


def test_a_shared_slope_and_each_candidates_level_are_recovered():
    rng = np.random.default_rng(0)
    x = rng.random((200, 3))
    labels = rng.integers(0, 2, 200)
    slope = np.array([0.9, 0.0, -0.5])  # e.g. hotter rambles on, a lower limit cuts short
    costs = np.exp(np.where(labels == 1, np.log(400.0), np.log(100.0)) + x @ slope)
    model = CostModel.fit(x, labels, costs, ridge=1e-9)
    assert model.slope == pytest.approx(slope, abs=1e-6)
    assert model.predict(1, np.zeros((1, 3)))[0] == pytest.approx(400.0)
    assert model.predict(0, np.zeros((1, 3)))[0] == pytest.approx(100.0)


def test_with_a_few_samples_the_ridge_prices_near_the_candidates_mean():
    x = np.array([[0.0, 0.0], [1.0, 1.0]])
    model = CostModel.fit(x, [0, 0], [50.0, 200.0])
    # Unpenalised the slope would double the cost per unit step; the ridge halves that.
    assert model.slope.sum() < np.log(4.0)
    centre = np.exp(np.log([50.0, 200.0]).mean())
    assert model.predict(0, [[0.5, 0.5]])[0] == pytest.approx(centre)


def test_nothing_to_learn_gives_no_model():
    assert CostModel.fit(np.zeros((0, 2)), [], []) is None
    assert CostModel.fit(np.random.default_rng(1).random((5, 2)), [0] * 5, [1.0] * 5) is None
