"""Metric math for code tasks: small pure functions."""

from __future__ import annotations

import operator
from collections.abc import Sequence

from engine.tasks.base import ProblemOutcome, mean_over_problems

__all__ = ["K_VALUES", "ks_up_to", "mean_pass_at_k", "pass_at_k", "avg_tests_and_pass_at_k"]

#: The k of pass@k / EM@k reported when there are at least k samples per problem.
K_VALUES = (1, 2, 5, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k from ``n`` samples of which ``c`` passed.

    pass@k = 1 - C(n - c, k) / C(n, k) (Chen et al., 2021, "Evaluating Large Language
    Models Trained on Code"): the probability that at least one of ``k`` samples drawn
    without replacement from the ``n`` passes. Computed as the product
    1 - prod_{i = n-c+1}^{n} (1 - k / i), which never forms the huge binomials.

    Raises:
        ValueError: unless ``n >= 1``, ``0 <= c <= n`` and ``1 <= k <= n`` (all integers).
    """
    n, c, k = (_integer(v, name) for v, name in ((n, "n"), (c, "c"), (k, "k")))
    if n < 1:
        raise ValueError(f"pass_at_k: n must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c must be between 0 and n={n}, got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k must be between 1 and n={n}, got {k}")
    if n - c < k:  # every draw of k samples contains a passing one
        return 1.0
    fail_all = 1.0
    for i in range(n - c + 1, n + 1):
        fail_all *= 1.0 - k / i
    return 1.0 - fail_all


def _integer(value: object, name: str) -> int:
    try:
        return operator.index(value)  # ints and numpy ints; floats are refused
    except TypeError:
        raise ValueError(f"pass_at_k: {name} must be an integer, got {value!r}") from None


def ks_up_to(n: int) -> tuple[int, ...]:
    """The values of :data:`K_VALUES` that ``n`` samples per problem can estimate."""
    return tuple(k for k in K_VALUES if k <= n)


def mean_pass_at_k(groups: Sequence[Sequence[bool]], k: int) -> float:
    """pass@k averaged over problems; ``groups`` holds each problem's pass/fail list."""
    if not groups:
        raise ValueError("mean_pass_at_k needs at least one problem")
    return sum(pass_at_k(len(g), sum(map(bool, g)), k) for g in groups) / len(groups)


def avg_tests_and_pass_at_k(
    groups: Sequence[Sequence[ProblemOutcome]], ks: Sequence[int]
) -> dict[str, float]:
    """The metrics of a task scored by running tests, over ``groups`` (each one problem's
    outcomes): ``avg_tests``, the mean over problems of the fraction of tests passed
    (averaged over the problem's outcomes first), and ``pass@k`` (:func:`mean_pass_at_k`)
    for each of ``ks``."""
    passed = [[o.passed for o in group] for group in groups]
    return {
        "avg_tests": mean_over_problems(groups, lambda o: o.fraction),
        **{f"pass@{k}": mean_pass_at_k(passed, k) for k in ks},
    }
