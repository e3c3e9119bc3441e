"""The protocol modes proven by the clients themselves, each installed (pinned) in a virtual
environment of its own, once a session, offline against the emulator: Meltano running
``tap-postman-audit`` into ``target-jsonl`` with its own state backend, PyAirbyte reading
``source-postman-audit`` into its cache, and every line of the Airbyte mode parsed by the
Airbyte protocol models (PyAirbyte drops what it cannot parse, silently). The Meltano and
PyAirbyte configuration is the README's, read out of it."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from postman_audit.emulator import PostmanEmulator
from protocol_support import (
    AIRBYTE_MODELS,
    MELTANO,
    PYAIRBYTE,
    SCRIPTS,
    Done,
    airbyte_messages,
    airbyte_problems,
    airbyte_read_catalog,
    backfill_start,
    client_venv,
    emulator_config,
    last_airbyte_states,
    mode_env,
    new_events,
    postman_config,
    readme_block,
    run,
    script,
    write_json,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def meltano_bin(request: pytest.FixtureRequest) -> Path:
    return client_venv(request, "meltano", MELTANO)


@pytest.fixture(scope="session")
def pyairbyte_bin(request: pytest.FixtureRequest) -> Path:
    return client_venv(request, "pyairbyte", PYAIRBYTE)


@pytest.fixture(scope="session")
def models_bin(request: pytest.FixtureRequest) -> Path:
    return client_venv(request, "airbyte-models", AIRBYTE_MODELS)


@pytest.fixture
def emulator() -> Iterator[PostmanEmulator]:
    with PostmanEmulator(emulator_config(api_key="PMAK-clients-" + os.urandom(12).hex())) as emu:
        yield emu


def path_with(*folders: Path) -> str:
    """PATH with ``folders`` first: our console scripts, then the client's."""
    return os.pathsep.join([*map(str, folders), os.environ.get("PATH", "")])


def exactly(delivered: list[int], expected: list[int]) -> None:
    twice = [i for i, n in Counter(delivered).items() if n > 1]
    assert twice == [] and sorted(delivered) == sorted(expected), (
        f"{len(delivered)} delivered, {len(expected)} expected, twice: {twice[:5]}")


def test_the_models_refuse_what_pyairbyte_would_drop_silently(models_bin: Path) -> None:
    assert airbyte_problems(models_bin, [
        '{"type":"RECORD","record":{"stream":"audit_logs","data":{"id":1},"emitted_at":1}}',
    ]) == []
    problems = airbyte_problems(models_bin, [
        "not json",
        '{"type":"record","record":{"stream":"s","data":{},"emitted_at":1}}',
        '{"type":"RECORD","record":{"stream":"s","data":{},"emitted_at":"1"}}',
        '{"type":"RECORD","record":{"stream":"s","data":[],"emitted_at":1}}',
        '{"type":"STATE","state":{"type":"STREAM","stream":{"stream_state":{}}}}',
    ])
    assert [p.split(":")[0] for p in problems] == [f"line {n}" for n in range(1, 6)], problems


def test_every_line_of_the_airbyte_mode_parses_with_the_protocol_models(
    emulator: PostmanEmulator, models_bin: Path, tmp_path: Path
) -> None:
    start, _ = backfill_start(emulator)
    conf = postman_config(tmp_path, emulator, start)
    wrong = write_json(tmp_path / "wrong.json", {**json.loads(conf.read_text()),
                                                 "api_key": "PMAK-" + "0" * 40})
    invalid = write_json(tmp_path / "invalid.json", {"api_key": "short", "page_size": 0})
    env = mode_env(PLUGIN_HOST_LOG_LEVEL="DEBUG")  # LOG messages of every level
    source = script("source-postman-audit")
    lines: list[str] = []

    def command(*args: str | Path, code: int = 0) -> list[dict[str, object]]:
        done = run([source, *args], tmp_path, env)
        assert done.code == code, done.err
        lines.extend(done.lines)
        return airbyte_messages(done)

    command("spec")
    command("check", "--config", conf)
    command("check", "--config", wrong)
    command("check", "--config", invalid)
    (catalog,) = [m for m in command("discover", "--config", conf) if m["type"] == "CATALOG"]
    write_json(tmp_path / "catalog.json", airbyte_read_catalog(catalog))
    write_json(tmp_path / "full.json", airbyte_read_catalog(catalog, "full_refresh"))
    write_json(tmp_path / "state.json", [])
    first = command("read", "--config", conf, "--catalog", "catalog.json", "--state",
                    "state.json")
    write_json(tmp_path / "state.json", last_airbyte_states(first))
    new_events(emulator, 30)
    command("read", "--config", conf, "--catalog", "catalog.json", "--state", "state.json")
    command("read", "--config", conf, "--catalog", "full.json")
    command("read", "--config", wrong, "--catalog", "catalog.json", code=3)
    command("read", "--config", invalid, "--catalog", "catalog.json", code=2)
    emulator.config.fault_rate, emulator.config.faults = 1.0, ("503",)
    stormy = postman_config(tmp_path, emulator, start, retry_budget_seconds=0.3)
    command("read", "--config", stormy, "--catalog", "catalog.json", code=4)
    kinds = Counter(json.loads(line)["type"] for line in lines)
    assert {"SPEC", "CONNECTION_STATUS", "CATALOG", "RECORD", "STATE", "TRACE", "LOG"} <= set(
        kinds), kinds
    assert airbyte_problems(models_bin, lines) == []


