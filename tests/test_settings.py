"""Run options are declared once (engine/settings.py): the command line, the app's setup
form and the Tuner offer the same options with the same defaults and checks."""

from __future__ import annotations

import argparse

import pytest
from textual.widgets import Collapsible, Input, Select

from engine import DEFAULT_CANDIDATES, DEFAULT_TASK, OPTIONS, Budget, RunSettings, Tuner
from engine.errors import ConfigError
from tests.apphelpers import run_app
from tests.objectives import landscape
from tui.app import CodeLLMTunerApp
from tui.commands import build_parser
from tui.commands.run import option_values
from tui.setup.screen import SetupScreen

#: What a run is about, not how it runs: flags of `run` outside RunSettings.
ABOUT = {"task", "candidate", "space", "param", "run_id", "store"}
#: How the command shows a run, not an option of the run.
DISPLAY = {"help", "headless"}


def _run_actions() -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action for action in sub.choices["run"]._actions}


def test_every_flag_of_run_is_a_run_option_or_says_what_the_run_is_about():
    actions = _run_actions()
    assert set(actions) == {o.name for o in OPTIONS} | ABOUT | DISPLAY
    for option in OPTIONS:
        assert actions[option.name].default == option.default, option.name


#: Flags named after what the user counts rather than after the field.
RENAMED = {"tune_size": "--problems", "holdout_size": "--holdout-problems"}


def test_a_flag_is_its_options_name_with_dashes_unless_renamed():
    # Each flag is written out where its option is declared, so that grep finds it; this
    # keeps them to the rule they were once derived by.
    for option in OPTIONS:
        assert option.flag == RENAMED.get(option.name, "--" + option.name.replace("_", "-"))
    assert len({o.flag for o in OPTIONS}) == len(OPTIONS)


def test_the_tuner_stores_every_option_with_the_same_default():
    config = Tuner(objective=landscape, candidates=["a", "b"]).spec.to_dict()
    defaults = RunSettings().to_dict()
    for option in OPTIONS:
        assert config[option.name] == defaults[option.name], option.name
    assert defaults["budget"] == Budget(9).to_dict() and defaults["tune_size"] == 6


def test_the_form_offers_every_option_with_the_same_default(tmp_path):
    app = CodeLLMTunerApp(str(tmp_path / "samples.db"))

    async def test(pilot):
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        more = screen.query_one("#more", Collapsible)
        for option in OPTIONS:
            field = screen.query_one("#" + option.flag.removeprefix("--"))
            assert isinstance(field, Select if option.choices else Input), option.name
            assert str(field.value) == option.text(option.default), option.name
            assert (field in more.query("*")) == (not option.main), option.name
        assert screen.query_one("#task", Select).value == DEFAULT_TASK
        assert screen.query_one("#run-id", Input).value == ""
        # the form's settings are the defaults, and its candidates the command's
        tuner = screen.build_tuner()
        assert tuner.settings == RunSettings()
        spelled = {(c.model, c.style) for c in tuner.candidates}
        assert spelled == {(c.model, c.style) for c in Tuner(
            task=DEFAULT_TASK, candidates=list(DEFAULT_CANDIDATES)).candidates}  # fmt: skip

    run_app(app, test, size=(120, 40))


def test_a_form_field_reads_and_checks_like_its_flag(tmp_path):
    app = CodeLLMTunerApp(str(tmp_path / "samples.db"))

    async def test(pilot):
        screen = app.screen
        screen.query_one("#eliminate", Input).value = "0.7"
        with pytest.raises(ConfigError, match=r"elimination level must be in \[0, 0.5\)"):
            screen.build_tuner()
        screen.query_one("#eliminate", Input).value = "0"
        screen.query_one("#holdout-problems", Input).value = "3"
        screen.query_one("#run-id", Input).value = "mine"
        tuner = screen.build_tuner()
        assert (tuner.settings.eliminate, tuner.settings.holdout_size) == (0.0, 3)
        assert tuner.run_id == "mine"

    run_app(app, test, size=(120, 40))
    assert option_values(build_parser().parse_args(["run", "--eliminate", "0"]))["eliminate"] == 0
    with pytest.raises(ConfigError, match=r"elimination level must be in \[0, 0.5\)"):
        option_values(build_parser().parse_args(["run", "--eliminate", "0.7"]))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("tune_size", "x", "problems: 'x' is not a whole number"),
        ("tune_size", "-1", "problems must be a whole number >= 0"),
        ("stage1_fraction", "1.5", r"stage-1 fraction must be in \(0, 1\]"),
        ("budget", "ten", "not understood"),
        ("sampler", "cmaes", "unknown sampler 'cmaes'"),
        ("psm", "maybe", "PSM: 'maybe' is not on or off"),
        ("seed", str(2**63), r"seed must be a whole number between 0 and 2\*\*63-1"),
        ("switch_block", "many", "switch block: 'many' is not a whole number or auto"),
        ("switch_block", "0", "switch block must be a whole number >= 1"),
    ],
)
def test_an_option_read_from_text_names_what_is_wrong(name, text, message):
    option = next(o for o in OPTIONS if o.name == name)
    with pytest.raises(ConfigError, match=message):
        option.read(text)


def test_a_switch_block_is_auto_or_a_whole_number():
    block = next(o for o in OPTIONS if o.name == "switch_block")
    assert (block.default, block.read("AUTO"), block.read("4")) == ("auto", "auto", 4)


def test_an_empty_optional_field_means_the_tasks_own_choice():
    train = next(o for o in OPTIONS if o.name == "train_size")
    assert train.read("  ") is None and train.read("12") == 12 and train.text(None) == ""


def test_settings_round_trip_and_old_runs_resume_as_they_ran():
    settings = RunSettings(budget="20000 tokens", seed=4, tune_size=0, eliminate=0.1)
    assert RunSettings.from_dict(settings.to_dict()) == settings
    # A run stored before elimination existed, with None for "the whole split".
    old = RunSettings.from_dict({"criterion": "mean", "tune_size": None, "unknown": 1})
    assert (old.eliminate, old.tune_size, old.psm, old.switch_block) == (0.0, 0, True, 1)
    assert RunSettings().psm is False  # the default since the ranking carries the unexplored
    with pytest.raises(ConfigError, match="unknown run option 'budgit'"):
        RunSettings.of(budgit=3)
