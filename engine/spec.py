"""What a run is: everything needed to run it again, stored as its config.

A :class:`RunSpec` is built once by the :class:`~engine.Tuner` from its arguments, written
to the store when the run starts (:meth:`RunSpec.to_dict`), and read back by
:meth:`RunSpec.of_run` wherever a stored run is resumed, served by a worker, shown or
exported: nothing else reads a run's config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.budget import Budget
from engine.generation import Candidate
from engine.settings import RunSettings
from engine.space import SearchSpace

if TYPE_CHECKING:
    from engine.records import Run

__all__ = ["RunSpec"]


@dataclass(frozen=True)
class RunSpec:
    """A run's candidates, options and decoding space, and what scores a sample.

    Attributes:
        candidates: the candidates, names unique.
        settings: the run's options (its budget and seed among them).
        space: the decoding parameters' ranges.
        task: the task's name, for a task run.
        objective: for an objective run, the objective's import path
            (``"module:function"``), or ``True`` for a function, which only the process
            that has it can call (no worker, no resume without it); ``False`` for a task.
        problems: how many problems an objective's score is a mean over (0: one score).
    """

    candidates: tuple[Candidate, ...]
    settings: RunSettings
    space: SearchSpace
    task: str | None = None
    objective: str | bool = False
    problems: int = 0

    @property
    def names(self) -> list[str]:
        """The candidates' names, in the run's order."""
        return [c.name for c in self.candidates]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, as the run's config: its options by name, then the rest."""
        return {
            **self.settings.to_dict(),
            "task": self.task,
            "objective": self.objective,
            "problems": self.problems,
            "candidates": [c.to_dict() for c in self.candidates],
            "space": self.space.to_dict(),
        }

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> RunSpec:
        """The inverse of :meth:`to_dict`."""
        return cls(
            candidates=tuple(Candidate(**c) for c in config.get("candidates", ())),
            settings=RunSettings.from_dict(config),
            space=SearchSpace(config.get("space")),
            task=config.get("task"),
            objective=config.get("objective") or False,
            problems=config.get("problems") or 0,
        )

    @classmethod
    def of_run(cls, run: Run) -> RunSpec:
        """The spec a stored run ran with. Runs stored before budgets had units, or
        before the seed was an option, keep them in the row's own columns."""
        config = run.config or {}
        budget = config.get("budget") or Budget(run.budget, "samples").to_dict()
        return cls.from_dict({**config, "seed": run.seed, "budget": budget})
