"""The Postman API client: ``GET /audit/logs`` pages, with Postman's errors in users' words."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

from plugin_host import AuthError, InputContext, ProtocolError, QuotaExhausted, UpstreamError
from plugin_host.http import JsonHttpClient, RateLimiter, RetryPolicy

from . import __version__

__all__ = ["InvalidCursor", "PostmanClient", "RetentionRefused", "error_text"]

_RETENTION = re.compile(r"cannot be older than\D*(\d{4}-\d{2}-\d{2})?", re.IGNORECASE)


class RetentionRefused(UpstreamError):
    """Postman refused ``since`` as older than its retention period."""

    def __init__(self, message: str, oldest: str | None) -> None:
        super().__init__(message)
        self.oldest = oldest


class InvalidCursor(UpstreamError):
    """Postman refused a saved ``cursor``."""


def error_text(body: Any) -> str:
    """Postman's own words from either error body style, trimmed; '' when there are none."""
    if not isinstance(body, Mapping):
        return ""
    error = body.get("error")
    if isinstance(error, Mapping):
        parts = [str(error.get("name") or ""), str(error.get("message") or "")]
    else:
        parts = [str(body.get("title") or ""), str(body.get("detail") or "")]
    text = ": ".join(p for p in parts if p)
    return text[:200]


def _error_name(body: Any) -> str:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return str(error.get("name") or "")
        return str(body.get("type") or "")
    return ""


def classify(status: int, body: Any, headers: httpx.Headers) -> UpstreamError | AuthError | None:
    """The error a Postman response means, or None when retrying may help."""
    said = error_text(body)
    quoted = f" (Postman said: {said})" if said else ""
    if status == 401:
        return AuthError(
            "Postman refused the API key (HTTP 401): it is wrong, expired or revoked. "
            "Create a new key in Postman (Settings > API keys) and update "
            "input.secrets.api_key" + quoted
        )
    if status == 403:
        return AuthError(
            "Postman refused access to the audit logs (HTTP 403): the key's user must be a "
            "Team Admin (or a service account with the Team Admin role) on a plan with audit "
            "logs (Enterprise). Use such a key, or ask your admin to enable audit logs" + quoted
        )
    if status == 429:
        month = headers.get("ratelimit-remaining-month") or headers.get(
            "x-ratelimit-remaining-month")
        if "servicelimitexhausted" in _error_name(body).lower() or (
            month is not None and month.strip() == "0"
        ):
            return QuotaExhausted(
                "Postman's monthly API call quota for this team is exhausted "
                "(429 serviceLimitExhausted): no call can succeed until it resets. Ask a team "
                "admin to raise the usage limit; the state is kept and the next run resumes"
                + quoted
            )
        return None
    if status == 400:
        match = _RETENTION.search(said) or _RETENTION.search(str(body))
        if match:
            return RetentionRefused(
                "Postman refused the start as outside its audit-log retention period "
                f"(HTTP 400){quoted}: set backfill_start_time later", match.group(1)
            )
        if "cursor" in said.lower():
            return InvalidCursor(f"Postman refused the saved cursor (HTTP 400){quoted}")
        return UpstreamError(f"Postman refused the request (HTTP 400){quoted}")
    if status == 404:
        return UpstreamError(
            f"Postman answered 404 Not Found{quoted}: check that base_url points at the "
            "Postman API (https://api.getpostman.com, or https://api.eu.postman.com for EU teams)"
        )
    if 400 <= status < 500 and status not in (408, 429):
        return UpstreamError(f"Postman answered HTTP {status}{quoted}")
    return None


class PostmanClient:
    """``GET /audit/logs`` with the host's rate limiter, retries and bounded bodies."""

    def __init__(
        self,
        settings: Mapping[str, Any],
        api_key: str,
        context: InputContext,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        rate = settings.get("rate_limit") or {}
        self._http = JsonHttpClient(
            str(settings["base_url"]).rstrip("/"),
            {
                "X-API-Key": api_key,
                "Accept": "application/json",
                "User-Agent": f"plugin-host-postman-audit/{__version__}",
            },
            limiter=RateLimiter(int(rate.get("requests", 300)), float(rate.get("per_seconds", 60))),
            retry=RetryPolicy(
                budget_seconds=float(settings.get("retry_budget_seconds", 120)),
                initial_backoff=float(settings.get("retry_initial_backoff_seconds", 1)),
            ),
            timeout=float(settings.get("timeout_seconds", 30)),
            context=context,  # its counters and stop flag; waits are said through it
            # Postman may quote the key back in its error text: the host redacts every
            # secret from errors raised while it drives an input (plugin_host._secrets.guarded)
            on_error=classify,
            describe=lambda status, body: f"HTTP {status} {error_text(body)}".strip(),
            transport=transport,
        )

    def close(self) -> None:
        """Close connections."""
        self._http.close()

    def audit_logs(self, params: Mapping[str, Any]) -> tuple[list[Any], str | int | None]:
        """One page: the ``trails`` and the ``nextCursor`` (None at the end, however signalled)."""
        body = self._http.get("/audit/logs", params)
        if not isinstance(body, Mapping) or not isinstance(body.get("trails", []), list):
            raise ProtocolError(
                "Postman's /audit/logs answered 200 without a 'trails' list; stopped"
            )
        trails: list[Any] = body.get("trails") or []
        nxt = body.get("nextCursor")
        if nxt is None or nxt == "" or isinstance(nxt, bool):
            nxt = None
        elif not isinstance(nxt, (str, int)):
            raise ProtocolError("Postman's nextCursor is neither a number nor a string; stopped")
        return trails, nxt
