"""Synthetic objectives with known answers, shared by tests (and usable by subprocesses)."""

from __future__ import annotations

import math
import os
import random
import time

#: Candidate quality at its own optimum; "b" is the best, with its peak at T = 0.6.
PEAKS = {"a": 0.60, "b": 0.80, "c": 0.50}
OPTIMA = {"a": 1.2, "b": 0.6, "c": 0.2}


def landscape(candidate: str, params: dict) -> float:
    """Deterministic: a smooth bump in temperature and top_p around each candidate's optimum."""
    t = params["temperature"]
    top_p = params.get("top_p", 1.0)
    return PEAKS[candidate] - 0.4 * (t - OPTIMA[candidate]) ** 2 - 0.2 * (top_p - 0.9) ** 2


def noisy_landscape(candidate: str, params: dict) -> float:
    rng = random.Random(hash((candidate, round(params["temperature"], 6))))
    return landscape(candidate, params) + rng.gauss(0, 0.01)


def slow_landscape(candidate: str, params: dict) -> float:
    """Slow enough that a test can kill the process between samples, or during one."""
    time.sleep(0.15)
    return landscape(candidate, params)


def cost_landscape(candidate: str, params: dict) -> tuple[float, float]:
    return landscape(candidate, params), math.log(params["max_new_tokens"])


def token_landscape(candidate: str, params: dict) -> tuple[float, int]:
    """``(score, generated tokens)``: as if every evaluation generated ``max_new_tokens``."""
    return landscape(candidate, params), int(params["max_new_tokens"])


def random_params(space, n: int, seed: int) -> list[dict]:
    """``n`` decoding-params dicts of ``space`` (a :class:`engine.space.SearchSpace`), as
    Optuna's RandomSampler proposes them."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    points = []
    for _ in range(n):
        trial = study.ask()
        points.append(space.suggest(trial))
        study.tell(trial, 0.0)
    return points


#: Problems of :func:`problem_landscape`; each has a difficulty, fixed.
PROBLEMS = 24
_DIFFICULTY = [(-1.5 + 3.0 * i / (PROBLEMS - 1)) for i in range(PROBLEMS)]


def problem_landscape(candidate: str, params: dict, indices: list[int]) -> list[float]:
    """Pass (1) or fail (0) on each problem of ``indices``: the chance of a pass rises with
    :func:`landscape` and falls with the problem's difficulty; the draw is seeded by the
    candidate, the temperature and the problem, so the same call gives the same answer."""
    ability = 6 * (landscape(candidate, params) - 0.45)
    outcomes = []
    for i in indices:
        rng = random.Random(f"{candidate} {params['temperature']:.6f} {i}")  # any process
        chance = 1 / (1 + math.exp(_DIFFICULTY[i] - ability))
        outcomes.append(float(rng.random() < chance))
    return outcomes


def flat_late_b(candidate: str, params: dict) -> float:
    """The same score for every candidate (no choice between them can be sure), after 2 s
    for "b" and 0.1 s for the others: "b"'s samples are the last to come in."""
    time.sleep(2.0 if candidate == "b" else 0.1)
    return 0.5 + 0.01 * params["temperature"]


def sleepy_landscape(candidate: str, params: dict) -> float:
    """:func:`landscape` after ``CODELLMTUNER_TEST_SLEEP`` seconds (1 by default): an
    evaluation long enough for workers to overlap, and to be killed in the middle of."""
    time.sleep(float(os.environ.get("CODELLMTUNER_TEST_SLEEP", "1")))
    return landscape(candidate, params)


def broken_landscape(candidate: str, params: dict) -> float:
    """Fails for candidate "c": a job no worker can do."""
    if candidate == "c":
        raise ValueError("c cannot be evaluated")
    return landscape(candidate, params)


def crashing_landscape(candidate: str, params: dict) -> float:
    """Ends the process that evaluates candidate "c" at once, as a native crash would."""
    if candidate == "c":
        os._exit(3)
    return landscape(candidate, params)
