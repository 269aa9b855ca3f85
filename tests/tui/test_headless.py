"""The headless view's progress bars, for budgets in samples and in tokens."""

import io

from rich.console import Console

from engine import SampleRecorded, Tuner
from tests.objectives import landscape, token_landscape
from tui.headless import HeadlessView


def _render(tuner):
    out = io.StringIO()
    view = HeadlessView(Console(file=out, width=160))
    tuner.subscribe(view)
    return view, out


def test_a_tokens_budget_shows_tokens_overall_and_counts_per_candidate():
    tuner = Tuner(objective=token_landscape, candidates=["a", "b"], budget="1500 tokens")
    view, out = _render(tuner)
    during_stage1 = []

    def look(event):  # subscribed after the view, so it sees the bars the view just updated
        if isinstance(event, SampleRecorded) and event.sample.stage == "sampling":
            bar = view.progress.tasks[view._bars[event.sample.candidate]]
            during_stage1.append((bar.total, bar.fields["count"], event.sample.trial))

    tuner.subscribe(look)
    tuner.run()
    # unknown length in stage 1: the bar shows how many samples, not "n/0"
    assert during_stage1 and all(total is None for total, _, _ in during_stage1)
    assert [count for _, count, _ in during_stage1] == [str(t + 1) for _, _, t in during_stage1]
    text = out.getvalue()
    assert "budget 1500 tokens" in text
    overall = view.progress.tasks[view._overall]
    assert overall.total == 1500 and overall.fields["count"].endswith("/1500 tokens")
    # after selection every bar has an end again
    assert all(view.progress.tasks[b].total is not None for b in view._bars.values())


def test_a_samples_budget_keeps_its_bars():
    tuner = Tuner(objective=landscape, candidates=["a", "b"], budget=6, stage1_fraction=0.7)
    view, out = _render(tuner)
    tuner.run()
    assert "budget 6 samples" in out.getvalue()
    overall = view.progress.tasks[view._overall]
    assert (overall.completed, overall.total, overall.fields["count"]) == (6, 6, "6/6 samples")
    # stage 1 explores round-robin while its share (4.2 samples) lasts: 3 each, then the
    # bars end at what each candidate got
    counts = sorted(view.progress.tasks[b].fields["count"] for b in view._bars.values())
    assert counts == ["3/3", "3/3"]
