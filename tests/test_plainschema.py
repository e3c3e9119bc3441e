"""The JSON Schema fast path gives jsonschema's own verdict, or none at all."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from plugin_host._plainschema import _PLAIN_URL, verdict, wellformed
from plugin_host._registry import discover
from plugin_host._schemas import load_schema

_NAMES = st.sampled_from(["a", "b", "c"])
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, 1, 2, -1, 1.0, 1.5, 2.0, 300, math.inf]),
    st.sampled_from(["", "a", "ab", "b0", "é", "abc", "https://api.example.com/x",
                     "not a uri", "2026-01-01T00:00:00Z", "2026-13-01T00:00:00z", "(",
                     "#/$defs/d", "object"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NAMES, inner, max_size=3),
    max_leaves=8,
)
_TYPE_NAMES = st.sampled_from(["string", "object", "array", "null", "boolean", "integer",
                               "number", "strng", 1, ["string"], None])


def _keywords(sub: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """One keyword with a value: mostly well-formed, sometimes not (for ``wellformed``)."""
    count = st.sampled_from([0, 1, 2, 3, -1, 2.0, "2", True])
    bound = st.sampled_from([0, 1, 1.5, 2, -1, "1", None])
    return st.one_of(
        st.builds(lambda t: {"type": t}, _TYPE_NAMES | st.lists(_TYPE_NAMES, max_size=3)),
        st.builds(lambda v: {"const": v}, _VALUES),
        st.builds(lambda v: {"enum": v}, st.lists(_VALUES, max_size=3) | _SCALARS),
        st.builds(lambda k, v: {k: v}, st.sampled_from(
            ["minLength", "maxLength", "minItems", "maxItems"]), count),
        st.builds(lambda k, v: {k: v}, st.sampled_from(
            ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]), bound),
        st.builds(lambda v: {"pattern": v}, st.sampled_from(
            ["^a", "b$", "[0-9]", "^.{2,3}$", "é", "(", 3])),
        st.builds(lambda v: {"format": v}, st.sampled_from(
            ["uri", "uri-reference", "date-time", "regex", "email", 7])),
        st.builds(lambda v: {"required": v}, st.lists(_NAMES, max_size=3) | _SCALARS),
        st.builds(lambda v: {"properties": v}, st.dictionaries(_NAMES, sub, max_size=3)
                  | _SCALARS),
        st.builds(lambda v: {"additionalProperties": v}, sub),
        st.builds(lambda v: {"items": v}, sub),
        st.builds(lambda k, v: {k: v}, st.sampled_from(["allOf", "anyOf", "oneOf"]),
                  st.lists(sub, max_size=3)),
        st.builds(lambda v: {"$ref": v}, st.sampled_from(["#/$defs/d", "#/$defs/missing",
                                                          "#", "other.json"])),
        st.builds(lambda k, v: {k: v}, st.sampled_from(
            ["description", "title", "default", "examples", "writeOnly", "$comment",
             "x-expected"]), _VALUES),
        st.builds(lambda k: {k: True}, st.sampled_from(["not", "uniqueItems", "x-extra"])),
    )


def _schema(sub: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for part in parts:
            out.update(part)
        return out

    return st.builds(merge, st.lists(_keywords(sub), max_size=4))


_SCHEMAS = st.recursive(st.booleans() | st.just({}), _schema, max_leaves=6)
_ROOTS = st.builds(
    lambda schema, defs: {**schema, "$defs": {"d": defs}} if isinstance(schema, dict)
    else schema,
    _SCHEMAS, _SCHEMAS,
)


def _jsonschema_valid(schema: Any, instance: Any) -> bool | None:
    """jsonschema's verdict; None when it cannot give one (a broken schema)."""
    try:
        validator = Draft202012Validator(schema,
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        return bool(validator.is_valid(instance))
    except Exception:  # noqa: BLE001 - any failure means there is no verdict to agree with
        return None


@settings(max_examples=1500, deadline=None)
@given(_ROOTS, _VALUES)
def test_a_verdict_is_the_one_jsonschema_gives(schema: Any, instance: Any) -> None:
    mine = verdict(schema, instance)
    if mine is not None:
        assert mine == _jsonschema_valid(schema, instance)


@settings(max_examples=2000, deadline=None)
@given(_keywords(st.booleans()) | _schema(st.booleans()), _SCALARS)
def test_each_keyword_on_its_own_agrees_with_jsonschema(schema: Any, instance: Any) -> None:
    """The same, on flat schemas and plain values, where each keyword's edges are met."""
    mine = verdict(schema, instance)
    if mine is not None:
        assert mine == _jsonschema_valid(schema, instance)


@settings(max_examples=1500, deadline=None)
@given(_ROOTS)
def test_a_schema_called_wellformed_passes_check_schema(schema: Any) -> None:
    if wellformed(schema):
        Draft202012Validator.check_schema(schema)


_URL_TEMPLATES = ["{}://a.b/", "http{}://a.b/", "http:{}//a.b/", "http://{}a.b/", "http://a{}b/",
                  "http://ab:8{}/", "http://ab{}:8/", "http://ab/x{}y", "http://ab/{}",
                  "http://ab{}", "https://ab/x/{}/y"]


def test_a_plain_url_is_a_uri_by_rfc3986() -> None:
    """The shortcut that spares loading rfc3986-validator only ever says yes to a URI: each
    character in each part of a URL, tried one at a time."""
    from rfc3986_validator import validate_rfc3986

    taken = 0
    for template in _URL_TEMPLATES:
        for char in [*map(chr, range(32, 127)), "é", "\n", ""]:
            text = template.format(char)
            if _PLAIN_URL.fullmatch(text):
                taken += 1
                assert validate_rfc3986(text, rule="URI"), text
                assert validate_rfc3986(text, rule="URI_reference"), text
    assert taken > 200  # the shortcut is taken for most plain URLs
    for url in ("https://api.getpostman.com", "http://127.0.0.1:8080/", "https://x.y/a/b"):
        assert _PLAIN_URL.fullmatch(url)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_any_text_the_plain_url_shortcut_takes_is_a_uri(text: str) -> None:
    from rfc3986_validator import validate_rfc3986

    if _PLAIN_URL.fullmatch(text):
        assert validate_rfc3986(text, rule="URI")


@pytest.mark.parametrize(("schema", "instance"), [
    ({"type": "integer"}, 1.0), ({"type": "integer"}, True), ({"type": "number"}, False),
    ({"const": 1}, True), ({"const": 1}, 1.0), ({"const": False}, 0), ({"enum": [[1]]}, [1.0]),
    ({"const": {"a": 1}}, {"a": True}), ({"exclusiveMinimum": 1}, 1), ({"minimum": 1}, 1),
    ({"maximum": 1.5}, 2), ({"minLength": 2}, "é"), ({"maxItems": 1}, [1, 2]),
    ({"required": ["a"]}, []), ({"additionalProperties": False}, "x"),
    ({"properties": {"a": False}}, {"b": 1}), ({"format": "uri"}, "/relative"),
    ({"format": "uri-reference"}, "/relative"), ({"format": "date-time"}, "2026-01-01t00:00:00z"),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1),
    ({"anyOf": [{"type": "integer"}, {"type": "number"}]}, 1.5),
])
def test_edge_cases_agree_with_jsonschema(schema: dict[str, Any], instance: Any) -> None:
    assert verdict(schema, instance) == _jsonschema_valid(schema, instance)


