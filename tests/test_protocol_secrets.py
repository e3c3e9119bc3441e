"""The API key never appears on stdout or stderr of the Singer and Airbyte modes, at any log
level: every command of both, through the console scripts (``PLUGIN_HOST_LOG_LEVEL``), and
at DEBUG through ``plugin-host --log-level`` as well, on success and through every failure
an upstream or a config file can cause (an upstream quoting the key back in its errors
among them), ``--debug`` tracebacks included."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from postman_audit.emulator import PostmanEmulator
from protocol_support import (
    Done,
    backfill_start,
    emulator_config,
    mode_env,
    postman_config,
    run,
    script,
    write_json,
)
from reliability.hostile_server import HostileServer, Reply, Request

pytestmark = pytest.mark.reliability

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


@pytest.fixture
def key() -> str:
    return "PMAK-" + secrets.token_hex(20)


@pytest.fixture
def emulator(key: str) -> Iterator[PostmanEmulator]:
    with PostmanEmulator(emulator_config(events=300, api_key=key)) as emu:
        yield emu


def quoting(status: int) -> Callable[[Request], Reply]:
    """An upstream answering ``status`` with the key it was sent in its error message."""
    names = {401: "AuthenticationError", 403: "forbiddenError", 400: "invalidParamsError",
             429: "serviceLimitExhausted"}

    def answer(request: Request) -> Reply:
        said = f"request with key {request.headers.get('x-api-key')} refused"
        return Reply.json({"error": {"name": names[status], "message": said}}, status)

    return answer


@pytest.mark.parametrize("level", LEVELS)
def test_the_key_is_never_printed_by_either_mode(
    emulator: PostmanEmulator, key: str, tmp_path: Path, level: str
) -> None:
    start, _ = backfill_start(emulator)
    conf = postman_config(tmp_path, emulator, start, retry_budget_seconds=0.3)
    write_json(tmp_path / "catalog.json", {"streams": [
        {"stream": {"name": "audit_logs"}, "sync_mode": "incremental"}]})
    as_settings = write_json(tmp_path / "as-settings.json", {  # the key where it does not fit
        "api_key": key, "page_size": key, "base_url": key, "backfill_start_time": key})
    misspelled = write_json(tmp_path / "misspelled.json", {"apikey": key})
    env = mode_env(PLUGIN_HOST_LOG_LEVEL=level)
    texts: list[str] = []

    def tap(*args: str | Path, code: int = 0) -> Done:
        for argv in ([script("tap-postman-audit"), *args],
                     [script("plugin-host"), "--log-level", level, "singer", "postman_audit",
                      *args])[:2 if level == "DEBUG" else 1]:
            done = run(argv, tmp_path, env)
            texts.append(done.out + done.err)
            assert done.code == code, done.err
        return done

    def source(*args: str | Path, code: int = 0) -> Done:
        for argv in ([script("source-postman-audit"), *args],
                     [script("plugin-host"), "--log-level", level, "airbyte", "postman_audit",
                      *args])[:2 if level == "DEBUG" else 1]:
            done = run(argv, tmp_path, env)
            texts.append(done.out + done.err)
            assert done.code == code, done.err
        return done

    tap("--about", "--format", "json")
    tap("--config", conf, "--discover")
    sync = tap("--config", conf)
    write_json(tmp_path / "state.json", json.loads(sync.lines[-1])["value"])
    tap("--config", conf, "--state", "state.json")
    source("spec")
    source("check", "--config", conf)
    source("discover", "--config", conf)
    source("read", "--config", conf, "--catalog", "catalog.json")
    for bad in (as_settings, misspelled):
        tap("--config", bad, code=2)
        source("check", "--config", bad)
        source("read", "--config", bad, "--catalog", "catalog.json", code=2)

    emulator.config.api_key = "PMAK-" + "0" * 40  # our key is now refused: 401
    tap("--config", conf, code=3)
    source("check", "--config", conf)
    source("read", "--config", conf, "--catalog", "catalog.json", code=3)
    debug = run([script("plugin-host"), "--debug", "--log-level", level, "singer",
                 "postman_audit", "--config", conf], tmp_path, env)
    texts.append(debug.out + debug.err)
    assert debug.code == 3 and "Traceback" in debug.err
    emulator.config.api_key = key

    emulator.config.forbidden = True
    tap("--config", conf, code=3)
    source("check", "--config", conf)
    emulator.config.forbidden = False
    emulator.config.quota = emulator.quota_used
    source("read", "--config", conf, "--catalog", "catalog.json", code=4)
    emulator.config.quota = None
    emulator.config.fault_rate, emulator.config.faults = 1.0, ("500", "503", "reset")
    tap("--config", conf, code=4)
    source("read", "--config", conf, "--catalog", "catalog.json", code=4)

    # an upstream that quotes the key it was sent back in its error text
    for status, code in ((401, 3), (403, 3), (400, 4), (429, 4)):
        with HostileServer(quoting(status)) as server:
            quoted = write_json(tmp_path / "quoted.json", {
                **json.loads(conf.read_text()), "base_url": server.url})
            tap("--config", quoted, code=code)
            source("check", "--config", quoted)
            source("read", "--config", quoted, "--catalog", "catalog.json", code=code)
            assert server.requests and all(r.headers.get("x-api-key") == key
                                           for r in server.requests)

    assert len(texts) > (40 if level == "DEBUG" else 20)
    leaked = [text[:200] for text in texts if key in text]
    assert leaked == []
    if level == "DEBUG":  # the requests were logged, the key redacted where it was named
        assert any("HTTP Request: GET" in text for text in texts)
