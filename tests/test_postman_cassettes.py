"""Recorded Postman conversations (vcrpy cassettes), replayed through ``PostmanAuditInput``.

The cassettes in ``cassettes/`` were recorded against the project's own emulator and are
replayed here with record mode ``none``: no network, the same requests must be asked for,
of the same host, with the ``X-API-Key`` header (any value: the cassettes hold a
placeholder where the key was).
``RECORD=1`` re-records them against the emulator; with ``POSTMAN_API_KEY`` (and optionally
``POSTMAN_BASE_URL``) also set, against the real API. See ``cassettes/README.md``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import vcr
import yaml
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from postman_audit.input import PostmanAuditInput
from postman_audit.timeutil import epoch_of, format_instant, parse_start
from vcr.errors import CannotOverwriteExistingCassetteException

from plugin_host import InputContext

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
NAMES = ("postman_audit_check", "postman_audit_backfill")
EMULATOR_URL = "http://127.0.0.1:8089"  # the address written into emulator recordings
EMULATOR_KEY = "PMAK-cassette-recording-key-3f9a61c2d8e4b7"
REPLAY_KEY = "PMAK-replay-key-not-recorded-0000"
KEY_PLACEHOLDER = "<API_KEY>"  # what a cassette holds where the key was
NOW = datetime(2026, 6, 15, 17, 0, 0, tzinfo=timezone.utc)
RECORDING = os.environ.get("RECORD", "") not in ("", "0")
REAL_KEY = os.environ.get("POSTMAN_API_KEY", "")


def _scrub_response(key: str) -> Any:
    """Drop only what varies or could identify a session; keep status, body, rate headers."""

    def scrub(response: dict[str, Any]) -> dict[str, Any]:
        headers = response.get("headers", {})
        for name in list(headers):
            if name.lower() in ("date", "set-cookie"):
                del headers[name]
        body = response.get("body", {})
        text = body.get("string")
        if key and isinstance(text, bytes) and key.encode() in text:
            body["string"] = text.replace(key.encode(), KEY_PLACEHOLDER.encode())
        elif key and isinstance(text, str) and key in text:
            body["string"] = text.replace(key, KEY_PLACEHOLDER)
        return response

    return scrub


def _rewrite_base(actual: str) -> Any:
    """Write emulator recordings under one fixed address, so re-recording diffs stay small."""

    def rewrite(request: Any) -> Any:
        if actual != EMULATOR_URL and request.uri.startswith(actual):
            request.uri = EMULATOR_URL + request.uri[len(actual):]
            for name in list(request.headers):
                if name.lower() == "host":
                    request.headers[name] = EMULATOR_URL.split("://", 1)[1]
        return request

    return rewrite


def sends_the_key(r1: Any, r2: Any) -> None:
    """vcrpy matcher: both requests carry the X-API-Key header, or neither (its value is
    the placeholder in both by the time they are compared)."""
    sent, recorded = "x-api-key" in r1.headers, "x-api-key" in r2.headers
    assert sent == recorded, f"X-API-Key header sent: {sent}; recorded: {recorded}"


def cassette_vcr(mode: str, key: str = "", actual_base: str = EMULATOR_URL) -> vcr.VCR:
    recorder = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode=mode,
        match_on=["method", "scheme", "host", "port", "path", "query", "sends_the_key"],
        filter_headers=[("x-api-key", KEY_PLACEHOLDER)],
        filter_query_parameters=["apikey"],
        decode_compressed_response=True,
        before_record_request=_rewrite_base(actual_base),
        before_record_response=_scrub_response(key),
    )
    recorder.register_matcher("sends_the_key", sends_the_key)
    return recorder


def make_input(settings: dict[str, Any], key: str, clock: float) -> PostmanAuditInput:
    context = InputContext("cassette", logging.getLogger("plugin_host.input.cassette"))
    return PostmanAuditInput(settings, {"api_key": key}, context, clock=lambda: clock)


def read_all(source: PostmanAuditInput, checkpoint: dict[str, Any] | None
             ) -> tuple[list[int], dict[str, Any] | None]:
    ids: list[int] = []
    try:
        for page in source.read(checkpoint):
            ids += [r["id"] for r in page.records]
            checkpoint = json.loads(json.dumps(page.checkpoint))
    finally:
        source.close()
    return ids, checkpoint


# ------------------------------------------------------------------ recording


def _record_against_emulator() -> None:
    config = EmulatorConfig(events=240, days=8, seed=7, now=NOW, api_key=EMULATOR_KEY,
                            same_second_burst=5)
    with PostmanEmulator(config) as emulator:
        v = cassette_vcr("all", EMULATOR_KEY, emulator.url)
        settings = {"base_url": emulator.url, "page_size": 40, "lookback_minutes": 30,
                    "backfill_start_time": "2026-06-10T09:30:00Z"}
        with v.use_cassette("postman_audit_check.yaml"):
            make_input(settings, EMULATOR_KEY, NOW.timestamp()).check()
        start = int(parse_start(settings["backfill_start_time"]).timestamp())
        runs: list[dict[str, Any]] = []
        with v.use_cassette("postman_audit_backfill.yaml"):
            first = NOW.timestamp()
            _, checkpoint = read_all(make_input(settings, EMULATOR_KEY, first), None)
            runs.append({"clock": first, "expected": [
                e["id"] for e in emulator.events if (epoch_of(e["timestamp"]) or 0) >= start]})
            emulator.set_now(NOW + timedelta(minutes=20))
            new = emulator.add_events(25)
            new += emulator.add_events(4, late_by=timedelta(minutes=10))
            second = (NOW + timedelta(hours=1)).timestamp()
            read_all(make_input(settings, EMULATOR_KEY, second), checkpoint)
            runs.append({"clock": second, "expected": [e["id"] for e in new]})
    meta = {"source": "emulator", "settings": {**settings, "base_url": EMULATOR_URL}}
    _write_meta("postman_audit_check", {**meta, "runs": [{"clock": NOW.timestamp()}]})
    _write_meta("postman_audit_backfill", {**meta, "runs": runs})


def _record_against_the_api() -> None:
    base = os.environ.get("POSTMAN_BASE_URL", "https://api.getpostman.com").rstrip("/")
    v = cassette_vcr("all", REAL_KEY)  # kept at its own address: replay asks for that host
    now = datetime.now(timezone.utc).replace(microsecond=0)
    settings = {"base_url": base, "page_size": 25, "lookback_minutes": 30,
                "backfill_start_time": format_instant(int((now - timedelta(days=2)).timestamp()))}
    with v.use_cassette("postman_audit_check.yaml"):
        make_input(settings, REAL_KEY, now.timestamp()).check()
    with v.use_cassette("postman_audit_backfill.yaml"):
        ids, _ = read_all(make_input(settings, REAL_KEY, now.timestamp()), None)
    meta = {"source": "api", "settings": settings}
    _write_meta("postman_audit_check", {**meta, "runs": [{"clock": now.timestamp()}]})
    # no ground truth outside the emulator: the recording run's delivery is the snapshot
    _write_meta("postman_audit_backfill", {**meta, "runs": [{"clock": now.timestamp(),
                                                             "expected": ids}]})


def _write_meta(name: str, meta: dict[str, Any]) -> None:
    (CASSETTES / f"{name}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")


@pytest.fixture(scope="module")
def cassettes() -> Iterator[Path]:
    """The cassette folder; re-recorded first when RECORD=1."""
    if RECORDING:
        CASSETTES.mkdir(exist_ok=True)
        for name in NAMES:
            (CASSETTES / f"{name}.yaml").unlink(missing_ok=True)
        if REAL_KEY:
            _record_against_the_api()
        else:
            _record_against_emulator()
    yield CASSETTES


def meta_of(folder: Path, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((folder / f"{name}.meta.json").read_text())
    return meta


# ------------------------------------------------------------------ replaying


@pytest.mark.parametrize("key", [REPLAY_KEY, "PMAK-" + secrets.token_hex(12)])
def test_check_replays_one_request_for_one_event_with_any_key(cassettes: Path, key: str
                                                               ) -> None:
    meta = meta_of(cassettes, "postman_audit_check")
    v = cassette_vcr("none")
    with v.use_cassette("postman_audit_check.yaml") as cassette:
        make_input(meta["settings"], key, meta["runs"][0]["clock"]).check()
        assert cassette.play_count == 1 and cassette.all_played
    (request,) = cassette.requests
    assert request.method == "GET" and request.path == "/audit/logs"
    assert dict(request.query)["limit"] == "1"


def test_backfill_and_increment_replay_to_the_recorded_ids(cassettes: Path) -> None:
    meta = meta_of(cassettes, "postman_audit_backfill")
    settings = meta["settings"]
    start = int(parse_start(settings["backfill_start_time"]).timestamp())
    v = cassette_vcr("none")
    delivered: list[int] = []
    with v.use_cassette("postman_audit_backfill.yaml") as cassette:
        checkpoint = None
        for run in meta["runs"]:
            ids, checkpoint = read_all(make_input(settings, REPLAY_KEY, run["clock"]),
                                       checkpoint)
            assert Counter(ids) == Counter(run["expected"])
            delivered += ids
        assert cassette.all_played  # the input asked for exactly what was recorded
        assert len(cassette.requests) > len(meta["runs"])  # several pages
    assert len(delivered) == len(set(delivered))
    recorded = {}
    for response in cassette.responses:
        body = json.loads(response["body"]["string"])
        recorded.update({t["id"]: t["timestamp"] for t in body.get("trails", [])})
    assert all(epoch_of(recorded[i]) >= start for i in delivered)  # nothing before the start
    if meta["source"] == "emulator":
        stamps = Counter(recorded[i] for i in delivered)
        assert stamps.most_common(1)[0][1] > 1  # same-second bursts were replayed


def test_emulator_recordings_match_the_emulator(cassettes: Path) -> None:
    """Emulator cassettes are reproducible: its events regenerate from the same seed."""
    meta = meta_of(cassettes, "postman_audit_backfill")
    if meta["source"] != "emulator":
        return  # a recording of the real API has no emulator to compare with
    emulator = PostmanEmulator(EmulatorConfig(events=240, days=8, seed=7, now=NOW))
    start = int(parse_start(meta["settings"]["backfill_start_time"]).timestamp())
    truth = [e["id"] for e in emulator.events if (epoch_of(e["timestamp"]) or 0) >= start]
    assert Counter(meta["runs"][0]["expected"]) == Counter(truth)


def recorded_uri(folder: Path, name: str) -> str:
    uri: str = yaml.safe_load((folder / f"{name}.yaml").read_text())["interactions"][0][
        "request"]["uri"]
    return uri


def test_a_request_without_the_key_does_not_replay(cassettes: Path) -> None:
    uri = recorded_uri(cassettes, "postman_audit_check")
    with cassette_vcr("none").use_cassette("postman_audit_check.yaml") as cassette, \
            httpx.Client() as client:
        with pytest.raises(CannotOverwriteExistingCassetteException):
            client.get(uri)
        assert cassette.play_count == 0
        assert client.get(uri, headers={"X-API-Key": "any value"}).status_code == 200
        assert cassette.play_count == 1


def test_the_input_does_not_replay_against_another_host(cassettes: Path) -> None:
    meta = meta_of(cassettes, "postman_audit_check")
    recorded_host = httpx.URL(meta["settings"]["base_url"]).host
    for base in ("http://localhost:8089", "https://api.getpostman.com"):
        assert httpx.URL(base).host != recorded_host
        settings = {**meta["settings"], "base_url": base}
        with cassette_vcr("none").use_cassette("postman_audit_check.yaml") as cassette, \
                pytest.raises(CannotOverwriteExistingCassetteException):
            make_input(settings, REPLAY_KEY, meta["runs"][0]["clock"]).check()
        assert cassette.play_count == 0


@pytest.mark.parametrize("name", NAMES)
def test_no_cassette_holds_the_key(cassettes: Path, name: str) -> None:
    path = cassettes / f"{name}.yaml"
    text = path.read_text(encoding="utf-8")
    for key in filter(None, (EMULATOR_KEY, REAL_KEY, "PMAK-emulator-demo-key")):
        assert key not in text
    data = yaml.safe_load(text)
    assert data["interactions"]
    for interaction in data["interactions"]:
        request = interaction["request"]
        headers = {k.lower(): v for k, v in request["headers"].items()}
        assert headers.get("x-api-key") == [KEY_PLACEHOLDER]  # sent, and filtered
        assert "apikey" not in request["uri"].lower()
        assert interaction["response"]["status"]["code"] in (200, 429, 500, 502, 503, 504)