@pytest.mark.parametrize("schema", [
    {"type": [["string"]]}, {"additionalProperties": False, "properties": 3},
    {"not": {"type": "string"}}, {"type": "array", "uniqueItems": True},
    {"patternProperties": {"^a": {}}}, {"$ref": "other.json#/x"},
    {"type": "string", "pattern": "("}, {"type": "strng"}, {"minLength": "3"},
    {"properties": {"a": {"$id": "https://example.com/inner"}}},
])
def test_schemas_beyond_the_subset_get_no_verdict(schema: dict[str, Any]) -> None:
    assert verdict(schema, {"a": "x"}) is None
    assert verdict(schema, "x") is None or "properties" in schema


@pytest.mark.parametrize("schema", [
    {"type": "strng"}, {"type": ["string", "string"]}, {"minLength": -1}, {"required": [1]},
    {"pattern": "("}, {"allOf": []}, {"properties": {"a": {"type": 3}}}, {"x-extra": 1},
])
def test_broken_or_unusual_schemas_are_left_to_check_schema(schema: dict[str, Any]) -> None:
    assert not wellformed(schema)


def test_the_bundled_schemas_take_the_fast_path() -> None:
    """The pipeline schema, the manifests of every bundled plugin and a plain pipeline file
    are all read here: a first run of such a pipeline needs no jsonschema."""
    registry = discover()
    meta = load_schema("manifest.meta.schema.json")
    for registered in [*registry.inputs.values(), *registry.outputs.values()]:
        if registered.distribution != "plugin-host":
            continue
        assert verdict(meta, dict(registered.manifest)) is True, registered.name
        for part in ("settings", "secrets"):
            if part in registered.manifest:
                assert wellformed(registered.manifest[part]), (registered.name, part)
    doc = {"version": 1, "name": "audit",
           "input": {"type": "postman_audit", "settings": {"page_size": 300},
                     "secrets": {"api_key": {"env": "POSTMAN_API_KEY"}}},
           "output": {"type": "jsonl", "settings": {"path": "out.jsonl"}}}
    assert verdict(load_schema("pipeline.schema.json"), doc) is True
    settings_schema = registry.inputs["postman_audit"].manifest["settings"]
    good = {"base_url": "https://api.getpostman.com", "page_size": 300,
            "backfill_start_time": "2026-01-01", "rate_limit": {"requests": 10}}
    assert verdict(settings_schema, good) is True
    assert verdict(settings_schema, {**good, "page_size": 301}) is False
    assert verdict(settings_schema, {**good, "base_url": "not a url"}) is False
    with pytest.raises(SchemaError):
        Draft202012Validator.check_schema({"type": "strng"})
