"""Secret handling: a distinctive API key goes through every command at DEBUG, through success
and every failure path, and never appears in stdout, stderr, an output, the state file (WAL
included), cassettes/ or any other file. It is only ever sent to base_url's host: a redirect
to another host is refused and the other host receives nothing."""

from __future__ import annotations

import secrets
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from reliability.hostile_server import HostileServer, Reply
from reliability.support import (
    REPO,
    Child,
    Result,
    cli,
    count,
    env,
    line_count,
    one_error_line,
    read_lines,
    wait_until,
    write_pipeline,
)

pytestmark = pytest.mark.reliability


def distinctive_key() -> str:
    return "PMAK-" + secrets.token_hex(12) + "-" + secrets.token_hex(16)


class Transcript:
    """Every command run at DEBUG, its stdout and stderr kept for the scan."""

    def __init__(self, work: Path, key: str) -> None:
        self.work, self.key = work, key
        self.texts: list[str] = []
        self.commands = 0

    def __call__(self, *args: Any, code: int | None = 0, environ: dict[str, str] | None = None
                 ) -> Result:
        result = cli("--log-level", "DEBUG", *args, cwd=self.work,
                     environ=environ or env(self.key))
        self.keep(result)
        if code is not None:
            assert result.code == code, (args, result.code, result.err[-3000:])
        return result

    def keep(self, result: Result) -> None:
        self.commands += 1
        self.texts += [result.out, result.err]


