"""The benchmark script works end to end (``--smoke``): every section runs and prints its rows.

It checks that the script runs, not how fast anything is: no figure is compared to a target.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run.py"


@pytest.mark.slow
def test_benchmark_smoke_runs_every_section(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--json", str(results)],
        cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"^\| Section +\| Measure +\| Host +\| Bare loop +\| Host / bare +\| "
                     r"Target +\|$", out, re.MULTILINE), out
    assert out.startswith("machine: "), out
    for section in ("backfill 2,000", "backfill 5,000", "emulator alone", "rate limit 300/",
                    "steady, page 100", "steady, page 300", "start-up"):
        assert f"| {section}" in out, f"no {section!r} row:\n{out}"
    wall_row = next(line for line in out.splitlines() if "| wall time, s" in line)
    assert re.search(r"\| \d+\.\d\d× +\|", wall_row), wall_row  # a host/bare ratio
    assert "NOTE:" not in out, out  # every run delivered every event exactly once

    data = json.loads(results.read_text())
    assert data["rows"] and data["machine"]["nproc"] >= 1
    for kind in ("host", "bare"):
        for run in data["raw"]["backfill"]["5000"][kind]:
            assert run["records"] == run["lines"] == 5000
    assert data["raw"]["rate_limit"]["runs"] and data["raw"]["steady"]["100"]
