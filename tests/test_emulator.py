"""Tests of the Postman audit-log emulator, over real HTTP on loopback (httpx)."""

from __future__ import annotations

import copy
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from postman_audit.emulator import EmulatorConfig, PostmanEmulator

REFERENCE = Path(__file__).resolve().parent / "reference"  # source and licence: its README.md
SPEC_PATH = REFERENCE / "postman-api-audit-logs.openapi.json"
SAMPLE_PATH = REFERENCE / "postman_audit_logs.sample.ndjson"
NOW = datetime(2026, 6, 15, 17, 0, 0, tzinfo=timezone.utc)
KEY = "PMAK-emulator-demo-key"
TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000Z\Z")
LOGINS = ("user.login_password_success", "user.login_google_success", "user.login_sso_success")


# ---------------------------------------------------------------- spec helpers


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    assert SPEC_PATH.is_file(), f"OpenAPI reference not found at {SPEC_PATH}"
    doc: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return doc


def deref(node: Any, root: dict[str, Any]) -> Any:
    """Inline every local ``$ref`` (the cut has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return deref(target, root)
        return {k: deref(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [deref(v, root) for v in node]
    return node


def response_schema(spec: dict[str, Any], path: str, status: int) -> dict[str, Any]:
    """Schema of a documented response; 429 (and 403 on /audit/logs) from components."""
    responses = spec["paths"][path]["get"]["responses"]
    if str(status) in responses:
        response = deref(responses[str(status)], spec)
    else:
        name = {429: "common429Error", 403: "auditLogs403Error"}[status]
        response = deref(spec["components"]["responses"][name], spec)
    (media,) = response["content"].values()
    schema: dict[str, Any] = media["schema"]
    return schema


def allow_observed_nulls(schema: dict[str, Any]) -> dict[str, Any]:
    """The one deviation real responses show: ``ip`` and ``userAgent`` can be null."""
    patched = copy.deepcopy(schema)
    props = patched["properties"]["trails"]["items"]["properties"]
    for name in ("ip", "userAgent"):
        props[name]["type"] = ["string", "null"]
    return patched


def example(spec: dict[str, Any], name: str) -> Any:
    return spec["components"]["examples"][name]["value"]


def check(schema: dict[str, Any], body: Any) -> None:
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(body)


@pytest.fixture(scope="module")
def logs_schema(spec: dict[str, Any]) -> dict[str, Any]:
    return allow_observed_nulls(response_schema(spec, "/audit/logs", 200))


# ---------------------------------------------------------------- emulator helpers


@contextmanager
def running(**kw: Any) -> Iterator[tuple[PostmanEmulator, httpx.Client]]:
    kw.setdefault("now", NOW)
    with (
        PostmanEmulator(EmulatorConfig(**kw)) as emu,
        httpx.Client(base_url=emu.url, headers={"X-API-Key": KEY}, timeout=10) as client,
    ):
        yield emu, client


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[PostmanEmulator, httpx.Client]]:
    """A read-only emulator: tests using it must not change its config or events."""
    with running(events=1000) as pair:
        yield pair


def walk(
    client: httpx.Client, params: dict[str, Any], schema: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow nextCursor to the end; return (records, page bodies)."""
    records: list[dict[str, Any]] = []
    bodies: list[dict[str, Any]] = []
    cursor: Any = None
    for _ in range(10000):
        query = dict(params) if cursor is None else {**params, "cursor": cursor}
        r = client.get("/audit/logs", params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        if schema is not None:
            check(schema, body)
        bodies.append(body)
        records += body["trails"]
        cursor = body.get("nextCursor")
        if cursor in (None, ""):
            return records, bodies
    raise AssertionError("pagination did not end")


def order_key(e: dict[str, Any]) -> tuple[str, int]:
    return e["timestamp"], e["id"]


def ts_of(e: dict[str, Any]) -> datetime:
    return datetime.strptime(e["timestamp"], "%Y-%m-%dT%H:%M:%S.000Z").replace(tzinfo=timezone.utc)


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in records]


