"""What a configuration will cost per problem, learned from the samples so far.

With a tokens or minutes budget, two configurations that may score alike need not cost
alike: a hot one rambles on to its token limit, a cold one with a short limit stops
early, and one candidate's prompts may be four times another's. :class:`CostModel`
predicts a configuration's cost per problem, in the budget's unit, so that a proposal
can weigh what it may gain against what it costs (:meth:`engine.selection.Ranking.propose`).

The model is a ridge regression of the logarithm of the cost on the unit coordinates of
the parameters, with the slope shared by every candidate (what temperature or a token
limit does to the length of an answer is much the same for each) and an intercept per
candidate (its prompt and answer lengths). The logarithm makes the effects relative:
twice as long, not 40 tokens more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["RIDGE", "CostModel"]

#: The ridge penalty on the shared slope, in units of a sample: with a few samples the
#: slope stays near 0 and every configuration is priced at its candidate's mean.
RIDGE = 1.0


@dataclass(frozen=True)
class CostModel:
    """Predicted cost per problem: ``exp(intercepts[c] + x @ slope)``."""

    intercepts: dict[int, float]
    slope: np.ndarray

    @classmethod
    def fit(
        cls, points: ArrayLike, labels: Sequence[int], costs: ArrayLike, ridge: float = RIDGE
    ) -> CostModel | None:
        """Fit on samples at ``points`` (n, d unit coordinates) of candidates ``labels``
        that cost ``costs`` per problem (each > 0). ``None`` when there is nothing to
        learn: no sample, or every cost the same (a samples budget)."""
        x = np.asarray(points, dtype=float)
        y = np.log(np.asarray(costs, dtype=float))
        labels = np.asarray(labels)
        if not len(y) or np.ptp(y) == 0:
            return None
        xc, yc = x.copy(), y.copy()
        for c in np.unique(labels):  # centre within a candidate: its intercept is free
            own = labels == c
            xc[own] -= x[own].mean(axis=0)
            yc[own] -= y[own].mean()
        slope = np.linalg.solve(xc.T @ xc + ridge * np.eye(x.shape[1]), xc.T @ yc)
        intercepts = {
            int(c): float(y[labels == c].mean() - x[labels == c].mean(axis=0) @ slope)
            for c in np.unique(labels)
        }
        return cls(intercepts, slope)

    def predict(self, c: int, points: ArrayLike) -> np.ndarray:
        """The expected cost per problem of candidate ``c`` at ``points`` (m, d)."""
        return np.exp(self.intercepts[c] + np.asarray(points, dtype=float) @ self.slope)
