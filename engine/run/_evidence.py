"""What a run knows: each candidate's committed samples, its Optuna study, and the
latest ranking computed from them."""

from __future__ import annotations

import math
from collections.abc import Callable

import optuna

from engine.budget import Budget
from engine.records import BUDGET_STAGES, CandidateEstimate, Sample
from engine.selection import REFERENCE_POINTS, Ranking, full_scores, rank, sampler_seed
from engine.settings import RunSettings
from engine.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Evidence:
    """The committed stage-1 and stage-3 samples of a run's candidates ``names``.

    Every decision of a run is a function of this evidence (and of the jobs in flight
    and the seed), so a resumed run, which rebuilds it from the store, decides as the
    uninterrupted one did.
    """

    def __init__(
        self,
        run_id: str,
        names: list[str],
        space: SearchSpace,
        settings: RunSettings,
        known_variance: Callable[[float, float], float],
        bounds: tuple[float, float] | None = None,
    ) -> None:
        self.names, self.space, self.settings = names, space, settings
        self.budget: Budget = settings.budget
        self.known_variance = known_variance  # the evaluator's, of a score at a fidelity
        self.bounds = bounds  # where every score lies, if the evaluator knows
        self.samples: dict[str, list[Sample]] = {name: [] for name in names}
        self.studies = {
            name: optuna.create_study(direction="maximize", study_name=f"{run_id}/{name}")
            for name in names
        }
        self.selection: Ranking | None = None  # the latest ranking, with its draws
        # What stands for the configurations nobody has evaluated yet, in every ranking.
        self.unexplored = space.reference_unit(REFERENCE_POINTS)

    @property
    def ranking(self) -> tuple[CandidateEstimate, ...]:
        """The latest ranking's lines, best first (none before the first sample)."""
        return self.selection.estimates if self.selection else ()

    def used(self) -> int:
        """Samples committed in stages 1 and 3."""
        return sum(len(s) for s in self.samples.values())

    def spent(self) -> int | float:
        """What the committed stage-1 and stage-3 samples cost, in the budget's unit."""
        return self.budget.spent(s for samples in self.samples.values() for s in samples)

    def on_every_candidate(self) -> bool:
        """Whether every candidate has a committed sample and there is a ranking. With
        workers, a candidate's first samples may all be in flight: until one is in, its
        tuned score is unknown."""
        return self.selection is not None and all(self.samples.values())

    def add(self, sample: Sample, trial: optuna.trial.Trial | None = None) -> None:
        """Add a committed budget ``sample`` to its candidate's samples and study;
        ``trial`` is the study's trial that asked for it, if one did."""
        if sample.stage not in BUDGET_STAGES:
            return
        self.samples[sample.candidate].append(sample)
        if trial is None:
            values, dists = self.space.trial_values(sample.params)
            done = optuna.trial.create_trial(params=values, distributions=dists,
                                             value=sample.score)  # fmt: skip
            self.studies[sample.candidate].add_trial(done)
        else:
            self.studies[sample.candidate].tell(trial, sample.score)

    def fail(self, name: str, trial: optuna.trial.Trial | None) -> None:
        """The sample ``trial`` asked for was not recorded: every sampler ignores a
        failed trial."""
        if trial is not None:
            self.studies[name].tell(trial, state=optuna.trial.TrialState.FAIL)

    def in_commit_order(self) -> list[Sample]:
        """Every committed stage-1 and stage-3 sample, in the order it was committed."""
        return sorted((s for n in self.names for s in self.samples[n]), key=_commit_order)

    def rank(self) -> Ranking | None:
        """Rank the candidates on every committed sample (:func:`engine.selection.rank`),
        keep the ranking and return it; ``None`` before the first sample."""
        pooled = self.in_commit_order()
        if not pooled:
            return None
        space, settings = self.space, self.settings
        self.selection = rank(
            self.names, [space.unit(s.params) for s in pooled],
            [space.covariates(s.params) for s in pooled], [s.candidate for s in pooled],
            full_scores(pooled, self.bounds), trials=[s.trial for s in pooled],
            known_noise=[self.known_variance(s.score, s.fidelity) for s in pooled],
            fidelity=[s.fidelity for s in pooled],
            use_psm=settings.psm, draws=settings.draws,
            random_state=sampler_seed(settings.seed, len(self.names) + 1, len(pooled)),
            learned=self.selection.learned if self.selection else None, bounds=self.bounds,
            reference=self.unexplored,
        )  # fmt: skip
        return self.selection

    def incumbent(self, name: str) -> Sample | None:
        """``name``'s complete sample with the highest posterior mean if that scored every
        problem, else its complete sample with the highest score; ``None`` without one."""
        complete = [s for s in self.samples[name] if not s.partial and s.problem_scores]
        if not complete:
            return None
        incumbent = next((e.incumbent for e in self.ranking if e.candidate == name), -1)
        return max(complete, key=lambda s: (s.trial == incumbent, s.score))


def _commit_order(sample: Sample) -> tuple[float, int]:
    """Samples in the order they were committed (the store's ids grow with it)."""
    return (sample.id if sample.id is not None else math.inf, sample.trial)
