"""Any input as a Singer tap and an Airbyte source: the fixture inputs (which declare no
records schema) through ``plugin-host singer|airbyte`` in-process, every line checked
against the protocol's rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from protocol_support import singer_problems, write_json

from plugin_host._secrets import redactor
from plugin_host.cli import COMMAND_EXIT_CODES

Cli = Callable[..., Any]


@pytest.fixture(autouse=True)
def _redactions_of_this_test_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets a test's configs register (``nope`` among them) are redacted in that test
    alone: the redactor lives as long as the process, and later tests print such words."""
    monkeypatch.setattr(redactor, "_values", set(redactor.values()))


def config(tmp_path: Path, token: str, **settings: Any) -> Path:
    return write_json(tmp_path / "config.json", {"token": token, **settings})


def messages(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_singer_any_input_is_a_tap_whose_state_resumes_it(cli: Cli, token: str,
                                                          tmp_path: Path) -> None:
    conf = config(tmp_path, token, total=7, page_size=3)
    first = cli("singer", "fixture_counter", "--config", conf)
    problems, found = singer_problems(first.out.splitlines())
    assert first.code == 0 and problems == [], (first.err, problems)
    assert [r["n"] for _, r in found.records] == list(range(7))
    assert found.schemas["fixture_counter"]["schema"] == {"type": "object",
                                                          "additionalProperties": True}
    assert found.records_after_state == [3, 3, 1]  # a STATE after each page's records
    state = write_json(tmp_path / "state.json", found.states[1])  # after 6 records
    rest = cli("singer", "fixture_counter", "--config", conf, "--state", state)
    problems, found = singer_problems(rest.out.splitlines())
    assert rest.code == 0 and problems == [], problems
    assert [r["n"] for _, r in found.records] == [6]


def test_singer_with_nothing_new_passes_the_given_state_on(cli: Cli, token: str,
                                                           tmp_path: Path) -> None:
    conf = config(tmp_path, token, total=2)
    value = singer_problems(cli("singer", "fixture_counter", "--config", conf).out
                            .splitlines())[1].states[-1]
    wrapped = write_json(tmp_path / "meltano-state.json", {"singer_state": value})
    again = cli("singer", "fixture_counter", "--config", conf, "--state", wrapped)
    kinds = [m["type"] for m in messages(again.out)]
    assert again.code == 0 and kinds == ["SCHEMA", "STATE"]
    assert messages(again.out)[-1]["value"] == value


def test_airbyte_any_input_is_a_source_with_stream_state(cli: Cli, token: str,
                                                         tmp_path: Path) -> None:
    conf = config(tmp_path, token, total=5, page_size=2)
    spec = messages(cli("airbyte", "fixture_counter", "spec").out)
    assert spec[0]["spec"]["connectionSpecification"]["properties"]["token"][
        "airbyte_secret"] is True
    discovered = messages(cli("airbyte", "fixture_counter", "discover", "--config", conf).out)
    stream = discovered[0]["catalog"]["streams"][0]
    assert stream["name"] == "fixture_counter" and "incremental" in stream[
        "supported_sync_modes"]
    catalog = write_json(tmp_path / "catalog.json", {"streams": [
        {"stream": stream, "sync_mode": "incremental", "destination_sync_mode": "append"}]})
    write_json(tmp_path / "empty.json", [])
    read = cli("airbyte", "fixture_counter", "read", "--config", conf, "--catalog", catalog,
               "--state", tmp_path / "empty.json")
    assert read.code == 0, read.err
    got = messages(read.out)
    kinds = [m["type"] for m in got]
    assert kinds == ["TRACE", "TRACE", "RECORD", "RECORD", "STATE", "RECORD", "RECORD", "STATE",
                     "RECORD", "STATE", "TRACE"]
    assert [m["trace"]["stream_status"]["status"] for m in got if m["type"] == "TRACE"] == [
        "STARTED", "RUNNING", "COMPLETE"]
    states = [m["state"] for m in got if m["type"] == "STATE"]
    assert states[0]["stream"]["stream_state"] == {"checkpoint": {"next": 2}}
    assert [s["sourceStats"]["recordCount"] for s in states] == [2.0, 2.0, 1.0]
    # resumed from the state as PyAirbyte passes it back: a list, with null and extra keys
    passed = [{**states[1], "global_": None, "data": None,
               "stream": {**states[1]["stream"], "stream_descriptor": {
                   "name": "fixture_counter", "namespace": None}}}]
    write_json(tmp_path / "state.json", passed)
    rest = cli("airbyte", "fixture_counter", "read", "--config", conf, "--catalog", catalog,
               "--state", tmp_path / "state.json")
    assert [m["record"]["data"] for m in messages(rest.out) if m["type"] == "RECORD"] == [
        {"n": 4}]
    # full_refresh ignores the state
    catalog_full = write_json(tmp_path / "full.json", {"streams": [
        {"stream": stream, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}]})
    full = cli("airbyte", "fixture_counter", "read", "--config", conf, "--catalog",
               catalog_full, "--state", tmp_path / "state.json")
    assert len([m for m in messages(full.out) if m["type"] == "RECORD"]) == 5


def test_airbyte_check_reports_the_inputs_own_check(cli: Cli, token: str,
                                                    tmp_path: Path) -> None:
    ok = cli("airbyte", "fixture_counter", "check", "--config", config(tmp_path, token))
    assert ok.code == 0 and messages(ok.out)[-1]["connectionStatus"]["status"] == "SUCCEEDED"
    refused = cli("airbyte", "fixture_counter", "check", "--config",
                  config(tmp_path, token, check="auth"))
    status = messages(refused.out)[-1]["connectionStatus"]
    assert refused.code == 0 and status == {"status": "FAILED",
                                            "message": "upstream refused the token: check refused"}
    bad = cli("airbyte", "fixture_counter", "check", "--config",
              write_json(tmp_path / "bad.json", {"token": "nope", "total": -1}))
    status = messages(bad.out)[-1]["connectionStatus"]
    assert status["status"] == "FAILED"
    assert "$.total: must be at least 0 (minimum)" in status["message"]
    assert "$.token: must be at least 8 characters long (minLength)" in status["message"]


@pytest.mark.parametrize(("failure", "code", "failure_type"), [
    ("auth", 3, "config_error"), ("upstream", 4, "transient_error"),
    ("unexpected", 1, "system_error")])
def test_a_failed_read_is_a_trace_error_then_the_exit_code(
    cli: Cli, token: str, tmp_path: Path, failure: str, code: int, failure_type: str
) -> None:
    conf = config(tmp_path, token, total=9, page_size=3, fail_at=4, failure=failure)
    write_json(tmp_path / "catalog.json", {"streams": [
        {"stream": {"name": "fixture_counter"}, "sync_mode": "incremental"}]})
    read = cli("airbyte", "fixture_counter", "read", "--config", conf, "--catalog",
               tmp_path / "catalog.json")
    assert read.code == code
    got = messages(read.out)
    assert [m["type"] for m in got][-3:] == ["STATE", "TRACE", "TRACE"]
    assert got[-2]["trace"]["stream_status"]["status"] == "INCOMPLETE"
    error = got[-1]["trace"]["error"]
    assert error["failure_type"] == failure_type and token not in json.dumps(error)
    assert [m["state"]["stream"]["stream_state"] for m in got if m["type"] == "STATE"] == [
        {"checkpoint": {"next": 3}}]  # the page before the failure, and no other
    assert len(read.err.strip().splitlines()) == 1 and token not in read.err
    singer = cli("singer", "fixture_counter", "--config", conf)
    assert singer.code == code and len(singer.err.strip().splitlines()) == 1
    assert [m["type"] for m in messages(singer.out)] == ["SCHEMA", "RECORD", "RECORD", "RECORD",
                                                         "STATE"]


def test_logs_are_log_messages_in_airbyte_and_stderr_in_singer_never_the_secret(
    cli: Cli, token: str, tmp_path: Path
) -> None:
    conf = config(tmp_path, token, total=2, log_secret=True)
    read = cli("--log-level", "DEBUG", "airbyte", "fixture_counter", "read", "--config", conf,
               "--catalog", write_json(tmp_path / "c.json", {"streams": [
                   {"stream": {"name": "fixture_counter"}, "sync_mode": "incremental"}]}))
    logs = [m["log"] for m in messages(read.out) if m["type"] == "LOG"]
    assert {"level": "WARN", "message": "plugin_host.input.fixture_counter: authenticating "
            "with token ***"} in logs
    assert any(log["level"] == "DEBUG" for log in logs)
    assert token not in read.out + read.err
    tap = cli("--log-level", "DEBUG", "singer", "fixture_counter", "--config", conf)
    assert "authenticating with token ***" in tap.err and token not in tap.out + tap.err
    assert singer_problems(tap.out.splitlines())[0] == []


def test_a_print_of_the_input_goes_to_stderr_not_among_the_messages(
    cli: Cli, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plugin_host_fixture_good as fixture

    real_read = fixture.CounterInput.read

    def chatty(self: Any, checkpoint: Any) -> Any:
        print("debugging output of a careless plugin")
        yield from real_read(self, checkpoint)

    monkeypatch.setattr(fixture.CounterInput, "read", chatty)
    for argv in (["singer", "fixture_counter"], ["airbyte", "fixture_counter", "read",
                                                 "--catalog", write_json(tmp_path / "c.json", {
                                                     "streams": [{"stream": {
                                                         "name": "fixture_counter"}}]})]):
        done = cli(*argv, "--config", config(tmp_path, token, total=2))
        assert done.code == 0 and "careless plugin" in done.err
        assert all(json.loads(line)["type"] for line in done.out.splitlines())


@pytest.mark.parametrize(("argv", "says"), [
    (["singer", "fixture_counter"], "--config FILE is required"),
    (["singer", "fixture_counter", "--config", "missing.json"], "does not exist"),
    (["singer", "fixture_counter", "--config", "{conf}", "--state", "{text}"], "is not JSON"),
    (["singer", "fixture_counter", "--config", "{conf}", "--state", "{list}"],
     "a state must be an object with bookmarks by stream"),
    (["singer", "fixture_counter", "--config", "{conf}", "--catalog", "{list}"],
     "a catalog must be an object with a list of streams"),
    (["singer", "fixture_counter", "--config", "{unknown}"], "$.colour: unknown setting"),
    (["airbyte", "fixture_counter", "discover", "--config", "{unknown}"],
     "$.colour: unknown setting"),
    # the modes take an input's config, not a pipeline: a pipeline's transforms are refused
    (["singer", "fixture_counter", "--config", "{transforms}"], "$.transforms: unknown setting"),
    (["airbyte", "fixture_counter", "read", "--config", "{transforms}", "--catalog",
      "{catalog}"], "$.transforms: unknown setting"),
    (["airbyte", "fixture_counter", "read", "--config", "{conf}"], "read needs --catalog"),
    (["airbyte", "fixture_counter", "read", "--config", "{conf}", "--catalog", "{other}"],
     "unknown stream 'users'"),
    (["airbyte", "fixture_counter", "read", "--config", "{conf}", "--catalog", "{catalog}",
      "--state", "{text}"], "is not JSON"),
])
def test_bad_files_are_one_line_and_exit_2(cli: Cli, token: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                           says: str) -> None:
    monkeypatch.chdir(tmp_path)
    files = {
        "conf": config(tmp_path, token),
        "unknown": write_json(tmp_path / "unknown.json", {"token": token, "colour": "red"}),
        "transforms": write_json(tmp_path / "transforms.json",
                                 {"token": token, "transforms": [{"type": "ocsf"}]}),
        "list": write_json(tmp_path / "list.json", [1, 2]),
        "catalog": write_json(tmp_path / "catalog.json", {"streams": [
            {"stream": {"name": "fixture_counter"}}]}),
        "other": write_json(tmp_path / "other.json", {"streams": [{"stream": {"name": "users"}}]}),
    }
    (tmp_path / "text.json").write_text("not json")
    files["text"] = tmp_path / "text.json"
    done = cli(*[a.format(**files) for a in argv])
    assert done.code == 2
    lines = done.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plugin-host: error: ") and says in lines[0]
    if argv[0] == "singer":
        assert done.out == ""
    else:  # the same line as a TRACE ERROR, a config_error
        trace = messages(done.out)[-1]["trace"]["error"]
        assert trace["failure_type"] == "config_error" and says in trace["message"]


def test_both_commands_declare_the_exit_codes_they_use() -> None:
    assert COMMAND_EXIT_CODES["singer"] == COMMAND_EXIT_CODES["airbyte"] == (0, 1, 2, 3, 4, 5)


SCHEMA = ('{"type":"SCHEMA","stream":"s","schema":{"type":"object","properties":{"id":'
          '{"type":"integer"},"at":{"type":"string","format":"date-time"}}},'
          '"key_properties":["id"]}')
RECORD = '{"type":"RECORD","stream":"s","record":{"id":1,"at":"2026-01-01T00:00:00Z"}}'
STATE = '{"type":"STATE","value":{"bookmarks":{}}}'


@pytest.mark.parametrize(("lines", "says"), [
    ([SCHEMA, RECORD, "not json", STATE], "not JSON"),
    ([SCHEMA, RECORD.replace("RECORD", "record"), STATE], "type 'record'"),
    ([SCHEMA, RECORD.replace("RECORD", "FOO"), STATE], "type 'FOO'"),
    ([RECORD, STATE], "before its SCHEMA"),
    ([SCHEMA, RECORD.replace('"s"', '"t"'), STATE], "stream 't' before its SCHEMA"),
    ([SCHEMA.replace(',"key_properties":["id"]', ""), RECORD, STATE], "key_properties"),
    ([SCHEMA.replace('["id"]', '["nope"]'), RECORD, STATE], "'nope' is not in the schema"),
    ([SCHEMA, RECORD.replace('"id":1', '"id":"1"'), STATE], "does not match the schema"),
    ([SCHEMA, RECORD.replace("2026-01-01T00:00:00Z", "not-a-date"), STATE],
     "does not match the schema"),
    ([SCHEMA, RECORD.replace('"id":1,', ""), STATE], "without its key property 'id'"),
    ([SCHEMA, '{"type":"RECORD","stream":"s"}', STATE], "RECORD without a record"),
    ([SCHEMA, RECORD, '{"type":"STATE"}'], "STATE without a value"),
    ([SCHEMA, RECORD], "does not end with a STATE"),
    ([SCHEMA, STATE, RECORD], "does not end with a STATE"),
    ([SCHEMA.replace('"type":"object",', ""), RECORD, STATE], "not an object schema"),
    (['{"stream":"s"}', SCHEMA, RECORD, STATE], "type None"),
])
def test_the_singer_rules_catch_each_malformed_stream(lines: list[str], says: str) -> None:
    assert singer_problems([SCHEMA, RECORD, STATE])[0] == []
    problems = singer_problems(lines)[0]
    assert any(says in p for p in problems), problems


def test_records_orjson_refuses_are_printed_exactly_in_both_modes(
    cli: Cli, tmp_path: Path
) -> None:
    huge = 2**70
    records = [{"id": huge}, {"text": "a lone surrogate \ud800 and more"}, {"nested": [[[1]]]}]
    conf = tmp_path / "echo.json"
    conf.write_text(json.dumps({"records": records}), encoding="utf-8")
    tap = cli("singer", "fixture_echo", "--config", conf)
    assert tap.code == 0, tap.err
    printed = [json.loads(line) for line in tap.out.splitlines()]
    assert [m["record"] for m in printed if m["type"] == "RECORD"] == records
    read = cli("airbyte", "fixture_echo", "read", "--config", conf, "--catalog", write_json(
        tmp_path / "c.json", {"streams": [{"stream": {"name": "fixture_echo"}}]}))
    assert read.code == 0, read.err
    got = [json.loads(line) for line in read.out.splitlines()]
    assert [m["record"]["data"] for m in got if m["type"] == "RECORD"] == records


def test_the_postman_records_schema_fits_the_real_apis_sample() -> None:
    from jsonschema import Draft202012Validator

    from plugin_host import discover
    from plugin_host._plainschema import wellformed

    schema = discover().input("postman_audit").manifest["records"]["schema"]
    assert wellformed(schema)  # checked at discovery without importing jsonschema
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    sample = Path(__file__).parent / "reference" / "postman_audit_logs.sample.ndjson"
    trails = [t for line in sample.read_text().splitlines() if line.strip()
              for t in json.loads(line)["trails"]]
    assert len(trails) > 5
    for trail in trails:
        assert [e.message for e in validator.iter_errors(trail)] == [], trail["id"]
    assert [e.message for e in validator.iter_errors({**trails[0], "id": "1"})]


@pytest.mark.parametrize(("records", "says"), [
    ({"schema": {"type": "object", "properties": {"id": {"type": "integer"}}}, "key": ["nope"]},
     "$.records.key: 'nope' is not a property of $.records.schema"),
    ({"schema": {"type": "object", "properties": {}}, "cursor": "at"},
     "$.records.cursor: 'at' is not a property of $.records.schema"),
    ({"schema": {"type": "array", "properties": {}}}, "$.records.schema.type"),
    ({"schema": {"type": "object", "properties": {"id": {"type": "wrong"}}}},
     "$.records.schema"),
    ({"stream": "9 lives", "schema": {"type": "object", "properties": {}}}, "$.records.stream"),
    ({"key": ["id"]}, "$.records.schema: is required"),
])
def test_a_records_section_that_does_not_hold_is_refused(records: dict[str, Any],
                                                         says: str) -> None:
    from plugin_host._manifest import manifest_errors

    manifest = {"name": "x", "description": "x", "records": records, "settings": {
        "type": "object", "properties": {}, "additionalProperties": False}}
    errors = manifest_errors(manifest)
    assert any(e.startswith(says) for e in errors), errors
    del manifest["records"]
    assert manifest_errors(manifest) == []
