"""Peer strategies from the AutoML and LLM-tuning literature, written to the contract of
:mod:`benchmarks._strategies.runners`: ``strategy(family, budget, seed) -> Choice``, at most
``budget`` calls of a :class:`~benchmarks._strategies.runners.CountingObjective`, and here
exactly ``budget``.

- :func:`joint_tpe` / :func:`joint_gp`: one Optuna study over (candidate, decoding params),
  the candidate a categorical parameter (the "combined search space" way of CASH).
- :func:`blendsearch`: FLAML's BlendSearch through ``flaml.tune``, the candidate a choice
  next to the decoding params, the way FLAML's EcoOptiGen tunes LLM inference.
- :func:`successive_halving`: rounds over candidates, the worse half dropped each round.
- :func:`max_ucb`: a max K-armed bandit over per-candidate TPE studies.
- :func:`share_then_gp_mean`: what a careful user would write by hand: an equal share of
  half the budget to each candidate's own TPE study, the candidate with the highest GP
  posterior mean at one of its evaluated points, then the rest to the winner.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna

from benchmarks._strategies import runners
from benchmarks._strategies.landscapes import SPACE, Family
from benchmarks._strategies.runners import (
    Choice,
    CountingObjective,
    _ask_tell,
    _best_params,
    _seed,
    _study,
    tpe_sampler,
)
from engine import MIN_SAMPLING_TEMPERATURE
from engine.selection import rank


def _joint(study: optuna.Study, family: Family, objective: CountingObjective, budget: int,
           suggest: Callable[[optuna.Trial], dict[str, Any]]) -> Choice:  # fmt: skip
    """Run ``budget`` trials of one study over (candidate, params); the best trial wins."""
    for _ in range(budget):
        trial = study.ask()
        name = trial.suggest_categorical("candidate", list(family.candidates))
        params = suggest(trial)
        trial.set_user_attr("params", params)
        trial.set_user_attr("candidate", name)
        study.tell(trial, objective(name, params))
    best = study.best_trial
    return Choice(best.user_attrs["candidate"], dict(best.user_attrs["params"]))


def joint_tpe(family: Family, budget: int, seed: int) -> Choice:
    """One TPE study over the candidate (a categorical) and the decoding params, with the
    same TPE configuration as every other TPE strategy (:func:`runners.tpe_sampler`:
    multivariate, ``group=True``, which models the conditional greedy / sampling branches
    separately); the best trial is chosen."""
    objective = runners.CountingObjective(family, budget, _seed(seed, 6))
    study = _study(tpe_sampler(_seed(seed, 60)))
    return _joint(study, family, objective, budget, SPACE.suggest)


def _flat_suggest(trial: optuna.Trial) -> dict[str, Any]:
    """Every parameter of the space suggested on every trial (a fixed, unconditional
    space), then decoded: ``sampling=False`` is greedy, dropping temperature, top_p and
    top_k. Optuna's GPSampler models only the parameters every trial has (the
    intersection search space) and samples the others at random, so under the engine's
    conditional space (:meth:`SearchSpace.suggest`) it would never model temperature,
    top_p or top_k. The integer parameters (top_k, max_new_tokens) are suggested as
    floats on their scale and rounded: as integers, GPSampler optimises its acquisition
    function by discrete line searches that cost it 5x the time (over 7 s a run at budget
    30), without changing what it can express."""
    r = SPACE.ranges
    sampling = trial.suggest_categorical("sampling", [False, True])
    values: dict[str, Any] = {}
    for name, rng in r.items():
        low = max(rng.low, MIN_SAMPLING_TEMPERATURE) if name == "temperature" else rng.low
        value = trial.suggest_float(name, low, rng.high, log=rng.log)
        values[name] = int(round(value)) if rng.integer else value
    if not sampling:
        return {"temperature": 0.0, "repetition_penalty": values["repetition_penalty"],
                "max_new_tokens": values["max_new_tokens"]}  # fmt: skip
    return values


def joint_gp(family: Family, budget: int, seed: int) -> Choice:
    """One Optuna ``GPSampler`` study over the candidate (a categorical) and the decoding
    params, suggested as a fixed space (:func:`_flat_suggest`: GPSampler cannot model the
    conditional one); default settings (10 random start-up trials, noisy objective)."""
    import torch

    torch.set_num_threads(1)  # the benchmark's processes share the machine's cores
    objective = runners.CountingObjective(family, budget, _seed(seed, 7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.GPSampler(seed=_seed(seed, 70))
    return _joint(_study(sampler), family, objective, budget, _flat_suggest)


def _flaml_space(names: tuple[str, ...]) -> dict[str, Any]:
    """The candidate and the engine's conditional decoding space in ``flaml.tune``'s terms:
    a choice between a greedy dict and a sampling dict (a hierarchical space, like
    EcoOptiGen's choice between temperature and top_p)."""
    from flaml import tune

    def domain(name: str) -> Any:
        r = SPACE.ranges[name]
        low = max(r.low, MIN_SAMPLING_TEMPERATURE) if name == "temperature" else r.low
        if r.integer:  # flaml's integer upper bounds are exclusive
            make = tune.lograndint if r.log else tune.randint
            return make(int(low), int(r.high) + 1)
        return (tune.loguniform if r.log else tune.uniform)(low, r.high)

    shared = ("repetition_penalty", "max_new_tokens")
    sampling = ("temperature", "top_p", "top_k", *shared)
    return {
        "candidate": tune.choice(list(names)),
        "decoding": tune.choice([
            {name: domain(name) for name in shared},
            {name: domain(name) for name in sampling},
        ]),
    }  # fmt: skip


def _flaml_params(decoding: dict[str, Any]) -> dict[str, Any]:
    """A decoding dict from flaml's config, clipped into the space (greedy when it has no
    temperature)."""
    params: dict[str, Any] = {} if "temperature" in decoding else {"temperature": 0.0}
    for name, value in decoding.items():
        r = SPACE.ranges[name]
        value = min(max(value, r.low), r.high)
        params[name] = int(round(value)) if r.integer else float(value)
    return {name: params[name] for name in SPACE.ranges if name in params}


def blendsearch(family: Family, budget: int, seed: int) -> Choice:
    """FLAML's BlendSearch (a global TPE search, Optuna's, blended with CFO local searches)
    through ``flaml.tune.run`` over the candidate (a choice) and the decoding params
    (:func:`_flaml_space`), ``budget`` trials; the best trial is chosen. FLAML's
    EcoOptiGen tunes LLM inference this way, with the model as a choice. Should flaml end
    the run early (a converged search), the rest of the budget goes to fresh runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flaml.automl is not available": not used
        from flaml import tune
        from flaml.tune.searcher.blendsearch import BlendSearch
    logging.getLogger("flaml").setLevel(logging.WARNING)
    objective = runners.CountingObjective(family, budget, _seed(seed, 8))
    space = _flaml_space(family.candidates)
    seen: list[tuple[float, Choice]] = []

    def evaluate(config: dict[str, Any]) -> dict[str, float]:
        choice = Choice(config["candidate"], _flaml_params(config["decoding"]))
        score = objective(choice.candidate, choice.params)
        seen.append((score, choice))
        return {"score": score}

    attempt = 0
    while objective.calls < budget:
        search = BlendSearch(metric="score", mode="max", space=space,
                             seed=_seed(seed, 80, attempt) % 2**31)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tune.run(evaluate, config=space, metric="score", mode="max", search_alg=search,
                     num_samples=budget - objective.calls, verbose=0)  # fmt: skip
        attempt += 1
    return max(seen, key=lambda s: s[0])[1]


class _Arm:
    """One candidate's own TPE study, sampled one trial at a time."""

    def __init__(self, name: str, seed: int, objective: CountingObjective) -> None:
        self.name = name
        self.study = _study(tpe_sampler(seed))
        self.objective = objective
        self.scores: list[float] = []

    def pull(self) -> float:
        _ask_tell(self.study, lambda p: self.objective(self.name, p))
        self.scores.append(float(self.study.trials[-1].value))
        return self.scores[-1]

    @property
    def best(self) -> float:
        return max(self.scores, default=-math.inf)

    def choice(self) -> tuple[float, Choice]:
        params, score = _best_params(self.study)
        return score, Choice(self.name, params)


def successive_halving(family: Family, budget: int, seed: int) -> Choice:
    """Successive halving over candidates (Karnin et al. 2013; Jamieson & Talwalkar 2016):
    ``R = ceil(log2 n)`` rounds with ``budget / R`` evaluations each, split equally over
    the surviving candidates (the remainder to the first ones); each candidate continues
    its own TPE study; after each round the worse half by best observed score is dropped
    (``ceil(k / 2)`` of ``k`` survive), so one is left after round ``R``. Its best trial
    is chosen."""
    objective = runners.CountingObjective(family, budget, _seed(seed, 9))
    arms = [_Arm(n, _seed(seed, 90 + i), objective) for i, n in enumerate(family.candidates)]
    rounds = max(1, math.ceil(math.log2(len(arms))))
    for r in range(rounds):
        spend = budget * (r + 1) // rounds - budget * r // rounds
        for i, arm in enumerate(arms):
            for _ in range(spend // len(arms) + (i < spend % len(arms))):
                arm.pull()
        ranked = sorted(arms, key=lambda a: a.best, reverse=True)  # stable: ties keep order
        arms = ranked[: math.ceil(len(arms) / 2)] if r < rounds - 1 else ranked[:1]
    return arms[0].choice()[1]


#: MaxUCB's exploration weight, on scores in [0, 1]; the default of the reference code of
#: Balef et al. (2025), not tuned on these families.
MAX_UCB_ALPHA = 0.25


def max_ucb(family: Family, budget: int, seed: int) -> Choice:
    """A max K-armed bandit over candidates, each arm a candidate's own TPE study whose
    reward is the observed score of its next trial. Every arm is pulled once; then pull
    number ``t`` goes to

        argmax_i  max_{s <= n_i} r_{i,s} + sqrt(alpha * log(t) / n_i)

    (``n_i`` pulls so far, ``alpha`` = :data:`MAX_UCB_ALPHA`): a UCB index on the
    *maximum* observed reward instead of the mean, the max K-armed bandit view of CASH of
    Balef, Vernade & Eggensperger, "Put CASH on Bandits: A Max K-Armed Problem for
    Automated Machine Learning" (2025, arXiv:2505.05226), whose MaxUCB adds such a bonus
    to each arm's best reward for the short-tailed, bounded rewards of hyperparameter
    optimisation. The bonus here is the plain ``sqrt(alpha log t / n)`` form, not a
    transcription of their code. The best trial overall is chosen."""
    objective = runners.CountingObjective(family, budget, _seed(seed, 10))
    arms = [_Arm(n, _seed(seed, 100 + i), objective) for i, n in enumerate(family.candidates)]
    for arm in arms[:budget]:
        arm.pull()
    while objective.calls < budget:
        t = objective.calls + 1
        bounds = [a.best + math.sqrt(MAX_UCB_ALPHA * math.log(t) / len(a.scores)) for a in arms]
        arms[int(np.argmax(bounds))].pull()
    return max((a.choice() for a in arms if a.scores), key=lambda c: c[0])[1]


def share_then_gp_mean(family: Family, budget: int, seed: int) -> Choice:
    """Half the budget split equally over the candidates (the remainder to the first
    ones), each tuned by its own TPE study; then one GP over every sample
    (:func:`engine.selection.rank` without PSM) and the candidate whose posterior mean is
    highest at one of its own evaluated points wins; its study gets the rest of the
    budget, and its best sample is chosen."""
    objective = runners.CountingObjective(family, budget, _seed(seed, 11))
    names = family.candidates
    studies = {name: _study(tpe_sampler(_seed(seed, 11, i))) for i, name in enumerate(names)}
    half = budget // 2
    for i, name in enumerate(names):
        for _ in range(half // len(names) + (i < half % len(names))):
            _ask_tell(studies[name], lambda p, n=name: objective(n, p))
    done = [(name, trial) for name in names for trial in studies[name].trials]
    params = [trial.user_attrs["params"] for _, trial in done]
    ranking = rank(
        names, [SPACE.unit(p) for p in params], [SPACE.covariates(p) for p in params],
        [name for name, _ in done], [trial.value for _, trial in done], use_psm=False,
        random_state=_seed(seed, 12),
    )  # fmt: skip
    seen = [e for e in ranking.estimates if not math.isnan(e.incumbent_mean)]
    winner = max(seen, key=lambda e: e.incumbent_mean).candidate  # ties: the better ranked
    while objective.calls < budget:
        _ask_tell(studies[winner], lambda p: objective(winner, p))
    return Choice(winner, _best_params(studies[winner])[0])
