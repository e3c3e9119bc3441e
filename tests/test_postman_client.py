"""The Postman client and the host's HTTP toolkit under ``httpx.MockTransport``: waits the
server asks for, retries, quotas, redirects, bounded bodies, error messages in users' words,
and an API key that never leaks into an exception or a log record."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from postman_audit.client import InvalidCursor, PostmanClient, RetentionRefused, error_text
from postman_audit.emulator import EmulatorConfig, PostmanEmulator

from plugin_host import (
    AuthError,
    InputContext,
    PluginHostError,
    ProtocolError,
    QuotaExhausted,
    StopRequested,
    UpstreamError,
)
from plugin_host._secrets import guarded
from plugin_host.http import JsonHttpClient, RateLimiter, retry_after_seconds

KEY = "PMAK-client-test-5f1e2d3c4b5a69788796a5b4"
HOST = "api.getpostman.com"
PAGE = {"trails": [{"id": 1, "timestamp": "2026-06-15T12:00:00.000Z"}], "nextCursor": 77}

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a script and remembers every request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer


def make_client(recorder: Recorder, **settings: Any) -> tuple[PostmanClient, InputContext]:
    context = InputContext("client-test", logging.getLogger("plugin_host.input.client-test"))
    merged = {"base_url": f"https://{HOST}", "retry_initial_backoff_seconds": 0.01,
              "retry_budget_seconds": 30, **settings}
    client = PostmanClient(merged, KEY, context, transport=httpx.MockTransport(recorder))
    return client, context


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record every wait the HTTP client asks for, instead of sleeping through it."""
    asked: list[float] = []
    monkeypatch.setattr("plugin_host.http.JsonHttpClient._sleep",
                        lambda self, seconds: asked.append(seconds))
    return asked


def legacy(name: str, message: str) -> dict[str, Any]:
    return {"error": {"name": name, "message": message}}


def problem(kind: str, title: str, detail: str, status: int) -> dict[str, Any]:
    return {"type": f"https://api.postman.com/problems/{kind}", "title": title,
            "detail": detail, "status": status}


# ------------------------------------------------------------------ Retry-After parsing


NOW = 1_781_524_800.0  # 2026-06-15T12:00:00Z


@pytest.mark.parametrize("headers, expected", [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": " 2.5 "}, 2.5),
    ({"X-RateLimit-RetryAfter": "4"}, 4.0),
    ({"RateLimit-Reset": "0.25"}, 0.25),
    ({"X-RateLimit-Reset": "3"}, 3.0),
    ({"Retry-After": str(int(NOW) + 30)}, 30.0),                       # epoch seconds
    ({"RateLimit-Reset": str(int(NOW) + 12)}, 12.0),
    ({"Retry-After": email.utils.formatdate(NOW + 45, usegmt=True)}, 45.0),  # HTTP-date
    ({"Retry-After": "0", "X-RateLimit-RetryAfter": "5"}, 5.0),        # zero: look further
    ({"Retry-After": "soon", "RateLimit-Reset": "6"}, 6.0),
])
def test_retry_after_reads_delta_epoch_and_http_date(headers: dict[str, str],
                                                     expected: float) -> None:
    assert retry_after_seconds(headers, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("headers", [
    {}, {"Retry-After": "0"}, {"Retry-After": "-3"}, {"Retry-After": "soon"},
    {"Retry-After": str(int(NOW) - 30)}, {"Retry-After": email.utils.formatdate(NOW - 5)},
    {"Content-Type": "application/json"},
])
def test_retry_after_is_none_when_absent_zero_past_or_unreadable(headers: dict[str, str]) -> None:
    assert retry_after_seconds(headers, now=NOW) is None


# ------------------------------------------------------------------ 429 and waits


@pytest.mark.parametrize("headers, low, high", [
    ({"Retry-After": "3"}, 3.0, 3.1),
    ({"X-RateLimit-RetryAfter": "2"}, 2.0, 2.1),
    ({"RateLimit-Reset": "1.5"}, 1.5, 1.6),
    ({"RateLimit-Reset": "__EPOCH+4__"}, 3.0, 4.1),
    ({"Retry-After": "__DATE+5__"}, 3.0, 5.1),
])
def test_a_429_waits_what_the_server_asks_then_retries(
    waits: list[float], headers: dict[str, str], low: float, high: float
) -> None:
    now = time.time()
    resolved = {k: v.replace("__EPOCH+4__", str(int(now) + 4)).replace(
        "__DATE+5__", email.utils.formatdate(int(now) + 5, usegmt=True)) for k, v in
        headers.items()}
    recorder = Recorder(httpx.Response(429, headers=resolved,
                                       json=legacy("rateLimited", "Rate limit exceeded.")),
                        httpx.Response(200, json=PAGE))
    client, context = make_client(recorder)
    trails, cursor = client.audit_logs({"limit": 1})
    assert [t["id"] for t in trails] == [1] and cursor == 77
    assert len(recorder.requests) == 2 and len(waits) == 1
    assert low <= waits[0] <= high
    assert context.stats.rate_limit_waits == 1 and context.stats.retries == 1


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "0"}, {"Retry-After": "garbage"}])
def test_a_429_without_a_usable_wait_backs_off_rather_than_retrying_at_once(
    waits: list[float], headers: dict[str, str]
) -> None:
    recorder = Recorder(httpx.Response(429, headers=headers), httpx.Response(429, headers=headers),
                        httpx.Response(200, json=PAGE))
    client, _ = make_client(recorder, retry_initial_backoff_seconds=0.5)
    client.audit_logs({})
    assert len(recorder.requests) == 3
    assert len(waits) == 2 and all(w >= 0.25 for w in waits)


