"""The headless front end: Rich progress bars and tables fed by engine events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.events import (
    Event,
    Message,
    RankingUpdated,
    RunFailed,
    RunFinished,
    RunStarted,
    SampleRecorded,
    StageChanged,
)
from engine.psm import CandidateEstimate
from engine.store import Sample


def format_params(params: Mapping[str, Any]) -> str:
    """``T=0.70 top_p=0.95 top_k=40 rep=1.05 max=256`` (``greedy`` for T=0)."""
    t = float(params.get("temperature", 0.0))
    parts = ["greedy"] if t == 0 else [f"T={t:.2f}"]
    if "top_p" in params:
        parts.append(f"top_p={float(params['top_p']):.2f}")
    if "top_k" in params:
        parts.append(f"top_k={int(params['top_k'])}")
    if "repetition_penalty" in params:
        parts.append(f"rep={float(params['repetition_penalty']):.2f}")
    if "max_new_tokens" in params:
        parts.append(f"max={int(params['max_new_tokens'])}")
    return " ".join(parts)


def ranking_table(ranking: Sequence[CandidateEstimate], title: str = "Ranking") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("candidate")
    table.add_column("score", justify="right")
    table.add_column("90% CI", justify="right")
    table.add_column("adj. mean", justify="right")
    table.add_column("raw mean", justify="right")
    table.add_column("matched/n", justify="right")
    for i, e in enumerate(ranking, 1):
        table.add_row(
            str(i), e.candidate, f"{e.score:.3f}", f"[{e.ci_low:.3f}, {e.ci_high:.3f}]",
            f"{e.adjusted_mean:.3f}", f"{e.raw_mean:.3f}", f"{e.matched}/{e.n}",
            style="bold" if i == 1 else None,
        )  # fmt: skip
    return table


class HeadlessView:
    """Renders a run on a console; subscribe it to a :class:`engine.Tuner`."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
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
        resumed = f", resuming with {e.resumed_samples} samples" if e.resumed_samples else ""
        self.console.print(f"[bold]run {e.run_id}[/]: {len(e.candidates)} candidates, "
                           f"budget {e.budget} samples{resumed}")  # fmt: skip
        self._overall = self.progress.add_task(
            "budget", total=e.budget, completed=e.resumed_samples, note=""
        )
        for name in e.candidates:
            self._bars[name] = self.progress.add_task(
                f"  {name}", total=e.stage1_per_candidate, note=""
            )

    def _on_StageChanged(self, e: StageChanged) -> None:
        self.console.print(f"[cyan]stage: {e.stage}[/] {e.detail}")

    def _on_SampleRecorded(self, e: SampleRecorded) -> None:
        s = e.sample
        self.console.print(
            f"  {s.stage:<8} {s.candidate:<20} #{s.trial:<3} score {s.score:.3f}  "
            f"{format_params(s.params)}  [dim]{s.seconds:.1f}s {s.generated_tokens} tok"
            f"{f' {s.cached} cached' if s.cached else ''}[/]"
        )
        if s.stage == "holdout":
            return
        self.progress.update(self._overall, completed=e.budget_used)
        bar = self._bars[s.candidate]
        done = s.trial + 1
        total = max(self.progress.tasks[bar].total or 0, done)
        self.progress.update(bar, completed=done, total=total, note=f"best {self._best(s)}")

    def _best(self, s: Sample) -> str:
        best = self._best_scores
        best[s.candidate] = max(best.get(s.candidate, float("-inf")), s.score)
        return f"{best[s.candidate]:.3f}"

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
            self.console.print(ranking_table(r.ranking))
        verb = "stopped early; best so far" if e.stopped else "best"
        self.console.print(
            f"[bold green]{verb}: {r.best_candidate}[/] with "
            f"{format_params(r.best_params)} (tuning score {r.best_score:.3f})"
        )
        if r.holdout:
            held = ", ".join(f"{k} {v:.3f}" for k, v in r.holdout.items())
            self.console.print(f"held-out: {held}")
        if e.stopped:
            self.console.print(f"resume with: codellmtuner resume {r.run_id}")
        else:
            self.console.print(
                f"export with: codellmtuner export {r.run_id} --format generation-config -o DIR"
            )

    def _on_RunFailed(self, e: RunFailed) -> None:
        self.progress.stop()
