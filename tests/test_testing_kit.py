"""The testing kit plugin authors get: the pytest plugin's fixtures and the contract suite.

The contract suite is shown to fail inputs that break each rule (run in a separate pytest,
with the plugin loaded through its pytest11 entry point, as a plugin author's project would).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from postman_audit.input import PostmanAuditInput
from vcr.errors import CannotOverwriteExistingCassetteException

from plugin_host import InputContext, ValidationFailed, hookimpl
from plugin_host.testing import InputContract, InputRunner

KEY = "PMAK-kit-0123456789abcdef0123"


@pytest.fixture
def emulator() -> Any:
    now = datetime.now(timezone.utc) - timedelta(days=1)
    with PostmanEmulator(EmulatorConfig(events=60, days=2, now=now, api_key=KEY)) as emu:
        yield emu


def postman_settings(emulator: PostmanEmulator) -> dict[str, Any]:
    start = emulator.now - timedelta(days=3)
    return {"base_url": emulator.url, "page_size": 20,
            "backfill_start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_the_plugin_is_registered_through_pytest11(pytestconfig: pytest.Config) -> None:
    points = metadata.entry_points(group="pytest11")
    assert any(ep.name == "plugin_host" and ep.value == "plugin_host.testing.pytest_plugin"
               for ep in points)
    assert pytestconfig.pluginmanager.has_plugin("plugin_host")


def test_run_input_runs_through_the_runner_with_a_real_state_file(
    run_input: InputRunner, emulator: PostmanEmulator
) -> None:
    settings, secrets = postman_settings(emulator), {"api_key": KEY}
    first = run_input(PostmanAuditInput, settings, secrets)
    assert len(first.records) == 60
    assert [len(p.records) for p in first.pages] == [20, 20, 20]
    assert first.summary.records == 60 and first.summary.commits == 3
    assert first.state_path.is_file() and first.state_path.read_bytes()[:15] == b"SQLite format 3"
    assert first.checkpoint == json.loads(first.pages[-1].checkpoint_json or "null")
    assert run_input.saved_checkpoint() == first.checkpoint
    assert first.settings["lookback_minutes"] == 30  # manifest defaults filled in

    emulator.add_events(3)
    second = run_input(PostmanAuditInput, settings, secrets)
    assert len(second.records) == 3

    again = run_input(PostmanAuditInput, settings, secrets, checkpoint=None)
    assert len(again.records) == 63


def test_run_input_validates_settings_and_secrets_like_a_pipeline(
    run_input: InputRunner, emulator: PostmanEmulator
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        run_input(PostmanAuditInput, {**postman_settings(emulator), "page_size": 0},
                  {"api_key": "short"})
    assert caught.value.errors == [
        "$.input.settings.page_size: must be at least 1 (minimum)",
        "$.input.secrets.api_key: must be at least 8 characters long (minLength)",
    ]
    assert "short" not in str(caught.value)


def test_run_input_runs_the_inputs_own_settings_checks_too(
    run_input: InputRunner, emulator: PostmanEmulator
) -> None:
    settings = {**postman_settings(emulator), "base_url": "http://api.example.com"}
    with pytest.raises(ValidationFailed) as caught:
        run_input(PostmanAuditInput, settings, {"api_key": KEY})
    assert [e.split(":")[0] for e in caught.value.errors] == ["$.input.settings.base_url"]
    assert "plain http is refused" in caught.value.errors[0]


class _Echo:
    manifest = {
        "name": "kit_echo",
        "description": "Echoes nothing.",
        "settings": {"type": "object", "properties": {}, "additionalProperties": False},
    }

    def __init__(self, settings: Any, secrets: Any, context: InputContext) -> None:
        pass


class _EchoPlugin:
    @hookimpl
    def plugin_host_register_inputs(self, register: Any) -> None:
        register(_Echo)


_SHARED: dict[str, Any] = {}


def test_register_plugin_adds_a_plugin_as_discovery_would(register_plugin: Any) -> None:
    registry = register_plugin(_EchoPlugin(), name="kit_echo_plugin", distribution="kit-dist")
    found = registry.input("kit_echo")
    assert (found.cls, found.plugin, found.distribution) == (_Echo, "kit_echo_plugin",
                                                             "kit-dist")
    _SHARED["registry"] = registry


def test_register_plugin_removed_it_after_the_test() -> None:
    registry = _SHARED["registry"]
    assert "kit_echo" not in registry.inputs


def test_register_plugin_reports_a_bad_plugin(register_plugin: Any) -> None:
    class Bad:
        @hookimpl
        def plugin_host_register_inputz(self, register: Any) -> None:
            """A misspelled hook."""

    registry = register_plugin(Bad(), name="bad_one")
    assert [f.plugin for f in registry.failures] == ["bad_one"]
    assert "plugin_host_register_inputz" in registry.failures[0].reason


def test_vcr_cassettes_hold_no_secret(
    plugin_host_vcr: Any, emulator: PostmanEmulator, tmp_path: Path, run_input: InputRunner
) -> None:
    """Record a real run and a few hostile requests; the cassette holds no secret, and
    replays the run with the upstream gone."""
    settings, secrets = postman_settings(emulator), {"api_key": KEY}
    recorder = plugin_host_vcr(PostmanAuditInput, secrets, cassette_library_dir=str(tmp_path))
    with recorder.use_cassette("run.yaml"):
        recorded = run_input(PostmanAuditInput, settings, secrets, checkpoint=None)

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"you_sent": str(request.url), "key": KEY},
                              headers={"X-Echo": KEY})

    with recorder.use_cassette("hostile.yaml"), httpx.Client(
        transport=httpx.MockTransport(echo)
    ) as client:
        client.get("https://api.example.com/a", params={"apikey": KEY, "q": "1"})
        client.get("https://api.example.com/b", params={"api_key": KEY})
        client.get("https://api.example.com/c", headers={"Authorization": f"Bearer {KEY}",
                                                          "X-Custom": KEY})
        client.post("https://api.example.com/d", content=f"token={KEY}&x=1")

    for name in ("run.yaml", "hostile.yaml"):
        text = (tmp_path / name).read_text()
        assert KEY not in text, f"{name} holds the secret"
        assert "FILTERED" in text
    assert "q=1" in (tmp_path / "hostile.yaml").read_text()

    emulator.stop()
    replay = plugin_host_vcr(PostmanAuditInput, secrets, cassette_library_dir=str(tmp_path),
                             record_mode="none")
    with replay.use_cassette("run.yaml"):
        replayed = run_input(PostmanAuditInput, settings, secrets, checkpoint=None)
    assert replayed.records == recorded.records

    # a replay needs the key header (any value) and the recorded host
    uri = yaml.safe_load((tmp_path / "run.yaml").read_text())["interactions"][0]["request"]["uri"]
    other_host = uri.replace("//127.0.0.1:", "//localhost:")
    assert other_host != uri
    with replay.use_cassette("run.yaml") as cassette, httpx.Client() as client:
        with pytest.raises(CannotOverwriteExistingCassetteException):
            client.get(uri)
        with pytest.raises(CannotOverwriteExistingCassetteException):
            client.get(other_host, headers={"X-API-Key": KEY})
        assert cassette.play_count == 0
        assert client.get(uri, headers={"X-API-Key": "PMAK-any-other-value"}).status_code == 200


def test_vcr_config_filters_declared_secrets_by_name(plugin_host_vcr_config: Any) -> None:
    manifest = {
        "name": "kit", "description": "d",
        "settings": {"type": "object", "properties": {}, "additionalProperties": False},
        "secrets": {"type": "object", "additionalProperties": False, "properties": {
            "session_token": {"type": "string", "writeOnly": True, "description": "t"}}},
    }
    config = plugin_host_vcr_config(manifest, {"session_token": "s3cr3t-value"},
                                    record_mode="none")
    headers = {name for name, _ in config["filter_headers"]}
    params = {name for name, _ in config["filter_query_parameters"]}
    assert {"authorization", "x-api-key", "apikey", "session_token", "session-token"} <= headers
    assert {"apikey", "api_key", "session_token"} <= params
    assert config["record_mode"] == "none"


CONTRACT_VICTIMS = '''
import logging
import secrets

import pytest

from plugin_host import AuthError, Page
from plugin_host.testing import InputContract

UPSTREAM = {"items": [], "key": ""}


def item(i):
    return {"id": i, "text": f"item {i}"}


class ListInput:
    manifest = {
        "name": "list_input",
        "description": "Items from a list.",
        "documentation": "list-input.md",
        "settings": {"type": "object", "additionalProperties": False, "properties": {
            "page_size": {"type": "integer", "default": 4, "description": "Per page."}}},
        "secrets": {"type": "object", "additionalProperties": False, "required": ["api_key"],
                    "properties": {"api_key": {"type": "string", "writeOnly": True,
                                               "description": "The key."}}},
    }

    def __init__(self, settings, secrets, context):
        self.page_size = settings["page_size"]
        self.key = secrets["api_key"]
        self.log = context.logger

    def authorize(self, key):
        if key != UPSTREAM["key"]:
            raise AuthError("the key was refused")

    def check(self):
        self.authorize(self.key)

    def start(self, checkpoint):
        return checkpoint["after"] if checkpoint else 0

    def checkpoint(self, last, chunk, previous):
        return {"version": 1, "after": last}

    def read(self, checkpoint):
        self.authorize(self.key)
        items = [i for i in UPSTREAM["items"] if i["id"] > self.start(checkpoint)]
        for at in range(0, len(items), self.page_size):
            chunk = items[at:at + self.page_size]
            checkpoint = self.checkpoint(chunk[-1]["id"], chunk, checkpoint)
            yield Page(chunk, checkpoint)

    def close(self):
        pass


class Redelivers(ListInput):
    def start(self, checkpoint):
        return 0


class Mutates(ListInput):
    def checkpoint(self, last, chunk, previous):
        self.state = getattr(self, "state", {"version": 1, "after": 0})
        self.state["after"] = last
        return self.state


class Tuples(ListInput):
    def checkpoint(self, last, chunk, previous):
        return {"version": 1, "after": last, "span": (chunk[0]["id"], last)}


class Unversioned(ListInput):
    def checkpoint(self, last, chunk, previous):
        return {"after": last}


class Grows(ListInput):
    def checkpoint(self, last, chunk, previous):
        seen = list(previous["seen"]) if previous else []
        return {"version": 1, "after": last, "seen": seen + [i["id"] for i in chunk]}


class Leaks(ListInput):
    def check(self):
        self.log.debug("calling with key %s", self.key)
        super().check()


class Trusting(ListInput):
    def check(self):
        pass


class CheckWithoutKey(ListInput):
    def check(self):
        self.authorize(None)  # the check's call goes out without the key


class KeyedByShard(ListInput):
    # integer keys: {0: 4} is saved as {"0": 4}, and .get(0) then finds nothing
    def start(self, checkpoint):
        return checkpoint["after"].get(0, 0) if checkpoint else 0

    def checkpoint(self, last, chunk, previous):
        return {"version": 1, "after": {0: last}}


class Marked(dict):
    pass


class KeepsAnAttribute(ListInput):
    # resumes from an attribute of the yielded object, which no saved checkpoint has;
    # the checkpoint itself is plain JSON, equal to its round trip
    def start(self, checkpoint):
        return getattr(checkpoint, "exact_after", 0)

    def checkpoint(self, last, chunk, previous):
        marked = Marked(version=1, after=last)
        marked.exact_after = last
        return marked


class Broken(ListInput):
    def __init__(self, settings, secrets, context):
        raise RuntimeError("a bug in the victim, not a broken rule")


class NotJson(ListInput):
    def read(self, checkpoint):
        for page in super().read(checkpoint):
            yield Page([{**r, "seen": {1, 2}} for r in page.records], page.checkpoint)


class Misdocumented(ListInput):
    manifest = {**ListInput.manifest, "name": "misdocumented", "documentation": "missing.md"}


class Readable(ListInput):
    manifest = {**ListInput.manifest, "name": "readable", "secrets": {
        "type": "object", "additionalProperties": False,
        "properties": {"api_key": {"type": "string", "description": "Not write-only."}}}}


class ListContract(InputContract):
    @pytest.fixture(autouse=True)
    def upstream(self):
        UPSTREAM["items"] = [item(i) for i in range(1, 11)]
        UPSTREAM["key"] = "key-" + secrets.token_hex(8)
        self.secrets = {"api_key": UPSTREAM["key"]}

    def add_records(self, n):
        start = len(UPSTREAM["items"]) + 1
        new = [item(i) for i in range(start, start + n)]
        UPSTREAM["items"] += new
        return new


for _cls in (ListInput, Redelivers, Mutates, Tuples, Unversioned, Grows, Leaks, Trusting,
             CheckWithoutKey, KeyedByShard, KeepsAnAttribute, NotJson, Misdocumented,
             Readable, Broken):
    globals()["Test" + _cls.__name__] = type("Test" + _cls.__name__, (ListContract,),
                                             {"input_class": _cls})
'''

SECOND_RUN = "test_second_run_delivers_only_new_records_once"
RESUME = "test_resume_from_round_tripped_checkpoints"
JSON_CHECKPOINTS = "test_checkpoints_are_json_and_versioned"
BOUNDED = "test_state_stays_bounded"
MANIFEST = "test_manifest_is_valid_and_secrets_write_only"

# the contract tests each victim fails, exactly (a failure of the test's own assertion)
EXPECTED_FAILURES: dict[str, set[str]] = {
    "TestListInput": set(),
    "TestRedelivers": {SECOND_RUN, RESUME, BOUNDED},
    "TestMutates": {"test_yielded_checkpoints_are_never_mutated", JSON_CHECKPOINTS, RESUME},
    "TestTuples": {JSON_CHECKPOINTS},
    "TestUnversioned": {JSON_CHECKPOINTS},
    "TestGrows": {BOUNDED},
    "TestLeaks": {"test_no_secret_in_logs_state_or_output"},
    "TestTrusting": {"test_check_refuses_a_wrong_secret"},
    "TestCheckWithoutKey": {"test_check_succeeds"},
    "TestKeyedByShard": {JSON_CHECKPOINTS, RESUME, SECOND_RUN, BOUNDED},
    "TestKeepsAnAttribute": {RESUME, SECOND_RUN, BOUNDED},
    "TestNotJson": {"test_records_are_json_objects"},
    "TestMisdocumented": {MANIFEST},
    "TestReadable": {MANIFEST},
    "TestBroken": set(),
}
# victims that cannot be built: every test that builds one ends in the victim's own
# exception, which is no catch of the contract's
BROKEN = {"TestBroken"}


def outcomes(report: Path) -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, int]]:
    """From a JUnit report: per victim, the tests failed by the contract's own assertions
    (``assert``, ``pytest.fail``, ``pytest.raises``), the tests that ended otherwise (an
    exception of the victim's, an error in a fixture), and how many tests ran."""
    caught: dict[str, set[str]] = {name: set() for name in EXPECTED_FAILURES}
    other: dict[str, set[str]] = {name: set() for name in EXPECTED_FAILURES}
    ran: dict[str, int] = dict.fromkeys(EXPECTED_FAILURES, 0)
    for case in ET.parse(report).getroot().iter("testcase"):
        cls, name = case.get("classname", "").rsplit(".", 1)[-1], case.get("name", "")
        ran[cls] += 1
        failure = case.find("failure")
        if case.find("error") is not None or case.find("skipped") is not None:
            other[cls].add(name)
        elif failure is not None:
            message = failure.get("message", "")
            by_contract = message.startswith(("AssertionError", "Failed: "))
            (caught if by_contract else other)[cls].add(name)
    return caught, other, ran


@pytest.mark.slow
def test_the_contract_suite_fails_each_broken_rule(tmp_path: Path) -> None:
    """A good input passes the whole suite; each broken input fails exactly the tests of
    the rules it breaks, each by the suite's own assertion; an input that cannot even be
    built is not counted as caught."""
    (tmp_path / "test_victims.py").write_text(textwrap.dedent(CONTRACT_VICTIMS))
    (tmp_path / "list-input.md").write_text("# list_input\n")
    report = tmp_path / "report.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
         f"--junitxml={report}", str(tmp_path / "test_victims.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert report.exists(), done.stdout + done.stderr
    caught, other, ran = outcomes(report)
    suite = {n for n in dir(InputContract) if n.startswith("test_")}
    assert set(ran.values()) == {len(suite)}, ran
    assert caught == EXPECTED_FAILURES, done.stdout[-4000:]
    building = suite - {MANIFEST}  # the manifest test only registers the class
    assert {cls: names for cls, names in other.items() if names} == dict.fromkeys(
        BROKEN, building), done.stdout[-4000:]
