"""A Gaussian-process model of every candidate's score over the decoding space.

The candidates share the decoding space, and a parameter that matters for one (the
temperature, say) usually matters for the others: one GP over all samples learns that
once. Candidate ``c``'s score at unit coordinates ``u`` (:meth:`SearchSpace.unit`) is

    f_c(u) = m_c + g(u) + h_c(u) + b_c

with ``m_c`` a fixed prior mean, ``g`` a surface every candidate shares, ``h_c`` the
candidate's own surface and ``b_c`` its offset: independent zero-mean GPs, ``g`` and
``h_c`` with one ARD Matérn-5/2 kernel (the length-scales say how far a parameter's
effect reaches, the same for both), as in multi-task Bayesian optimisation with an
intrinsic coregionalisation model. So the covariance of two samples is

    k((u, c), (u', c')) = s_shared M(u, u') + [c = c'] (s_own M(u, u') + s_offset)

and an observation adds noise of variance ``known_i + s_noise / f_i``: ``known_i`` is what
the caller can say of a sample (a mean over m problems has variance at most p(1 - p)/m),
``s_noise`` what the data say beyond it, for a sample of every problem, and ``f_i`` the
sample's fidelity (the share of problems its score is a mean over: a sample stopped early
averages its noise over fewer of them). The hyperparameters are the maximum a
posteriori estimate under weak log-normal priors (:data:`PRIOR`), found by L-BFGS from a
fixed start, so the same samples always give the same model (a resumed run decides as
the uninterrupted one did).

:meth:`Surrogate.fit` learns the hyperparameters and conditions on the samples;
:meth:`Surrogate.posterior` and :meth:`Surrogate.draw` give a candidate's posterior mean,
covariance and joint draws at any points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.optimize import minimize

_ROOT5 = math.sqrt(5.0)
#: Log-normal priors (median, sd of the log) of the hyperparameters in units of the
#: scores' spread: length-scales about half the unit range; the shared and own surfaces
#: about as large as the spread; offsets and noise smaller, but free to be large.
PRIOR = {
    "length": (0.5, 1.0),
    "shared": (0.5, 1.0),
    "own": (0.5, 1.0),
    "offset": (0.1, 1.5),
    "noise": (0.1, 1.5),
}
#: Bounds of the log hyperparameters (in the same units).
_BOUNDS = {
    "length": (math.log(0.03), math.log(20.0)),
    "shared": (math.log(0.01), math.log(20.0)),
    "own": (math.log(0.01), math.log(20.0)),
    "offset": (math.log(1e-4), math.log(20.0)),
    "noise": (math.log(1e-6), math.log(4.0)),
}
_JITTER = 1e-8
#: Fewer samples than this cannot tell a surface from noise: the hyperparameters stay at
#: their prior medians (:meth:`Surrogate.prior`) until there are this many.
LEARN_FROM = 10


def matern52(a: np.ndarray, b: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The ARD Matérn-5/2 correlation (n, m) of points ``a`` (n, d) and ``b`` (m, d).

    >>> float(matern52(np.zeros((1, 1)), np.ones((1, 1)), np.ones(1))[0, 0])  # r = 1
    0.5239941088318203
    """
    sa, sb = a / lengths, b / lengths
    squared = (sa**2).sum(axis=1)[:, None] + (sb**2).sum(axis=1)[None, :] - 2.0 * sa @ sb.T
    r = np.sqrt(np.clip(squared, 0.0, None))
    return (1.0 + _ROOT5 * r + 5.0 / 3.0 * r**2) * np.exp(-_ROOT5 * r)


