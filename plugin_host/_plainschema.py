"""jsonschema's verdict on plain schemas, without loading jsonschema.

Importing jsonschema costs more than the rest of the host's start-up, and every first run
of a pipeline validates its file, settings, secrets and the two manifests. Most of these
schemas use a handful of draft 2020-12 keywords. For those, ``verdict`` gives the answer
jsonschema gives (``Draft202012Validator`` with its format checker) and ``wellformed``
says that ``check_schema`` would pass; a property test holds both to jsonschema. Any other
keyword, value or reference gets None (or False), which sends the caller to jsonschema.
A failed check is never reported from here: error messages always come from jsonschema.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["verdict", "wellformed"]

_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated",
                          "readOnly", "writeOnly", "$comment", "$schema", "$id", "$defs",
                          "x-expected", "x-rate-limit-key"})
# x-expected: the words _validation says a rule in; x-rate-limit-key: a secret that an
# upstream's rate limit counts (see plugin_host.state)
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf"})
_SUBSCHEMAS = frozenset({"additionalProperties", "items"})
_COUNTS = frozenset({"minLength", "maxLength", "minItems", "maxItems"})
_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_KEYWORDS = (_SCHEMA_LISTS | _SUBSCHEMAS | _COUNTS | _BOUNDS
             | {"type", "properties", "required", "const", "enum", "pattern", "format", "$ref"})
_KNOWN = _KEYWORDS | _ANNOTATIONS
_REF = re.compile(r"#/\$defs/([A-Za-z0-9_.-]+)")
# An http(s) URL of the plainest kind (no user, query, fragment or escapes) is a URI by
# RFC 3986's grammar; loading rfc3986-validator (its regex costs ~6 ms) is for the rest.
_PLAIN_URL = re.compile(
    r"https?://[A-Za-z0-9.-]+(?::[0-9]*)?(?:/[A-Za-z0-9._~!$&'()*+,;=:@/-]*)?")


class _Unknown(Exception):
    """The schema goes beyond the plain subset: ask jsonschema."""


def verdict(schema: Any, instance: Any) -> bool | None:
    """Whether jsonschema finds ``instance`` valid against ``schema`` (draft 2020-12,
    formats checked); None when the schema is beyond what this module reads."""
    try:
        return _valid(schema, instance, schema)
    except (_Unknown, RecursionError, TypeError):  # TypeError: a value of a shape not foreseen
        return None


def wellformed(schema: Any) -> bool:
    """True when ``schema`` is a plain one that jsonschema's ``check_schema`` accepts;
    False means: ask jsonschema."""
    try:
        return _wellformed(schema, root=True)
    except (_Unknown, RecursionError, TypeError):  # TypeError: a shape not foreseen
        return False


# -- verdict ------------------------------------------------------------------------------

def _is_type(instance: Any, name: str) -> bool:
    if name == "string":
        return isinstance(instance, str)
    if name == "object":
        return isinstance(instance, dict)
    if name == "array":
        return isinstance(instance, list)
    if name == "null":
        return instance is None
    if name == "boolean":
        return isinstance(instance, bool)
    if isinstance(instance, bool):
        return False
    if name == "integer":
        return isinstance(instance, int) or (isinstance(instance, float)
                                             and instance.is_integer())
    return isinstance(instance, numbers.Number)  # "number"


def _equal(one: Any, two: Any) -> bool:
    """jsonschema's equality: ``1 == 1.0``, but ``True != 1``, recursively."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, Sequence) and isinstance(two, Sequence):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, Mapping) and isinstance(two, Mapping):
        return len(one) == len(two) and all(
            key in two and _equal(value, two[key]) for key, value in one.items())
    if isinstance(one, bool) or isinstance(two, bool):
        return False  # ``one is two`` was not true
    return bool(one == two)


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise _Unknown
    return value


def _number(value: Any) -> int | float:
    if type(value) not in (int, float):
        raise _Unknown
    return value  # type: ignore[no-any-return]


def _format(name: Any, instance: Any) -> bool:
    if not isinstance(instance, str):
        return True
    try:
        if name in ("uri", "uri-reference"):
            if _PLAIN_URL.fullmatch(instance):
                return True
            from rfc3986_validator import validate_rfc3986

            rule = "URI" if name == "uri" else "URI_reference"
            return bool(validate_rfc3986(instance, rule=rule))
        if name == "date-time":
            from rfc3339_validator import validate_rfc3339

            return bool(validate_rfc3339(instance.upper()))
        if name == "regex":
            re.compile(instance)
            return True
    except ImportError:
        raise _Unknown from None
    except re.error:
        return False
    raise _Unknown


def _valid(schema: Any, instance: Any, root: Any) -> bool:
    if schema is True or schema is False:
        return schema
    if type(schema) is not dict or not _KNOWN.issuperset(schema):
        raise _Unknown
    if "$id" in schema and schema is not root:
        raise _Unknown
    # every keyword is evaluated, so that one beyond the subset is never passed over
    results = [_keyword(key, value, schema, instance, root) for key, value in schema.items()
               if key not in _ANNOTATIONS]
    return all(results)


