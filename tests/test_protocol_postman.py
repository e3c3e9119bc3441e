"""The Postman input as ``tap-postman-audit`` and ``source-postman-audit``: the console
scripts in subprocesses against the emulator on loopback, each event exactly once through
the protocol's own state, every Singer line within the Singer rules."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from postman_audit.emulator import PostmanEmulator
from protocol_support import (
    Done,
    airbyte_ids,
    airbyte_messages,
    airbyte_read_catalog,
    backfill_start,
    emulator_config,
    last_airbyte_states,
    new_events,
    postman_config,
    run,
    script,
    singer_checked,
    write_json,
)

from plugin_host import discover


@pytest.fixture
def emulator() -> Iterator[PostmanEmulator]:
    with PostmanEmulator(emulator_config()) as emu:
        yield emu


def tap(*args: str | Path, cwd: Path) -> Done:
    return run([script("tap-postman-audit"), *args], cwd)


def source(*args: str | Path, cwd: Path) -> Done:
    return run([script("source-postman-audit"), *args], cwd)


def exactly(delivered: list[int], expected: list[int]) -> None:
    twice = [i for i, n in Counter(delivered).items() if n > 1]
    assert twice == [] and sorted(delivered) == sorted(expected), (
        f"{len(delivered)} delivered, {len(expected)} expected, twice: {twice[:5]}")


def test_the_tap_delivers_a_backfill_then_exactly_the_new_events(
    emulator: PostmanEmulator, tmp_path: Path
) -> None:
    start, truth = backfill_start(emulator)
    conf = postman_config(tmp_path, emulator, start)
    discovered = tap("--config", conf, "--discover", cwd=tmp_path)
    assert discovered.code == 0, discovered.err
    catalog = json.loads(discovered.out)  # stdout holds the catalog and nothing else
    entry = catalog["streams"][0]
    manifest = discover().input("postman_audit").manifest["records"]
    assert (entry["stream"], entry["schema"], entry["key_properties"]) == (
        "audit_logs", manifest["schema"], ["id"])
    top = entry["metadata"][0]["metadata"]
    assert top["valid-replication-keys"] == ["timestamp"] and top["selected-by-default"]
    for crumb in entry["metadata"][1:]:  # selected everywhere, as Meltano passes it back
        crumb["metadata"]["selected"] = True
    entry["metadata"][0]["metadata"]["selected"] = True
    write_json(tmp_path / "catalog.json", catalog)

    first = singer_checked(tap("--config", conf, "--catalog", "catalog.json", cwd=tmp_path))
    exactly([r["id"] for _, r in first.records], truth)
    assert len(first.states) > 1  # a STATE per page of 50
    write_json(tmp_path / "state.json", first.states[-1])

    again = tap("--config", conf, "--discover", "--state", "state.json", cwd=tmp_path)
    assert again.code == 0 and json.loads(again.out) == json.loads(discovered.out)

    added = new_events(emulator, 70)
    second = singer_checked(tap("--config", conf, "--catalog", "catalog.json", "--state",
                                "state.json", cwd=tmp_path))
    exactly([r["id"] for _, r in second.records], added)
    # as Meltano hands it back, {"singer_state": value}: nothing new, and STATEs
    write_json(tmp_path / "state.json", {"singer_state": second.states[-1]})
    third = singer_checked(tap("--config", conf, "--properties", "catalog.json", "--state",
                               "state.json", cwd=tmp_path))
    assert third.records == [] and third.states


def test_a_catalog_leaves_out_a_property_or_the_whole_stream(
    emulator: PostmanEmulator, tmp_path: Path
) -> None:
    start, truth = backfill_start(emulator)
    conf = postman_config(tmp_path, emulator, start, page_size=300)
    catalog = json.loads(tap("--config", conf, "--discover", cwd=tmp_path).out)
    for crumb in catalog["streams"][0]["metadata"]:
        if crumb["breadcrumb"] in (["properties", "userAgent"], ["properties", "id"]):
            crumb["metadata"]["selected"] = False  # id is the key: kept all the same
    write_json(tmp_path / "catalog.json", catalog)
    found = singer_checked(tap("--config", conf, "--catalog", "catalog.json", cwd=tmp_path))
    assert "userAgent" not in found.schemas["audit_logs"]["schema"]["properties"]
    assert all("userAgent" not in r and "id" in r for _, r in found.records)
    exactly([r["id"] for _, r in found.records], truth)
    catalog["streams"][0]["metadata"][0]["metadata"]["selected"] = False
    write_json(tmp_path / "catalog.json", catalog)
    nothing = tap("--config", conf, "--catalog", "catalog.json", cwd=tmp_path)
    assert nothing.code == 0 and nothing.out == ""
    assert "does not select stream audit_logs" in nothing.err


def test_about_lists_the_manifests_settings_with_secrets_marked(tmp_path: Path) -> None:
    about = tap("--about", "--format", "json", cwd=tmp_path)
    assert about.code == 0, about.err
    info = json.loads(about.out)
    manifest = discover().input("postman_audit").manifest
    settings = info["settings"]
    assert set(settings["properties"]) == set(manifest["settings"]["properties"]) | {"api_key"}
    assert settings["properties"]["api_key"]["secret"] is True
    assert settings["properties"]["api_key"]["writeOnly"] is True
    assert not any(p.get("secret") for n, p in settings["properties"].items() if n != "api_key")
    assert settings["required"] == ["api_key"]
    assert info["name"] == "tap-postman-audit"
    assert {"discover", "catalog", "state", "about"} <= set(info["capabilities"])
    text = tap("--about", cwd=tmp_path)
    assert "api_key (required, secret):" in text.out and "page_size:" in text.out
    bad = tap("--about", "--format", "yaml", cwd=tmp_path)
    assert bad.code == 2 and "must be text or json" in bad.err


def test_the_source_reads_a_backfill_then_exactly_the_new_events(
    emulator: PostmanEmulator, tmp_path: Path
) -> None:
    start, truth = backfill_start(emulator)
    conf = postman_config(tmp_path, emulator, start)
    (spec,) = airbyte_messages(source("spec", cwd=tmp_path))
    properties = spec["spec"]["connectionSpecification"]["properties"]
    assert properties["api_key"]["airbyte_secret"] is True
    assert [n for n, p in properties.items() if p.get("airbyte_secret")] == ["api_key"]
    (status,) = airbyte_messages(source("check", "--config", conf, cwd=tmp_path))
    assert status["connectionStatus"]["status"] == "SUCCEEDED"
    (found,) = airbyte_messages(source("discover", "--config", conf, cwd=tmp_path))
    stream = found["catalog"]["streams"][0]
    assert stream["default_cursor_field"] == ["timestamp"]
    assert stream["source_defined_primary_key"] == [["id"]]
    assert "incremental" in stream["supported_sync_modes"]
    write_json(tmp_path / "catalog.json", airbyte_read_catalog(found))
    write_json(tmp_path / "state.json", [])  # what PyAirbyte passes on a first read

    def read() -> list[dict[str, Any]]:
        done = source("read", "--config", conf, "--catalog", "catalog.json", "--state",
                      "state.json", cwd=tmp_path)
        assert done.code == 0, done.err
        messages = airbyte_messages(done)
        states = last_airbyte_states(messages)
        assert states and states[0]["type"] == "STREAM"
        write_json(tmp_path / "state.json", states)
        return messages

    exactly(airbyte_ids(read()), truth)
    added = new_events(emulator, 70)
    exactly(airbyte_ids(read()), added)
    assert airbyte_ids(read()) == []


def test_a_refused_key_fails_check_without_showing_it(emulator: PostmanEmulator,
                                                      tmp_path: Path) -> None:
    start, _ = backfill_start(emulator)
    wrong = "PMAK-" + "7" * 40
    conf = postman_config(tmp_path, emulator, start)
    write_json(conf, {**json.loads(conf.read_text()), "api_key": wrong})
    check = source("check", "--config", conf, cwd=tmp_path)
    (status,) = airbyte_messages(check)
    assert check.code == 0 and status["connectionStatus"]["status"] == "FAILED"
    assert "HTTP 401" in status["connectionStatus"]["message"]
    read = tap("--config", conf, cwd=tmp_path)
    assert read.code == 3 and "HTTP 401" in read.err
    assert wrong not in check.out + check.err + read.out + read.err


def test_the_console_scripts_are_the_commands_they_name(tmp_path: Path) -> None:
    by_script = tap("--about", "--format", "json", cwd=tmp_path)
    by_command = run([script("plugin-host"), "singer", "postman_audit", "--about", "--format",
                      "json"], tmp_path)
    assert by_script.out == by_command.out and by_script.code == 0
    assert source("spec", cwd=tmp_path).out == run(
        [script("plugin-host"), "airbyte", "postman_audit", "spec"], tmp_path).out