def test_remaining_zero_pauses_the_client_until_the_window_resets() -> None:
    recorder = Recorder(httpx.Response(200, json=PAGE, headers={
        "RateLimit-Remaining": "0", "RateLimit-Reset": "20"}))
    client, _ = make_client(recorder)
    limiter = client._http.limiter
    assert isinstance(limiter, RateLimiter) and limiter.delay() == 0
    client.audit_logs({})
    assert 19 <= limiter.delay() <= 20


def test_the_client_side_limit_spaces_requests() -> None:
    limiter = RateLimiter(2, 60)
    assert limiter.acquire() == 0 and limiter.acquire() == 0
    assert limiter.delay() > 59


@pytest.mark.parametrize("body, headers", [
    (legacy("serviceLimitExhausted", "Service limit exhausted. Please contact your team admin."),
     {}),
    ({"error": "whatever"}, {"RateLimit-Remaining-Month": "0"}),
    (None, {"X-RateLimit-Remaining-Month": "0"}),
])
def test_an_exhausted_monthly_quota_fails_at_once_without_retrying(
    waits: list[float], body: Any, headers: dict[str, str]
) -> None:
    recorder = Recorder(httpx.Response(429, json=body, headers=headers)
                        if body is not None else httpx.Response(429, headers=headers))
    client, _ = make_client(recorder)
    with pytest.raises(QuotaExhausted) as info:
        client.audit_logs({})
    assert len(recorder.requests) == 1 and waits == []
    assert "quota" in str(info.value) and info.value.exit_code == 4
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ 5xx, broken bodies


