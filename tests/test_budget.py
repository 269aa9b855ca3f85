import pytest

from engine import Budget, ConfigError, Sample
from engine.budget import format_amount
from engine.spec import RunSpec


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        (9, 9, "samples"),
        ("9", 9, "samples"),
        (" 9 samples ", 9, "samples"),
        ("1 sample", 1, "samples"),
        ("20000 tokens", 20000, "tokens"),
        ("20k tokens", 20000, "tokens"),
        ("1.5k tok", 1500, "tokens"),
        ("20000tok", 20000, "tokens"),
        ("20000 Tokens", 20000, "tokens"),
        ("30m", 30.0, "minutes"),
        ("30 min", 30.0, "minutes"),
        ("2.5 minutes", 2.5, "minutes"),
        ("1.5h", 90.0, "minutes"),
        ("2 hours", 120.0, "minutes"),
        ("90s", 1.5, "minutes"),
    ],
)
def test_parse_understands_the_usual_forms(text, amount, unit):
    budget = Budget.parse(text)
    assert (budget.amount, budget.unit) == (amount, unit)
    assert type(budget.amount) is (float if unit == "minutes" else int)


def test_parse_returns_a_budget_unchanged():
    budget = Budget(500, "tokens")
    assert Budget.parse(budget) is budget


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (0, "positive"),
        ("0", "positive"),
        ("-5", "positive"),
        (-5, "positive"),
        ("0m", "positive"),
        (2.5, "whole number"),
        ("2.5", "whole number of samples"),
        ("10.5 tokens", "whole number of tokens"),
        ("10 parsecs", "not understood"),
        ("ten", "not understood"),
        ("5 tokens please", "not understood"),
        (True, "amount"),
        (None, "number or a string"),
        ([9], "number or a string"),
    ],
)
def test_parse_refuses_anything_else_saying_what_is_accepted(value, message):
    with pytest.raises(ConfigError, match=message) as raised:
        Budget.parse(value)
    text = str(raised.value)
    assert "\n" not in text and "20000 tokens" in text and "30m" in text


def test_the_constructor_validates_too():
    with pytest.raises(ConfigError, match="unknown budget unit 'seconds'"):
        Budget(60, "seconds")
    with pytest.raises(ConfigError, match="whole number"):
        Budget(1.5, "samples")
    with pytest.raises(ConfigError, match="positive"):
        Budget(float("inf"), "minutes")


def _sample(stage="sampling", tokens=0, seconds=0.0):
    return Sample(run_id="r", candidate="a", stage=stage, trial=0, params={}, score=0.0,
                  generated_tokens=tokens, seconds=seconds)  # fmt: skip


def test_cost_of_a_sample_in_each_unit():
    sample = _sample(tokens=120, seconds=30.0)
    assert Budget(9).cost(sample) == 1
    assert Budget(1000, "tokens").cost(sample) == 120
    assert Budget(10, "minutes").cost(sample) == 0.5


def test_spent_sums_the_costs_without_the_holdout_sample():
    samples = [_sample(tokens=100, seconds=60), _sample(stage="tuning", tokens=50, seconds=30),
               _sample(stage="holdout", tokens=999, seconds=999)]  # fmt: skip
    assert Budget(9).spent(samples) == 2
    assert Budget(1000, "tokens").spent(samples) == 150
    assert Budget(10, "minutes").spent(samples) == pytest.approx(1.5)


def test_readable_forms():
    assert str(Budget(9)) == "9 samples"
    assert str(Budget(1)) == "1 sample"
    assert str(Budget.parse("20k tokens")) == "20000 tokens"
    assert str(Budget.parse("30m")) == "30 minutes"
    assert str(Budget.parse("90s")) == "1.5 minutes"
    assert Budget.parse("30m").format_used(3.21) == "3.2/30 minutes"
    assert Budget(9).format_used(4) == "4/9 samples"
    assert format_amount(0.25, "minutes") == "0.25"


def test_dict_round_trip_and_runs_stored_before_units():
    for budget in (Budget(9), Budget(20000, "tokens"), Budget(1.5, "minutes")):
        assert Budget.from_dict(budget.to_dict()) == budget

    class OldRun:  # a runs row written before budgets had units
        budget = 12
        seed = 3
        config = {"candidates": []}

    assert RunSpec.of_run(OldRun()).settings.budget == Budget(12, "samples")
    with pytest.raises(ConfigError, match="stored budget"):
        Budget.from_dict({"unit": "tokens"})


def test_a_samples_budget_over_by_a_fraction_says_why():
    why = Budget(9).format_over(9.333333333)
    assert why.startswith("0.3 over: samples stopped early cost the share of problems")
    assert why.endswith("no sample is cut short to fit the budget")
    assert Budget(9).format_over(9.04).startswith("less than 0.1 over:")
    # Not over, over by whole samples (stage 1's minimum, which the run warns of), or
    # a unit no sample is a fraction of: nothing to explain.
    assert Budget(9).format_over(8.5) == Budget(9).format_over(10) == ""
    assert Budget(800, "tokens").format_over(812) == ""
    assert Budget(2.0, "minutes").format_over(2.5) == ""
