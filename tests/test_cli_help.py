"""The CLI-wide rules of kexue.cli, checked on every sub-command's parser (plugins included)."""

import argparse

import pytest

from kexue.cli import build_parser, main

# One name per concept: the name kexue uses, and the synonyms it must not.
SYNONYMS = {
    "--max-steps": ("--steps", "--num-steps", "--train-steps"),
    "--model": ("--backbone", "--model-path", "--checkpoint", "--model-dir"),
    "--data": ("--data-dir", "--data-root", "--root"),
    "--out": ("--output", "--output-dir", "--out-dir"),
    "--seed": ("--random-seed", "--rng-seed"),
}
# Options in files owned by other engineers that still break a rule, as (command, option, rule). The
# lead removes each once its owner's fix is merged; a listed option that passes fails the test, so
# the list cannot go stale.
PENDING: set[tuple[str, str, str]] = set()  # (sub-command, option, rule) awaiting a fix in another file


def _parsers(parser: argparse.ArgumentParser, path: str = ""):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}".strip())


def _options(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield action


def _long_name(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


def _check(path: str, option: str, rule: str, broken: bool, why: str) -> None:
    if (path, option, rule) in PENDING:
        if not broken:
            pytest.fail(f"`kexue {path} {option}` follows the {rule} rule now: remove it from PENDING")
        return
    assert not broken, f"`kexue {path} {option}`: {why}"


PARSERS = list(_parsers(build_parser()))


def test_the_walk_reaches_every_plugin():
    paths = {path for path, _ in PARSERS}
    assert {"info", "data list", "data fetch", "reproduce", "bench", "pretrain", "kbqa ask", "univae train",
            "zeroshot classify"} <= paths


@pytest.mark.parametrize("path, parser", PARSERS, ids=[path or "kexue" for path, _ in PARSERS])
def test_every_option_has_help_and_shows_its_default(path, parser):
    parser.format_help()  # every help string formats
    formatter = parser._get_formatter()
    for action in _options(parser):
        option = _long_name(action)
        _check(path, option, "help", not (action.help or "").strip(), "has no help text")
        if action.default not in (None, False, argparse.SUPPRESS):
            _check(path, option, "default", "default" not in formatter._expand_help(action), "--help does not show its default")


@pytest.mark.parametrize("path, parser", PARSERS, ids=[path or "kexue" for path, _ in PARSERS])
def test_one_name_per_concept(path, parser):
    preferred = {synonym: name for name, synonyms in SYNONYMS.items() for synonym in synonyms}
    for action in _options(parser):
        for option in action.option_strings:
            _check(path, option, "name", option in preferred, f"is called {preferred.get(option)} everywhere else")


@pytest.mark.parametrize("path, parser", PARSERS, ids=[path or "kexue" for path, _ in PARSERS])
def test_options_with_several_values_cannot_swallow_positionals(path, parser):
    positionals = [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    if not positionals:
        return
    for action in _options(parser):
        greedy = action.nargs in ("+", "*", argparse.REMAINDER) or (isinstance(action.nargs, int) and action.nargs > 1)
        _check(path, _long_name(action), "nargs", greedy, f"takes several values beside the positional "
                                                 f"{positionals[0].metavar or positionals[0].dest}; use comma_separated")


def test_missing_explicit_data_exits_non_zero(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "jl", "--quick", "--out", str(tmp_path), "--data", str(tmp_path / "nonexistent")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--data" in err and "nonexistent: no such directory" in err


def test_missing_kexue_data_exits_non_zero(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path / "gone"))
    assert main(["reproduce", "jl", "--quick", "--out", str(tmp_path)]) == 1
    assert "from KEXUE_DATA" in capsys.readouterr().err
    assert not (tmp_path / "jl").exists()
