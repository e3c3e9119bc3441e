"""The Postman input's OCSF 1.5.0 mapping, for the host's ``ocsf`` transform.

``map_record`` turns one audit event into OCSF events: one, or one per user for a role
change of several users (``team.update_user_roles``). Which class and activity an action
becomes is ``ocsf_rules``; how a Postman value becomes an OCSF field is ``ocsf_fields``;
this module puts an event together:

- common to every class: ``time`` (epoch milliseconds), ``metadata`` (``event_code`` = the
  action, ``uid`` = the event's id, ``original_time``, ``tenant_uid`` = the team),
  ``actor.user`` (``data.actor``), ``src_endpoint.ip`` when there is a real ip,
  ``http_request.user_agent``, ``message``, severity Informational, status;
- each class's own subject: ``user``, ``group``, ``entity``, ``privileges``, ``service``;
- ``unmapped``: whatever the event holds that no OCSF field took, under its Postman path
  (``data.variables``, ``data.actor.active``, a field of an unexpected type, a key Postman
  may add one day). The ``ocsf`` transform adds the whole event as ``raw_data``.

Every Postman field is optional: a missing one leaves its OCSF field out, and a subject the
class requires but the event does not name (no user at all) is named ``unknown``. An event
with no action or no readable timestamp cannot be an OCSF event: ``Unmappable``, and the
transform delivers it as it came.

The part of an event that depends only on its action, actor, user and team (its *cast*:
the class fields, ``actor``, ``user``, ``service``, the team's ``group``) repeats from one
event to the next; it is built once and copied (``_CASTS``). An event of the API's own
shape whose cast is known takes a fast path (the cast found by its action and people as
one JSON text, the time by its hour and a table); anything else takes ``_map_any``, which
gives the same events. Users, teams, ``src_endpoint``, ``http_request`` and an ``unmapped``
that holds only the cast's part are shared by the events that name them, so nothing may
change one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import orjson

from plugin_host.transforms.ocsf import Unmappable

from . import ocsf_fields as fields
from .ocsf_fields import PERSON_KEYS, SYSTEM_ACTOR, TEAM_KEYS, UNKNOWN
from .ocsf_rules import (
    ENTITY_NAME_KEYS,
    GROUP_KEYS,
    OCSF_VERSION,
    ROLE_KEYS,
    TEAM_ENTITY,
    Plan,
    planned,
)

__all__ = ["PRODUCT", "SYSTEM_ACTOR", "UNKNOWN", "map_record"]

PRODUCT: Mapping[str, Any] = {"name": "Postman", "vendor_name": "Postman",
                              "feature": {"name": "Audit Logs"}}
_EMPTY: Mapping[str, Any] = {}
_TOP = frozenset(("id", "ip", "userAgent", "action", "timestamp", "message", "data"))
_DATA = frozenset(("actor", "user", "team", "variables"))
_TOP_SIZE = len(_TOP)
_NO_USER: Mapping[str, Any] = {"name": UNKNOWN, "type_id": 0, "type": "Unknown"}
_POSTMAN: Mapping[str, Any] = {"name": "Postman"}


class _Cast(NamedTuple):
    """The part of an event its action and the shape and people of its record decide:
    ``proto`` (the fields to copy), the team, the subject (``data.user``, else the actor,
    else unknown), what of the actor, user and team goes to ``unmapped`` (their ``active``
    flags), the record's and ``data``'s keys no OCSF field takes (``extras``: source and
    ``unmapped`` path), whether ``data.variables`` goes to ``unmapped``, and the step that
    reads ``data.variables`` (``finish``, with the variable it reads; run on every event
    when ``always``, else only on those with variables)."""

    proto: dict[str, Any]
    org: dict[str, Any] | None
    tenant: str | None
    subject: dict[str, Any]
    unmapped: dict[str, Any]
    record_extras: tuple[tuple[str, str], ...]
    data_extras: tuple[tuple[str, str], ...]
    keeps_variables: bool
    finish: _Finish | None
    always: bool
    option: str
    fast: bool


_Finish = Callable[[dict[str, Any], "_Cast", Any], list[dict[str, Any]]]
# By the action and the actor, user and team as one JSON text (which tells 1 from true and
# 1.0) for a record of the API's keys and no others (the key the fast path looks up);
# else by the action, the record's and data's keys, and the people as JSON.
_CASTS: dict[tuple[Any, ...] | bytes, _Cast] = {}
_AGENTS: dict[str, dict[str, str]] = {}  # each user agent's http_request, shared
_IPS, _HOURS, _WITHIN, _dumps = fields.IPS, fields.HOURS, fields.WITHIN, orjson.dumps
_UNSEEN: Any = object()


def map_record(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The OCSF 1.5.0 events of one Postman audit event, in order; ``Unmappable`` when it
    has no action or no readable timestamp."""
    # The fast path: an event of the API's own shape whose cast is known (every key there,
    # nothing else, each value of its usual type). Anything else takes ``_map_any``,
    # which reads every field as it comes and gives the same event.
    try:
        data = record["data"]
        action, timestamp = record["action"], record["timestamp"]
        cast = _CASTS[_dumps((action, data["actor"], data.get("user"), data.get("team")))]
        time = (_HOURS[timestamp[:14]] + _WITHIN[timestamp[14:]]) * 1000
        rid, ip, agent, message = (record["id"], record["ip"], record["userAgent"],
                                   record["message"])
    except (KeyError, TypeError, IndexError):
        return _map_any(record)
    if not cast.fast or len(record) != _TOP_SIZE or not data.keys() <= _DATA \
            or type(action) is not str or type(timestamp) is not str:
        return _map_any(record)
    if type(rid) is not int or (type(message) is not str and message is not None):
        return _map_any(record)
    event = cast.proto.copy()
    event["time"] = time
    event["metadata"] = {"version": OCSF_VERSION, "product": PRODUCT, "event_code": action,
                         "original_time": timestamp, "uid": str(rid), "tenant_uid": cast.tenant}
    if message is not None:
        event["message"] = message
    if ip is not None:
        if type(ip) is not str:
            return _map_any(record)
        endpoint = _IPS.get(ip, _UNSEEN)
        if endpoint is _UNSEEN:  # a new address: checked once against OCSF's pattern
            endpoint = fields.endpoint(ip)
        if endpoint is None:  # not an address OCSF takes: unmapped
            return _map_any(record)
        event["src_endpoint"] = endpoint
    if agent is not None:
        if type(agent) is not str:
            return _map_any(record)
        event["http_request"] = _AGENTS.get(agent) or _agent(agent)
    variables = data.get("variables")
    if variables is None:
        if cast.unmapped:
            event["unmapped"] = cast.unmapped
        if cast.always:
            return cast.finish(event, cast, variables)  # type: ignore[misc]
        return [event]
    if cast.keeps_variables:
        event["unmapped"] = {**cast.unmapped, "data.variables": variables}
    elif cast.unmapped:
        event["unmapped"] = cast.unmapped
    if cast.finish is None:
        return [event]
    return cast.finish(event, cast, variables)


