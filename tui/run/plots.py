"""Plots of a run: scores by sample, the ranking over time, propensity overlap."""

from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot

from engine import SearchSpace, propensity
from tui.run.state import RunState

#: The series of the samples stopped early (:attr:`engine.Sample.partial`) in the score plot.
STOPPED_EARLY = "stopped early"


def score_series(state: RunState) -> dict[str, tuple[list[int], list[float]]]:
    """The score plot's series: label -> (sample numbers, scores). One per candidate with
    samples that scored every problem, then :data:`STOPPED_EARLY` (any candidate's)."""
    samples = list(enumerate(state.tuning_samples(), 1))
    groups = {name: [(i, s.score) for i, s in samples if s.candidate == name and not s.partial]
              for name in state.candidates}  # fmt: skip
    groups[STOPPED_EARLY] = [(i, s.score) for i, s in samples if s.partial]
    return {label: ([i for i, _ in g], [y for _, y in g]) for label, g in groups.items() if g}


class ScorePlot(PlotextPlot):
    """Every sample's score in the order it was taken, one series per candidate; samples
    stopped early (a mean over their first problems only) are crosses of their own."""

    def show(self, state: RunState) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title("score by sample")
        plt.xlabel("sample")
        _integer_ticks(plt, len(state.tuning_samples()))
        for label, (x, y) in score_series(state).items():
            plt.scatter(x, y, label=label, marker="x" if label == STOPPED_EARLY else "dot")
        self.refresh()


class RankingPlot(PlotextPlot):
    """Each candidate's PSM-adjusted score after every sample: how the ranking evolved."""

    def show(self, state: RunState) -> None:
        plt = self.plt
        plt.clear_data()
        plt.title("adjusted score over the run")
        plt.xlabel("samples")
        _integer_ticks(plt, state.ranking_history[-1][0] if state.ranking_history else 0)
        for name in state.candidates:
            series = [
                (n, e.score)
                for n, ranking in state.ranking_history
                for e in ranking
                if e.candidate == name and e.n
            ]
            if len(series) > 1:
                x, y = zip(*series, strict=True)
                plt.plot(list(x), list(y), label=name)
        self.refresh()


class OverlapPlot(PlotextPlot):
    """Histogram of P(leader | parameters) over each candidate's samples.

    Matching compares a candidate's samples with others' at similar propensities, so the
    histograms must overlap for the adjusted scores to mean anything.
    """

    def __init__(self, space: SearchSpace, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.space = space

    def show(self, state: RunState) -> None:
        plt = self.plt
        plt.clear_data()
        samples = state.tuning_samples()
        present = sorted({s.candidate for s in samples}, key=list(state.candidates).index)
        leader = state.leader
        if len(present) < 2 or leader not in present:
            plt.title("propensity overlap: needs samples of two candidates")
            self.refresh()
            return
        probs = propensity(
            present,
            [self.space.covariates(s.params) for s in samples],
            [s.candidate for s in samples],
        )[:, present.index(leader)]
        plt.title(f"P({leader} | params) by candidate")
        labels = np.array([s.candidate for s in samples])
        for name in present:
            plt.hist(probs[labels == name].tolist(), bins=8, label=name)
        plt.xlim(0, 1)
        self.refresh()


def _integer_ticks(plt: object, n: int) -> None:
    """Sample counts are whole numbers: at most 8 integer ticks over 1..n."""
    step = max(1, -(-n // 8))
    ticks = list(range(1, n + 1, step)) or [1]
    plt.xticks(ticks, [str(t) for t in ticks])
