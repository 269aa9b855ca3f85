"""The project's own and the baseline tuning strategies compared by ``benchmarks.strategies``
(the literature's peers are in :mod:`benchmarks._strategies.peers`; the table of all of
them is :mod:`benchmarks._strategies.catalog`).

Contract of every strategy: ``strategy(family, budget, seed) -> Choice``. It may call the
family's noisy objective exactly ``budget`` times (a :class:`CountingObjective` enforces
it) and returns the candidate and decoding params it would deploy. Only the real
``engine.Tuner`` is the three-stage method; the others are written here with the engine's
public pieces (:class:`engine.space.SearchSpace`,
:func:`engine.selection.sampler_seed`) and Optuna, because the engine has no selection rule
without PSM and no from-scratch or all-candidate tuning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from benchmarks._strategies.landscapes import SPACE, Family
from engine import SELECTION, Event, RankingUpdated, StageChanged, Tuner
from engine.selection import sampler_seed

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Choice:
    """What a strategy would deploy; ``prob_best`` is the probability it states that
    ``candidate`` is the best (the three-stage tuner's P(best); NaN where a strategy
    states none), ``switch_prob_best`` the one it stated for its choice when it chose
    (the tuner's leader at the switch to stage 3)."""

    candidate: str
    params: dict[str, Any]
    prob_best: float = math.nan
    switch_prob_best: float = math.nan


class CountingObjective:
    """The family's noisy objective (:meth:`Family.observe`), refusing call ``budget + 1``.

    The noise stream is seeded by ``seed`` so a run is reproducible.
    """

    def __init__(self, family: Family, budget: int, seed: int) -> None:
        self.family = family
        self.budget = budget
        self.calls = 0
        self.rng = np.random.default_rng(seed)

    def __call__(self, candidate: str, params: Mapping[str, Any]) -> float:
        if self.calls >= self.budget:
            raise RuntimeError(f"strategy exceeded its budget of {self.budget} evaluations")
        self.calls += 1
        return self.family.observe(candidate, params, self.rng)


Strategy = Callable[[Family, int, int], Choice]


def tpe_sampler(seed: int) -> optuna.samplers.TPESampler:
    """The TPE configuration ``engine.Tuner`` uses (``sampler="tpe"``), so every TPE-based
    strategy differs from the three-stage one in its flow only, not in its optimizer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=4, multivariate=True, group=True
        )


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    return optuna.create_study(direction="maximize", sampler=sampler)


def _ask_tell(study: optuna.Study, evaluate: Callable[[dict[str, Any]], float]) -> None:
    trial = study.ask()
    params = SPACE.suggest(trial)
    trial.set_user_attr("params", params)
    study.tell(trial, evaluate(params))


def _add(study: optuna.Study, params: dict[str, Any], score: float) -> None:
    values, dists = SPACE.trial_values(params)
    trial = optuna.trial.create_trial(params=values, distributions=dists, value=score)
    trial.set_user_attr("params", params)
    study.add_trial(trial)


def _best_params(study: optuna.Study) -> tuple[dict[str, Any], float]:
    best = study.best_trial
    return dict(best.user_attrs["params"]), float(best.value)


def three_stage(family: Family, budget: int, seed: int, **options: Any) -> Choice:
    """The project's ``engine.Tuner`` with its defaults (Thompson proposals from the
    shared surrogate, top-two Thompson sampling over candidates, stage-1 share 0.5, safe
    elimination at 95%, surfaces centred on the mean of all scores) and ``options``."""
    objective = CountingObjective(family, budget, _seed(seed, 1))
    tuner = Tuner(objective=objective, candidates=list(family.candidates), budget=budget,
                  seed=seed, space=SPACE, **options)  # fmt: skip
    at_switch = _SwitchWatch()
    tuner.subscribe(at_switch)
    result = tuner.run()
    stated = next(e.prob_best for e in result.ranking if e.candidate == result.best_candidate)
    return Choice(result.best_candidate, dict(result.best_params), stated, at_switch.prob_best)


class _SwitchWatch:
    """A subscriber that keeps the P(best) of the leader of the last ranking before the
    switch to stage 3: what the run stated when it chose."""

    def __init__(self) -> None:
        self.ranking: tuple = ()
        self.prob_best = math.nan

    def __call__(self, event: Event) -> None:
        if isinstance(event, RankingUpdated):
            self.ranking = event.ranking
        elif isinstance(event, StageChanged) and event.stage == SELECTION and self.ranking:
            self.prob_best = self.ranking[0].prob_best


def three_stage_with_psm_prior(family: Family, budget: int, seed: int) -> Choice:
    """:func:`three_stage` with ``Tuner(psm=True)``: every candidate's surface centred on
    its PSM-matched mean instead of the mean of all scores (the default before the
    ranking carried the unexplored space): what centring on PSM's levels does."""
    return three_stage(family, budget, seed, psm=True)


