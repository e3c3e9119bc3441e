"""The plugin author's guide and the README keep up with the code they describe."""

from __future__ import annotations

import argparse
import inspect
import json
from importlib import resources
from pathlib import Path

import pytest

import plugin_host.pytest_plugin
from plugin_host import _exceptions, hookspecs
from plugin_host.cli import _parser
from plugin_host.contract import InputContract

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "writing-an-input.md"
README = REPO / "README.md"


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def hook_names() -> list[str]:
    return [name for name, obj in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(obj, f"{hookspecs.PROJECT}_spec")]


def fixture_names() -> list[str]:
    return [name for name, obj in vars(plugin_host.pytest_plugin).items()
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
