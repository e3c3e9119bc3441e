"""The figures of the reliability suite (kills, faults, hostile inputs, losses, duplicates),
printed in pytest's terminal summary whether or not output is captured, and written as JSON.

The test registers the report; the report reads the figures when the session ends, so it
covers every reliability test that ran. The test itself runs last among
tests/test_reliability_*.py (files run in name order) and checks that nothing was lost or
duplicated by the tests before it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from reliability.support import FIGURES, SEED

pytestmark = pytest.mark.reliability


def _figures() -> dict[str, Any]:
    figures: dict[str, Any] = {"seed (RELIABILITY_SEED)": SEED}
    for name in ("lost", "duplicates", "foreign_lines"):
        figures[name] = FIGURES.get(name, 0)
    figures.update(sorted((k, v) for k, v in FIGURES.items() if k not in figures))
    return figures


class _Report:
    def __init__(self, path: Path) -> None:
        self.path = path

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        figures = _figures()
        self.path.write_text(json.dumps(figures, indent=2) + "\n")
        terminalreporter.section("reliability figures")
        width = max(len(name) for name in figures)
        for name, value in figures.items():
            terminalreporter.write_line(f"{name:<{width}}  {value}")
        terminalreporter.write_line(f"(also in {self.path})")


def test_report_the_figures_lost_and_duplicated_nothing(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if not request.config.pluginmanager.has_plugin("reliability-figures"):
        path = tmp_path_factory.getbasetemp() / "reliability-figures.json"
        request.config.pluginmanager.register(_Report(path), "reliability-figures")
    figures = _figures()
    assert figures["lost"] == 0
    assert figures["duplicates"] == 0
    assert figures["foreign_lines"] == 0
