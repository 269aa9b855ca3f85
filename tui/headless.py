"""The headless front end: Rich progress bars and tables fed by engine events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine import (
    HOLDOUT,
    SELECTION,
    TUNING,
    Budget,
    CandidateEstimate,
    Event,
    Message,
    RankingUpdated,
    RunFailed,
    RunFinished,
    RunStarted,
    Sample,
    SampleRecorded,
    StageChanged,
    why_leader,
)
from tui.format import format_metrics, format_params, number, output_console

if TYPE_CHECKING:
    from engine import Balance


def ranking_table(
    ranking: Sequence[CandidateEstimate], title: str = "Ranking", winner: str | None = None
) -> Table:
    """Each candidate's estimated score once tuned, its interval and P(best), beside the
    PSM-matched mean and the raw mean; one line under it on why the leader (or the
    selected ``winner``) leads."""
    table = Table(title=title, title_justify="left", caption=why_leader(ranking, winner),
                  caption_justify="left")  # fmt: skip
    for column in ("#", "candidate", "tuned score", "90% CI", "P(best)", "adj. mean",
                   "raw mean", "matched/n"):  # fmt: skip
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for i, e in enumerate(ranking, 1):
        table.add_row(
            str(i), e.candidate, number(e.score), f"[{number(e.ci_low)}, {number(e.ci_high)}]",
            number(e.prob_best, 2), number(e.adjusted_mean), number(e.raw_mean),
            f"{e.matched}/{e.n}", style="bold" if i == 1 else None,
        )  # fmt: skip
    return table


def balance_table(balance: Balance, title: str = "covariate balance") -> Table:
    """Per decoding parameter, the largest |SMD| between candidates before and after
    matching (:func:`engine.balance`); "-" after matching when there is no common support."""
    table = Table(title=title, title_justify="left")
    table.add_column("parameter")
    table.add_column("SMD before", justify="right")
    table.add_column("SMD after", justify="right")
    for name, before, after in zip(balance.covariates, balance.before, balance.after, strict=True):
        shown = f"{after:.2f}" if balance.has_support else "-"
        table.add_row(name, f"{before:.2f}", shown)
    return table


def _count(done: int, total: float | None) -> str:
    """``3/5`` for a bar of known length, ``3`` where the length is not known."""
    return f"{done}" if total is None else f"{done}/{int(total)}"


class HeadlessView:
    """Renders a run on a console (default: :func:`tui.format.output_console`, one line
    per record where stdout is not a terminal); subscribe it to a :class:`engine.Tuner`."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or output_console()
        self.progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._overall: Any = None
        self._bars: dict[str, Any] = {}
        self._best_scores: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler:
            handler(event)

    def _on_RunStarted(self, e: RunStarted) -> None:
        self.progress.start()
        budget = Budget(e.budget, e.budget_unit)
        used = e.budget_used if e.budget_unit != "samples" else e.resumed_samples
        resumed = ""
        if e.resumed_samples:
            resumed = f", resuming with {e.resumed_samples} samples"
            if budget.unit != "samples":
                resumed += f" ({budget.format_used(used)})"
        self.console.print(f"[bold]run {e.run_id}[/]: {len(e.candidates)} candidates, "
                           f"budget {budget}{resumed}")  # fmt: skip
        self._overall = self.progress.add_task(
            "budget", total=budget.amount, completed=used, note="",
            count=budget.format_used(used),
        )  # fmt: skip
        # Per-candidate bars show the count alone: stage 1 gives each candidate what the
        # evidence asks for, so no total is known in advance.
        for name in e.candidates:
            self._bars[name] = self.progress.add_task(
                f"  {name}", total=None, note="", count=_count(0, None)
            )

    def _on_StageChanged(self, e: StageChanged) -> None:
        self.console.print(f"[cyan]stage: {e.stage}[/] {e.detail}")
        if e.stage in (SELECTION, TUNING):  # stage 1 is over: bars of unknown length end
            for bar in self._bars.values():
                task = self.progress.tasks[bar]
                if task.total is None:
                    done = int(task.completed)
                    self.progress.update(bar, total=done, count=_count(done, done))

    def _on_SampleRecorded(self, e: SampleRecorded) -> None:
        s = e.sample
        stopped = f" [yellow]stopped at {len(s.problem_scores)}[/]" if s.partial else ""
        self.console.print(
            f"  {s.stage:<8} {s.candidate:<20} #{s.trial:<3} score {s.score:.3f}{stopped}  "
            f"{format_params(s.params)}  [dim]{s.seconds:.1f}s {s.generated_tokens} tok"
            f"{f' {s.cached} cached' if s.cached else ''}[/]"
        )
        if s.stage == HOLDOUT:
            return
        budget = Budget(e.budget, e.budget_unit)
        self.progress.update(
            self._overall, completed=min(e.budget_used, budget.amount),
            count=budget.format_used(e.budget_used),
        )  # fmt: skip
        bar = self._bars[s.candidate]
        done = s.trial + 1
        total = self.progress.tasks[bar].total
        if total is not None:
            total = max(total, done)
        self.progress.update(
            bar, completed=done, total=total, count=_count(done, total),
            note=f"best {self._best(s)}",
        )  # fmt: skip

    def _best(self, s: Sample) -> str:
        best = self._best_scores
        if not s.partial:  # a mean over a few problems is no score to compare
            best[s.candidate] = max(best.get(s.candidate, float("-inf")), s.score)
        return f"{best[s.candidate]:.3f}" if s.candidate in best else "-"

    def _on_RankingUpdated(self, e: RankingUpdated) -> None:
        if e.ranking:
            leader = e.ranking[0]
            self.progress.update(self._overall, note=f"leader {leader.candidate}")

    def _on_Message(self, e: Message) -> None:
        colour = "yellow" if e.level == "warning" else "white"
        self.console.print(f"[{colour}]{e.level}: {e.text}[/]")

    def _on_RunFinished(self, e: RunFinished) -> None:
        self.progress.stop()
        r = e.result
        if r.ranking:
            self.console.print(ranking_table(r.ranking, winner=r.best_candidate))
        verb = "stopped early; best so far" if e.stopped else "best"
        self.console.print(
            f"[bold green]{verb}: {r.best_candidate}[/] with "
            f"{format_params(r.best_params)} (tuning score {r.best_score:.3f})"
        )
        if r.holdout:
            held = format_metrics(r.holdout)
            self.console.print(f"held-out: {held}")
        if e.stopped:
            self.console.print(f"resume with: codellmtuner resume {r.run_id}")
        else:
            self.console.print(
                f"export with: codellmtuner export {r.run_id} --format generation-config -o DIR"
            )

    def _on_RunFailed(self, e: RunFailed) -> None:
        self.progress.stop()