def test_meltano_runs_the_tap_into_target_jsonl_twice_with_its_own_state(
    emulator: PostmanEmulator, meltano_bin: Path, tmp_path: Path
) -> None:
    start, truth = backfill_start(emulator)
    key = emulator.config.api_key
    env = mode_env(
        PATH=path_with(SCRIPTS, meltano_bin), MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        TAP_POSTMAN_AUDIT_API_KEY=key, TAP_POSTMAN_AUDIT_BASE_URL=emulator.url,
        TAP_POSTMAN_AUDIT_BACKFILL_START_TIME=start, TAP_POSTMAN_AUDIT_PAGE_SIZE="50",
        PLUGIN_HOST_LOG_LEVEL="DEBUG")
    meltano = meltano_bin / "meltano"
    outputs: list[str] = []

    def call(*args: str, cwd: Path) -> Done:
        done = run([meltano, *args], cwd, env, timeout=600)
        outputs.append(done.out + done.err)
        assert done.code == 0, done.out[-3000:] + done.err[-3000:]
        return done

    call("init", "project", "--no_usage_stats", cwd=tmp_path)
    project = tmp_path / "project"
    doc = yaml.safe_load((project / "meltano.yml").read_text())
    doc["plugins"] = yaml.safe_load(readme_block("## Singer and Meltano", "yaml"))["plugins"]
    (project / "meltano.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    call("install", cwd=project)
    output = project / "output" / "audit_logs.jsonl"

    def delivered() -> list[int]:
        return [json.loads(line)["id"] for line in output.read_text().splitlines()]

    first = call("run", "tap-postman-audit", "target-jsonl", cwd=project)
    assert "systemdb state backend" in first.err
    exactly(delivered(), truth)
    saved = json.loads(call("state", "get", "dev:tap-postman-audit-to-target-jsonl",
                            cwd=project).out)
    assert set(saved["singer_state"]["bookmarks"]) == {"audit_logs"}

    added = new_events(emulator, 60)
    call("run", "tap-postman-audit", "target-jsonl", cwd=project)
    exactly(delivered()[len(truth):], added)
    call("run", "tap-postman-audit", "target-jsonl", cwd=project)
    assert len(delivered()) == len(truth) + len(added)
    about = call("invoke", "tap-postman-audit", "--about", "--format", "json", cwd=project)
    assert json.loads(about.out)["settings"]["properties"]["api_key"]["secret"] is True
    assert not any(key in text for text in outputs)


def test_pyairbyte_reads_the_source_into_its_cache_then_only_the_new_events(
    emulator: PostmanEmulator, pyairbyte_bin: Path, tmp_path: Path
) -> None:
    start, truth = backfill_start(emulator)
    key = emulator.config.api_key
    logs = tmp_path / "airbyte-logs"
    env = mode_env(
        PATH=path_with(SCRIPTS, pyairbyte_bin), AIRBYTE_OFFLINE_MODE="1",
        AIRBYTE_LOGGING_ROOT=str(logs), POSTMAN_API_KEY=key, POSTMAN_BASE_URL=emulator.url,
        POSTMAN_BACKFILL_START=start, PLUGIN_HOST_LOG_LEVEL="DEBUG")
    program = tmp_path / "read.py"
    program.write_text(readme_block("## Airbyte and PyAirbyte", "python") + (
        "\nimport json as _json\n"
        "_ids = [int(i) for i in result.cache.get_pandas_dataframe('audit_logs')['id']]\n"
        "print('RESULT ' + _json.dumps({'processed': result.processed_records, 'ids': _ids}))\n"
    ))
    texts: list[str] = []

    def read() -> dict[str, object]:
        done = run([pyairbyte_bin / "python", program], tmp_path, env, timeout=600)
        texts.append(done.out + done.err)
        assert done.code == 0, done.out[-3000:] + done.err[-3000:]
        (line,) = [x for x in done.lines if x.startswith("RESULT ")]
        found: dict[str, object] = json.loads(line.removeprefix("RESULT "))
        return found

    first = read()
    assert first["processed"] == len(truth)
    exactly(list(first["ids"]), truth)  # type: ignore[call-overload]
    added = new_events(emulator, 60)
    second = read()
    assert second["processed"] == len(added)  # read from the source: the new ones alone
    exactly(list(second["ids"]), truth + added)  # type: ignore[call-overload]
    assert not any(key in text for text in texts)
    for path in logs.rglob("*"):
        if path.is_file():
            assert key not in path.read_text(errors="replace"), path