def raw_exchange(port: int, payload: bytes) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def visible(emu: PostmanEmulator) -> list[dict[str, Any]]:
    floor = (emu.now - timedelta(days=emu.config.retention_days)).date()
    return [e for e in emu.events if ts_of(e).date() >= floor]


# ---------------------------------------------------------------- spec and sample


def test_spec_allows_next_cursor_and_sample_needs_only_nullable_patch(spec: dict[str, Any]) -> None:
    raw = response_schema(spec, "/audit/logs", 200)
    assert raw.get("additionalProperties", True) is not False  # nextCursor is allowed
    sample = json.loads(SAMPLE_PATH.read_text(encoding="utf-8"))
    with pytest.raises(jsonschema.ValidationError):
        check(raw, sample)  # the real API returns ip/userAgent null, which the spec omits
    check(allow_observed_nulls(raw), sample)


def test_first_page_default_desc(
    shared: tuple[PostmanEmulator, httpx.Client], logs_schema: dict[str, Any]
) -> None:
    emu, client = shared
    r = client.get("/audit/logs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert int(r.headers["content-length"]) == len(r.content)
    body = r.json()
    check(logs_schema, body)
    assert list(body) == ["trails", "nextCursor"]
    expected = sorted(visible(emu), key=order_key, reverse=True)
    assert body["trails"] == expected[:100]
    assert isinstance(body["nextCursor"], int)
    assert body["nextCursor"] == expected[100]["id"] < body["trails"][-1]["id"]
    assert r.http_version == "HTTP/1.1" and "connection" not in r.headers


def test_events_look_like_the_real_sample(shared: tuple[PostmanEmulator, httpx.Client]) -> None:
    emu, _ = shared
    events = emu.events
    assert len(events) == 1000
    assert [order_key(e) for e in events] == sorted(order_key(e) for e in events)
    assert ids(events) == sorted(ids(events)) and len(set(ids(events))) == 1000
    assert min(ids(events)) >= 555_000_000
    assert all(TS_RE.match(e["timestamp"]) for e in events)
    assert all(NOW - timedelta(days=30) <= ts_of(e) <= NOW for e in events)
    seconds = [e["timestamp"] for e in events]
    assert len(seconds) - len(set(seconds)) >= 50  # many same-second ties
    assert any(e["timestamp"].endswith("T00:00:00.000Z") for e in events)
    assert any(e["timestamp"].endswith("T23:59:59.000Z") for e in events)
    assert any(e["ip"] is None for e in events)
    assert any(e["ip"] and ":" in e["ip"] for e in events)
    assert any(e["userAgent"] is None for e in events)
    assert {e["action"] for e in events} >= {
        "admin.apikey_create",
        *LOGINS,
        "team.update_user_roles",
        "team.add_member",
        "user.apikey_create",
        "user.authenticate_third_party_app",
        "team.scim_add_member",
    }
    roles = [e for e in events if e["action"] == "team.update_user_roles"]
    assert roles and all("user" not in e["data"] for e in roles)
    assert any(isinstance(e["data"]["variables"]["users"], str) for e in roles)
    assert all("variables" not in e["data"] for e in events if e["action"] in LOGINS)
    system = [e["data"]["actor"] for e in events if e["data"]["actor"]["id"] in (2, 18)]
    assert {a["id"] for a in system} == {2, 18}
    assert all("username" not in a and "email" not in a for a in system)
    assert any("${data.variables.orgId}" in e["message"] for e in events)
    assert any(not e["data"]["actor"]["name"].isascii() for e in events)


def test_generation_is_deterministic() -> None:
    a = PostmanEmulator(EmulatorConfig(events=300, now=NOW, seed=7)).events
    b = PostmanEmulator(EmulatorConfig(events=300, now=NOW, seed=7)).events
    c = PostmanEmulator(EmulatorConfig(events=300, now=NOW, seed=8)).events
    assert a == b and a != c


# ---------------------------------------------------------------- pagination


@pytest.mark.parametrize("end_signal", ["missing", "null", "empty"])
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("cursor_style", ["int", "string"])
def test_full_walk_each_event_once_in_order(
    end_signal: str, order: str, cursor_style: str, logs_schema: dict[str, Any]
) -> None:
    with running(events=450, end_signal=end_signal, cursor_style=cursor_style) as (emu, client):
        records, bodies = walk(client, {"orderBy": order, "limit": 100}, logs_schema)
        expected = sorted(emu.events, key=order_key, reverse=order == "desc")
    assert records == expected
    assert [len(b["trails"]) for b in bodies] == [100, 100, 100, 100, 50]
    for page, nxt in zip(bodies, bodies[1:], strict=False):
        cursor = page["nextCursor"]
        assert isinstance(cursor, int if cursor_style == "int" else str)
        assert int(cursor) == nxt["trails"][0]["id"]
    last = bodies[-1]
    if end_signal == "missing":
        assert "nextCursor" not in last
    else:
        assert last["nextCursor"] == (None if end_signal == "null" else "")


def test_order_by_alias_and_precedence(shared: tuple[PostmanEmulator, httpx.Client]) -> None:
    emu, client = shared
    oldest = sorted(visible(emu), key=order_key)[0]
    assert client.get("/audit/logs", params={"order_by": "asc"}).json()["trails"][0] == oldest
    both: dict[str, str | int] = {"orderBy": "asc", "order_by": "desc", "limit": 1}
    assert client.get("/audit/logs", params=both).json()["trails"] == [oldest]
    r = client.get("/audit/logs", params={"orderBy": "sideways"})
    assert r.status_code == 400 and r.json()["error"]["name"] == "invalidParamsError"


def test_filters_by_action_and_user(
    shared: tuple[PostmanEmulator, httpx.Client], logs_schema: dict[str, Any]
) -> None:
    emu, client = shared
    records, _ = walk(client, {"action": "team.update_user_roles", "limit": 7}, logs_schema)
    expected = [e for e in emu.events if e["action"] == "team.update_user_roles"]
    assert records == sorted(expected, key=order_key, reverse=True)
    user = 60000005
    records, _ = walk(client, {"userId": user, "limit": 13, "orderBy": "asc"}, logs_schema)
    people = [
        e
        for e in emu.events
        if user in (e["data"]["actor"]["id"], e["data"].get("user", {}).get("id"))
    ]
    assert records == people and people
    empty = client.get("/audit/logs", params={"action": "team.never_happens"}).json()
    assert empty == {"trails": []}
    assert client.get("/audit/logs", params={"userId": "abc"}).status_code == 400


def expected_window(
    events: list[dict[str, Any]], since: str | None, until: str | None, bounds: str
) -> list[dict[str, Any]]:
    """Independent statement of the since/until rules (dates or datetimes)."""
    incl = bounds == "inclusive"

    def lower_ok(e: dict[str, Any]) -> bool:
        if since is None:
            return True
        if len(since) == 10:
            d = date.fromisoformat(since)
            return ts_of(e).date() >= d if incl else ts_of(e).date() > d
        s = datetime.fromisoformat(since.replace("Z", "+00:00"))
        return ts_of(e) >= s if incl else ts_of(e) > s

    def upper_ok(e: dict[str, Any]) -> bool:
        if until is None:
            return True
        if len(until) == 10:
            d = date.fromisoformat(until)
            return ts_of(e).date() <= d if incl else ts_of(e).date() < d
        u = datetime.fromisoformat(until.replace("Z", "+00:00"))
        return ts_of(e) <= u if incl else ts_of(e) < u

    return [e for e in events if lower_ok(e) and upper_ok(e)]


@pytest.fixture(scope="module")
def mutable() -> Iterator[tuple[PostmanEmulator, httpx.Client]]:
    """An emulator whose run-time switches tests may change (its events stay fixed)."""
    with running(events=600, days=20) as pair:
        yield pair


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    limit=st.integers(1, 300),
    order=st.sampled_from(["asc", "desc"]),
    since_day=st.none() | st.integers(0, 22),
    span=st.none() | st.integers(0, 22),
    bounds=st.sampled_from(["inclusive", "exclusive"]),
    mode=st.sampled_from(["date", "datetime"]),
)
def test_property_walk_matches_window(
    mutable: tuple[PostmanEmulator, httpx.Client],
    limit: int,
    order: str,
    since_day: int | None,
    span: int | None,
    bounds: str,
    mode: str,
) -> None:
    emu, client = mutable
    emu.config.bounds, emu.config.since_mode = bounds, mode
    first = (NOW - timedelta(days=21)).date()
    params: dict[str, str | int] = {"limit": limit, "orderBy": order}
    since = until = None
    if since_day is not None:
        since = params["since"] = (first + timedelta(days=since_day)).isoformat()
    if span is not None:
        until = params["until"] = (first + timedelta(days=(since_day or 0) + span)).isoformat()
    records, bodies = walk(client, params)
    expected = expected_window(emu.events, since, until, bounds)
    assert records == sorted(expected, key=order_key, reverse=order == "desc")
    assert all(len(b["trails"]) == limit for b in bodies[:-1])