def _type_names(value: Any) -> list[str] | None:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return None
    return names if _TYPES.issuperset(names) else None


def _keyword(key: str, value: Any, schema: dict[str, Any], instance: Any, root: Any) -> bool:
    if key == "type":
        names = _type_names(value)
        if names is None:
            raise _Unknown
        return any(_is_type(instance, name) for name in names)
    if key in _SCHEMA_LISTS:
        if not isinstance(value, list) or not value:
            raise _Unknown
        results = [_valid(each, instance, root) for each in value]
        return (all(results) if key == "allOf" else any(results) if key == "anyOf"
                else results.count(True) == 1)
    if key == "$ref":
        match = _REF.fullmatch(value) if isinstance(value, str) else None
        defs = root.get("$defs") if isinstance(root, dict) else None
        if match is None or not isinstance(defs, dict) or match[1] not in defs:
            raise _Unknown
        return _valid(defs[match[1]], instance, root)
    if key == "const":
        return _equal(instance, value)
    if key == "enum":
        if not isinstance(value, list):
            raise _Unknown
        return any(_equal(each, instance) for each in value)
    if key == "format":
        return _format(value, instance)
    if key in _COUNTS:
        limit = _count(value)
        if key.endswith("Length"):
            if not isinstance(instance, str):
                return True
            size = len(instance)
        else:
            if not isinstance(instance, list):
                return True
            size = len(instance)
        return size >= limit if key.startswith("min") else size <= limit
    if key in _BOUNDS:
        bound = _number(value)
        if isinstance(instance, bool) or not isinstance(instance, numbers.Number):
            return True
        if not isinstance(instance, (int, float)):
            raise _Unknown  # Decimal, Fraction, complex: left to jsonschema
        return {"minimum": instance >= bound, "maximum": instance <= bound,
                "exclusiveMinimum": instance > bound, "exclusiveMaximum": instance < bound}[key]
    if key == "pattern":
        if not isinstance(value, str):
            raise _Unknown
        try:
            compiled = re.compile(value)
        except re.error:
            raise _Unknown from None
        return not isinstance(instance, str) or compiled.search(instance) is not None
    return _object_keyword(key, value, schema, instance, root)


def _object_keyword(key: str, value: Any, schema: dict[str, Any], instance: Any,
                    root: Any) -> bool:
    """items, properties, required and additionalProperties: jsonschema looks into a
    subschema only for an instance of the right type, and so does this."""
    if key == "required":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _Unknown
        return not isinstance(instance, dict) or all(name in instance for name in value)
    if key in ("properties", "additionalProperties") and not isinstance(
            schema.get("properties", {}), dict):
        raise _Unknown
    if key == "items":
        return not isinstance(instance, list) or all(
            [_valid(value, each, root) for each in instance])
    if not isinstance(instance, dict):
        return True
    if key == "properties":
        return all([_valid(sub, instance[name], root) for name, sub in value.items()
                    if name in instance])
    known = schema.get("properties", {})  # additionalProperties
    return all([_valid(value, instance[name], root) for name in instance
                if name not in known])


# -- wellformed ---------------------------------------------------------------------------

def _wellformed(schema: Any, root: bool = False) -> bool:
    if schema is True or schema is False:
        return True
    if type(schema) is not dict or not _KNOWN.issuperset(schema):
        return False
    return all(_wellformed_keyword(key, value, root) for key, value in schema.items())


def _wellformed_keyword(key: str, value: Any, root: bool) -> bool:
    if key == "type":
        names = _type_names(value)
        return names is not None and len(set(names)) == len(names)
    if key in _SCHEMA_LISTS:
        return isinstance(value, list) and bool(value) and all(map(_wellformed, value))
    if key in _SUBSCHEMAS:
        return _wellformed(value)
    if key in ("properties", "$defs"):
        return isinstance(value, dict) and all(map(_wellformed, value.values()))
    if key == "required":
        return (isinstance(value, list) and all(isinstance(v, str) for v in value)
                and len(set(value)) == len(value))
    if key in _COUNTS:
        return type(value) is int and value >= 0
    if key in _BOUNDS:
        return type(value) in (int, float)
    if key == "pattern":
        return isinstance(value, str) and _format("regex", value)
    if key in ("format", "title", "description", "$comment", "x-expected"):
        return isinstance(value, str)
    if key in ("enum", "examples"):
        return isinstance(value, list)
    if key in ("deprecated", "readOnly", "writeOnly", "x-rate-limit-key"):
        return isinstance(value, bool)
    if key == "$ref":
        return _REF.fullmatch(value) is not None if isinstance(value, str) else False
    if key == "$schema":
        return root and isinstance(value, str) and _format("uri", value)
    if key == "$id":
        return (root and isinstance(value, str) and _format("uri-reference", value)
                and re.fullmatch(r"[^#]*#?", value) is not None)
    return key in ("const", "default")
