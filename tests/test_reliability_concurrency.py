"""Concurrency: two runs of one pipeline at once (the second exits 6), and two pipelines
sharing one state file side by side. Real CLI subprocesses, one emulator, real SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from reliability.support import (
    Child,
    check_consistent,
    check_delivery,
    cli,
    count,
    one_error_line,
    read_lines,
    saved_state,
    wait_until,
    write_pipeline,
)

pytestmark = pytest.mark.reliability


def test_a_second_run_of_the_same_pipeline_exits_6_and_nothing_is_duplicated(
    tmp_path: Path,
) -> None:
    config = EmulatorConfig(events=2000, days=30, fault_rate=1.0, faults=("delay",),
                            delay_seconds=0.1)
    with PostmanEmulator(config) as emu:
        pipeline = write_pipeline(tmp_path, emu.url)
        output = tmp_path / "out.jsonl"
        first = Child("run", pipeline, cwd=tmp_path)
        wait_until(lambda: emu.request_count >= 2)  # it holds the lock and is fetching

        second = cli("run", pipeline, cwd=tmp_path)
        line = one_error_line(second, 6, "already running", f"pid {first.pid}")
        assert len(second.err.strip().splitlines()) == 1, second.err
        assert "wait for it to finish" in line
        reset = cli("state", "reset", pipeline, cwd=tmp_path)
        one_error_line(reset, 6, "already running")

        emu.config.fault_rate = 0.0
        assert first.wait().code == 0
        count("faults_injected", sum(emu.fault_counts.values()))
        final = cli("run", pipeline, cwd=tmp_path)
        assert final.code == 0, final.err
        check_delivery(read_lines(output), emu.events, complete=True)
        check_consistent(pipeline, tmp_path, output)


def test_two_pipelines_sharing_one_state_file_run_side_by_side(tmp_path: Path) -> None:
    config = EmulatorConfig(events=4000, days=30, fault_rate=0.3, faults=("delay",),
                            delay_seconds=0.01)
    with PostmanEmulator(config) as emu:
        pipelines = {
            name: write_pipeline(tmp_path, emu.url, name=name, file=f"{name}.yaml",
                                 output=f"{name}.jsonl", state="shared/state.db")
            for name in ("alpha", "beta")
        }
        for round_ in range(2):
            children = [Child("run", p, cwd=tmp_path) for p in pipelines.values()]
            results = [c.wait() for c in children]
            for result in results:
                assert result.code == 0, result.err
            for name, pipeline in pipelines.items():
                output = tmp_path / f"{name}.jsonl"
                check_delivery(read_lines(output), emu.events, complete=True)
                show = check_consistent(pipeline, tmp_path, output)
                assert show["state"]["pipeline"] == name
            if round_ == 0:
                emu.add_events(150)  # the second round is incremental, still side by side
        count("faults_injected", sum(emu.fault_counts.values()))
        state_file = tmp_path / "shared" / "state.db"
        assert saved_state(state_file, "alpha") and saved_state(state_file, "beta")
