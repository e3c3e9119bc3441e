"""A state database's URL: checked, shown without its password, its secrets redacted.

The URL is a secret (it usually carries a password): it is never echoed whole. What may be
shown is ``display(url)``: the scheme, user, host, port and database, without the password
or the query (which may hold ``password=``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

from .._secrets import redactor

__all__ = ["SCHEMES", "display", "problem", "register", "scrub", "secrets_of"]

SCHEMES = ("postgresql", "postgres")


def problem(url: str) -> str | None:
    """What is wrong with ``url`` as a state database URL (never quoting it), or None."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return "must be a URL like postgresql://USER:PASSWORD@HOST:5432/DATABASE (it cannot " \
               "be parsed)"
    if parts.scheme.lower() not in SCHEMES:
        return "must be a postgresql:// URL (postgresql://USER:PASSWORD@HOST:5432/DATABASE)"
    if any(c.isspace() for c in url.strip()):
        return "must not hold spaces (percent-encode them as %20)"
    return None


def display(url: str) -> str:
    """``url`` without its password and query: ``postgresql://user@host:5432/db``."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "postgresql://(unparsable URL)"
    if ":" in host:
        host = f"[{host}]"
    user = f"{unquote(parts.username)}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path or '/'}"


def secrets_of(url: str) -> list[str]:
    """The values in ``url`` to redact: the URL itself, its password (as written and
    decoded) and any ``password`` in its query."""
    values = [url, url.strip()]
    try:
        parts = urlsplit(url.strip())
        if parts.password:
            values += [parts.password, unquote(parts.password)]
        for key, value in parse_qsl(parts.query):
            if key.lower() == "password" and value:
                values.append(value)
    except ValueError:
        pass
    return [v for v in values if v]


def register(url: str) -> None:
    """Redact ``url`` and its password from every log line and error from now on."""
    redactor.add(secrets_of(url))


def scrub(text: str, url: str) -> str:
    """``text`` with ``url``'s secrets removed, however short (a driver's error may quote a
    password that the redactor would keep, being under its length floor)."""
    for value in sorted(secrets_of(url), key=len, reverse=True):
        text = text.replace(value, "***")
    return redactor(text)
