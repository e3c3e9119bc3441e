"""Manifests: a plugin's settings and secrets schemas, checked against the meta-schema."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._plainschema import wellformed
from ._schemas import load_schema
from ._validation import describe_error, schema_errors

__all__ = ["EMPTY_OBJECT_SCHEMA", "documentation", "manifest_errors", "secret_names"]

EMPTY_OBJECT_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {},
    "additionalProperties": False,
}


def manifest_errors(manifest: Any) -> list[str]:
    """Why a manifest is refused: meta-schema errors, then invalid JSON Schema parts."""
    if not isinstance(manifest, Mapping):
        return ["$: a manifest must be a mapping"]
    errors = schema_errors(load_schema("manifest.meta.schema.json"), manifest)
    records = manifest.get("records")
    records = records if isinstance(records, Mapping) else {}
    for part, schema in (("settings", manifest.get("settings")),
                         ("secrets", manifest.get("secrets")),
                         ("records.schema", records.get("schema"))):
        if isinstance(schema, Mapping) and not wellformed(schema):
            from jsonschema import Draft202012Validator
            from jsonschema.exceptions import SchemaError

            try:
                Draft202012Validator.check_schema(schema)
            except SchemaError as exc:
                errors.append(describe_error(exc, f"$.{part}"))  # where, and what it must be
    errors += _record_field_errors(records)
    return errors


def _record_field_errors(records: Mapping[str, Any]) -> list[str]:
    """A ``records`` key or cursor that names no property of the records' schema."""
    schema = records.get("schema")
    declared = schema.get("properties") if isinstance(schema, Mapping) else None
    if not isinstance(declared, Mapping):
        return []
    named = [("key", name) for name in records.get("key") or [] if isinstance(name, str)]
    if isinstance(records.get("cursor"), str):
        named.append(("cursor", records["cursor"]))
    return [f"$.records.{where}: {name!r} is not a property of $.records.schema"
            for where, name in named if name not in declared]


def documentation(manifest: Mapping[str, Any], cls: type[Any]) -> str | None:
    """Where a plugin's documentation is: its URL, or the installed file a relative path
    names, taken from the folder of the class's module; None without one or that file."""
    value = manifest.get("documentation")
    if not isinstance(value, str) or not value:
        return None
    if "://" in value:
        return value
    module_file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    if not module_file:
        return None
    path = Path(module_file).resolve().parent / value
    return str(path) if path.is_file() else None


def secret_names(manifest: Mapping[str, Any]) -> list[str]:
    """The names of the secrets a manifest declares."""
    secrets = manifest.get("secrets") or EMPTY_OBJECT_SCHEMA
    return list((secrets.get("properties") or {}).keys())