def _files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_dir():
            yield from (p for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_the_api_key_never_appears_in_any_output_log_or_file(tmp_path: Path) -> None:
    key = distinctive_key()
    work = tmp_path / "work"
    holds_key = tmp_path / "configs-holding-the-key"  # files that hold the key by design
    holds_key.mkdir(parents=True)
    run = Transcript(work, key)
    with PostmanEmulator(EmulatorConfig(events=600, days=30, api_key=key)) as emu:
        good = write_pipeline(work, emu.url)
        (holds_key / "api.key").write_text(key + "\n")
        by_file = write_pipeline(work, emu.url, name="byfile", file="byfile.yaml",
                                 output="byfile.jsonl",
                                 secrets={"api_key": {"file": str(holds_key / "api.key")}})
        literal = write_pipeline(holds_key, emu.url, name="literal",
                                 output=str(work / "literal.jsonl"),
                                 state=str(work / "state.db"), secrets={"api_key": key})

        # -- success, every command
        run("inputs")
        run("inputs", "--json")
        run("spec", "postman_audit")
        for pipeline in (good, by_file, literal):
            run("validate", pipeline)
        assert "written into the pipeline file" in run.texts[-1]  # the literal's warning
        run("check", good)
        for pipeline in (good, by_file, literal):
            run("run", pipeline)
        assert len(read_lines(work / "out.jsonl")) == 600

        child = Child("--log-level", "DEBUG", "run", good, "--interval", "1", cwd=work,
                      environ=env(key))
        emu.add_events(30)
        wait_until(lambda: line_count(work / "out.jsonl") == 630)
        child.signal(signal.SIGTERM)
        interval = child.wait(timeout=15)
        run.keep(interval)
        assert interval.code == 0, interval.err

        run("state", "show", good)
        run("state", "reset", by_file)
        run("demo", "--dir", work / "demo", "--events", "200")

        # -- failure paths
        emu.config.api_key = "PMAK-" + "0" * 40  # our key is now wrong: 401
        one_error_line(run("run", good, code=3), 3, "HTTP 401")
        one_error_line(run("check", good, code=3), 3, "HTTP 401")
        run("--debug", "run", good, code=3)  # a traceback, redacted
        emu.config.api_key = key

        emu.config.forbidden = True
        one_error_line(run("run", good, code=3), 3, "HTTP 403")
        one_error_line(run("check", by_file, code=3), 3, "HTTP 403")
        emu.config.forbidden = False

        emu.config.quota = emu.quota_used
        one_error_line(run("run", literal, code=4), 4, "quota")
        emu.config.quota = None

        emu.config.fault_rate, emu.config.faults = 1.0, ("500", "503")
        storm = write_pipeline(work, emu.url, name="storm", file="storm.yaml",
                               output="storm.jsonl", retry_budget_seconds=1)
        one_error_line(run("run", storm, code=4), 4, "gave up after")
        run("--debug", "check", storm, code=4)
        count("faults_injected", sum(emu.fault_counts.values()))
        emu.config.fault_rate = 0.0

        # invalid settings holding the key as literal values of the wrong type, with the
        # key's own reference resolvable (redactor knows it) and not (it does not)
        for name, ref in (("resolvable", {"env": "RELIABILITY_API_KEY"}),
                          ("unresolvable", {"env": "NOT_SET_ANYWHERE"})):
            bad = write_pipeline(holds_key, key, name=f"bad-{name}", file=f"bad-{name}.yaml",
                                 output=str(work / "bad.jsonl"), state=str(work / "state.db"),
                                 secrets={"api_key": ref}, page_size=key,
                                 timeout_seconds=[key], rate_limit={"requests": key},
                                 backfill_start_time=key, lookback_minutes={"k": key})
            for command in ("validate", "check", "run"):
                result = run(command, bad, code=2)
                assert "$.input.settings.page_size" in result.err

        # bad secret files: the key followed by bytes that are not UTF-8, a folder, nothing
        (holds_key / "not-utf8.key").write_bytes(key.encode() + b"\xff\xfe\n")
        (holds_key / "folder.key").mkdir()
        (holds_key / "empty.key").write_text("")
        for secret in ("not-utf8.key", "folder.key", "empty.key", "missing.key"):
            bad = write_pipeline(work, emu.url, name="badfile", file="badfile.yaml",
                                 output="badfile.jsonl",
                                 secrets={"api_key": {"file": str(holds_key / secret)}})
            result = run("run", bad, code=2)
            assert "$.input.secrets.api_key: file" in result.err

    # -- the scan
    needle = key.encode()
    scanned_bytes = 0
    for text in run.texts:
        assert key not in text, "the key was printed"
    files = [p for p in _files_under(work, REPO / "cassettes")]
    assert any(p.name == "state.db" for p in files)
    for path in files:
        data = path.read_bytes()
        scanned_bytes += len(data)
        assert needle not in data, f"the key is in {path}"
    for path in _files_under(tmp_path):  # everything else the run made, the WAL included
        if holds_key not in path.parents:
            assert needle not in path.read_bytes(), f"the key is in {path}"
    count("secret_scan_commands", run.commands)
    count("secret_scan_files", len(files))
    count("secret_scan_kilobytes", scanned_bytes // 1024)


def _second_loopback() -> str:
    """127.0.0.2 when it can be bound (Linux routes all of 127/8 to lo), else 127.0.0.1."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return "127.0.0.1"
    return "127.0.0.2"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_never_takes_the_key_to_another_host(tmp_path: Path, status: int) -> None:
    key = distinctive_key()
    recorder = HostileServer(lambda r: Reply.json({"trails": []}), host=_second_loopback())
    with recorder:
        target = f"{recorder.url}/audit/logs?orderBy=desc"
        evil = HostileServer(lambda r: Reply(status, b"", headers=[("Location", target)]))
        with evil:
            pipeline = write_pipeline(tmp_path, evil.url)
            result = cli("--log-level", "DEBUG", "run", pipeline, cwd=tmp_path,
                         environ=env(key))
            check = cli("check", pipeline, cwd=tmp_path, environ=env(key))
    for outcome in (result, check):
        line = one_error_line(outcome, 4, f"HTTP {status}", "redirect", "not followed")
        assert recorder.host in line
        assert key not in outcome.out + outcome.err
    assert evil.requests, "the configured host was not asked"
    for request in evil.requests:
        assert request.headers.get("x-api-key") == key  # the key goes in the header ...
        assert key not in request.path and key not in str(request.query)  # ... only there
    assert recorder.requests == [], "the other host received a request"
    count("hostile_server_answers", len(evil.requests))
