"""Counts in what users read agree with their noun: ``1 event``, ``2 events``."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import read_terminal

from plugin_host._words import plural


@pytest.mark.parametrize(("count", "word", "expected"), [
    (1, "page", "1 page"), (0, "page", "0 pages"), (2, "page", "2 pages"),
    (1, "retry", "1 retry"), (3, "retry", "3 retries"), (2, "day", "2 days"),
    (2, "rate-limit wait", "2 rate-limit waits"), (2, "index", "2 indexes"),
    (2, "child", "2 children"),
])
def test_plural(count: int, word: str, expected: str) -> None:
    many = "children" if word == "child" else None
    assert plural(count, word, many) == expected


def _terminal_stderr(*argv: str) -> str:
    """What ``plugin-host ARGV`` writes to stderr when stderr is a terminal."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "plugin_host", *argv],
                               stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = read_terminal(master)
    assert process.wait(timeout=60) == 0, seen
    return seen.decode("utf-8", "replace").replace("\r", "\n")


def test_the_progress_line_of_one_event_says_one_event(tmp_path: Path) -> None:
    text = _terminal_stderr("demo", "--dir", str(tmp_path / "d"), "--events", "1")
    progress = [line for line in text.split("\n") if "postman_audit: " in line]
    assert progress, text
    assert all("postman_audit: 1 event, " in line for line in progress), progress
