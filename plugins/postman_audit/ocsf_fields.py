"""Postman values as OCSF 1.5.0 fields: times, ids, addresses, the team, people.

Each function takes what OCSF can take and puts the rest in ``unmapped``, under its
Postman path (``data.actor.email`` for an address OCSF refuses). What repeats is
remembered (a team's people, the team, whether an address is one), in caches emptied when
they fill up; a remembered user or team is shared by the events that name it, so nothing
may change one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .timeutil import epoch_of

__all__ = ["EMAIL_PATTERN", "HOURS", "IPS", "IP_MAX_LENGTH", "IP_PATTERN", "PERSON_KEYS",
           "SYSTEM_ACTOR", "TEAM_KEYS", "UNKNOWN", "WITHIN", "endpoint", "extras", "leftovers",
           "org", "person", "real_ip", "remembered", "seconds", "uid"]

SYSTEM_ACTOR = "Postman Internal System"  # Postman's own actor (ids 2 and 18 in the sample)
UNKNOWN = "unknown"  # the name of a subject OCSF requires when the event names none

# OCSF 1.5.0's own patterns for ip_t and email_t (a test holds them to the schema), used the
# way JSON Schema does (``search``): a value they refuse goes to ``unmapped``.
IP_PATTERN = (
    r"((^\s*((([0-9]|[1-9][0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5]).){3}([0-9]|[1-9][0-9]|1[0-9]{2}"
    r"|2[0-4][0-9]|25[0-5]))\s*$)|(^\s*((([0-9A-Fa-f]{1,4}:){7}([0-9A-Fa-f]{1,4}|:))|(([0-9A-F"
    r"a-f]{1,4}:){6}(:[0-9A-Fa-f]{1,4}|((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(.(25[0-5]|2[0-4]\d|1"
    r"\d\d|[1-9]?\d)){3})|:))|(([0-9A-Fa-f]{1,4}:){5}(((:[0-9A-Fa-f]{1,4}){1,2})|:((25[0-5]|2["
    r"0-4]\d|1\d\d|[1-9]?\d)(.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3})|:))|(([0-9A-Fa-f]{1,4}:){"
    r"4}(((:[0-9A-Fa-f]{1,4}){1,3})|((:[0-9A-Fa-f]{1,4})?:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(."
    r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}))|:))|(([0-9A-Fa-f]{1,4}:){3}(((:[0-9A-Fa-f]{1,4})"
    r"{1,4})|((:[0-9A-Fa-f]{1,4}){0,2}:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(.(25[0-5]|2[0-4]\d|1"
    r"\d\d|[1-9]?\d)){3}))|:))|(([0-9A-Fa-f]{1,4}:){2}(((:[0-9A-Fa-f]{1,4}){1,5})|((:[0-9A-Fa-"
    r"f]{1,4}){0,3}:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}))"
    r"|:))|(([0-9A-Fa-f]{1,4}:){1}(((:[0-9A-Fa-f]{1,4}){1,6})|((:[0-9A-Fa-f]{1,4}){0,4}:((25[0"
    r"-5]|2[0-4]\d|1\d\d|[1-9]?\d)(.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}))|:))|(:(((:[0-9A-Fa"
    r"-f]{1,4}){1,7})|((:[0-9A-Fa-f]{1,4}){0,5}:((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(.(25[0-5]|2"
    r"[0-4]\d|1\d\d|[1-9]?\d)){3}))|:)))(%.+)?\s*$))"
)
IP_MAX_LENGTH = 40
EMAIL_PATTERN = r"^[a-zA-Z0-9!#$%&'*+-/=?^_`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$"
_IP = re.compile(IP_PATTERN).search
_EMAIL = re.compile(EMAIL_PATTERN).search

PERSON_KEYS = frozenset(("id", "name", "username", "email", "active"))
TEAM_KEYS = frozenset(("id", "name"))
_USER_TYPES = {SYSTEM_ACTOR: (3, "System")}  # else (1, "User")
_EPOCH = datetime(1970, 1, 1)
_CACHE_SIZE = 4096
IPS: dict[str, dict[str, str] | None] = {}  # an address's src_endpoint, or None
# An API timestamp (``2026-06-15T16:24:56.000Z``) read with two lookups and a sum: the
# epoch seconds of each hour seen in that exact shape, by its text up to the minutes
# (``2026-06-15T16:``), and the seconds into the hour of each rest (``24:56.000Z``).
HOURS: dict[str, int] = {}
WITHIN: dict[str, int] = {f"{m:02d}:{s:02d}.000Z": m * 60 + s
                          for m in range(60) for s in range(60)}
_API_HOUR = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
                       r"\.000Z")


def remembered(cache: dict[Any, Any]) -> dict[Any, Any]:
    """``cache``, emptied first when full: the values it remembers repeat, and a stream of
    new ones cannot grow it without bound."""
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    return cache


def seconds(timestamp: Any) -> int | None:
    """Whole epoch seconds of an API timestamp, or None when it is not one."""
    if type(timestamp) is str:
        hour = HOURS.get(timestamp[:14])  # ``YYYY-MM-DDTHH:``: hours repeat
        within = WITHIN.get(timestamp[14:])  # ``MM:SS.000Z``
        if hour is not None and within is not None:
            return hour + within
        if len(timestamp) == 24 and timestamp[19:] == ".000Z":
            return _api_seconds(timestamp)
    return epoch_of(timestamp)


def _api_seconds(timestamp: str) -> int | None:
    """``seconds`` of a text of the API's length and ending the long way (the C parser);
    remembers the hour of one in the API's exact shape."""
    try:
        found = int((datetime.fromisoformat(timestamp[:19]) - _EPOCH).total_seconds())
    except (ValueError, TypeError):
        return epoch_of(timestamp)
    if _API_HOUR.fullmatch(timestamp):
        remembered(HOURS)[timestamp[:14]] = found - WITHIN[timestamp[14:]]
    return found