def _agent(agent: str) -> dict[str, str]:
    """The ``http_request`` of a user agent, remembered."""
    found = fields.remembered(_AGENTS)[agent] = {"user_agent": agent}
    return found


def _map_any(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``map_record`` of any record: each field read as it comes."""
    if type(record) is not dict and not isinstance(record, Mapping):
        raise Unmappable("is not a JSON object")
    get = record.get
    action = get("action")
    if type(action) is not str or not action:
        raise Unmappable("has no action")
    timestamp = get("timestamp")
    seconds = fields.seconds(timestamp)
    if seconds is None:
        raise Unmappable("has no timestamp" if timestamp is None
                         else "has a timestamp that is not a date-time")
    data = get("data")
    odd: list[tuple[str, Any]] = []  # this event's own values no OCSF field takes, in order
    if type(data) is not dict and not isinstance(data, Mapping):
        if data is not None:
            odd.append(("data", data))
        data = _EMPTY
    actor, user, team = data.get("actor"), data.get("user"), data.get("team")
    try:
        key: tuple[Any, ...] | bytes
        if "actor" in data and record.keys() == _TOP and data.keys() <= _DATA:
            key = _dumps((action, actor, user, team))  # the key the fast path looks up
        else:
            key = (action, tuple(record), tuple(data), _dumps((actor, user, team)))
        cast = _CASTS.get(key) or _cast(key, action, record, data)
    except TypeError:  # not JSON orjson writes (an integer beyond 64 bits)
        cast = _cast(None, action, record, data)
    rid = get("id")
    if type(rid) is int and cast.tenant is not None:  # the API's own shape, in one step
        metadata = {"version": OCSF_VERSION, "product": PRODUCT, "event_code": action,
                    "original_time": timestamp, "uid": str(rid), "tenant_uid": cast.tenant}
    else:
        metadata = {"version": OCSF_VERSION, "product": PRODUCT, "event_code": action,
                    "original_time": timestamp}
        if type(rid) is int or (type(rid) is str and rid):
            metadata["uid"] = str(rid)
        elif rid is not None:
            odd.append(("id", rid))
        if cast.tenant is not None:
            metadata["tenant_uid"] = cast.tenant
    event = cast.proto.copy()
    event["time"] = seconds * 1000
    event["metadata"] = metadata
    message = get("message")
    if type(message) is str:
        event["message"] = message
    elif message is not None:
        odd.append(("message", message))
    ip = get("ip")
    if ip is not None:
        if type(ip) is str and (endpoint := fields.endpoint(ip)) is not None:
            event["src_endpoint"] = endpoint
        else:
            odd.append(("ip", ip))
    agent = get("userAgent")
    if type(agent) is str:
        event["http_request"] = _AGENTS.get(agent) or _agent(agent)
    elif agent is not None:
        odd.append(("userAgent", agent))
    variables = data.get("variables")
    if odd or cast.record_extras or cast.data_extras:
        unmapped = _unmapped(odd, cast, record, data)
    else:  # the common case: only what the cast holds, shared by its events
        unmapped = cast.unmapped
    if variables is not None and cast.keeps_variables:
        unmapped = {**unmapped, "data.variables": variables}
    if unmapped:  # complete by now: the events a finish step makes of this one share it
        event["unmapped"] = unmapped
    finish = cast.finish
    if finish is None or (variables is None and not cast.always):
        return [event]
    return finish(event, cast, variables)


def _unmapped(odd: list[tuple[str, Any]], cast: _Cast, record: Mapping[str, Any],
              data: Mapping[str, Any]) -> dict[str, Any]:
    """What of an event no OCSF field takes, in its order: ``data`` when it is no object,
    what the cast keeps, the keys OCSF has no field for, then the event's own odd values."""
    unmapped: dict[str, Any] = {}
    if odd and odd[0][0] == "data":
        unmapped["data"] = odd.pop(0)[1]
    unmapped.update(cast.unmapped)
    for source, path in cast.record_extras:
        unmapped[path] = record[source]
    for source, path in cast.data_extras:
        unmapped[path] = data[source]
    unmapped.update(odd)
    return unmapped


def _cast(key: tuple[Any, ...] | bytes | None, action: str, record: Mapping[str, Any],
          data: Mapping[str, Any]) -> _Cast:
    """Build the cast of a record, and remember it (unless ``key`` is None)."""
    found, head = planned(action)
    actor, user, team = data.get("actor"), data.get("user"), data.get("team")
    unmapped: dict[str, Any] = {}
    org = fields.org(team, unmapped)
    actor_user = fields.person(actor, org, unmapped, "data.actor")
    data_user = fields.person(user, org, unmapped, "data.user")
    fields.leftovers(actor, PERSON_KEYS, "data.actor", unmapped)
    fields.leftovers(user, PERSON_KEYS, "data.user", unmapped)
    fields.leftovers(team, TEAM_KEYS, "data.team", unmapped)
    subject = data_user or actor_user or dict(_NO_USER)
    proto = dict(head)
    proto["time"] = proto["metadata"] = None  # each event's own, set on its copy
    if actor_user is not None:
        proto["actor"] = {"user": actor_user}
    builder = found.rule.builder
    proto.update(_SHAPE[builder](found, org, data_user, subject))
    # Room for the fields an event adds (message, src_endpoint, ...): a dict grown past 21
    # keys and cut back keeps its larger table, and so does its copy, which then never has
    # to grow (a copy keeps the table while no more than a third of its entries are gone).
    spares = [f"\0{n}" for n in range(22 - len(proto))]
    proto.update(dict.fromkeys(spares))
    for spare in spares:
        del proto[spare]
    finish, always, option = _finish(found)
    record_extras = tuple((k, k) for k in record if k not in _TOP)
    data_extras = tuple((k, f"data.{k}") for k in data if k not in _DATA)
    tenant = None if org is None else org.get("uid")
    fast = len(record) == _TOP_SIZE and not record_extras and not data_extras \
        and tenant is not None
    cast = _Cast(proto, org, tenant, subject, unmapped, record_extras, data_extras,
                 builder != "entity", finish, always, option, fast)
    if key is not None:
        fields.remembered(_CASTS)[key] = cast
    return cast


def _finish(found: Plan) -> tuple[_Finish | None, bool, str]:
    """The step that reads ``data.variables`` for an action, whether every event needs it,
    and what it reads."""
    builder, options = found.rule.builder, found.rule.options
    if builder == "authentication" and "service" in options:
        return _finish_service, False, options["service"]
    if builder == "account" and "credential" in options:
        return _finish_credential, False, options["credential"]
    if builder == "group" and options:
        return _finish_group, False, ",".join(sorted(options))
    if builder == "user_access":
        return _finish_user_access, True, ""
    if builder == "entity":
        return _finish_entity, True, "team" if found.entity == TEAM_ENTITY else ""
    return None, False, ""


def _text(value: Any) -> str | None:
    return value if type(value) is str and value else None


def _strings(value: Any) -> list[str]:
    """Roles as OCSF's list of texts: a list, one text, or nothing."""
    if isinstance(value, list):
        return [v if type(v) is str else json.dumps(v, ensure_ascii=False) for v in value]
    if value is None:
        return []
    return [value if type(value) is str else json.dumps(value, ensure_ascii=False)]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else _EMPTY


# -- each class: its cast's fields (``_shape_*``), then what an event's variables add --


def _shape_authentication(found: Plan, org: dict[str, Any] | None,
                          user: dict[str, Any] | None, subject: dict[str, Any]
                          ) -> dict[str, Any]:
    return {"user": subject, "service": _POSTMAN}


def _finish_service(event: dict[str, Any], cast: _Cast, variables: Any) -> list[dict[str, Any]]:
    if service := _text(_mapping(variables).get(cast.option)):
        event["service"] = {"name": service}
    return [event]


def _shape_subject(found: Plan, org: dict[str, Any] | None, user: dict[str, Any] | None,
                   subject: dict[str, Any]) -> dict[str, Any]:
    return {"user": subject}


def _finish_credential(event: dict[str, Any], cast: _Cast,
                       variables: Any) -> list[dict[str, Any]]:
    if credential := _text(_mapping(variables).get(cast.option)):
        event["user"] = {**cast.subject, "credential_uid": credential}
    return [event]


def _shape_nothing(found: Plan, org: dict[str, Any] | None, user: dict[str, Any] | None,
                   subject: dict[str, Any]) -> dict[str, Any]:
    return {}


def _finish_user_access(event: dict[str, Any], cast: _Cast,
                        variables: Any) -> list[dict[str, Any]]:
    users = _mapping(variables).get("users")
    if type(users) is str:
        try:
            users = orjson.loads(users)
        except orjson.JSONDecodeError:
            users = None
    if not isinstance(users, Mapping) or not users:
        event["user"] = cast.subject
        event["privileges"] = []
        return [event]
    metadata, org = event["metadata"], cast.org
    uid = metadata.get("uid")
    events = []
    for key, roles in users.items():
        each = event.copy()
        if uid is not None:
            each["metadata"] = {**metadata, "uid": f"{uid}:{key}", "correlation_uid": uid}
        each["user"] = {"uid": str(key), "org": org} if org is not None else {"uid": str(key)}
        each["privileges"] = _strings(roles)
        events.append(each)
    return events


def _shape_group(found: Plan, org: dict[str, Any] | None, user: dict[str, Any] | None,
                 subject: dict[str, Any]) -> dict[str, Any]:
    group = {**org, "type": "Team"} if org is not None else {"name": UNKNOWN, "type": "Team"}
    return {"group": group, "user": user} if user is not None else {"group": group}


def _finish_group(event: dict[str, Any], cast: _Cast, variables: Any) -> list[dict[str, Any]]:
    variables = _mapping(variables)
    if "group" in cast.option:
        group = {name: str(value) for key, name in GROUP_KEYS
                 if type(value := variables.get(key)) is int or _text(value)}
        if group:
            event["group"] = {**group, "type": "Group"}
    if "privileges" in cast.option:
        event["privileges"] = [role for key in ROLE_KEYS
                               for role in _strings(variables.get(key))]
    return [event]


def _shape_entity(found: Plan, org: dict[str, Any] | None, user: dict[str, Any] | None,
                  subject: dict[str, Any]) -> dict[str, Any]:
    kind, type_id = found.entity
    entity: dict[str, Any] = {"type": kind, "type_id": type_id}
    if found.entity == TEAM_ENTITY and org is not None:
        entity.update(org)
    if org is not None:
        entity["org"] = org
    if user is not None:
        entity["user"] = user
    return {"entity": entity}


def _finish_entity(event: dict[str, Any], cast: _Cast, variables: Any) -> list[dict[str, Any]]:
    entity = event["entity"] = dict(event["entity"])
    if cast.option != "team" and isinstance(variables, Mapping):
        name = next((v for k in ENTITY_NAME_KEYS if (v := _text(variables.get(k)))), None)
        if name is not None:
            entity["name"] = name
    if "name" not in entity and "org" not in entity:
        entity["name"] = UNKNOWN
    if variables is not None:
        entity["data"] = variables
    return [event]


_SHAPE: Mapping[str, Callable[..., dict[str, Any]]] = {
    "authentication": _shape_authentication,
    "account": _shape_subject,
    "user_access": _shape_nothing,
    "group": _shape_group,
    "entity": _shape_entity,
}
