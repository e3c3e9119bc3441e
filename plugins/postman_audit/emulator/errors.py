"""The emulator's error answers: Postman's fixed error bodies (and its plain-text 503), the
builder of a body in the ``"legacy"`` ``{"error":{name,message}}`` or ``"problem"`` (RFC 7807)
style, and :class:`BadRequest`, the 400 answer raised while parsing a query."""

from __future__ import annotations

from typing import Any

__all__ = [
    "INVALID_ACTION",
    "INVALID_CURSOR",
    "NOT_FOUND",
    "PROBLEM",
    "QUOTA_EXHAUSTED",
    "RATE_LIMITED",
    "SERVER_ERROR",
    "TEXT_503",
    "BadRequest",
    "error_body",
    "forbidden_body",
]

PROBLEM = "https://api.postman.com/problems/"
INVALID_CURSOR: dict[str, Any] = {
    "type": PROBLEM + "bad-request",
    "title": "Malformed request",
    "detail": "Invalid cursor",
    "status": 400,
}
INVALID_ACTION: dict[str, Any] = {
    "error": {
        "name": "InvalidAuditAction",
        "message": "Invalid audit action format. Expected format: prefix.action_name "
        "(e.g., user.login).",
    }
}
NOT_FOUND: dict[str, Any] = {
    "type": PROBLEM + "not-found",
    "title": "Not Found",
    "detail": "Not Found",
    "status": 404,
}
QUOTA_EXHAUSTED: dict[str, Any] = {
    "error": {
        "name": "serviceLimitExhausted",
        "message": "Service limit exhausted. Please contact your team admin.",
    }
}
# The texts of the styled errors: (legacy (name, message), problem (kind, title, detail)).
_Texts = tuple[tuple[str, str], tuple[str, str, str]]
RATE_LIMITED: _Texts = (
    ("rateLimited", "Rate limit exceeded. Please retry after some time."),
    (
        "rate-limit-exceeded",
        "Too Many Requests",
        "Rate limit exceeded. Retry after the period indicated by the Retry-After header.",
    ),
)
SERVER_ERROR: _Texts = (
    ("serverError", "An error has occurred on the server."),
    ("internal-server-error", "Internal Server Error", "Internal Server Error"),
)
TEXT_503 = (
    b"Service Unavailable: an unexpected spike in API access traffic. "
    b"The server is usually operational within the next five minutes.\n"
)


class BadRequest(Exception):
    """A 400 answer raised while parsing the query."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.body = body


def error_body(
    style: str, status: int, legacy: tuple[str, str], problem: tuple[str, str, str]
) -> dict[str, Any]:
    """The body in ``style``: ``legacy`` is (name, message), ``problem`` (kind, title, detail)."""
    if style == "legacy":
        return {"error": {"name": legacy[0], "message": legacy[1]}}
    kind, title, detail = problem
    return {"type": PROBLEM + kind, "title": title, "detail": detail, "status": status}


def forbidden_body(what: str) -> dict[str, Any]:
    """The 403 body of a call whose key may not view ``what``."""
    return {
        "error": {
            "name": "ForbiddenRequest",
            "message": f"You do not have permissions to view {what}",
        }
    }
