"""Metric math for code tasks: small pure functions."""

from __future__ import annotations

import operator

__all__ = ["pass_at_k"]


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
