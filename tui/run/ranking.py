"""The ranking, one row per candidate with its progress through the budget."""

from __future__ import annotations

from collections.abc import Iterator

from rich.text import Text
from textual.widgets import DataTable

from tui.format import number
from tui.run.state import RunState

COLUMNS = (
    "#", "candidate", "samples", "tuned score", "90% CI", "P(best)", "matched", "raw mean",
)  # fmt: skip


class RankingTable(DataTable):
    """Each candidate's estimated score once tuned, its interval and P(best), with its
    PSM-matched samples and raw mean beside them; the leader in bold, candidates not
    selected greyed.

    Columns get explicit widths, measured here from the cells: an auto-width DataTable
    measures new rows later, on idle, and a frame drawn in between can show the header
    at the old widths above rows at the new ones.
    """

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self._widths: list[int] = []

    def show(self, state: RunState) -> None:
        rows = list(self._rows(state))
        widths = [
            max([len(label), *(cells[i].cell_len for _, cells in rows)])
            for i, label in enumerate(COLUMNS)
        ]
        if widths != self._widths:
            self.clear(columns=True)
            for label, width in zip(COLUMNS, widths, strict=True):
                self.add_column(label, key=label, width=width)
            self._widths = widths
        else:
            self.clear()
        for key, row in rows:
            self.add_row(*row, key=key)

    def _rows(self, state: RunState) -> Iterator[tuple[str, list[Text]]]:
        """``(candidate, cells)`` in ranking order."""
        order = [e.candidate for e in state.ranking] or list(state.candidates)
        estimates = {e.candidate: e for e in state.ranking}
        for position, name in enumerate(order, 1):
            e = estimates.get(name)
            style = _style(state, name)
            cells = [
                str(position),
                name,
                _progress(state, name),
                number(e.score) if e else "–",
                f"{number(e.ci_low)}–{number(e.ci_high)}" if e and e.n else "–",
                number(e.prob_best, 2) if e else "–",
                f"{e.matched}/{e.n}" if e else "–",
                number(e.raw_mean) if e else "–",
            ]
            yield name, [c if isinstance(c, Text) else Text(c, style=style) for c in cells]


def _progress(state: RunState, name: str) -> Text:
    done = len(state.tuning_samples(name))
    target = _target(state, name)
    if not target:
        return Text(str(done))
    return Text.assemble((bar(done / target, 4), "green"), f" {done}/{target}")


def bar(fraction: float, width: int) -> str:
    """A text progress bar of ``width`` cells, e.g. ``"███░░░"`` at 0.5."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def _target(state: RunState, name: str) -> int:
    """Samples this candidate will get in all, when that is known (0 when not): once the
    winner is selected, what the others did not take for it, and what they got for the
    others. Before, stage 1 gives each what the evidence asks for."""
    if state.budget_unit != "samples" or state.winner is None:
        return 0
    if name != state.winner:
        return len(state.tuning_samples(name))
    others = sum(len(state.tuning_samples(c)) for c in state.candidates if c != name)
    return int(state.budget) - others


def _style(state: RunState, name: str) -> str:
    if state.eliminated(name):
        return "dim"
    return "bold" if name == state.leader else ""
