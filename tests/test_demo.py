"""The README's main command: `plugin-host demo` runs offline against the bundled emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _demo(folder: Path, events: int) -> tuple[dict, list[dict]]:
    result = subprocess.run(
        [sys.executable, "-m", "plugin_host", "demo", "--dir", str(folder),
         "--events", str(events)],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    lines = (folder / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return summary, [json.loads(line) for line in lines]


def test_demo_collects_every_emulated_event_once_and_says_what_it_did(tmp_path: Path) -> None:
    summary, records = _demo(tmp_path / "demo", 2000)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 2000
    assert summary["records"] == 2000
    assert summary["requests"] == summary["pages"] >= 2000 // 300
    assert summary["output"] == str(tmp_path / "demo" / "events.jsonl")
    assert all({"action", "timestamp", "data"} <= r.keys() for r in records)


def test_a_second_demo_in_the_same_folder_starts_afresh(tmp_path: Path) -> None:
    _demo(tmp_path / "demo", 500)
    summary, records = _demo(tmp_path / "demo", 500)
    assert summary["records"] == len(records) == 500
