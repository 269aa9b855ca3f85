"""Families and strategies of ``benchmarks.fidelity``: tuning at equal *generated tokens*
when a sample is a mean over problems, with and without stopping configurations early.

**Families.** :class:`ProblemFamily` turns a synthetic family of
:mod:`benchmarks._strategies.landscapes` (its true score ``p`` of a configuration, a pass
rate) into N problems of fixed difficulty ``b_j`` (item response theory, as in
benchmark-difficulty studies): a configuration with ability ``theta`` solves problem
``j`` with chance ``sigmoid(theta - b_j)``, ``theta`` chosen so that the mean chance over
the N problems is ``p``. So easy problems are solved by most configurations, hard ones by
few, and two configurations scored on the same problems are *paired*, as on a real
benchmark. A problem costs ``min(max_new_tokens, L_j (1 + temperature))`` generated
tokens (``L_j``: its solution's length; a hot configuration rambles on).

**Strategies** (each ``strategy(family, tokens, seed) -> Choice``, stopping at the first
evaluation that reaches ``tokens``):

- ``three-stage, fidelity auto`` / ``off``: the real ``engine.Tuner`` with a tokens budget
  and the per-problem objective (``problems=N``);
- ``EcoOptiGen doubling``: configurations from one joint TPE study (the candidate a
  categorical), each scored on 4, 8, 16, ... problems, pruned once the Hoeffding-Serfling
  upper bound of its full mean (95%) is below the best full score so far;
- ``joint TPE + WilcoxonPruner``: the same study, each problem ``report``-ed as a step and
  ``should_prune`` asked after every chunk (Optuna's pruner for LLM accuracy);
- ``successive halving``: brackets of random (candidate, params) configurations on 4
  problems, the better half kept and its problems doubled, until N.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from benchmarks._strategies.landscapes import SPACE, SyntheticFamily
from benchmarks._strategies.runners import Choice, _seed, tpe_sampler
from engine import Tuner
from engine.selection import plan, rungs

#: Problems of every family: a small benchmark's tuning split.
PROBLEMS = 40
#: Median solution length in tokens (log-normal over problems, sd 0.5 of the log).
SOLUTION_TOKENS = 90


class BudgetSpent(Exception):
    """Raised by :class:`TokenMeter` once the tokens budget is reached."""


@dataclass
class ProblemFamily:
    """A :class:`SyntheticFamily` whose observations are N problems' outcomes."""

    base: SyntheticFamily
    difficulty: np.ndarray
    length: np.ndarray

    @classmethod
    def of(cls, base: SyntheticFamily, problems: int = PROBLEMS, seed: int = 0) -> ProblemFamily:
        rng = np.random.default_rng([seed, problems, 23])
        difficulty = rng.normal(0.0, 1.5, problems)
        length = np.exp(rng.normal(math.log(SOLUTION_TOKENS), 0.5, problems))
        return cls(base, difficulty, length)

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def candidates(self) -> tuple[str, ...]:
        return self.base.candidates

    @property
    def best_candidate(self) -> str:
        return self.base.best_candidate

    @property
    def best_score(self) -> float:
        return self.base.best_score

    def true(self, candidate: str, params: Mapping[str, Any]) -> float:
        return self.base.true(candidate, params)

    def chances(self, candidate: str, params: Mapping[str, Any]) -> np.ndarray:
        """Each problem's chance of being solved: mean ``true(candidate, params)``."""
        p = float(np.clip(self.true(candidate, params), 1e-4, 1 - 1e-4))
        low, high = -30.0, 30.0
        for _ in range(60):  # bisection: the mean chance rises with theta
            theta = 0.5 * (low + high)
            if (1 / (1 + np.exp(self.difficulty - theta))).mean() < p:
                low = theta
            else:
                high = theta
        return 1 / (1 + np.exp(self.difficulty - 0.5 * (low + high)))

    def tokens(self, params: Mapping[str, Any], indices: list[int]) -> int:
        stretch = 1.0 + float(params.get("temperature", 0.0))
        limit = int(params["max_new_tokens"])
        return int(np.minimum(limit, np.round(self.length[indices] * stretch)).sum())


class TokenMeter:
    """The per-problem objective of a family, counting generated tokens; raises
    :class:`BudgetSpent` at the first call once ``budget`` is spent."""

    def __init__(self, family: ProblemFamily, budget: int, seed: int) -> None:
        self.family = family
        self.budget = budget
        self.spent = 0
        self.rng = np.random.default_rng(seed)

    def __call__(
        self, candidate: str, params: Mapping[str, Any], indices: list[int]
    ) -> tuple[list[float], int]:
        if self.spent >= self.budget:
            raise BudgetSpent
        chances = self.family.chances(candidate, params)[indices]
        outcomes = (self.rng.random(len(indices)) < chances).astype(float)
        cost = self.family.tokens(params, indices)
        self.spent += cost
        return outcomes.tolist(), cost


Strategy = Callable[[ProblemFamily, int, int], Choice]