def _scaled_sq(a: np.ndarray, b: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per-dimension squared scaled differences (n, m, d)."""
    return ((a[:, None, :] - b[None, :, :]) / lengths) ** 2


@dataclass(frozen=True)
class Hyperparameters:
    """The kernel's hyperparameters in units of the scores' spread (see module doc)."""

    lengths: np.ndarray
    shared: float
    own: float
    offset: float
    noise: float

    @classmethod
    def from_vector(cls, theta: np.ndarray) -> Hyperparameters:
        e = np.exp(theta)
        return cls(e[:-4], float(e[-4]), float(e[-3]), float(e[-2]), float(e[-1]))

    @staticmethod
    def start(d: int) -> np.ndarray:
        """The fixed starting point: every hyperparameter at its prior median."""
        names = ["length"] * d + ["shared", "own", "offset", "noise"]
        return np.array([math.log(PRIOR[n][0]) for n in names])

    @staticmethod
    def bounds(d: int) -> list[tuple[float, float]]:
        return [_BOUNDS["length"]] * d + [_BOUNDS[n] for n in ("shared", "own", "offset", "noise")]


def _log_prior(theta: np.ndarray, d: int) -> tuple[float, np.ndarray]:
    """Log density (up to a constant) of the log-normal priors and its gradient."""
    names = ["length"] * d + ["shared", "own", "offset", "noise"]
    median = np.log([PRIOR[n][0] for n in names])
    sd = np.array([PRIOR[n][1] for n in names])
    z = (theta - median) / sd
    return float(-0.5 * (z**2).sum()), -z / sd


def _negative_log_posterior(theta, u, same, y, known, spread) -> tuple[float, np.ndarray]:
    """-(log marginal likelihood + log prior) of standardised scores ``y`` and its gradient."""
    n, d = u.shape
    h = Hyperparameters.from_vector(theta)
    sq = _scaled_sq(u, u, h.lengths)
    r = np.sqrt(sq.sum(axis=-1))
    decay = np.exp(-_ROOT5 * r)
    m = (1.0 + _ROOT5 * r + 5.0 / 3.0 * r**2) * decay
    signal = h.shared + h.own * same
    k = signal * m + h.offset * same + np.diag(known + h.noise * spread + _JITTER)
    try:
        chol = cholesky(k, lower=True)
    except np.linalg.LinAlgError:
        return 1e10, np.zeros_like(theta)
    alpha = cho_solve((chol, True), y)
    lml = -0.5 * y @ alpha - np.log(np.diag(chol)).sum() - 0.5 * n * math.log(2 * math.pi)
    inner = np.outer(alpha, alpha) - cho_solve((chol, True), np.eye(n))
    # d M / d log l_j = 5/3 (1 + sqrt5 r) exp(-sqrt5 r) (du_j / l_j)^2
    dm_common = 5.0 / 3.0 * (1.0 + _ROOT5 * r) * decay
    grad = np.empty_like(theta)
    for j in range(d):
        grad[j] = 0.5 * np.sum(inner * (signal * dm_common * sq[:, :, j]))
    grad[d] = 0.5 * np.sum(inner * (h.shared * m))
    grad[d + 1] = 0.5 * np.sum(inner * (h.own * m * same))
    grad[d + 2] = 0.5 * np.sum(inner * (h.offset * same))
    grad[d + 3] = 0.5 * (np.diag(inner) * spread).sum() * h.noise
    prior, prior_grad = _log_prior(theta, d)
    return -(lml + prior), -(grad + prior_grad)


class Surrogate:
    """One GP over every candidate's samples (see the module docstring).

    Args:
        prior_mean: ``m_c`` of each candidate (k,), in score units.
    """

    def __init__(self, prior_mean: np.ndarray) -> None:
        self.prior_mean = np.asarray(prior_mean, dtype=float)

    def fit(
        self,
        u: np.ndarray,
        labels: np.ndarray,
        y: np.ndarray,
        known_noise: np.ndarray | None = None,
        hyper: Hyperparameters | None = None,
        fidelity: np.ndarray | None = None,
    ) -> Surrogate:
        """Learn the hyperparameters (unless ``hyper`` gives them) and condition on the
        samples.

        Args:
            u: (n, d) unit coordinates of the samples, d >= 0.
            labels: (n,) candidate index of each sample, in ``0..k-1``.
            y: (n,) scores.
            known_noise: (n,) variance of each score that is known in advance (0 where
                nothing is known); ``None`` for none.
            fidelity: (n,) the share of problems each score is a mean over, in (0, 1]
                (the learned noise is divided by it); ``None``: 1 for every sample.
        """
        self.u = np.asarray(u, dtype=float).reshape(len(y), -1)
        self.labels = np.asarray(labels, dtype=int)
        y = np.asarray(y, dtype=float)
        # The spread of all scores, not of what the prior means leave: with a sample or
        # two per candidate those leave next to nothing, and the model would be sure of
        # surfaces it has hardly seen.
        self.scale = float(y.std()) if y.std() > 1e-9 else 1.0
        self.y = (y - self.prior_mean[self.labels]) / self.scale
        known = np.zeros(len(y)) if known_noise is None else np.asarray(known_noise, float)
        self.known = known / self.scale**2
        self.spread = 1.0 / (np.ones(len(y)) if fidelity is None else np.asarray(fidelity, float))
        self.same = (self.labels[:, None] == self.labels[None, :]).astype(float)
        self.hyper = hyper or (self._learn() if len(y) >= LEARN_FROM else self.prior())
        h = self.hyper
        k = (h.shared + h.own * self.same) * matern52(self.u, self.u, h.lengths)
        k += h.offset * self.same + np.diag(self.known + h.noise * self.spread + _JITTER)
        self._chol = cholesky(k, lower=True)
        self._alpha = cho_solve((self._chol, True), self.y)
        return self

    @staticmethod
    def prior() -> Hyperparameters:
        """The hyperparameters before any are learned: the priors' medians."""
        return Hyperparameters(
            np.array([PRIOR["length"][0]]),
            *(PRIOR[n][0] for n in ("shared", "own", "offset", "noise")),
        )

    def _learn(self) -> Hyperparameters:
        d = self.u.shape[1]
        result = minimize(
            _negative_log_posterior, Hyperparameters.start(d), jac=True, method="L-BFGS-B",
            args=(self.u, self.same, self.y, self.known, self.spread),
            bounds=Hyperparameters.bounds(d), options={"maxiter": 200},
        )  # fmt: skip
        return Hyperparameters.from_vector(result.x)

    def _cross(self, c: int, points: np.ndarray) -> np.ndarray:
        """Covariance (n, p) of the samples with candidate ``c``'s surface at ``points``."""
        h = self.hyper
        own = (self.labels == c).astype(float)[:, None]
        return (h.shared + h.own * own) * matern52(self.u, points, h.lengths) + h.offset * own

    def posterior(self, c: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean (p,) and covariance (p, p) of ``f_c`` at ``points`` (p, d),
        without observation noise, in score units."""
        h = self.hyper
        cross = self._cross(c, points)
        mean = cross.T @ self._alpha
        v = solve_triangular(self._chol, cross, lower=True)
        prior = (h.shared + h.own) * matern52(points, points, h.lengths) + h.offset
        cov = prior - v.T @ v
        return self.prior_mean[c] + self.scale * mean, self.scale**2 * cov

    def mean(self, c: int, points: np.ndarray) -> np.ndarray:
        """Posterior mean (p,) of ``f_c`` at ``points``, in score units."""
        return self.prior_mean[c] + self.scale * (self._cross(c, points).T @ self._alpha)

    def draw(self, c: int, points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` joint posterior draws (n, p) of ``f_c`` at ``points``."""
        mean, cov = self.posterior(c, points)
        cov = 0.5 * (cov + cov.T)
        try:
            root = cholesky(cov + 1e-9 * self.scale**2 * np.eye(len(mean)), lower=True)
        except np.linalg.LinAlgError:  # near singular (points the samples pin down)
            values, vectors = np.linalg.eigh(cov)
            root = vectors * np.sqrt(np.clip(values, 0.0, None))
        return mean + rng.standard_normal((n, len(mean))) @ root.T
