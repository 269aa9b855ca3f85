"""The ``replay`` family: real recorded evaluations served as an oracle, at no GPU cost.

``benchmarks.record_replay`` evaluated the bundled model's candidates on HumanEval at
recorded decoding configurations, keeping every problem's score (the fraction of its
tests passed). For a candidate and params with unit coordinates ``u``
(:func:`~benchmarks._strategies.landscapes.unit_coordinates`), each recorded
configuration ``i`` of that candidate gets the Gaussian kernel weight

    w_i(u) = exp(-|u - u_i|^2 / (2 h^2)) / sum_k exp(-|u - u_k|^2 / (2 h^2)),  h = BANDWIDTH

(Nadaraya-Watson regression: a smooth surface through the recorded points, dominated by
the nearest ones). Then:

- the *true* score is ``sum_i w_i * mean_j F_ij`` (``F_ij``: configuration ``i``'s score
  on problem ``j``);
- an *observation* takes, for every problem ``j``, the recorded ``F_ij`` of one
  configuration ``i`` drawn with probability ``w_i`` and averages over problems. Its
  expectation is the true score and its noise is that of real outcomes near ``u``.

The optimum is not known in closed form: ``best_score`` is the highest true score over
the recorded points and :data:`SEARCH_POINTS` random points of the space.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._strategies.landscapes import random_unit_points, unit_coordinates

DATA = Path(__file__).parents[1] / "data" / "replay_humaneval_smollm2.json.gz"
#: Kernel width in unit coordinates: about half the median distance from a recorded
#: configuration to its nearest neighbour (0.5-0.7 in the shipped recording), so a point
#: mixes its few nearest configurations instead of copying the single nearest one.
BANDWIDTH = 0.3
SEARCH_POINTS = 20_000


class ReplayFamily:
    """A :class:`~benchmarks._strategies.landscapes.Family` over recorded evaluations.

    Args:
        recorded: candidate -> list of (params, per-problem scores); every list of
            scores has the same problems in the same order.
        name, description: as shown in the report.
    """

    def __init__(
        self,
        recorded: Mapping[str, list[tuple[Mapping[str, Any], list[float]]]],
        name: str = "replay",
        description: str = "",
    ) -> None:
        self.name = name
        self.description = description
        self.candidates = tuple(recorded)
        self._points = {
            c: np.array([unit_coordinates(p) for p, _ in rows]) for c, rows in recorded.items()
        }
        self._scores = {
            c: np.array([s for _, s in rows], dtype=float) for c, rows in recorded.items()
        }
        self._optimum = {c: self._search(c) for c in self.candidates}
        self._best = {c: float(self.values(c, u[None])[0]) for c, u in self._optimum.items()}

    def weights(self, candidate: str, u: np.ndarray) -> np.ndarray:
        """Kernel weights (n_points, m) of the recorded configurations for unit points
        ``u`` (m, 5); each column sums to 1."""
        d2 = ((self._points[candidate][:, None, :] - np.atleast_2d(u)[None]) ** 2).sum(-1)
        logits = -(d2 - d2.min(axis=0)) / (2 * BANDWIDTH**2)  # the nearest has weight 1 before norm
        w = np.exp(logits)
        return w / w.sum(axis=0)

    def values(self, candidate: str, u: np.ndarray) -> np.ndarray:
        """True scores of unit points ``u`` (m, 5) -> (m,)."""
        return self._scores[candidate].mean(axis=1) @ self.weights(candidate, u)

    def true(self, candidate: str, params: Mapping[str, Any]) -> float:
        return float(self.values(candidate, unit_coordinates(params))[0])

    def observe(self, candidate: str, params: Mapping[str, Any], rng: np.random.Generator) -> float:
        w = self.weights(candidate, unit_coordinates(params))[:, 0]
        scores = self._scores[candidate]
        drawn = rng.choice(len(w), size=scores.shape[1], p=w)
        return float(scores[drawn, np.arange(scores.shape[1])].mean())

    def _search(self, candidate: str) -> np.ndarray:
        """The unit point of highest true score among the recorded and random points."""
        search = random_unit_points(SEARCH_POINTS, np.random.default_rng(0))
        u = np.vstack([self._points[candidate], search])
        return u[int(np.argmax(self.values(candidate, u)))]

    def unit_values(self, candidate: str, u: np.ndarray) -> np.ndarray:
        return self.values(candidate, u)

    def optimum_unit(self, candidate: str) -> np.ndarray:
        """The unit coordinates of ``candidate``'s best point found (see ``best_score``)."""
        return self._optimum[candidate]

    def peak_of(self, candidate: str) -> float:
        return self._best[candidate]

    def best(self, candidate: str) -> float:
        """The highest true score of ``candidate`` found (its optimum, as far as known)."""
        return self._best[candidate]

    @property
    def best_candidate(self) -> str:
        return max(self.candidates, key=lambda c: self._best[c])

    @property
    def best_score(self) -> float:
        return self._best[self.best_candidate]


def load(path: Path = DATA) -> dict[str, Any]:
    """The recording as written by ``benchmarks.record_replay``."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


@functools.cache
def replay_family(path: Path = DATA) -> ReplayFamily:
    """The shipped recording as a family, its candidates named as they were recorded."""
    data = load(path)
    recorded: dict[str, list] = {}
    for row in data["samples"]:
        recorded.setdefault(row["candidate"], []).append((row["params"], row["fraction"]))
    n = min(len(rows) for rows in recorded.values())
    description = (
        f"recorded: {data['task']}, {len(data['problems'])} problems, {n} configurations "
        "per candidate"
    )
    return ReplayFamily(recorded, description=description)
