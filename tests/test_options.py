"""The option table (gradcheck_lab.options): every door takes each option it should, by the
name the table makes for it, and no door runs with a default another does not have."""

from __future__ import annotations

import dataclasses

import pytest

import gradcheck_lab
from gradcheck_lab.doors.cli import build_parser, parse_arguments
from gradcheck_lab.doors.pytest_plugin import run_settings
from gradcheck_lab.options import API, CLI, OPTIONS, PYTEST, RUN_FILE, options_of, settings_from
from tests.conftest import CASES

# One value per option, other than its default, written as a user writes it at every door.
GIVEN = {"symbolic": "exact", "fd": "projections", "threads": "2", "sensitivity": "true",
         "case_timeout": "7.5", "case_memory": "512M", "timings": "true",
         "timing_threads": "3", "timing_rounds": "9", "max_input_elements": "1000",
         "max_case_elements": "2000", "max_program_nodes": "300", "max_file_bytes": "4096",
         "max_cases_per_file": "4", "max_cases_per_run": "5", "max_yaml_nodes": "600",
         "max_expression_length": "700", "max_expression_depth": "8"}


def test_every_option_has_a_value_to_give_and_a_door() -> None:
    assert set(GIVEN) == {option.name for option in OPTIONS}
    for option in OPTIONS:
        assert option.doors, option.name
        assert option.parse(GIVEN[option.name]) != option.default, option.name


def test_the_command_line_has_a_flag_for_each_of_its_options_and_no_other() -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    flags = {flag for action in run._actions for flag in action.option_strings}
    for option in OPTIONS:
        assert (option.cli_flag in flags) == (CLI in option.doors), option.name
    defaults = parse_arguments(["run", "cases"])
    for option in options_of(CLI):
        assert getattr(defaults, option.name) == option.default, option.name


def command_line_settings() -> object:
    argv = ["run", "cases"]
    for option in options_of(CLI):
        argv += [option.cli_flag] if option.switch else [option.cli_flag, GIVEN[option.name]]
    args = parse_arguments(argv)
    return settings_from({option.name: getattr(args, option.name)
                          for option in options_of(CLI)}, CLI)


def test_pytest_has_a_flag_and_an_ini_key_for_each_of_its_options(
        pytestconfig: pytest.Config) -> None:
    for option in OPTIONS:
        if PYTEST in option.doors:
            assert pytestconfig.getoption(option.ini_key) is None  # known, and not given
            pytestconfig.getini(option.ini_key)  # raises ValueError for an unknown key
        else:
            with pytest.raises(ValueError):
                pytestconfig.getoption(option.ini_key)
    # This session gives none: its settings are the table's defaults, as the command line's.
    assert run_settings(pytestconfig) == settings_from({}, PYTEST)


SHOW_SETTINGS = """
from gradcheck_lab.doors.pytest_plugin import run_settings


def test_settings(pytestconfig):
    print("SETTINGS", repr(run_settings(pytestconfig)))
"""


@pytest.mark.parametrize("how", ["flags", "ini"])
def test_pytest_flags_and_ini_keys_give_what_the_command_line_gives(
        pytester: pytest.Pytester, how: str) -> None:
    pytester.makepyfile(test_show=SHOW_SETTINGS)
    shared = [option for option in options_of(PYTEST) if CLI in option.doors]
    if how == "flags":
        args = []
        for option in shared:
            args += ([option.pytest_flag] if option.switch
                     else [f"{option.pytest_flag}={GIVEN[option.name]}"])
    else:
        args = []
        pytester.makeini("[pytest]\n" + "".join(f"{option.ini_key} = {GIVEN[option.name]}\n"
                                                for option in shared))
    result = pytester.runpytest("-s", "-p", "no:cacheprovider", "test_show.py", *args)
    result.assert_outcomes(passed=1)
    (shown,) = [line.split("SETTINGS ", 1)[1] for line in result.outlines if "SETTINGS " in line]
    # The command line's timings have no pytest twin (pytest times with --benchmark).
    expected = command_line_settings()
    assert shown == repr(dataclasses.replace(expected, timings=None))


def test_the_api_takes_its_options_as_keywords_and_no_other() -> None:
    for option in OPTIONS:
        value = option.parse(GIVEN[option.name])
        if API in option.doors:
            (result,) = gradcheck_lab.check("sum(x * x)", {"x": [1.0, 2.0]},
                                            **{option.name: value})
            assert result.status == "pass", (option.name, result.message)
        else:
            with pytest.raises(TypeError, match=f"unexpected keyword argument '{option.name}'"):
                gradcheck_lab.check("sum(x * x)", {"x": [1.0, 2.0]}, **{option.name: value})
        if RUN_FILE not in option.doors:
            with pytest.raises(TypeError, match=r"run_file\(\) got an unexpected keyword"):
                gradcheck_lab.run_file(CASES / "r144.yaml", **{option.name: value})


def test_every_door_has_the_same_defaults() -> None:
    cli = settings_from({}, CLI)
    assert settings_from({}, PYTEST) == cli
    assert settings_from({}, RUN_FILE) == cli
    # check() runs a callable in the caller's process: no budgets, all else the same.
    api = settings_from({}, API)
    assert (api.case_timeout, api.case_memory) == (None, None)
    assert api.threads == cli.threads and api.symbolic == cli.symbolic and api.fd == cli.fd
    assert api.limits == cli.limits and api.sensitivity == cli.sensitivity
