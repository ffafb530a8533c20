"""Every numeric flag of every command refuses values it cannot use with one line that names the flag and its
valid range, exit code 2, before anything runs or writes (property-based: hypothesis draws the values)."""

import argparse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from largo.cli import build_parser, main
from largo.config import AutoencoderRunConfig, RunConfig, field_sections


def _numeric_flags(parser=None, command=()):
    """(command words, flag, parse function) for every checked int/float flag of every command."""
    parser = parser or build_parser()
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _numeric_flags(sub, (*command, name))
        elif action.option_strings and getattr(action.type, "__name__", "") in ("int", "float") \
                and not getattr(action, "config_field", False):
            out.append((command, action.option_strings[-1], action.type))
    return out


FLAGS = _numeric_flags()
BAD_TEXT = st.sampled_from(["nan", "inf", "-inf", "", "abc", "1e400", "0x10"])
NUMBERS = st.one_of(st.integers(min_value=-10**20, max_value=10**20).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr))


def _refused(parse, text: str) -> bool:
    try:
        parse(text)
    except argparse.ArgumentTypeError:
        return True
    return False


def test_every_numeric_flag_has_a_range():
    assert len(FLAGS) > 40  # the parser builds, so every flag found its range (cli/ranges.py raises otherwise)


@pytest.mark.parametrize("command,flag,parse", FLAGS, ids=[" ".join(c) + " " + f for c, f, _ in FLAGS])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(BAD_TEXT, NUMBERS))
def test_bad_numeric_values_are_one_line_errors(command, flag, parse, text, capsys):
    if not _refused(parse, text):
        return  # a value in range: nothing to refuse
    code = main([*command, f"{flag}={text}"])  # the = form, so "-1" is a value, not an option
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("largo: error: argument") and flag in err[0] and "must be" in err[0], err


CONFIG_FLAGS = sorted({name for cls in (RunConfig, AutoencoderRunConfig) for name, (section, typ) in
                       field_sections(cls).items() if typ in (int, float)})


@pytest.mark.parametrize("field", CONFIG_FLAGS)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.sampled_from(["nan", "inf", "-inf", "", "abc"]))
def test_bad_config_values_are_one_line_errors_and_write_nothing(field, text, tmp_path_factory, capsys):
    run = tmp_path_factory.mktemp("run") / "r"
    command = ["autoencoder", "train"] if field not in field_sections(RunConfig) else ["train"]
    try:
        code = main([*command, "--run-dir", str(run), f"--{field.replace('_', '-')}={text}"])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("largo: error:"), err
    assert field.replace("_", "-") in err[0] or field in err[0], err
    assert not run.exists()
