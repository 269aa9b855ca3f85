"""engine.selection._surrogate: the kernel and the log posterior's gradient against known
values, and the posterior where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from engine.selection._surrogate import (
    Hyperparameters,
    Surrogate,
    _negative_log_posterior,
    matern52,
)


def test_matern52_is_one_at_zero_distance_and_decays_with_scaled_distance():
    a = np.array([[0.0, 0.0]])
    b = np.array([[0.0, 0.0], [0.3, 0.0], [0.0, 0.3]])
    k = matern52(a, b, np.array([0.3, 3.0]))[0]
    assert k[0] == 1.0
    assert k[1] == pytest.approx(0.5239941088, abs=1e-9)  # r = 1: (1 + √5 + 5/3) e^-√5
    assert k[2] > 0.99  # a long length-scale: the second parameter hardly matters


def test_the_gradient_of_the_log_posterior_is_exact():
    rng = np.random.default_rng(0)
    n, d = 25, 3
    u, labels = rng.random((n, d)), rng.integers(0, 2, n)
    y = np.sin(4 * u[:, 0]) + 0.5 * labels + 0.05 * rng.standard_normal(n)
    y = (y - y.mean()) / y.std()
    same = (labels[:, None] == labels[None, :]).astype(float)
    known = np.full(n, 0.01)
    spread = 1 / rng.choice([1.0, 0.5, 0.25], n)  # samples stopped early have more noise
    theta = Hyperparameters.start(d) + 0.4 * rng.standard_normal(d + 4)

    def value(t):
        return _negative_log_posterior(t, u, same, y, known, spread)[0]

    numeric = approx_fprime(theta, value, 1e-6)
    analytic = _negative_log_posterior(theta, u, same, y, known, spread)[1]
    assert np.allclose(analytic, numeric, rtol=1e-4, atol=1e-4)


def test_the_posterior_follows_the_samples_and_returns_to_the_prior_far_from_them():
    u = np.linspace(0, 0.5, 12)[:, None]
    y = np.sin(6 * u[:, 0])
    model = Surrogate(np.array([0.0])).fit(u, np.zeros(12, dtype=int), y)
    mean, cov = model.posterior(0, np.array([[0.25], [0.95]]))
    assert mean[0] == pytest.approx(np.sin(1.5), abs=0.05)
    near, far = np.sqrt(np.diag(cov))
    assert near < 0.1 * far


def test_known_noise_widens_the_posterior():
    rng = np.random.default_rng(1)
    u = rng.random((12, 1))
    y = u[:, 0] + 0.1 * rng.standard_normal(12)
    labels = np.zeros(12, dtype=int)
    hyper = Surrogate.prior()
    quiet = Surrogate(np.array([0.5])).fit(u, labels, y, hyper=hyper)
    loud = Surrogate(np.array([0.5])).fit(u, labels, y, np.full(12, 0.05), hyper=hyper)
    point = np.array([[0.5]])
    assert loud.posterior(0, point)[1][0, 0] > quiet.posterior(0, point)[1][0, 0]
