"""The plugin author's guide and the README keep up with the code they describe."""

from __future__ import annotations

import argparse
import inspect
import json
import re
from importlib import resources
from pathlib import Path

import pytest

import plugin_host.testing.pytest_plugin
from plugin_host import _exceptions, hookspecs
from plugin_host.cli import _parser
from plugin_host.testing import InputContract

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "writing-an-input.md"
README = REPO / "README.md"


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def hook_names() -> list[str]:
    return [name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(obj, f"{hookspecs.PROJECT}_spec")]


def fixture_names() -> list[str]:
    return [name for name, obj in vars(plugin_host.testing.pytest_plugin).items()
            if hasattr(obj, "_fixture_function_marker") or hasattr(obj, "_pytestfixturefunction")]


def subcommands() -> list[str]:
    actions = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return [name for action in actions for name in action.choices]


def test_the_lists_checked_here_are_the_real_ones() -> None:
    assert hook_names() == ["plugin_host_register_inputs", "plugin_host_register_outputs"]
    assert {"run_input", "register_plugin", "plugin_host_vcr_config"} <= set(fixture_names())
    assert {"inputs", "run", "new-input"} <= set(subcommands())


@pytest.mark.parametrize("hook", hook_names())
def test_the_guide_names_every_hook(hook: str) -> None:
    assert f"`{hook}(register)`" in guide()


def test_the_guide_names_every_manifest_field() -> None:
    text = resources.files("plugin_host.schemas").joinpath("manifest.meta.schema.json")
    fields = json.loads(text.read_text(encoding="utf-8"))["properties"]
    missing = [f for f in fields if f"| `{f}` |" not in guide()]
    assert missing == [], f"the manifest table in {GUIDE.name} lacks {missing}"


@pytest.mark.parametrize("fixture", fixture_names())
def test_the_guide_names_every_fixture(fixture: str) -> None:
    assert f"- `{fixture}`:" in guide()


def test_the_guide_names_every_contract_test() -> None:
    tests = [n for n in dir(InputContract) if n.startswith("test_")]
    missing = [t for t in tests if f"| `{t}` |" not in guide()]
    assert missing == [], f"the contract table in {GUIDE.name} lacks {missing}"


def test_the_guide_names_every_error_and_exit_code() -> None:
    text = guide()
    for name in _exceptions.__all__:
        if name != "EXIT_CODES":
            assert f"`{name}`" in text, name
    for code in _exceptions.EXIT_CODES:
        if code:
            assert f"\n| {code} | " in text, code


@pytest.mark.parametrize("command", subcommands())
def test_the_readme_names_every_command(command: str) -> None:
    assert f"plugin-host {command}" in README.read_text(encoding="utf-8")


def commands() -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: parser for action in actions for name, parser in action.choices.items()}


def arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """A parser's arguments and options, without ``--help`` and the command list."""
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def written(action: argparse.Action) -> list[str]:
    """How the README writes an argument: ``--flag``, ``--option METAVAR`` (its choices
    joined by ``|``), ``NAME``, or each choice of a positional with choices."""
    if not action.option_strings:
        return list(action.choices) if action.choices else [str(action.metavar)]
    option = max(action.option_strings, key=len)
    if action.nargs == 0:
        return [option]
    if action.choices:
        return [f"{option} {'|'.join(action.choices)}"]
    return [f"{option} {action.metavar}"]


def readme_commands() -> dict[str, str]:
    """Each command's usage as the README's command table writes it, rows of one command
    joined (``state show PIPELINE``, ``state reset PIPELINE``)."""
    usages: dict[str, str] = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `plugin-host "):
            usage = line.split("`")[1]
            name = usage.split()[1]
            usages[name] = (usages.get(name, "") + " " + usage).strip()
    return usages


def global_options_paragraph() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("Global options", 1)[1].split("\n\n", 1)[0]


def test_the_readme_command_table_has_one_usage_per_command() -> None:
    assert set(readme_commands()) == set(commands())


@pytest.mark.parametrize("command", subcommands())
def test_the_readme_command_table_lists_every_argument_and_option(command: str) -> None:
    usage = readme_commands()[command]
    wanted = [w for a in arguments(commands()[command]) for w in written(a)]
    missing = [w for w in wanted if w not in usage]
    assert missing == [], f"the README's row for {command} lacks {missing}"
    # and names nothing the command does not take
    names = {part for w in wanted for part in re.findall(r"--[a-z-]+|\b[A-Z][A-Z_]*\b", w)}
    unknown = set(re.findall(r"--[a-z-]+|\b[A-Z][A-Z_]*\b", usage)) - names
    assert unknown == set(), f"the README's row for {command} names {unknown}"


def test_the_readme_lists_every_global_option() -> None:
    paragraph = global_options_paragraph()
    wanted = [w for a in arguments(_parser()) for w in written(a)]
    assert [w for w in wanted if f"`{w}`" not in paragraph] == []
    options = {o for a in arguments(_parser()) for o in a.option_strings}
    assert set(re.findall(r"`(--[a-z-]+)", paragraph)) == options


@pytest.mark.parametrize("command", ["", *subcommands()])
def test_every_argument_and_option_has_help(command: str) -> None:
    parser = commands()[command] if command else _parser()
    lacking = [a.dest for a in parser._actions if not (a.help or "").strip()]
    assert lacking == [], f"plugin-host {command} --help: no help for {lacking}"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert all(c.help for c in action._choices_actions), "a command without help"
