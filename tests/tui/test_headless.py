"""The headless view's progress bars, for budgets in samples and in tokens."""

import io
import re

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


LONG = ["a-candidate-whose-name-is-longer-than-a-terminal-line-could-hold-" + c for c in "xy"]


def long_landscape(candidate: str, params: dict) -> float:
    """:func:`landscape` of ``a`` and ``b`` under names too long for 80 columns."""
    return landscape("ab"[LONG.index(candidate)], params)


def test_a_log_file_gets_one_line_per_record(capsys):
    # captured stdout is no terminal, as a log file is not: Rich would give it 80 columns
    tuner = Tuner(objective=long_landscape, candidates=LONG, budget=6, stage1_fraction=0.7)
    tuner.subscribe(HeadlessView())
    tuner.run()
    lines = capsys.readouterr().out.splitlines()
    # a sample's record: stage, whole name, trial, score, params, time and tokens
    record = re.compile(rf"  (sampling|tuning) +({'|'.join(LONG)}) #\d+ +score .*\d tok")
    assert sum(bool(record.fullmatch(line)) for line in lines) == 6, lines
    assert not [line for line in lines if line.startswith(("rep=", "top_p=", "max=", "0."))]
    # the ranking table: one row per candidate, its name whole
    assert sum(name in line and "│" in line for line in lines for name in LONG) == 2, lines
