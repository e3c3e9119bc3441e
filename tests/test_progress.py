"""A long backfill shows its progress on stderr when stderr is a terminal, and only then."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path


def _demo(folder: Path, stderr: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "plugin_host", "demo", "--dir", str(folder), "--events", "3000"],
        stdout=subprocess.DEVNULL, stderr=stderr,
    )


def test_progress_lines_go_to_a_terminal(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    process = _demo(tmp_path / "d", slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert process.wait(timeout=60) == 0
    text = seen.decode("utf-8", "replace")
    progress = [line for line in text.replace("\r", "\n").split("\n")
                if "postman_audit:" in line and "% of the way back to" in line]
    assert progress, text
    assert "3000 records" in text  # the closing summary


def test_no_progress_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    process = _demo(tmp_path / "d", subprocess.PIPE)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0
    assert b"of the way back to" not in err
    assert b"\x1b[" not in err
    assert b"3000 records" in err
