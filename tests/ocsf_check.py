"""OCSF events checked against the official schema, offline.

``ocsf-json-schema`` (a test dependency) bundles the official schema exports of
schema.ocsf.io and builds a JSON Schema (draft 2020-12) per event class from them;
jsonschema validates against it. The schema alone does not hold ``type_uid`` to
``class_uid * 100 + activity_id``, the caption siblings to their ids, ``time`` to
milliseconds, or an ``activity_name`` to every activity 99: ``problems`` checks those too.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

VERSION = "1.5.0"
MILLISECONDS_2001 = 978_307_200_000  # a time below this is in seconds, not milliseconds


@functools.cache
def export(version: str = VERSION) -> dict[str, Any]:
    """The official schema export of ``version``, as the package bundles it."""
    schema: dict[str, Any] = get_ocsf_schema(version=version)
    return schema


@functools.cache
def validator(class_uid: int, version: str = VERSION) -> Draft202012Validator:
    """A validator of ``class_uid``'s events, no profile declared."""
    embedded = OcsfJsonSchemaEmbedded(export(version))
    name = embedded.lookup_class_name_from_uid(class_uid)
    return Draft202012Validator(embedded.get_class_schema(name, profiles=[]))


def caption(class_uid: int, attribute: str, value: int, version: str = VERSION) -> str:
    """The export's caption of ``value`` for a class attribute (``activity_id``, ...)."""
    classes = export(version)["classes"]
    found = next(c for c in classes.values() if c["uid"] == class_uid)
    text: str = found["attributes"][attribute]["enum"][str(value)]["caption"]
    return text


def problems(event: Mapping[str, Any]) -> list[str]:
    """Why ``event`` is not a valid OCSF 1.5.0 event: schema errors (path and message), then
    the rules the schema cannot express; empty when it is one."""
    metadata = event.get("metadata") or {}
    if metadata.get("version") != VERSION:
        return [f"metadata.version is {metadata.get('version')!r}, not {VERSION}"]
    class_uid = event.get("class_uid")
    if class_uid not in (3001, 3002, 3004, 3005, 3006):
        return [f"class_uid {class_uid!r} is not one of the IAM classes the mapping uses"]
    found = [f"{'.'.join(map(str, e.absolute_path)) or '$'}: {e.message[:200]}"
             for e in validator(class_uid).iter_errors(event)]
    if found:
        return found
    activity = event["activity_id"]
    if event["type_uid"] != class_uid * 100 + activity:
        found.append(f"type_uid {event['type_uid']} is not class_uid * 100 + activity_id")
    if event["time"] < MILLISECONDS_2001:
        found.append(f"time {event['time']} is in seconds, not milliseconds")
    named = caption(class_uid, "activity_id", activity)
    if activity == 99:
        if not event.get("activity_name"):
            found.append("activity 99 without an activity_name")
    elif event.get("activity_name") != named:
        found.append(f"activity_name {event.get('activity_name')!r} is not {named!r}")
    if event.get("type_name") != caption(class_uid, "type_uid", event["type_uid"]):
        found.append(f"type_name {event.get('type_name')!r} is not the export's caption")
    for attribute in ("severity_id", "status_id"):
        if attribute in event:
            sibling = attribute[:-3]
            if event.get(sibling) != caption(class_uid, attribute, event[attribute]):
                found.append(f"{sibling} {event.get(sibling)!r} does not match {attribute}")
    if event.get("class_name") != export()["classes"][_class_name(class_uid)]["caption"]:
        found.append(f"class_name {event.get('class_name')!r} is not the export's caption")
    return found


@functools.cache
def _class_name(class_uid: int) -> str:
    return next(name for name, c in export()["classes"].items() if c["uid"] == class_uid)


def assert_valid(event: Mapping[str, Any]) -> None:
    """Fail with every reason ``event`` is not a valid OCSF 1.5.0 event."""
    found = problems(event)
    assert not found, found
