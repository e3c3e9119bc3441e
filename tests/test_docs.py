"""The plugin author's guide and the README keep up with the code they describe."""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
from importlib import resources
from pathlib import Path

import pytest

import plugin_host.testing.pytest_plugin
from plugin_host import _exceptions, hookspecs
from plugin_host.cli import COMMAND_EXIT_CODES, _parser
from plugin_host.testing import InputContract

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "writing-an-input.md"
README = REPO / "README.md"


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def table(path: Path, header: str) -> list[list[str]]:
    """The body rows of the Markdown table in ``path`` whose header row is ``header``
    (cells stripped); a row with another number of cells than the header fails."""
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == header]
    assert len(starts) == 1, f"{path.name} has {len(starts)} tables headed {header!r}"
    width = len(cells(header))
    rows = []
    for line in lines[starts[0] + 2:]:  # past the header and its |---| line
        if not line.startswith("|"):
            break
        row = cells(line)
        assert len(row) == width, f"{path.name}: a row of {len(row)} cells: {line}"
        rows.append(row)
    assert rows, f"the table {header!r} in {path.name} is empty"
    return rows


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def plain(text: str) -> str:
    """Markdown text as words: no backticks, one space between words."""
    return " ".join(text.replace("`", "").split())


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
    assert hook_names() == ["plugin_host_register_inputs", "plugin_host_register_outputs",
                            "plugin_host_register_transforms"]
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


def test_the_guides_contract_table_is_the_suite() -> None:
    tests = {n for n in dir(InputContract) if n.startswith("test_")}
    documented = [row[0] for row in table(GUIDE, "| test | checks |")]
    assert all(re.fullmatch(r"`test_\w+`", name) for name in documented), documented
    documented_names = [name.strip("`") for name in documented]
    assert len(documented_names) == len(set(documented_names)), "a test listed twice"
    assert set(documented_names) - tests == set(), "the guide lists tests the suite lacks"
    assert tests - set(documented_names) == set(), "the guide lacks tests of the suite"


def errors() -> dict[str, int]:
    """Every error class plugin-host exports, with its exit code."""
    classes = [getattr(_exceptions, name) for name in _exceptions.__all__]
    return {cls.__name__: cls.exit_code for cls in classes
            if isinstance(cls, type) and issubclass(cls, _exceptions.PluginHostError)}


def test_the_guides_error_table_gives_each_error_its_exit_code() -> None:
    documented: dict[str, int] = {}
    for code, names, _ in table(GUIDE, "| exit | error | when |"):
        for name in re.findall(r"`(\w+)`", names):
            assert name not in documented, f"{name} is in two rows of the guide's error table"
            documented[name] = int(code)
    assert documented == errors()
    codes = {int(row[0]) for row in table(GUIDE, "| exit | error | when |")}
    assert codes == set(_exceptions.EXIT_CODES)


def test_the_readme_exit_code_table_says_what_the_code_says() -> None:
    """Each code with its meaning: the README's row starts with the meaning ``--help``
    prints (``EXIT_CODES``), and may go on in parentheses or a second clause."""
    rows = table(README, "| code | meaning |")
    documented = {int(code): plain(meaning) for code, meaning in rows}
    assert len(documented) == len(rows), "a code listed twice"
    assert set(documented) == set(_exceptions.EXIT_CODES)
    for code, meaning in _exceptions.EXIT_CODES.items():
        row = documented[code]
        assert row == meaning or re.match(re.escape(meaning) + r"[ ;.(]", row), (
            f"the README says exit {code} is {row!r}; the code says {meaning!r}")


def readme_command_codes() -> dict[str, set[int]]:
    """Each command's exit codes, as the README's command table lists them (``0; 2 config``),
    by the command's name as ``COMMAND_EXIT_CODES`` spells it (``state show``)."""
    documented: dict[str, set[int]] = {}
    for usage, _, codes in table(README, "| command | what it does | exit codes |"):
        words = usage.strip("`").split()[1:]
        name = " ".join(words[:2] if words[0] == "state" else words[:1])
        assert name not in documented, f"two rows for {name}"
        parts = [part.split() for part in codes.split(";")]
        assert all(part and part[0].isdigit() for part in parts), codes
        documented[name] = {int(part[0]) for part in parts}
    return documented


def test_the_readme_command_table_gives_each_command_its_exit_codes() -> None:
    declared = {name: set(codes) for name, codes in COMMAND_EXIT_CODES.items()}
    assert readme_command_codes() == declared
    assert {name.split()[0] for name in declared} == set(subcommands())
    assert set().union(*declared.values()) <= set(_exceptions.EXIT_CODES)


def environment_variables_read() -> set[str]:
    """The ``PLUGIN_HOST_*`` names the code of plugin_host uses (string constants, not
    docstrings or comments)."""
    names: set[str] = set()
    for path in (REPO / "plugin_host").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(
                    r"PLUGIN_HOST_[A-Z0-9_]+", node.value):
                names.add(node.value)
    return names


def test_the_readme_names_every_environment_variable_and_only_those() -> None:
    read = environment_variables_read()
    assert {"PLUGIN_HOST_LOAD_PLUGINS", "PLUGIN_HOST_DISABLE_PLUGINS"} <= read
    named = set(re.findall(r"\bPLUGIN_HOST_[A-Z0-9_]+", README.read_text(encoding="utf-8")))
    assert read - named == set(), "the README does not name these"
    assert named - read == set(), "the README names variables the code does not read"
    assert set(re.findall(r"\bPLUGIN_HOST_[A-Z0-9_]+", guide())) <= read


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