def test_5xx_is_retried_with_growing_backoff_then_fails_inside_the_budget(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    recorder = Recorder(httpx.Response(500, json=legacy("serverError", "An error has occurred")))
    client, context = make_client(recorder, retry_initial_backoff_seconds=0.02,
                                  retry_budget_seconds=0.5)
    real_sleep = client._http._sleep
    monkeypatch.setattr(client._http, "_sleep",
                        lambda seconds: (slept.append(seconds), real_sleep(seconds)))
    with pytest.raises(UpstreamError) as info:
        client.audit_logs({})
    text = str(info.value)
    assert "HTTP 500" in text and "gave up after" in text and "retry budget 0.5s" in text
    assert "next run resumes" in text
    assert len(recorder.requests) >= 3 and len(slept) == len(recorder.requests) - 1
    assert all(s >= 0.01 for s in slept)
    assert context.stats.retries == len(slept)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_transient_statuses_are_retried(waits: list[float], status: int) -> None:
    recorder = Recorder(httpx.Response(status, text="Service Unavailable"),
                        httpx.Response(200, json=PAGE))
    client, _ = make_client(recorder)
    assert client.audit_logs({})[1] == 77
    assert len(recorder.requests) == 2 and len(waits) == 1 and waits[0] > 0


@pytest.mark.parametrize("bad", [
    httpx.Response(200, content=b'{"trails":[{"id":1,"timestamp":"2026-06-15T1',
                   headers={"Content-Type": "application/json"}),
    httpx.Response(200, content=b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
                   headers={"Content-Type": "text/html"}),
    httpx.Response(200, content=b""),
    httpx.ConnectError("connection refused"),
    httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
    httpx.ReadTimeout("timed out"),
], ids=["truncated", "html", "empty", "refused", "reset", "timeout"])
def test_a_broken_200_or_connection_is_retried(waits: list[float], bad: Any) -> None:
    recorder = Recorder(bad, httpx.Response(200, json=PAGE))
    client, _ = make_client(recorder)
    trails, _ = client.audit_logs({})
    assert [t["id"] for t in trails] == [1]
    assert len(recorder.requests) == 2 and len(waits) == 1


def test_a_stop_request_during_retries_ends_quietly() -> None:
    recorder = Recorder(httpx.Response(503))
    client, context = make_client(recorder, retry_initial_backoff_seconds=5)
    context.stop_event.set()
    with pytest.raises(StopRequested):
        client.audit_logs({})
    assert len(recorder.requests) == 1


# ------------------------------------------------------------------ page shapes


@pytest.mark.parametrize("body, cursor", [
    ({"trails": []}, None),
    ({"trails": [], "nextCursor": None}, None),
    ({"trails": [], "nextCursor": ""}, None),
    ({"trails": [], "nextCursor": False}, None),
    ({"trails": [], "nextCursor": 12}, 12),
    ({"trails": [], "nextCursor": "MTIz"}, "MTIz"),
    ({"nextCursor": 5}, 5),
])
def test_next_cursor_is_none_however_the_end_is_signalled(body: Any, cursor: Any) -> None:
    client, _ = make_client(Recorder(httpx.Response(200, json=body)))
    assert client.audit_logs({}) == ([], cursor)


@pytest.mark.parametrize("body", [[], {"trails": {}}, {"trails": None},
                                  {"trails": [], "nextCursor": {"a": 1}},
                                  {"trails": [], "nextCursor": 1.5}, "text"])
def test_a_200_that_is_not_an_audit_page_stops_the_run(body: Any) -> None:
    client, _ = make_client(Recorder(httpx.Response(200, json=body)))
    with pytest.raises(ProtocolError) as info:
        client.audit_logs({})
    assert info.value.exit_code == 4


# ------------------------------------------------------------------ redirects, bodies


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_the_key_stays_home(status: int) -> None:
    recorder = Recorder(
        lambda request: httpx.Response(status, headers={
            "Location": "https://collector.evil.example/audit/logs?limit=1"})
        if request.url.host == HOST else httpx.Response(200, json=PAGE))
    client, _ = make_client(recorder)
    with pytest.raises(UpstreamError) as info:
        client.audit_logs({"limit": 1})
    assert "redirect" in str(info.value) and "collector.evil.example" in str(info.value)
    assert [r.url.host for r in recorder.requests] == [HOST]
    assert KEY not in str(info.value)


def test_the_key_goes_only_in_the_header_to_the_configured_host() -> None:
    recorder = Recorder(httpx.Response(200, json=PAGE))
    client, _ = make_client(recorder)
    client.audit_logs({"limit": 5, "orderBy": "desc"})
    (request,) = recorder.requests
    assert request.url.host == HOST and request.url.scheme == "https"
    assert request.headers["x-api-key"] == KEY
    assert KEY not in str(request.url) and "apikey" not in str(request.url).lower()
    assert request.url.path == "/audit/logs"


def test_a_declared_oversize_body_is_refused_before_reading_it(waits: list[float]) -> None:
    recorder = Recorder(httpx.Response(200, headers={"Content-Length": str(64 * 1024 * 1024)},
                                       stream=httpx.ByteStream(b"{}")))
    client, _ = make_client(recorder)
    with pytest.raises(ProtocolError) as info:
        client.audit_logs({})
    assert "byte limit" in str(info.value) and len(recorder.requests) == 1 and waits == []


def test_an_endless_body_is_cut_at_the_limit() -> None:
    def endless() -> Iterator[bytes]:
        chunk = b"[" * 65536
        while True:
            yield chunk

    recorder = Recorder(lambda request: httpx.Response(200, content=endless()))
    client, _ = make_client(recorder)
    with pytest.raises(ProtocolError) as info:
        client.audit_logs({})
    assert "over the" in str(info.value) and "byte limit" in str(info.value)


# ------------------------------------------------------------------ errors in users' words


AUTH_BODIES = {
    "legacy": legacy("AuthenticationError",
                     "Invalid API Key. Every request requires a valid API Key to be sent."),
    "problem": problem("unauthorized", "Unauthorized",
                       "A valid API key must be provided in the request header.", 401),
}
FORBIDDEN_BODIES = {
    "legacy": legacy("ForbiddenRequest", "You do not have permissions to view team Audit logs"),
    "problem": problem("forbidden", "Forbidden", "You are not permitted to perform the action.",
                       403),
}
RETENTION_BODIES = {
    "legacy": legacy("invalidParamsError",
                     "Invalid 'since': date cannot be older than 2025-12-17."),
    "problem": problem("bad-request", "Malformed request",
                       "Invalid 'since': date cannot be older than 2025-12-17.", 400),
}


@pytest.mark.parametrize("style", ["legacy", "problem"])
def test_401_says_the_key_is_wrong_or_expired(style: str) -> None:
    client, _ = make_client(Recorder(httpx.Response(401, json=AUTH_BODIES[style])))
    with pytest.raises(AuthError) as info:
        client.audit_logs({})
    text = str(info.value)
    assert info.value.exit_code == 3 and "\n" not in text
    assert "401" in text and "wrong, expired or revoked" in text and "api_key" in text
    said = error_text(AUTH_BODIES[style])
    assert said and said in text  # Postman's own words are kept


@pytest.mark.parametrize("style", ["legacy", "problem"])
def test_403_says_team_admin_and_plan(style: str) -> None:
    client, _ = make_client(Recorder(httpx.Response(403, json=FORBIDDEN_BODIES[style])))
    with pytest.raises(AuthError) as info:
        client.audit_logs({})
    text = str(info.value)
    assert info.value.exit_code == 3 and "403" in text
    assert "Team Admin" in text and "plan" in text and error_text(FORBIDDEN_BODIES[style]) in text


@pytest.mark.parametrize("style", ["legacy", "problem"])
def test_400_past_retention_names_the_oldest_day(style: str) -> None:
    client, _ = make_client(Recorder(httpx.Response(400, json=RETENTION_BODIES[style])))
    with pytest.raises(RetentionRefused) as info:
        client.audit_logs({"since": "2025-01-01"})
    assert info.value.oldest == "2025-12-17"
    assert "retention" in str(info.value) and "backfill_start_time" in str(info.value)


@pytest.mark.parametrize("body", [
    problem("bad-request", "Malformed request", "Invalid cursor", 400),
    legacy("invalidParamsError", "Invalid 'cursor': expected an integer."),
])
def test_400_on_a_cursor_is_an_invalid_cursor(body: dict[str, Any]) -> None:
    client, _ = make_client(Recorder(httpx.Response(400, json=body)))
    with pytest.raises(InvalidCursor):
        client.audit_logs({"cursor": "1"})


@pytest.mark.parametrize("status, body, words", [
    (400, legacy("InvalidAuditAction", "Invalid audit action format."), "refused the request"),
    (404, problem("not-found", "Not Found", "Not Found", 404), "base_url"),
    (418, None, "HTTP 418"),
])
def test_other_client_errors_fail_at_once_with_a_reason(
    waits: list[float], status: int, body: Any, words: str
) -> None:
    recorder = Recorder(httpx.Response(status, json=body) if body is not None
                        else httpx.Response(status))
    client, _ = make_client(recorder)
    with pytest.raises(UpstreamError) as info:
        client.audit_logs({})
    assert words in str(info.value) and len(recorder.requests) == 1 and waits == []


# ------------------------------------------------------------------ the key never leaks


def _leaky_answers() -> list[httpx.Response | Exception]:
    echo = f"request with key {KEY} refused"
    return [
        httpx.Response(401, json=legacy("AuthenticationError", echo)),
        httpx.Response(403, json=problem("forbidden", "Forbidden", echo, 403)),
        httpx.Response(400, json=legacy("invalidParamsError", echo)),
        httpx.Response(429, json=legacy("serviceLimitExhausted", echo)),
        httpx.Response(302, headers={"Location": f"https://evil.example/?k={KEY}"}),
        httpx.Response(500, text=echo),
        httpx.ConnectError(echo),
    ]


@pytest.mark.parametrize("answer", _leaky_answers(),
                         ids=["401", "403", "400", "quota", "redirect", "500", "connect"])
def test_the_key_is_in_no_exception_and_no_log_record(
    caplog: pytest.LogCaptureFixture, answer: httpx.Response | Exception
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "plugin_host", "postman_audit"):
        caplog.set_level(logging.DEBUG, logger=name)
    recorder = Recorder(answer)
    client, _ = make_client(recorder, retry_budget_seconds=0.05,
                            retry_initial_backoff_seconds=0.01)
    with pytest.raises(PluginHostError) as info, guarded({"api_key": KEY}):  # as the host does
        client.audit_logs({"limit": 1})
    client.close()
    assert KEY not in str(info.value) and KEY not in repr(info.value.args)
    assert caplog.records, "expected httpx to log the request"
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in repr(record.args)


def test_the_key_is_in_no_log_record_over_real_http(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    config = EmulatorConfig(events=50, days=2)
    with PostmanEmulator(config) as emulator:
        context = InputContext("client-test", logging.getLogger("plugin_host.input.x"))
        good = PostmanClient({"base_url": emulator.url}, config.api_key, context)
        trails, _ = good.audit_logs({"limit": 3, "orderBy": "desc"})
        good.close()
        wrong = "PMAK-wrong-" + config.api_key[::-1]
        bad = PostmanClient({"base_url": emulator.url}, wrong, context)
        with pytest.raises(AuthError) as info:
            bad.audit_logs({"limit": 3})
        bad.close()
    assert len(trails) == 3
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    for secret in (config.api_key, wrong):
        assert secret not in str(info.value)
        for record in caplog.records:
            assert secret not in record.getMessage() and secret not in repr(record.args)


@pytest.mark.parametrize("base", ["http://127.0.0.1:8080", "https://api.example/v1/",
                                  "https://api.example/v1", "https://api.example/v1?tenant=7"])
@pytest.mark.parametrize("params", [None, {"orderBy": "desc", "limit": 300},
                                    {"cursor": "a+b/c==", "since": "2026-01-01", "q": "é ü"}])
def test_request_urls_are_the_ones_httpx_would_build(base: str, params: Any) -> None:
    client = JsonHttpClient(base, {})
    expected = client._client.build_request("GET", "/audit/logs", params=params).url
    assert client.url("/audit/logs", params) == expected
    assert str(client.url("audit/logs", params)) == str(expected)
    client.close()
