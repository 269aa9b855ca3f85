"""The task contract: a dataset split into problems, prompt pieces, and a scorer.

A task knows nothing about models or tokenizers. The prompt builder
(:mod:`engine.generation._prompting`) asks it for text pieces and the chat template does the rest.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from engine.errors import ConfigError

__all__ = [
    "Problem",
    "ProblemOutcome",
    "Split",
    "Task",
    "check_completions",
    "group_by_problem",
    "mean_over_problems",
]

Split = Literal["train", "tune", "holdout"]


@dataclass(frozen=True)
class Problem:
    """One problem of a task.

    ``prompt`` is the task's input (for HumanEval: signature and docstring);
    ``reference`` a known-good answer (canonical solution), used for few-shot examples.
    ``tests`` and ``entry_point`` are what the scorer needs.
    """

    id: str
    prompt: str
    reference: str = ""
    tests: str = ""
    entry_point: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class ProblemOutcome:
    """How one completion did on one problem.

    ``status`` is the sandbox status of the test run (``passed``/``failed``/``timeout``/
    ``crashed``); ``passed`` is true only when every test ran to the end and passed;
    ``fraction`` is the fraction of test assertions that passed (0..1), or for a task
    without tests its main per-problem score. ``metrics`` holds any other per-problem
    values the task's :meth:`Task.aggregate` needs (BLEU, mutants killed, ...).
    """

    problem_id: str
    status: str
    passed: bool
    fraction: float
    output: str = ""
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


class Task(abc.ABC):
    """A dataset with splits, prompt pieces and a scorer.

    Subclasses set :attr:`name`, :attr:`metrics` (names of the per-sample objectives it
    can compute, first = default) and implement the abstract methods.

    :attr:`samples_per_problem` is how many completions the evaluator draws for each
    problem in one sample (``n`` of pass@k); :meth:`score` then receives each problem
    that many times and :meth:`aggregate` groups outcomes by ``problem_id``.
    :attr:`source` says where the data came from and :attr:`skipped` counts the rows or
    items the loader left out, by reason, so nothing is dropped silently.

    A task whose constructor fixes its splits stores them in ``_splits`` (see
    :mod:`engine.tasks._splits`) and inherits :meth:`problems`; any other task overrides it.
    """

    name: str = ""
    description: str = ""
    metrics: tuple[str, ...] = ()
    #: Where every metric lies: each is a rate or a similarity, so a mean of them, a tuned
    #: score and its interval lie there too.
    score_range: tuple[float, float] = (0.0, 1.0)
    samples_per_problem: int = 1
    source: str = ""
    skipped: dict[str, int] = {}  # replaced per instance, never mutated
    _splits: dict[str, list[Problem]]

    def problems(self, split: Split) -> list[Problem]:
        """The problems of ``split``, in a deterministic order (a new list on each call).

        Raises:
            ConfigError: ``split`` is not ``train``, ``tune`` or ``holdout``.
        """
        if split not in self._splits:
            raise ConfigError(f"unknown split {split!r}; use train, tune or holdout")
        return list(self._splits[split])

    @abc.abstractmethod
    def instruction(self, problem: Problem) -> str:
        """The user message for chat-style prompts."""

    @abc.abstractmethod
    def completion_prefix(self, problem: Problem) -> str:
        """The text a raw-completion model continues (the model's output is appended)."""

    @abc.abstractmethod
    def example_response(self, problem: Problem) -> str:
        """The ideal assistant answer to ``instruction(problem)``, for few-shot examples."""

    def stop_sequences(self, *, continuation: bool) -> list[str]:
        """Strings that end a generation early (the text is cut before them).

        ``continuation`` as in :meth:`score`. Default: none, generation ends at the
        model's end-of-sequence token or the token limit.
        """
        return []

    @abc.abstractmethod
    def score(
        self,
        problems: Sequence[Problem],
        completions: Sequence[str],
        *,
        continuation: bool,
    ) -> list[ProblemOutcome]:
        """Score one completion per problem (in parallel where it can).

        ``continuation`` is true when each completion continues ``completion_prefix``
        (raw style) rather than being a full chat answer.
        """

    @abc.abstractmethod
    def aggregate(self, outcomes: Sequence[ProblemOutcome]) -> dict[str, float]:
        """Per-sample metrics from the outcomes: one value for each name in ``metrics``."""


# -- what every task's scoring shares ---------------------------------------------------------


def check_completions(problems: Sequence[Problem], completions: Sequence[str]) -> None:
    """The check :meth:`Task.score` starts with.

    Raises:
        ValueError: not exactly one completion per problem.
    """
    if len(problems) != len(completions):
        raise ValueError(f"{len(problems)} problems but {len(completions)} completions")


def problem_interval(
    outcomes: Sequence[ProblemOutcome],
    aggregate: Callable[[Sequence[ProblemOutcome]], Mapping[str, float]],
    metric: str,
    *,
    confidence: float = 0.9,
    draws: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile-bootstrap interval of ``aggregate(outcomes)[metric]`` over problems.

    The problems are resampled with replacement, each with all of its completions, and
    the task's own aggregate is recomputed on every resample, so the interval fits any
    metric (pass@k included) and says how much the figure depends on which problems
    were drawn.
    """
    groups = list(group_by_problem(outcomes).values())
    rng = random.Random(seed)
    values = []
    for _ in range(draws):
        resample = [
            replace(o, problem_id=f"{o.problem_id}#{j}")
            for j in range(len(groups))
            for o in rng.choice(groups)
        ]
        values.append(float(aggregate(resample)[metric]))
    values.sort()
    tail = (1 - confidence) / 2
    return values[int(tail * (draws - 1))], values[int(round((1 - tail) * (draws - 1)))]


def group_by_problem(outcomes: Sequence[ProblemOutcome]) -> dict[str, list[ProblemOutcome]]:
    """Each problem's outcomes, in order, by ``problem_id`` (problems in the order first
    seen): the groups every :meth:`Task.aggregate` pools.

    Raises:
        ValueError: no outcomes.
    """
    if not outcomes:
        raise ValueError("aggregate needs at least one outcome")
    by_problem: dict[str, list[ProblemOutcome]] = {}
    for outcome in outcomes:
        by_problem.setdefault(outcome.problem_id, []).append(outcome)
    return by_problem


def mean_over_problems(
    groups: Sequence[Sequence[ProblemOutcome]], value: Callable[[ProblemOutcome], float]
) -> float:
    """The mean over problems of the mean of ``value`` over each problem's outcomes, so a
    problem weighs the same however many samples it has. ``groups`` must not be empty."""
    return sum(sum(value(o) for o in group) / len(group) for group in groups) / len(groups)