def three_stage_with_tpe(family: Family, budget: int, seed: int) -> Choice:
    """:func:`three_stage` with each candidate's parameters proposed by its own TPE study
    (``Tuner(sampler="tpe")``) instead of Thompson sampling of the shared surrogate."""
    return three_stage(family, budget, seed, sampler="tpe")


def two_stage(family: Family, budget: int, seed: int) -> Choice:
    """The usual way: half the budget on random params split equally over candidates,
    the best *mean* wins, then the winner is tuned from scratch with TPE on the rest and
    its best tuning sample is chosen (the first half's samples are thrown away)."""
    objective = CountingObjective(family, budget, _seed(seed, 2))
    names = family.candidates
    per = max(1, budget // 2 // len(names))
    screen = _study(optuna.samplers.RandomSampler(seed=_seed(seed, 20)))
    means = {}
    for name in names:
        scores = []
        for _ in range(per):
            _ask_tell(screen, lambda p, n=name: objective(n, p))
            scores.append(screen.trials[-1].value)
        means[name] = float(np.mean(scores))
    winner = max(names, key=lambda n: means[n])  # ties: the first listed
    tuning = _study(tpe_sampler(_seed(seed, 21)))
    while objective.calls < budget:
        _ask_tell(tuning, lambda p: objective(winner, p))
    return Choice(winner, _best_params(tuning)[0])


def naive_pooling(family: Family, budget: int, seed: int) -> Choice:
    """The Tuner's flow with stage 2 replaced by the raw mean of stage-1 samples (no PSM).

    Mirrors the previous ``engine.Tuner``: half the budget round-robin, the shared
    default point first, TPE reseeded per ask with :func:`sampler_seed`; then the winner's
    study continues with its stage-1 samples and its best sample is chosen. The engine
    offers no selection rule without PSM, hence this re-implementation.
    """
    objective = CountingObjective(family, budget, _seed(seed, 1))  # same noise as three-stage
    names = family.candidates
    per_candidate = max(2, budget // 2 // len(names))  # half the budget, as two-stage
    studies = {name: _study(tpe_sampler(0)) for name in names}
    stage1: dict[str, list[float]] = {name: [] for name in names}

    def sample(name: str) -> None:
        study = studies[name]
        number = len(study.trials)
        if number == 0:
            params = SPACE.default_params()
            _add(study, params, objective(name, params))
        else:
            study.sampler = tpe_sampler(sampler_seed(seed, names.index(name), number))
            _ask_tell(study, lambda p: objective(name, p))

    for _ in range(per_candidate):
        for name in names:
            sample(name)
            stage1[name].append(float(studies[name].trials[-1].value))
    winner = max(names, key=lambda n: np.mean(stage1[n]))
    while objective.calls < budget:
        sample(winner)
    return Choice(winner, _best_params(studies[winner])[0])


def tune_everything(family: Family, budget: int, seed: int) -> Choice:
    """Every candidate tuned with TPE on an equal share of the budget (the remainder to
    the first ones); the best sample overall is chosen."""
    objective = CountingObjective(family, budget, _seed(seed, 4))
    names = family.candidates
    best: tuple[float, Choice] | None = None
    for i, name in enumerate(names):
        share = budget // len(names) + (i < budget % len(names))
        study = _study(tpe_sampler(_seed(seed, 40 + i)))
        for _ in range(share):
            _ask_tell(study, lambda p, n=name: objective(n, p))
        if share:
            params, score = _best_params(study)
            if best is None or score > best[0]:
                best = (score, Choice(name, params))
    assert best is not None
    return best[1]


def random_search(family: Family, budget: int, seed: int) -> Choice:
    """``budget`` uniformly random (candidate, params) pairs; the best sample is chosen."""
    objective = CountingObjective(family, budget, _seed(seed, 5))
    rng = np.random.default_rng(_seed(seed, 50))
    study = _study(optuna.samplers.RandomSampler(seed=_seed(seed, 51)))
    for _ in range(budget):
        name = family.candidates[int(rng.integers(len(family.candidates)))]
        trial = study.ask()
        params = SPACE.suggest(trial)
        trial.set_user_attr("params", params)
        trial.set_user_attr("candidate", name)
        study.tell(trial, objective(name, params))
    best = study.best_trial
    return Choice(best.user_attrs["candidate"], dict(best.user_attrs["params"]))