@pytest.mark.parametrize("bounds", ["inclusive", "exclusive"])
def test_date_bounds_at_midnight_edges(
    bounds: str, mutable: tuple[PostmanEmulator, httpx.Client]
) -> None:
    emu, client = mutable
    emu.config.bounds, emu.config.since_mode = bounds, "date"
    edge = next(e for e in emu.events if e["timestamp"].endswith("T00:00:00.000Z"))
    day = edge["timestamp"][:10]
    got = ids(walk(client, {"since": day, "until": day, "orderBy": "asc"})[0])
    same_day = [e["id"] for e in emu.events if e["timestamp"].startswith(day)]
    assert got == (same_day if bounds == "inclusive" else [])
    got = ids(walk(client, {"since": day, "orderBy": "asc"})[0])
    assert (edge["id"] in got) == (bounds == "inclusive")
    got = ids(walk(client, {"until": day, "orderBy": "asc"})[0])
    assert (edge["id"] in got) == (bounds == "inclusive")


@pytest.mark.parametrize("bounds", ["inclusive", "exclusive"])
def test_datetime_mode_honours_time_of_day(
    bounds: str, mutable: tuple[PostmanEmulator, httpx.Client]
) -> None:
    emu, client = mutable
    emu.config.bounds, emu.config.since_mode = bounds, "datetime"
    stamps = [e["timestamp"] for e in emu.events]
    tie = next(s for s in stamps[len(stamps) // 2 :] if stamps.count(s) >= 2)
    for since in (tie, tie[:19] + "Z", tie[:19] + "+00:00", tie[:19] + ".5Z"):
        got = walk(client, {"since": since, "orderBy": "asc"})[0]
        assert got == expected_window(emu.events, since, None, bounds)
        at_tie = [r for r in got if r["timestamp"] == tie]
        if since.endswith(".5Z"):
            assert at_tie == []  # 12:00:00 is before 12:00:00.5 either way
        else:
            assert bool(at_tie) == (bounds == "inclusive")
    got = walk(client, {"until": tie, "orderBy": "asc"})[0]
    assert bool([r for r in got if r["timestamp"] == tie]) == (bounds == "inclusive")
    emu.config.since_mode = "date"
    r = client.get("/audit/logs", params={"since": tie})
    assert r.status_code == 400 and "since" in r.json()["error"]["message"]


@pytest.mark.parametrize("bad", ["2026-6-1", "2026-02-30", "yesterday", "2026-06-01T00:00:00"])
def test_date_mode_rejects_non_dates(
    bad: str, shared: tuple[PostmanEmulator, httpx.Client], spec: dict[str, Any]
) -> None:
    _, client = shared
    for name in ("since", "until"):
        r = client.get("/audit/logs", params={name: bad})
        assert r.status_code == 400
        check(response_schema(spec, "/audit/logs", 400), r.json())


def test_limit_clamp_reject_default_and_invalid(spec: dict[str, Any]) -> None:
    with running(events=700) as (emu, client):
        assert len(client.get("/audit/logs", params={"limit": 500}).json()["trails"]) == 300
        assert len(client.get("/audit/logs", params={"limit": 300}).json()["trails"]) == 300
        assert len(client.get("/audit/logs").json()["trails"]) == 100
        emu.config.default_limit = 50
        assert len(client.get("/audit/logs").json()["trails"]) == 50
        emu.config.limit_over_max = "reject"
        r = client.get("/audit/logs", params={"limit": 301})
        assert r.status_code == 400 and "300" in r.json()["error"]["message"]
        check(response_schema(spec, "/audit/logs", 400), r.json())
        for bad in ("0", "-1", "abc", "1.5"):
            assert client.get("/audit/logs", params={"limit": bad}).status_code == 400


def test_invalid_action_and_cursor_bodies(
    shared: tuple[PostmanEmulator, httpx.Client], spec: dict[str, Any]
) -> None:
    _, client = shared
    r = client.get("/audit/logs", params={"action": "login"})
    assert r.status_code == 400
    assert r.json() == example(spec, "auditLogs400ErrorInvalidAuditAction")
    check(response_schema(spec, "/audit/logs", 400), r.json())
    for cursor in ("abc", "1", "-5"):
        r = client.get("/audit/logs", params={"cursor": cursor})
        assert r.status_code == 400
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json() == {
            "type": "https://api.postman.com/problems/bad-request",
            "title": "Malformed request",
            "detail": "Invalid cursor",
            "status": 400,
        }


def test_retention_floor() -> None:
    with running(events=400, days=200, retention_days=180) as (emu, client):
        floor = (NOW - timedelta(days=180)).date()
        r = client.get("/audit/logs", params={"since": (floor - timedelta(days=1)).isoformat()})
        assert r.status_code == 400
        assert f"cannot be older than {floor.isoformat()}" in r.text
        assert client.get("/audit/logs", params={"since": floor.isoformat()}).status_code == 200
        records, _ = walk(client, {"orderBy": "asc", "limit": 300})
        assert records == visible(emu) and len(records) < len(emu.events)
        emu.advance(timedelta(days=10))
        r = client.get("/audit/logs", params={"since": floor.isoformat()})
        assert r.status_code == 400 and "cannot be older than" in r.text
        emu.set_now(NOW - timedelta(days=30))
        assert len(walk(client, {"limit": 300})[0]) == len(emu.events)


# ---------------------------------------------------------------- auth, 403, 404, actions


@pytest.mark.parametrize("style", ["legacy", "problem"])
def test_auth_401_both_styles(style: str, spec: dict[str, Any]) -> None:
    schema = response_schema(spec, "/audit/logs", 401)
    with running(events=10, error_style=style) as (emu, _):
        missing = httpx.get(emu.url + "/audit/logs")
        wrong = httpx.get(emu.url + "/audit/logs", headers={"X-API-Key": "PMAK-wrong"})
        for r in (missing, wrong):
            assert r.status_code == 401
            check(schema, r.json())
        if style == "legacy":
            legacy = example(spec, "common401ErrorAuthentication")
            assert missing.json() == legacy and wrong.json() == legacy
        else:
            assert missing.json() == example(spec, "common401ErrorMissingApiKey")
            assert wrong.json() == example(spec, "common401ErrorInvalidApiKey")
            assert wrong.headers["content-type"].startswith("application/problem+json")
        for headers in ({"x-api-key": KEY}, {"X-Api-Key": KEY}, {"X-API-KEY": KEY}):
            assert httpx.get(emu.url + "/audit/logs", headers=headers).status_code == 200
        assert httpx.get(emu.url + "/audit/logs", params={"apikey": KEY}).status_code == 200


def test_forbidden_403(spec: dict[str, Any]) -> None:
    with running(events=10, forbidden=True) as (_, client):
        logs = client.get("/audit/logs")
        actions = client.get("/audit-actions")
    assert logs.status_code == actions.status_code == 403
    message = "You do not have permissions to view team Audit logs"
    assert logs.json() == {"error": {"name": "ForbiddenRequest", "message": message}}
    assert actions.json() == example(spec, "auditLogs403ErrorForbidden")
    check(response_schema(spec, "/audit-actions", 403), actions.json())
    check(response_schema(spec, "/audit/logs", 403), logs.json())


def test_audit_actions(shared: tuple[PostmanEmulator, httpx.Client], spec: dict[str, Any]) -> None:
    emu, client = shared
    r = client.get("/audit-actions")
    assert r.status_code == 200
    body = r.json()
    check(response_schema(spec, "/audit-actions", 200), body)
    spec_example = example(spec, "getAuditLogEventActions")
    assert body[: len(spec_example)] == spec_example
    assert {e["action"] for e in emu.events} <= {a["name"] for a in body}
    assert httpx.get(emu.url + "/audit-actions").status_code == 401


def test_unknown_path_404(shared: tuple[PostmanEmulator, httpx.Client]) -> None:
    _, client = shared
    r = client.get("/audit/nope")
    assert r.status_code == 404
    assert r.json() == {
        "type": "https://api.postman.com/problems/not-found",
        "title": "Not Found",
        "detail": "Not Found",
        "status": 404,
    }
    assert client.get("/audit/logs/").status_code == 200  # trailing slash tolerated


# ---------------------------------------------------------------- rate limit and quota


@pytest.mark.parametrize("style", ["legacy", "problem"])
def test_rate_limit_headers_and_429(style: str, spec: dict[str, Any]) -> None:
    with running(events=20, rate_limit=3, rate_window=30.0, error_style=style) as (emu, client):
        remaining = []
        for _ in range(3):
            r = client.get("/audit/logs")
            assert r.status_code == 200
            h = r.headers
            assert h["RateLimit-Limit"] == h["X-RateLimit-Limit"] == "3"
            assert h["RateLimit-Policy"] == "3;w=30"
            reset = float(h["RateLimit-Reset"])  # in 60ths of the 30 s window: halves
            assert 0.5 <= reset <= 30 and h["X-RateLimit-Reset"] == h["RateLimit-Reset"]
            assert (reset * 2).is_integer()
            assert h["RateLimit-Remaining"] == h["X-RateLimit-Remaining"]
            remaining.append(int(h["RateLimit-Remaining"]))
        assert remaining == [2, 1, 0]
        r = client.get("/audit/logs")
        assert r.status_code == 429
        check(response_schema(spec, "/audit/logs", 429), r.json())
        assert r.headers["Retry-After"] == r.headers["X-RateLimit-RetryAfter"]
        assert 1 <= int(r.headers["Retry-After"]) <= 30
        assert 0 < float(r.headers["RateLimit-Reset"]) <= 30
        if style == "legacy":
            message = "Rate limit exceeded. Please retry after some time."
            assert r.json() == {"error": {"name": "rateLimited", "message": message}}
        else:
            assert r.json() == example(spec, "common429ErrorRateLimitExceeded")
        assert emu.status_counts[429] == 1 and emu.status_counts[200] == 3


def test_a_real_minute_window_resets_in_whole_seconds() -> None:
    with running(events=20, rate_limit=5, rate_window=60.0) as (_, client):
        h = client.get("/audit/logs").headers
        assert h["RateLimit-Reset"].isdigit() and 1 <= int(h["RateLimit-Reset"]) <= 60


def test_rate_limit_window_recovers_with_precise_reset() -> None:
    with running(events=20, rate_limit=1, rate_window=0.4) as (_, client):
        for _ in range(50):
            r = client.get("/audit/logs")
            if r.status_code == 429:
                break
        assert r.status_code == 429
        wait = float(r.headers["RateLimit-Reset"])
        assert 0 < wait <= 0.4 and r.headers["Retry-After"] == "1"
        time.sleep(wait + 0.02)
        assert client.get("/audit/logs").status_code == 200


def test_monthly_quota(spec: dict[str, Any]) -> None:
    with running(events=20, quota=2) as (_, client):
        left = [client.get("/audit/logs").headers["RateLimit-Remaining-Month"] for _ in range(2)]
        assert left == ["1", "0"]
        for _ in range(2):
            r = client.get("/audit/logs")
            assert r.status_code == 429
            message = "Service limit exhausted. Please contact your team admin."
            assert r.json() == {"error": {"name": "serviceLimitExhausted", "message": message}}
            assert r.headers["RateLimit-Remaining-Month"] == "0"
            assert r.headers["X-RateLimit-Remaining-Month"] == "0"
            assert r.headers["RateLimit-Limit-Month"] == "2"
            check(response_schema(spec, "/audit/logs", 429), r.json())


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("style", ["legacy", "problem"])
def test_fault_500(style: str, spec: dict[str, Any]) -> None:
    with running(events=20, fault_rate=1.0, faults=("500",), error_style=style) as (emu, client):
        r = client.get("/audit/logs")
        assert r.status_code == 500
        check(response_schema(spec, "/audit/logs", 500), r.json())
        emu.config.fault_rate = 0.0  # run-time switch
        assert client.get("/audit/logs").status_code == 200
        assert emu.fault_counts == {"500": 1}


def test_fault_503_plain_text() -> None:
    with running(events=20, fault_rate=1.0, faults=("503",)) as (_, client):
        r = client.get("/audit/logs")
    assert r.status_code == 503 and r.headers["content-type"].startswith("text/plain")
    assert "spike" in r.text


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_fault_broken_connections(kind: str) -> None:
    with running(events=50, fault_rate=1.0, faults=(kind,)) as (emu, client):
        with pytest.raises(httpx.TransportError):
            client.get("/audit/logs")
        emu.config.fault_rate = 0.0
        assert client.get("/audit/logs").status_code == 200  # a fresh connection works
        assert emu.fault_counts[kind] == 1


def test_fault_truncate_declares_more_than_it_sends() -> None:
    request = f"GET /audit/logs HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n\r\n".encode()
    with running(events=50, fault_rate=1.0, faults=("truncate",)) as (emu, _):
        data = raw_exchange(emu.port, request)
    head, _, body = data.partition(b"\r\n\r\n")
    declared = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
    assert head.startswith(b"HTTP/1.1 200") and 0 < len(body) < declared


def test_fault_html_page() -> None:
    with running(events=20, fault_rate=1.0, faults=("html",)) as (_, client):
        r = client.get("/audit/logs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        r.json()


def test_fault_delay(logs_schema: dict[str, Any]) -> None:
    with running(events=20, fault_rate=1.0, faults=("delay",), delay_seconds=0.2) as (emu, c):
        started = time.monotonic()
        r = c.get("/audit/logs")
        assert time.monotonic() - started >= 0.2
    assert r.status_code == 200 and emu.fault_counts["delay"] == 1
    check(logs_schema, r.json())


def test_fault_rate_is_partial_and_seeded() -> None:
    def statuses(seed: int) -> list[int]:
        with running(events=20, seed=seed, fault_rate=0.5, faults=("500", "503")) as (_, c):
            return [c.get("/audit/logs").status_code for _ in range(40)]

    first = statuses(3)
    assert {200, 500, 503} <= set(first)
    assert statuses(3) == first


# ---------------------------------------------------------------- live additions


def test_add_events_new_and_late() -> None:
    with running(events=200) as (emu, client):
        newest = emu.events[-1]
        max_id = max(ids(emu.events))
        new = emu.add_events(4)
        assert [ts_of(e) > ts_of(newest) for e in new] == [True] * 4
        assert emu.now >= ts_of(new[-1])
        late = emu.add_events(3, late_by=timedelta(days=2))
        assert all(e["id"] > max_id for e in new + late)
        assert {ts_of(e) for e in late} == {ts_of(new[-1]) - timedelta(days=2)}
        assert [order_key(e) for e in emu.events] == sorted(order_key(e) for e in emu.events)
        tied = emu.add_events(2, at=ts_of(newest))
        assert {e["timestamp"] for e in tied} == {newest["timestamp"]}
        records, _ = walk(client, {"limit": 100})
        assert records == sorted(emu.events, key=order_key, reverse=True)
        day = late[0]["timestamp"][:10]
        got = ids(walk(client, {"since": day, "until": day})[0])
        assert set(ids(late)) <= set(got)
        with pytest.raises(ValueError):
            emu.add_events(1, at=NOW, late_by=timedelta(1))


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_in_flight_pagination_survives_additions(order: str) -> None:
    with running(events=500) as (emu, client):
        original = sorted(emu.events, key=order_key, reverse=order == "desc")
        first = client.get("/audit/logs", params={"orderBy": order, "limit": 50}).json()
        second = client.get(
            "/audit/logs", params={"orderBy": order, "limit": 50, "cursor": first["nextCursor"]}
        ).json()
        walked = second["trails"][-1]
        # late arrivals on both sides of the cursor, plus brand-new events
        behind = emu.add_events(2, late_by=timedelta(days=1))
        ahead = emu.add_events(2, late_by=timedelta(days=25))
        fresh = emu.add_events(3)
        rest, _ = walk(client, {"orderBy": order, "limit": 50, "cursor": second["nextCursor"]})
        got = first["trails"] + second["trails"] + rest
    assert len(ids(got)) == len(set(ids(got)))
    assert [r for r in got if r["id"] in set(ids(original))] == original
    extra = {r["id"] for r in got} - set(ids(original))
    for e in behind + ahead + fresh:
        beyond = (
            order_key(e) > order_key(walked)
            if order == "asc"
            else (order_key(e) < order_key(walked))
        )
        assert (e["id"] in extra) == beyond


def test_concurrent_walks_with_additions() -> None:
    with running(events=800) as (emu, _):
        original = set(ids(emu.events))
        errors: list[BaseException] = []

        def worker(order: str) -> None:
            try:
                with httpx.Client(base_url=emu.url, headers={"X-API-Key": KEY}) as c:
                    got = ids(walk(c, {"orderBy": order, "limit": 37})[0])
                assert len(got) == len(set(got)) and original <= set(got)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(o,)) for o in ("asc", "desc") * 2]
        for t in threads:
            t.start()
        for _ in range(10):
            emu.add_events(5, late_by=timedelta(hours=5))
            emu.add_events(5)
        for t in threads:
            t.join(timeout=20)
            assert not t.is_alive(), "a walk did not finish within 20 s"
        assert not errors


def test_bookkeeping(shared: tuple[PostmanEmulator, httpx.Client]) -> None:
    emu, client = shared
    before = emu.request_count
    client.get("/audit/logs", params={"limit": 5, "orderBy": "asc"})
    assert emu.request_count == before + 1
    assert emu.requests_log[-1] == ("/audit/logs", {"limit": "5", "orderBy": "asc"})
    page = client.get("/audit/logs", params={"limit": 5, "cursor": "", "since": ""}).json()
    assert len(page["trails"]) == 5  # empty values count as absent
    assert emu.requests_log[-1] == ("/audit/logs", {"limit": "5", "cursor": "", "since": ""})
    assert emu.status_counts[200] >= 1


def test_raw_http_keep_alive_and_fallback_parser(
    shared: tuple[PostmanEmulator, httpx.Client],
) -> None:
    emu, _ = shared
    get = f"GET /audit/logs?limit=1 HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n"
    pipelined = f"{get}Content-Length: 3\r\n\r\nxyz{get}\r\n{get}Connection: close\r\n\r\n"
    data = raw_exchange(emu.port, pipelined.encode())
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 3 and data.count(b"Connection: close") == 1
    assert data.count(b"Content-Length: ") == 3
    request10 = f"GET /audit/logs HTTP/1.0\r\nX-API-Key: {KEY}\r\n\r\n"
    http10 = raw_exchange(emu.port, request10.encode())
    assert http10.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in http10
    odd = f"GET /audit/logs?limit=2 HTTP/1.2\r\nx-api-KEY: {KEY}\r\nConnection: close\r\n\r\n"
    data = raw_exchange(emu.port, odd.encode())  # not the fast path: the stdlib parser
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert len(json.loads(data.partition(b"\r\n\r\n")[2])["trails"]) == 2
    post = raw_exchange(emu.port, b"POST /audit/logs HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert post.startswith(b"HTTP/1.1 501")


# ---------------------------------------------------------------- CLI


def test_cli_prints_url_and_stops_on_sigterm() -> None:
    argv = ["--port", "0", "--events", "50", "--days", "3", "--end-signal", "null"]
    argv += ["--error-style", "problem"]
    cmd = [sys.executable, "-m", "postman_audit.emulator", *argv]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
            r = httpx.get(url + "/audit/logs", params={"limit": 300}, headers={"X-API-Key": KEY})
            assert len(r.json()["trails"]) == 50 and r.json()["nextCursor"] is None
            assert httpx.get(url + "/audit/logs").json()["title"] == "Unauthorized"
            proc.terminate()
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
