"""What every evaluator is: :class:`Evaluator`, the :class:`Evaluation` it returns, and
an objective named by its import path."""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError
from engine.records import Job, Sample
from engine.space import SearchSpace
from engine.store import Store

Objective = Callable[..., Any]
#: Called after each chunk but the last with the per-problem scores so far (in the
#: chunks' order); ``False`` stops the evaluation there.
KeepGoing = Callable[[Sequence[float]], bool]


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation produced: the objective value, all metrics, and its cost.

    ``problem_scores`` are the scores of the problems evaluated, in the order they were
    (empty for an evaluator without problems); ``fidelity`` is their share of the split.
    ``switch_seconds`` is the part of ``seconds`` spent switching models
    (:attr:`engine.generation.Residency.switch_seconds`).
    """

    score: float
    metrics: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    cached: int = 0  # problems whose completion came from the cache
    seconds: float = 0.0
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    problem_scores: tuple[float, ...] = ()
    fidelity: float = 1.0
    switch_seconds: float = 0.0

    def sample(self, job: Job) -> Sample:
        """The sample this evaluation of ``job``'s point makes, to be committed."""
        return Sample(
            run_id=job.run_id, candidate=job.candidate, stage=job.stage, trial=job.trial,
            params=job.params, score=self.score, metrics=self.metrics,
            prompt_tokens=self.prompt_tokens, generated_tokens=self.generated_tokens,
            cached=self.cached, seconds=self.seconds, fidelity=self.fidelity,
            problem_scores=self.problem_scores, switch_seconds=self.switch_seconds,
        )  # fmt: skip


def import_objective(path: str) -> Objective:
    """The objective a ``"module:function"`` path names (``"package.module:name"``)."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ConfigError(f"objective {path!r}: give it as 'module:function'")
    try:
        found = getattr(importlib.import_module(module), name)
    except ImportError as error:
        raise ConfigError(f"objective {path!r}: cannot import {module} ({error})") from None
    except AttributeError:
        raise ConfigError(f"objective {path!r}: {module} has no {name!r}") from None
    if not callable(found):
        raise ConfigError(f"objective {path!r} is not callable")
    return found


class Evaluator(abc.ABC):
    """Evaluates candidates; ``split`` is ``"tune"`` or ``"holdout"``.

    An evaluator whose score is a mean over problems says how many a split has
    (:meth:`problem_count`); :meth:`evaluate` then takes them in ``chunks`` (lists of
    problem indices) and asks ``keep_going`` between chunks (:mod:`engine.selection._fidelity`).
    """

    candidates: tuple[str, ...]

    def problem_count(self, split: str) -> int:
        """The problems of ``split`` a score is a mean over (0: the score is no such mean,
        and every evaluation is whole)."""
        return 0

    def prepare(self, space: SearchSpace | None = None) -> None:  # noqa: B027 - optional hook
        """Validate everything cheap to validate before the run starts, ``space`` being
        the decoding space the run searches."""

    def attach(self, store: Store) -> None:  # noqa: B027 - optional hook
        """Use ``store`` (opened after :meth:`prepare` succeeded) for caching."""

    def holds(self, candidate: str) -> bool:
        """Whether ``candidate`` evaluates here without loading anything first (a worker
        takes such jobs before others); with nothing to load, every one does."""
        return True

    @property
    def has_holdout(self) -> bool:
        return False

    @property
    def score_range(self) -> tuple[float, float] | None:
        """Where every score lies (a pass rate's ``(0, 1)``), ``None`` where nothing is
        known: the ranking keeps its estimates and intervals inside it."""
        return None

    def known_variance(self, score: float, fidelity: float = 1.0) -> float:
        """What is known in advance of the noise of a tuning ``score`` over a ``fidelity``
        share of the problems, as a variance (0: nothing; the surrogate then learns it
        from the data)."""
        return 0.0

    @abc.abstractmethod
    def evaluate(
        self,
        candidate: str,
        params: dict[str, Any],
        *,
        split: str,
        chunks: Sequence[Sequence[int]] | None = None,
        keep_going: KeepGoing | None = None,
    ) -> Evaluation:
        """Evaluate ``candidate`` at ``params`` on ``split``: on every problem in one go
        (``chunks`` None), or chunk by chunk, stopping where ``keep_going`` says."""
