"""The best decoding parameters found so far: overall (one line) and per candidate."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable, Static

from engine import why_leader
from tui.format import format_metrics, format_params, number
from tui.run.state import RunState


class BestLine(Static):
    """The answer if the run ended now: leader, its parameters and score, and below it
    one line on why the leader leads."""

    def show(self, state: RunState) -> None:
        answer = state.answer()
        if answer is None:
            self.update(Text("best: waiting for the first sample", style="dim"))
            return
        label = "best" if state.done and not state.stopped else "best so far"
        text = Text.assemble(
            (f"{label}: ", "bold"), (answer.best_candidate, "bold green"), "  ",
            format_params(answer.best_params), f"  score {number(answer.best_score)}",
        )  # fmt: skip
        holdout = state.holdout()
        if holdout:
            text.append("  held-out " + format_metrics(holdout))
        text.append("\n" + why_leader(state.ranking, state.winner), style="dim")
        self.update(text)


class BestParamsTable(DataTable):
    """Each candidate's best sample: score, trial and parameters."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        for name in ("candidate", "best", "trial", "parameters"):
            self.add_column(name, key=name)

    def show(self, state: RunState) -> None:
        self.clear()
        for name in state.candidates:
            best = state.best(name)
            if best is None:
                self.add_row(name, "–", "–", "", key=name)
            else:
                self.add_row(
                    name, number(best.score), str(best.trial), format_params(best.params), key=name
                )
