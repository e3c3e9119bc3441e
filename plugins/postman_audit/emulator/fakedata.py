"""Deterministic fake Postman audit-log events, modelled on the real sanitized sample.

Everything here is driven by a caller-supplied :class:`random.Random`, so the same seed
always yields the same events. The quirks seen in real responses are reproduced on purpose:
``ip`` null or IPv6, ``userAgent`` null, system actors (ids 2 and 18) without username/email,
``data.user`` absent on ``team.update_user_roles``, ``data.variables`` absent on logins,
JSON-encoded string values inside ``variables``, an unrendered ``${data.variables.orgId}``
message template, and non-ASCII names.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "ACTIONS",
    "TEAM",
    "dumps",
    "format_ts",
    "generate_timestamps",
    "make_event",
]

try:
    import orjson

    def dumps(obj: Any) -> bytes:
        """Compact UTF-8 JSON bytes (orjson)."""
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover - orjson is a project dependency

    def dumps(obj: Any) -> bytes:
        """Compact UTF-8 JSON bytes (stdlib fallback)."""
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


TEAM: dict[str, Any] = {"name": "Example Retail Co", "id": 70000001}

# (name, displayName): the spec's /audit-actions example first, then every action generated here.
ACTIONS: tuple[tuple[str, str], ...] = (
    ("user.mfa_disabled", "2FA Disabled"),
    ("user.mfa_enabled", "2FA Enabled"),
    ("user.mfa_rotate_recovery_codes", "2FA Recovery Codes Rotated"),
    ("user.mfa_reset", "2FA Reset"),
    ("user.apikey_activate", "Activated API Key"),
    ("team.scimkey_activate", "Activated SCIM Key"),
    ("team.add_partnership_member", "Add Partnership Member"),
    ("team.add_credits", "Added Credits"),
    ("team.custom_token.create", "Added Custom Alert"),
    ("team.add_domain", "Added Domain"),
    ("team.add_group_manager", "Added group manager"),
    ("team.add_group_member", "Added Group Member"),
    ("team.add_group_role", "Added Group Role"),
    ("team.add_member", "Added Member"),
    ("team.domain_capture_add_user", "Added member"),
    ("admin.apikey_create", "Created API Key"),
    ("user.apikey_create", "Created API Key"),
    ("user.authaccount.linked", "Linked Account"),
    ("user.authenticate_third_party_app", "Signed into Third-Party App"),
    ("user.login_google_success", "Successful Login via Google"),
    ("user.login_password_success", "Successful Login via Password"),
    ("user.login_sso_success", "Successful Login via SSO"),
    ("team.remove_member", "Removed Team Member"),
    ("team.scim_add_member", "SCIM User Provisioned"),
    ("team.send_invite", "Sent Team Invite"),
    ("team.update_user_roles", "Updated User Role(s)"),
)

# (name, username, email) - fictional people; some non-ASCII, some "(Demo)" accounts,
# one whose display name is just its username (as in the real sample).
_PEOPLE: tuple[tuple[str, str, str], ...] = (
    ("Jordan Avery", "jordan-avery-10000001", "jordan.avery@example.com"),
    ("Morgan Hale", "morgan-hale-2a1b3c4d", "morgan.hale@example.com"),
    ("Alex Carter (Demo)", "alex-carter-demo", "alex.carter+demo@example.com"),
    ("riley-quinn-demo", "riley-quinn-demo", "riley.quinn+demo@example.com"),
    ("Taylor Brooks", "taylor-brooks-30000005", "taylor.brooks@example.com"),
    ("José Álvarez", "jose-alvarez", "jose.alvarez@example.com"),
    ("Zoë Lindqvist", "zoe-lindqvist", "zoe.lindqvist@example.com"),
    ("Łukasz Nowak", "lukasz-nowak-7f3e", "lukasz.nowak@example.com"),
    ("Trần Ngọc Anh", "tran-ngoc-anh", "ngoc.anh.tran@example.com"),
    ("Søren Dahl", "soren-dahl", "soren.dahl@example.com"),
    ("Renée Côté", "renee-cote", "renee.cote@example.com"),
    ("山田 花子", "hanako-yamada", "hanako.yamada@example.com"),
    ("Casey Morgan", "casey-morgan", "casey.morgan@example.com"),
    ("Sam Patel", "sam-patel-40000014", "sam.patel@example.com"),
    ("Dana Kim", "dana-kim", "dana.kim@example.com"),
    ("Chris Oduya", "chris-oduya", "chris.oduya@example.com"),
    ("Priya Raman", "priya-raman", "priya.raman@example.com"),
    ("Noah Fischer", "noah-fischer", "noah.fischer@example.com"),
    ("Emma Rossi", "emma-rossi-9c2d", "emma.rossi@example.com"),
    ("Lee Wong", "lee-wong", "lee.wong@example.com"),
)
_ADMINS = (2, 3, 4, 12)  # indexes into _PEOPLE acting as team admins
_FIRST_USER_ID = 60000001
_SYSTEM_ACTOR_NAME = "Postman Internal System"

_BROWSER_UAS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/26.4 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/149.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/148.0.0.0 Safari/537.36 Edg/148.0.0.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
    "PostmanRuntime/7.29.0 Postman/5.5.4 ChromeApp",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Postman/11.52.5 Electron/35.5.1 Safari/537.36",
)
_API_UA = "PostmanAPI/2.71.0 node"
_ROLES = ("user", "api-catalog-manager", "admin", "supervisor", "community-manager")
_APPS = (("Slack", "T"), ("Microsoft Teams", "M"), ("GitHub", "G"))
_GROUPS = ("Platform", "QA Guild", "Partner APIs", "Équipe Paris")


def format_ts(ts: int) -> str:
    """Epoch seconds as Postman's ``YYYY-MM-DDTHH:MM:SS.000Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def generate_timestamps(
    rng: random.Random, count: int, start: int, end: int, burst: int
) -> list[int]:
    """``count`` sorted epoch seconds in ``[start, end]`` with same-second bursts and midnights."""
    if count <= 0:
        return []
    end = max(end, start)
    first_day, last_day = start // 86400, end // 86400
    out: list[int] = []
    while len(out) < count:
        roll = rng.random()
        if roll < 0.06:  # land exactly on a day boundary, to exercise since/until edges
            day = rng.randint(first_day, last_day)
            t = min(max(day * 86400 + rng.choice((0, 86399)), start), end)
        else:
            t = rng.randint(start, end)
        size = rng.randint(2, burst) if burst > 1 and rng.random() < 0.3 else 1
        out.extend([t] * size)
    del out[count:]
    out.sort()
    return out


