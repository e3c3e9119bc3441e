"""The protocol benchmark works end to end (``benchmarks/protocols.py --smoke``): the tap
into target-jsonl, the source, ``plugin-host run`` and the bare loop each run, each one's
records are checked by id against the emulator's, and the floor is printed. It checks that
the script runs, not how fast anything is."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path
from types import ModuleType

import pytest
from protocol_support import TARGET_JSONL, client_venv

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "protocols.py"


@pytest.fixture(scope="session")
def target_jsonl(request: pytest.FixtureRequest) -> Path:
    return client_venv(request, "target-jsonl", TARGET_JSONL) / "target-jsonl"


def test_the_protocol_benchmark_runs_every_program_and_checks_each(
    target_jsonl: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--target-jsonl", str(target_jsonl),
         "--json", str(results)],
        cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for program in ("bare loop", "plugin-host run", "tap-postman-audit (into target-jsonl)",
                    "tap-postman-audit (to a file)", "source-postman-audit read",
                    "target-jsonl (reading the tap)"):
        assert f"| {program}" in done.stdout, done.stdout
    assert "floor: tap (into target-jsonl) CPU / plugin-host run CPU = " in done.stdout
    assert "floor: tap (to a file) CPU / plugin-host run CPU = " in done.stdout
    assert "floor: source CPU / plugin-host run CPU = " in done.stdout
    assert "NOTE:" not in done.stdout
    data = json.loads(results.read_text())
    for kind in ("host", "bare", "tap", "tap_file", "source"):
        (run,) = data["runs"][kind]
        assert run["lines"] == 3000 and run["problems"] == []
    assert data["runs"]["tap"][0]["target_cpu"] > 0


def test_a_run_that_loses_an_event_is_a_note_and_exit_1(
    target_jsonl: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    monkeypatch.delitem(sys.modules, "harness", raising=False)
    spec = importlib.util.spec_from_file_location("benchmark_protocols", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    real = bench.delivery_problems

    def one_more(path: Path, expected: Collection[int]) -> list[str]:
        problems: list[str] = real(path, {*expected, -1})
        return problems

    monkeypatch.setattr(bench, "delivery_problems", one_more)  # the tap's and the source's
    monkeypatch.setattr(sys.modules["harness"], "delivery_problems", one_more)  # the others'
    assert bench.main(["--smoke", "--target-jsonl", str(target_jsonl)]) == 1
    out = capsys.readouterr().out
    for kind in ("host", "bare", "tap", "tap_file", "source"):
        assert f"NOTE: {kind}: 1 ids lost (e.g. -1)" in out
