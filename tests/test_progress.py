"""A long backfill shows its progress on stderr when stderr is a terminal, and only then."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from helpers import clean_env, pipeline_doc, read_terminal, write_pipeline


def _demo(folder: Path, stderr: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "plugin_host", "demo", "--dir", str(folder), "--events", "3000"],
        stdout=subprocess.DEVNULL, stderr=stderr,
    )


def _on_a_terminal(process: subprocess.Popen[bytes], master: int) -> str:
    """Everything ``process`` wrote to the terminal whose other end is ``master``."""
    seen = read_terminal(master)
    assert process.wait(timeout=60) == 0, seen
    return seen.decode("utf-8", "replace")


def test_a_run_clears_its_progress_line_before_its_summary(tmp_path: Path) -> None:
    from postman_audit.emulator import EmulatorConfig, PostmanEmulator

    with PostmanEmulator(EmulatorConfig(events=3000, days=3)) as emulator:
        (tmp_path / "key.txt").write_text(emulator.config.api_key)
        start = (datetime.now(timezone.utc) - timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
        pipeline = write_pipeline(tmp_path / "pipeline.yaml", pipeline_doc(
            input_type="postman_audit", name="audit",
            settings={"base_url": emulator.url, "backfill_start_time": start},
            secrets={"api_key": {"file": "key.txt"}}))
        master, slave = pty.openpty()
        process = subprocess.Popen([sys.executable, "-m", "plugin_host", "run", str(pipeline)],
                                   cwd=tmp_path, env=clean_env(), stdout=subprocess.DEVNULL,
                                   stderr=slave)
        os.close(slave)
        text = _on_a_terminal(process, master)
    assert "% of the way back to" in text  # progress was shown
    assert "\r\x1b[2Kaudit: 3000 records" in text, text[-300:]


def test_progress_lines_go_to_a_terminal(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    process = _demo(tmp_path / "d", slave)
    os.close(slave)
    text = _on_a_terminal(process, master)
    progress = [line for line in text.replace("\r", "\n").split("\n")
                if "postman_audit:" in line and "% of the way back to" in line]
    assert progress, text
    # the progress line is cleared before the closing summary, which stands on its own
    assert "\r\x1b[2Kpostman_audit-demo: 3000 records" in text, text[-300:]


def test_no_progress_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    process = _demo(tmp_path / "d", subprocess.PIPE)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0
    assert b"of the way back to" not in err
    assert b"\x1b[" not in err
    assert b"3000 records" in err