def _person(i: int) -> dict[str, Any]:
    name, username, email = _PEOPLE[i]
    return {"name": name, "username": username, "email": email, "id": _FIRST_USER_ID + i}


def _actor(i: int, rng: random.Random) -> dict[str, Any]:
    actor = _person(i)
    actor["active"] = rng.random() > 0.03
    return actor


def _system_actor(actor_id: int) -> dict[str, Any]:
    return {"name": _SYSTEM_ACTOR_NAME, "id": actor_id, "active": True}


def _ip(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.3:
        return None
    if roll < 0.45:
        return "2001:db8:{:x}:{:x}::{:x}:{:x}".format(*(rng.randrange(1, 0xFFFF) for _ in range(4)))
    net = rng.choice(("203.0.113", "198.51.100", "192.0.2"))
    return f"{net}.{rng.randint(1, 254)}"


def _ua(rng: random.Random) -> str | None:
    return None if rng.random() < 0.25 else rng.choice(_BROWSER_UAS)


def _key_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(20):05x}*****"


def _roles_variable(rng: random.Random, subjects: list[int]) -> Any:
    users = {
        str(_FIRST_USER_ID + s): ["user", *rng.sample(_ROLES[1:], rng.randint(0, 3))]
        for s in subjects
    }
    # Real responses carry a JSON-encoded string; the 2021 docs show a real object.
    return json.dumps(users, separators=(",", ":")) if rng.random() < 0.8 else users


_Built = tuple[str | None, str | None, dict[str, Any], str, dict[str, Any]]


def _login(kind: str, how: str) -> Callable[[random.Random, int, int], _Built]:
    def build(rng: random.Random, me: int, other: int) -> _Built:
        actor = _actor(me, rng)
        data = {"actor": actor, "user": _person(me), "team": dict(TEAM)}
        msg = f"{actor['name']} successfully logged in using {how}."
        return _ip(rng), _ua(rng), data, msg, {}

    build.__name__ = kind
    return build


def _admin_apikey(rng: random.Random, me: int, other: int) -> _Built:
    key = _key_id(rng)
    data = {"actor": _system_actor(2), "user": _person(me), "team": dict(TEAM)}
    msg = f"{_SYSTEM_ACTOR_NAME} created an API key with identifier: {key}."
    return None, _API_UA, data, msg, {"apiKey": key}


def _user_apikey(rng: random.Random, me: int, other: int) -> _Built:
    key = _key_id(rng)
    actor = _actor(me, rng)
    data = {"actor": actor, "user": _person(me), "team": dict(TEAM)}
    msg = f"{actor['name']} created an API key with identifier: {key}."
    return _ip(rng), _ua(rng), data, msg, {"apiKey": key}


