"""Text formatting shared by the headless view and the app."""

import math

from engine import Budget
from tui.format import budget_over, duration, format_metrics, format_params, number


def test_metrics_keep_their_order_and_show_counts_without_decimals():
    metrics = {"combined": 0.1214, "valid": 1.0, "mutants": 28.0, "killed": 0.0}
    assert format_metrics(metrics) == "combined 0.121, valid 1.000, mutants 28, killed 0.000"
    assert format_metrics(metrics, limit=2) == "combined 0.121, valid 1.000"
    assert format_metrics({"x": math.nan}) == "x –"


def test_durations_numbers_and_params():
    assert [duration(s) for s in (None, 42, 185, 7620)] == ["?", "42s", "3m05s", "2h07m"]
    assert number(0.28151) == "0.282" and number(math.nan) == "–"
    params = {"temperature": 0.7, "top_p": 0.95, "top_k": 40, "max_new_tokens": 256}
    assert format_params(params) == "T=0.70 top_p=0.95 top_k=40 max=256"
    assert format_params({"temperature": 0.0}) == "greedy"


def test_a_samples_budget_over_by_a_fraction_says_why():
    why = budget_over(Budget(9), 9.333333333)
    assert why.startswith("0.3 over: samples stopped early cost the share of problems")
    assert why.endswith("no sample is cut short to fit the budget")
    assert budget_over(Budget(9), 9.04).startswith("less than 0.1 over:")
    # Not over, over by whole samples (stage 1's minimum, which the run warns of), or
    # a unit no sample is a fraction of: nothing to explain.
    assert budget_over(Budget(9), 8.5) == budget_over(Budget(9), 10) == ""
    assert budget_over(Budget(800, "tokens"), 812) == ""
    assert budget_over(Budget(2.0, "minutes"), 2.5) == ""
