"""The emulator's ``--help`` speaks to users: what it is for, and what every option does."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from helpers import run
from postman_audit.emulator import EmulatorConfig
from postman_audit.emulator.cli import build_parser


def test_help_says_what_the_emulator_is_for_and_what_every_option_does(tmp_path: Path) -> None:
    result = run([sys.executable, "-m", "postman_audit.emulator", "--help"], cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    out = result.stdout
    assert out.startswith("usage: python -m postman_audit.emulator ")
    text = " ".join(out.split())
    assert "Serve an emulator of Postman's audit-log API" in text
    assert "without a Postman account" in text and "prints its URL on stdout" in text
    # not the developer's module docstring
    assert "Stdlib-only" not in text and "``" not in text and ":class:" not in text
    options = [a for a in build_parser()._actions if a.dest != "help"]
    assert {a.dest for a in options} == {"host", "port"} | {f.name for f in fields(
        EmulatorConfig)}
    for action in options:
        flag = action.option_strings[0]
        assert (action.help or "").strip(), f"{flag} has no help"
        assert f"\n  {flag}" in out, flag
        opening = " ".join(action.help.split()[:4])
        assert "%" not in opening
        assert opening in text, f"{flag}: its help is not in --help"


def test_the_defaults_shown_are_the_defaults_used() -> None:
    out = " ".join(build_parser().format_help().split())
    assert "(default 1000)" in out and "(default 180)" in out
    assert "(default: no limit)" in out and "(default: no quota)" in out
