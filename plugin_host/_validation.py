"""JSON Schema validation that reports every error as ``json.path: what is wrong (rule)``.

jsonschema's own ``error.message`` embeds the rejected value, which may be a secret,
so messages here are built from the failing keyword and the schema alone. A ``pattern`` or
``format`` is said in words: the schema's own ``x-expected`` text when it has one (``"a date
like 2026-11-20"``), else plain words for the known formats and for a pattern the regular
expression itself, said to be one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._plainschema import verdict

if TYPE_CHECKING:  # jsonschema is imported only when something is validated
    from jsonschema.exceptions import SchemaError, ValidationError

__all__ = ["describe_error", "join_path", "schema_errors"]

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}

_EXPECTED = "x-expected"  # a schema's words for what its pattern or format accepts

# What each format jsonschema checks accepts, as "must be ..." completes it.
_FORMAT_WORDS = {
    "date-time": "a date-time like 2026-11-20T08:00:00Z",
    "date": "a date like 2026-11-20",
    "time": "a time like 08:00:00Z",
    "duration": "a duration like P1DT12H",
    "email": "an email address like someone@example.com",
    "idn-email": "an email address like someone@example.com",
    "hostname": "a host name like api.example.com",
    "idn-hostname": "a host name like api.example.com",
    "ipv4": "an IPv4 address like 192.0.2.10",
    "ipv6": "an IPv6 address like 2001:db8::10",
    "uri": "a URL like https://api.example.com/v1",
    "iri": "a URL like https://api.example.com/v1",
    "uri-reference": "a URL or a relative reference like /v1/items",
    "iri-reference": "a URL or a relative reference like /v1/items",
    "uri-template": "a URI template like https://api.example.com/items/{id}",
    "uuid": "a UUID like 123e4567-e89b-12d3-a456-426614174000",
    "regex": "a valid regular expression",
    "json-pointer": "a JSON pointer like /items/0",
    "relative-json-pointer": "a relative JSON pointer like 0/name",
}
_LITERAL_PREFIX = re.compile(r"\^([A-Za-z0-9_-]+)")


def join_path(base: str, parts: Iterable[Any]) -> str:
    """Append path parts (keys or list indexes) to a JSON path such as ``$.input``."""
    path = base
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            path += f".{part}"
        else:
            path += "[" + repr(str(part)) + "]"
    return path


def _types(expected: Any) -> str:
    names = expected if isinstance(expected, list) else [expected]
    return " or ".join(_TYPE_WORDS.get(n, str(n)) for n in names)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expected(keyword: str, rule: Any, schema: Any) -> str:
    """What a failed ``pattern`` or ``format`` asks for, in words; never the value."""
    words = schema.get(_EXPECTED) if isinstance(schema, Mapping) else None
    if isinstance(words, str) and words:
        return f"must be {words}"
    if keyword == "format":
        return f"must be {_FORMAT_WORDS.get(str(rule), f'a valid {rule}')}"
    if prefix := _LITERAL_PREFIX.fullmatch(str(rule)):
        return f"must start with {prefix.group(1)!r}"
    return f"must be text matching the regular expression {rule}"


def describe_error(error: ValidationError | SchemaError, base: str = "$") -> str:
    """One line for one error (of a value, or of a schema); the value never appears in it."""
    keyword = str(error.validator)
    rule: Any = error.validator_value
    path = join_path(base, error.absolute_path)
    if keyword == "required":
        instance_keys = error.instance if isinstance(error.instance, Mapping) else {}
        missing = [name for name in rule if name not in instance_keys]
        name = missing[0] if missing else "?"
        return f"{join_path(path, [name])}: is required (required)"
    if keyword in ("additionalProperties", "unevaluatedProperties"):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        allowed = set((schema.get("properties") or {}).keys())
        instance = error.instance if isinstance(error.instance, Mapping) else {}
        unknown = sorted(str(k) for k in instance if k not in allowed)
        hint = "; known keys: " + ", ".join(sorted(allowed)) if allowed else ""
        keys = ", ".join(repr(k) for k in unknown) or "?"
        return f"{path}: unknown key {keys}{hint} ({keyword})"
    messages: dict[str, Callable[[], str]] = {
        "type": lambda: f"must be {_types(rule)}",
        "format": lambda: _expected(keyword, rule, error.schema),
        "enum": lambda: "must be one of " + ", ".join(_short(v) for v in rule),
        "const": lambda: f"must be {_short(rule)}",
        "minimum": lambda: f"must be at least {rule}",
        "maximum": lambda: f"must be at most {rule}",
        "exclusiveMinimum": lambda: f"must be more than {rule}",
        "exclusiveMaximum": lambda: f"must be less than {rule}",
        "minLength": lambda: f"must be at least {rule} character{'s' if rule != 1 else ''} long",
        "maxLength": lambda: f"must be at most {rule} characters long",
        "pattern": lambda: _expected(keyword, rule, error.schema),
        "minItems": lambda: f"must have at least {rule} item{'s' if rule != 1 else ''}",
        "maxItems": lambda: f"must have at most {rule} items",
        "oneOf": lambda: "does not match any of the allowed forms",
        "anyOf": lambda: "does not match any of the allowed forms",
        "not": lambda: "is not allowed here",
    }
    text = messages.get(keyword, lambda: f"does not satisfy '{keyword}'")()
    return f"{path}: {text} ({keyword})"


def schema_errors(
    schema: Mapping[str, Any], instance: Any, base: str = "$"
) -> list[str]:
    """Every error of ``instance`` against ``schema``, formats checked, most relevant first."""
    if verdict(schema, instance) is True:  # a plain schema passed: no need for jsonschema
        return []
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(
        schema, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(instance), key=_order)
    lines = [describe_error(_best_leaf(e), base) for e in errors]
    return list(dict.fromkeys(lines))


def _order(error: ValidationError) -> tuple[list[str], bool, str]:
    """By path (keys and indexes alike, as text: YAML allows number keys), weak keywords last."""
    weak = error.validator in ("anyOf", "oneOf")
    return [str(p) for p in error.absolute_path], weak, str(error.validator)


def _best_leaf(error: ValidationError) -> ValidationError:
    """For oneOf/anyOf, prefer the deepest sub-error when there is exactly one branch to blame."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        deepest = max(error.context, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(error.absolute_path):
            return deepest
    return error