def three_stage(family: ProblemFamily, tokens: int, seed: int, fidelity: str) -> Choice:
    meter = TokenMeter(family, 10**12, _seed(seed, 1))  # the Tuner keeps its own budget
    tuner = Tuner(objective=meter, problems=len(family.difficulty),
                  candidates=list(family.candidates), budget=f"{tokens} tokens", seed=seed,
                  space=SPACE, fidelity=fidelity)  # fmt: skip
    result = tuner.run()
    return Choice(result.best_candidate, dict(result.best_params))


def _joint_trials(
    family: ProblemFamily, tokens: int, seed: int, pruner: optuna.pruners.BasePruner | None,
    stop: Callable[[list[float], float], bool] | None,
) -> Choice:  # fmt: skip
    """One joint TPE study, each trial scored chunk by chunk (the engine's rungs in a
    seeded order) until ``pruner`` or ``stop(scores, best full score)`` ends it; the best
    trial that scored every problem wins."""
    n = len(family.difficulty)
    chunks = plan(n, seed)
    meter = TokenMeter(family, tokens, _seed(seed, 7))
    study = optuna.create_study(direction="maximize", sampler=tpe_sampler(_seed(seed, 70)),
                                pruner=pruner or optuna.pruners.NopPruner())  # fmt: skip
    best: tuple[float, str, dict] | None = None
    try:
        while True:
            trial = study.ask()
            name = trial.suggest_categorical("candidate", list(family.candidates))
            params = SPACE.suggest(trial)
            scores: list[float] = []
            for i, chunk in enumerate(chunks):
                values, _ = meter(name, params, chunk)
                for index, value in zip(chunk, values, strict=True):
                    trial.report(value, step=index)
                scores += values
                last = i == len(chunks) - 1
                level = best[0] if best else -math.inf
                if not last and (trial.should_prune() or (stop and stop(scores, level))):
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                score = float(np.mean(scores))
                study.tell(trial, score)
                if best is None or score > best[0]:
                    best = (score, name, params)
    except BudgetSpent:
        pass
    if best is None:  # nothing scored in full: the most promising partial trial
        return Choice(family.candidates[0], SPACE.default_params())
    return Choice(best[1], dict(best[2]))


def wilcoxon_pruner(family: ProblemFamily, tokens: int, seed: int) -> Choice:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        pruner = optuna.pruners.WilcoxonPruner(p_threshold=0.1)
    return _joint_trials(family, tokens, seed, pruner, None)


def serfling_bound(scores: list[float], n: int, delta: float = 0.05) -> float:
    """Upper bound (1 - delta) on the mean over all ``n`` problems of a configuration
    whose first ``m`` scores (in [0, 1]) are ``scores``: the Hoeffding-Serfling inequality
    for sampling without replacement (Bardenet & Maillard 2015), as EcoOptiGen prunes.

    >>> round(serfling_bound([0.0] * 8, 40), 3)
    0.393
    """
    m = len(scores)
    if m >= n:
        return float(np.mean(scores))
    rho = (1 - (m - 1) / n) if m <= n / 2 else (1 - m / n) * (1 + 1 / m)
    return float(np.mean(scores)) + math.sqrt(rho * math.log(1 / delta) / (2 * m))


def ecooptigen(family: ProblemFamily, tokens: int, seed: int) -> Choice:
    n = len(family.difficulty)
    return _joint_trials(family, tokens, seed, None,
                         lambda scores, best: serfling_bound(scores, n) < best)  # fmt: skip


def successive_halving(family: ProblemFamily, tokens: int, seed: int) -> Choice:
    """Brackets of random configurations, problems doubling and the better half kept, as in
    Hyperband's successive halving with problems as the resource."""
    n = len(family.difficulty)
    order = plan(n, seed, "off")[0]
    ends = rungs(n)
    meter = TokenMeter(family, tokens, _seed(seed, 8))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=_seed(seed, 80)))
    best: tuple[float, str, dict] | None = None
    try:
        while True:
            arms = []
            for _ in range(2 ** (len(ends) - 1)):
                trial = study.ask()
                name = trial.suggest_categorical("candidate", list(family.candidates))
                arms.append([name, SPACE.suggest(trial), []])
                study.tell(trial, 0.0)
            start = 0
            for end in ends:
                for arm in arms:
                    arm[2] += meter(arm[0], arm[1], order[start:end])[0]
                start = end
                arms.sort(key=lambda a: -np.mean(a[2]))
                if end < n:
                    arms = arms[: max(1, len(arms) // 2)]
            score = float(np.mean(arms[0][2]))
            if best is None or score > best[0]:
                best = (score, arms[0][0], arms[0][1])
    except BudgetSpent:
        pass
    if best is None:
        return Choice(family.candidates[0], SPACE.default_params())
    return Choice(best[1], dict(best[2]))


STRATEGIES: dict[str, Strategy] = {
    "three-stage, fidelity auto": lambda f, t, s: three_stage(f, t, s, "auto"),
    "three-stage, fidelity off": lambda f, t, s: three_stage(f, t, s, "off"),
    "EcoOptiGen doubling": ecooptigen,
    "joint TPE + WilcoxonPruner": wilcoxon_pruner,
    "successive halving": successive_halving,
}
AUTO, OFF = "three-stage, fidelity auto", "three-stage, fidelity off"
