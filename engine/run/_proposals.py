"""Where a run samples next: the point of a candidate's next sample, and the sample it
must keep up with to go on scoring problems.

A candidate's first sample is the shared default point. Then its own Optuna study
proposes (``sampler`` TPE, GP or random), or, with ``sampler="thompson"``, Thompson
sampling of the latest ranking's model, priced by what a sample costs where the budget
is not counted in samples (:class:`engine.selection.CostModel`). Every proposal is
seeded by the run's seed, the candidate and the trial number, so a resumed run proposes
what the uninterrupted one did.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

import numpy as np
import optuna

from engine.records import Job, Sample
from engine.run._evidence import Evidence
from engine.selection import CostModel, sampler_seed

__all__ = ["PROPOSAL_POINTS", "Proposals", "make_sampler"]

#: Random points of the space a Thompson proposal considers besides local ones.
PROPOSAL_POINTS = 128


class Proposals:
    """Proposes the jobs of run ``run_id`` from its ``evidence``.

    Args:
        chunks: the chunks of tuning problems a sample is scored in (``None``: no
            problems); with two or more, a sample may stop early (:meth:`reference`).
    """

    def __init__(self, run_id: str, evidence: Evidence, chunks: list[list[int]] | None) -> None:
        self.run_id = run_id
        self.evidence = evidence
        self.chunks = chunks

    def propose(
        self, name: str, stage: str, trial_number: int, winner: str | None
    ) -> tuple[Job, optuna.trial.Trial | None, Sample | None]:
        """Job ``trial_number`` of ``name``, the Optuna trial that asked for it (``None``
        where the run chose the point itself) and the sample it must keep up with."""
        evidence = self.evidence
        space, settings = evidence.space, evidence.settings
        study = evidence.studies[name]
        seed = sampler_seed(settings.seed, evidence.names.index(name), trial_number)
        study.sampler = make_sampler(settings.sampler, seed)
        trial = None
        if trial_number == 0:
            params = space.default_params()
        elif settings.sampler != "thompson":
            trial = study.ask()
            params = space.suggest(trial)
        elif evidence.selection is None:  # workers: no sample is in yet, so nothing is known
            params = space.from_unit(space.random_unit(1, np.random.default_rng(seed))[0])
        else:
            params = self._thompson(name, trial_number)
        reference = self.reference(name, winner)
        job = Job(self.run_id, name, stage, trial_number, params,
                  reference=reference.id if reference else None)  # fmt: skip
        return job, trial, reference

    def reference(self, name: str, winner: str | None) -> Sample | None:
        """What a new sample of ``name`` must beat to go on scoring problems. In stage 1,
        the better of its candidate's incumbent and the ranking leader's: a sample
        clearly below the leader's best cannot change the answer, whichever candidate
        it belongs to, so this holds for a candidate's first sample too. Once the
        ``winner`` is chosen, its own incumbent: the answer is then the winner's best
        parameters, whichever candidate leads the ranking
        (:meth:`~engine.run._evidence.Evidence.incumbent`). ``None`` (score every problem)
        with fidelity off or while there is nothing complete to compare with."""
        if self.chunks is None or len(self.chunks) < 2:
            return None
        evidence = self.evidence
        own = evidence.incumbent(name)
        if winner is not None or not evidence.ranking:
            return own
        lead = evidence.incumbent(evidence.ranking[0].candidate)
        if own is None:
            return lead
        return lead if lead is not None and lead.score > own.score else own

    def _thompson(self, name: str, trial_number: int) -> dict:
        """The next point of ``name`` by Thompson sampling of the latest ranking's model."""
        evidence = self.evidence
        index = evidence.names.index(name)
        rng = np.random.default_rng(sampler_seed(evidence.settings.seed, index, trial_number))
        reference = evidence.space.random_unit(PROPOSAL_POINTS, rng)
        cost, cooling = self._pricing(index)
        point = evidence.selection.propose(index, reference, rng, cost, cooling)
        return evidence.space.from_unit(point)

    def _pricing(self, c: int) -> tuple[Callable[[np.ndarray], np.ndarray] | None, float]:
        """Candidate ``c``'s cost per problem at unit points, learned from every sample
        that cost something (:class:`engine.selection.CostModel`), and the share of the
        budget left, which cools it (:meth:`engine.selection.Ranking.propose`).
        ``(None, 0)`` with a samples budget, where every problem costs the same."""
        evidence = self.evidence
        budget, names, space = evidence.budget, evidence.names, evidence.space
        if budget.unit == "samples":
            return None, 0.0
        priced = [s for n in names for s in evidence.samples[n]
                  if not s.cached and budget.cost(s) > 0]  # fmt: skip
        model = CostModel.fit(
            [space.unit(s.params) for s in priced], [names.index(s.candidate) for s in priced],
            [budget.cost(s) / max(1, len(s.problem_scores)) for s in priced],
        )  # fmt: skip
        if model is None or c not in model.intercepts:
            return None, 0.0
        return functools.partial(model.predict, c), max(0.0, 1 - evidence.spent() / budget.amount)


def make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler a candidate's study proposes with: ``"tpe"`` (multivariate,
    grouped), ``"gp"`` or ``"random"``, each with 4 random start-up trials where it
    has them. (``"thompson"`` keeps a TPE sampler for the studies it does not ask.)"""
    with warnings.catch_warnings():
        # multivariate/group TPE is flagged experimental; it is what handles the
        # conditional (greedy vs sampling) space well.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if kind == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=4)
        if kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=4, multivariate=True, group=True
        )
