"""The figures of the reliability suite (kills, faults, hostile inputs, losses, duplicates),
printed in pytest's terminal summary whether or not output is captured, and written as JSON.

The first test registers the report for this session: it reads the figures when the session
ends, so it covers every reliability test that ran (each delivery check fails its own test
on a loss or a duplicate as it counts them). The second checks the report itself, in a
pytest session of its own whose figures it knows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from reliability.support import TESTS, report_figures

pytestmark = pytest.mark.reliability

SESSION = '''
import pytest
from reliability.support import check_delivery, count, report_figures

SENT = [{"id": 1}, {"id": 2}, {"id": 3}]


def test_a_session_that_counts(request, tmp_path_factory):
    report_figures(request.config, tmp_path_factory.getbasetemp() / "reliability-figures.json")
    count("kills", 3)
    check_delivery(SENT[:2], SENT, complete=False)
    with pytest.raises(AssertionError, match="1 duplicated"):
        check_delivery([SENT[0], SENT[0], SENT[1]], SENT, complete=False)
    with pytest.raises(AssertionError, match="2 records lost"):
        check_delivery(SENT[2:], SENT, complete=True)
'''


def test_the_figures_are_reported_when_the_session_ends(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    report_figures(request.config, tmp_path_factory.getbasetemp() / "reliability-figures.json")
    assert request.config.pluginmanager.has_plugin("reliability-figures")


def test_the_report_shows_the_figures_its_session_counted(tmp_path: Path) -> None:
    (tmp_path / "test_session.py").write_text(SESSION)
    base = tmp_path / "base"
    env = {**os.environ, "RELIABILITY_SEED": "1234",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS),
                                                       os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--basetemp", str(base), "test_session.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    expected = {"seed (RELIABILITY_SEED)": 1234, "lost": 2, "duplicates": 1,
                "foreign_lines": 0, "kills": 3, "records_checked": 6}
    assert json.loads((base / "reliability-figures.json").read_text()) == expected
    section = done.stdout.split("reliability figures", 1)[1]
    for name, value in expected.items():
        assert re.search(rf"^{re.escape(name)} +{value}$", section, re.MULTILINE), section