def endpoint(ip: str) -> dict[str, str] | None:
    """``src_endpoint`` of an address OCSF takes as one (``real_ip``), else None;
    remembered, and shared by the events from that address."""
    if ip in IPS:
        return IPS[ip]
    found = remembered(IPS)[ip] = {"ip": ip} if real_ip(ip) else None
    return found


def real_ip(ip: str) -> bool:
    """True when OCSF takes ``ip`` as an IP address (its ``ip_t``), remembered."""
    return len(ip) <= IP_MAX_LENGTH and _IP(ip) is not None


def extras(mapping: Mapping[str, Any], known: frozenset[str], prefix: str,
           unmapped: dict[str, Any]) -> None:
    """Keep the fields of ``mapping`` no OCSF field takes, under their Postman path."""
    for key, value in mapping.items():
        if key not in known:
            unmapped[f"{prefix}{key}"] = value


def leftovers(value: Any, known: frozenset[str], path: str,
              unmapped: dict[str, Any]) -> None:
    """Keep what a person or team holds beyond the fields ``person`` and ``org`` read: its
    ``active`` flag, and any key Postman may add."""
    if type(value) is dict or isinstance(value, Mapping):
        if not value.keys() <= known:
            extras(value, known, f"{path}.", unmapped)
        active = value.get("active")
        if active is not None and "active" in known:
            unmapped[f"{path}.active"] = active


def uid(value: Any, unmapped: dict[str, Any], path: str) -> str | None:
    """An id as OCSF's text; a value of another kind goes to ``unmapped``."""
    kind = type(value)
    if kind is int or (kind is str and value):
        return str(value)
    if value is not None:
        unmapped[path] = value
    return None


def org(team: Any, unmapped: dict[str, Any]) -> dict[str, Any] | None:
    """``data.team`` as an OCSF organization (uid, name), or None (its other fields are the
    caller's: ``leftovers``)."""
    if not isinstance(team, Mapping):
        if team is not None:
            unmapped["data.team"] = team
        return None
    found: dict[str, Any] = {}
    tid, name = team.get("id"), team.get("name")
    if (text := uid(tid, unmapped, "data.team.id")) is not None:
        found["uid"] = text
    if type(name) is str and name:
        found["name"] = name
    elif name is not None:
        unmapped["data.team.name"] = name
    return found or None


def person(value: Any, team: dict[str, Any] | None, unmapped: dict[str, Any],
           path: str) -> dict[str, Any] | None:
    """A Postman person (``data.actor``, ``data.user``) as an OCSF user, or None when it
    names nobody. ``name`` is the username (OCSF's user name; else the name, else the
    address), ``full_name`` the name, ``org`` the team. Its other fields (``active``) are
    the caller's: ``leftovers``."""
    if not isinstance(value, Mapping):
        if value is not None:
            unmapped[path] = value
        return None
    username, name, email = value.get("username"), value.get("name"), value.get("email")
    user: dict[str, Any] = {}
    if (text := uid(value.get("id"), unmapped, f"{path}.id")) is not None:
        user["uid"] = text
    if type(username) is str and username:
        user["name"] = username
    elif username is not None:
        unmapped[f"{path}.username"] = username
    if type(name) is str and name:
        user.setdefault("name", name)
        user["full_name"] = name
    elif name is not None:
        unmapped[f"{path}.name"] = name
    if type(email) is str and _EMAIL(email):
        user["email_addr"] = email
        user.setdefault("name", email)  # known by the address alone: it is the name too
    elif email is not None:
        unmapped[f"{path}.email"] = email
    if not user:
        return None
    user["type_id"], user["type"] = (_USER_TYPES.get(name, (1, "User"))
                                     if type(name) is str else (1, "User"))
    if team is not None:
        user["org"] = team
    return user
