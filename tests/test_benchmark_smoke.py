"""The benchmark script works end to end (``--smoke``): every section runs and prints its rows,
and every run is checked to have delivered each of the emulator's events exactly once (by id,
not by count); a run that was not is reported and makes the script exit 1.

It checks that the script runs, not how fast anything is: no figure is compared to a target.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run.py"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, ModuleType]:
    """``benchmarks/harness.py`` and ``benchmarks/run.py``, imported the way run.py does."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    monkeypatch.delitem(sys.modules, "harness", raising=False)
    monkeypatch.delitem(sys.modules, "bench_ocsf", raising=False)
    run = _load("benchmark_run", SCRIPT)
    return sys.modules["harness"], run


def _lines(path: Path, ids: list[int]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "action": "user.login"}) + "\n" for i in ids))
    return path


def test_a_run_with_one_loss_and_one_duplicate_is_not_verified(
    bench: tuple[ModuleType, ModuleType], tmp_path: Path
) -> None:
    harness, _ = bench
    sent = [101, 102, 103, 104]
    assert harness.delivery_problems(_lines(tmp_path / "right", [103, 101, 104, 102]), sent) == []
    problems = harness.delivery_problems(_lines(tmp_path / "wrong", [101, 102, 102, 104]), sent)
    assert problems == ["1 ids lost (e.g. 103)", "1 ids delivered twice or more (e.g. 102)"]
    problems = harness.delivery_problems(_lines(tmp_path / "foreign", [101, 102, 103, 9]), sent)
    assert problems == ["1 ids lost (e.g. 104)", "1 ids the emulator never sent (e.g. 9)"]
    (tmp_path / "torn").write_text('{"id": 101}\n{"id": 102}\n{"id": 103}\n{"id": 10')
    problems = harness.delivery_problems(tmp_path / "torn", sent)
    assert problems == ["1 ids lost (e.g. 104)", "1 lines that are not events"]
    assert harness.delivery_problems(tmp_path / "missing", sent) == [
        "4 ids lost (e.g. 101, 102, 103)"]


def test_an_ocsf_run_with_one_loss_one_duplicate_or_one_raw_record_is_not_verified(
    bench: tuple[ModuleType, ModuleType], tmp_path: Path
) -> None:
    """OCSF events are checked by the id they came from: a role change of two users is two
    events of one id, each with its own metadata.uid."""
    problems = sys.modules["bench_ocsf"].ocsf_delivery_problems

    def events(path: Path, uids: list[str], raw: tuple[int, ...] = ()) -> Path:
        lines = [json.dumps({"class_uid": 3001, "metadata": {"uid": u, **(
            {"correlation_uid": u.split(":")[0]} if ":" in u else {})}}) for u in uids]
        lines += [json.dumps({"id": i, "action": "user.login"}) for i in raw]
        path.write_text("".join(line + "\n" for line in lines))
        return path

    sent = [101, 102, 103]
    assert problems(events(tmp_path / "right", ["101", "102:7", "102:8", "103"]), sent) == []
    assert problems(events(tmp_path / "wrong", ["101", "102:7", "102:7"]), sent) == [
        "1 ids lost (e.g. 103)", "1 OCSF events delivered twice or more (e.g. 102:7)"]
    assert problems(events(tmp_path / "raw", ["101", "102"], raw=(103,)), sent) == [
        "1 ids lost (e.g. 103)", "1 events delivered raw (not mapped)"]
    (tmp_path / "torn").write_text('{"class_uid": 3001, "metadata": {"uid": "101"}}\n{"cl')
    assert problems(tmp_path / "torn", [101]) == ["1 lines that are not events"]


@pytest.mark.slow
def test_the_benchmark_exits_1_when_a_run_is_not_verified(
    bench: tuple[ModuleType, ModuleType], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """Every run is checked against one event more than the emulator sent (id -1), as if
    each had lost it: each is a NOTE, and the script exits 1."""
    harness, run = bench
    real = harness.delivery_problems

    def one_more(path: Path, expected: Collection[int]) -> list[str]:
        problems: list[str] = real(path, {*expected, -1})
        return problems

    monkeypatch.setattr(harness, "delivery_problems", one_more)
    monkeypatch.setattr(run, "delivery_problems", one_more)
    assert run.main(["--smoke", "--sections", "startup"]) == 1
    out, err = capsys.readouterr()
    assert "NOTE: start-up: 1 ids lost (e.g. -1)" in out
    assert "NOTE: start-up, a later run: 1 ids lost (e.g. -1)" in out
    assert "NOT VERIFIED" in err


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
                    "steady, page 100", "steady, page 300", "start-up", "ocsf 3,000"):
        assert f"| {section}" in out, f"no {section!r} row:\n{out}"
    wall_row = next(line for line in out.splitlines() if "| wall time, s" in line)
    assert re.search(r"\| \d+\.\d\d× +\|", wall_row), wall_row  # a host/bare ratio
    assert "NOTE:" not in out, out  # every run delivered every event exactly once

    data = json.loads(results.read_text())
    assert data["rows"] and data["machine"]["nproc"] >= 1 and data["notes"] == []
    for kind in ("host", "bare"):
        for run in data["raw"]["backfill"]["5000"][kind]:
            assert run["records"] == run["lines"] == 5000
            assert run["problems"] == []  # checked by id: each event exactly once
    assert data["raw"]["rate_limit"]["runs"] and data["raw"]["steady"]["100"]
    assert all(run["problems"] == [] for run in data["raw"]["rate_limit"]["runs"])
    for kind in ("ocsf", "lean", "raw", "bare"):  # the OCSF section checks each run by id
        assert [run["problems"] for run in data["raw"]["ocsf"]["runs"][kind]] == [[]]
    assert data["raw"]["ocsf"]["runs"]["ocsf"][0]["records"] > 3000  # role changes fan out