def _third_party(rng: random.Random, me: int, other: int) -> _Built:
    app, prefix = rng.choice(_APPS)
    org_id = prefix + "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(8))
    user = _person(me)
    shown = "${data.variables.orgId}" if rng.random() < 0.7 else org_id
    msg = f"{user['name']} signed into {app} via Postman ({shown})"
    data = {"actor": _system_actor(18), "user": user, "team": dict(TEAM)}
    return None, None, data, msg, {"appName": app, "orgDesc": "Postman", "orgId": org_id}


def _update_roles(rng: random.Random, me: int, other: int) -> _Built:
    admin = rng.choice(_ADMINS)
    actor = _actor(admin, rng)
    subjects = sorted({other, rng.randrange(len(_PEOPLE))})
    variables = {"users": _roles_variable(rng, subjects)}
    msg = f"{actor['name']} updated roles for multiple users."
    return _ip(rng), _ua(rng), {"actor": actor, "team": dict(TEAM)}, msg, variables


def _add_member(rng: random.Random, me: int, other: int) -> _Built:
    actor = _actor(me, rng)
    data = {"actor": actor, "user": _person(me), "team": dict(TEAM)}
    return _ip(rng), _ua(rng), data, f"{actor['name']} joined the organization.", {"roles": "user"}


def _by_admin(
    template: str, variables: Callable[[random.Random, dict[str, Any]], dict[str, Any]] | None
) -> Callable[[random.Random, int, int], _Built]:
    def build(rng: random.Random, me: int, other: int) -> _Built:
        actor = _actor(rng.choice(_ADMINS), rng)
        user = _person(other)
        data = {"actor": actor, "user": user, "team": dict(TEAM)}
        msg = template.format(actor=actor["name"], user=user["name"], email=user["email"])
        return _ip(rng), _ua(rng), data, msg, (variables(rng, user) if variables else {})

    return build


def _self_action(template: str, with_key: bool) -> Callable[[random.Random, int, int], _Built]:
    def build(rng: random.Random, me: int, other: int) -> _Built:
        actor = _actor(me, rng)
        data = {"actor": actor, "user": _person(me), "team": dict(TEAM)}
        key = _key_id(rng)
        msg = template.format(actor=actor["name"], key=key)
        return _ip(rng), _ua(rng), data, msg, ({"apiKey": key} if with_key else {})

    return build


def _invite_vars(rng: random.Random, user: dict[str, Any]) -> dict[str, Any]:
    return {"email": user["email"], "roles": "user"}


def _group_vars(rng: random.Random, user: dict[str, Any]) -> dict[str, Any]:
    return {"groupName": rng.choice(_GROUPS), "groupId": str(rng.randint(1000, 9999))}


_BUILDERS: tuple[tuple[str, int, Callable[[random.Random, int, int], _Built]], ...] = (
    ("user.login_password_success", 20, _login("password", "the Postman password")),
    ("user.login_google_success", 10, _login("google", "the Google OAuth")),
    ("user.login_sso_success", 12, _login("sso", "SSO")),
    ("admin.apikey_create", 8, _admin_apikey),
    ("user.apikey_create", 6, _user_apikey),
    ("user.authenticate_third_party_app", 6, _third_party),
    ("team.update_user_roles", 7, _update_roles),
    ("team.add_member", 5, _add_member),
    ("team.scim_add_member", 4, _by_admin("{actor} provisioned user {user}", None)),
    ("user.authaccount.linked", 2, _by_admin("{actor} created account linkage for user.", None)),
    ("team.remove_member", 2, _by_admin("{actor} removed {user} from the team.", None)),
    ("team.send_invite", 3, _by_admin("{actor} invited {email} to join the team.", _invite_vars)),
    ("team.add_group_member", 2, _by_admin("{actor} added {user} to a group.", _group_vars)),
    ("user.mfa_enabled", 2, _self_action("{actor} enabled two-factor authentication.", False)),
    (
        "user.apikey_activate",
        1,
        _self_action("{actor} activated the API key with identifier: {key}.", True),
    ),
)
_ACTION_NAMES = tuple(b[0] for b in _BUILDERS)
_ACTION_WEIGHTS = tuple(b[1] for b in _BUILDERS)
_ACTION_BUILD = {b[0]: b[2] for b in _BUILDERS}


def make_event(rng: random.Random, event_id: int, ts: int) -> dict[str, Any]:
    """One audit-log event dict, key order as in the real API."""
    action = rng.choices(_ACTION_NAMES, weights=_ACTION_WEIGHTS)[0]
    me, other = rng.randrange(len(_PEOPLE)), rng.randrange(len(_PEOPLE))
    ip, ua, data, message, variables = _ACTION_BUILD[action](rng, me, other)
    if variables:
        data["variables"] = variables
    return {
        "id": event_id,
        "ip": ip,
        "userAgent": ua,
        "action": action,
        "timestamp": format_ts(ts),
        "message": message,
        "data": data,
    }
