"""A value that fails a pattern or a format is told what is expected, in words with an example,
never with a regular expression it would have to decode, and never with the value itself."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, run, write_pipeline

from plugin_host import discover
from plugin_host._manifest import manifest_errors
from plugin_host._plainschema import verdict
from plugin_host._schemas import load_schema
from plugin_host._validation import schema_errors

KEY = "PMAK-words-test-0123456789"
DATE_LINE = ("$.input.settings.backfill_start_time: must be a date like 2026-11-20 or a "
             "date-time like 2026-11-20T08:00:00Z (pattern)")


def postman_pipeline(folder: Path, *, name: str = "postman", env: str = "POSTMAN_API_KEY",
                     **settings: Any) -> Path:
    """A Postman pipeline file into out.jsonl, its key from ``env``."""
    return write_pipeline(folder / "postman.yaml", {
        "version": 1,
        "name": name,
        "input": {"type": "postman_audit", "settings": settings,
                  "secrets": {"api_key": {"env": env}}},
        "output": {"type": "jsonl", "settings": {"path": "out.jsonl"}},
    })


def validate(folder: Path) -> tuple[int, str, str]:
    """``python -m plugin_host validate postman.yaml`` in a subprocess."""
    done = run([sys.executable, "-m", "plugin_host", "validate", "postman.yaml"], cwd=folder,
               env=clean_env(POSTMAN_API_KEY=KEY))
    return done.returncode, done.stdout, done.stderr


def test_a_day_first_date_is_told_the_expected_form_with_an_example(tmp_path: Path) -> None:
    (tmp_path / "postman.yaml").write_text(
        "version: 1\n"
        "name: postman\n"
        "input:\n"
        "  type: postman_audit\n"
        "  settings: {backfill_start_time: 20/11/2026}\n"
        "  secrets: {api_key: {env: POSTMAN_API_KEY}}\n"
        "output: {type: jsonl, settings: {path: out.jsonl}}\n"
    )
    code, out, err = validate(tmp_path)
    assert (code, out) == (2, "")
    assert err == f"plugin-host: error: 1 error in the pipeline:\n  {DATE_LINE}\n"


def test_every_pattern_and_format_of_a_pipeline_file_is_said_in_words(tmp_path: Path) -> None:
    postman_pipeline(tmp_path, name="-my pipeline", env="1ST_KEY",
                     backfill_start_time="Nov 20th", base_url="the getpostman api")
    code, out, err = validate(tmp_path)
    assert (code, out) == (2, "")
    lines = [line.strip() for line in err.splitlines()[1:]]
    assert sorted(lines) == sorted([
        "$.name: must be a name like postman-audit: letters, digits, '.', '_' and '-', "
        "starting with a letter or digit, up to 128 characters (pattern)",
        "$.input.secrets.api_key.env: must be an environment variable name like "
        "POSTMAN_API_KEY: letters, digits and '_', not starting with a digit (pattern)",
        DATE_LINE,
        "$.input.settings.base_url: must be a URL like https://api.getpostman.com (format)",
        "$.input.secrets.api_key: environment variable 1ST_KEY is not set",
    ])
    for value in ("-my pipeline", "Nov 20th", "the getpostman api"):
        assert value not in err
    assert "\\d" not in err and "[A-Za-z" not in err and "Traceback" not in err


def test_a_manifest_name_is_said_in_words() -> None:
    manifest = {"name": "Audit-Logs", "description": "d",
                "settings": {"type": "object", "properties": {}, "additionalProperties": False}}
    assert manifest_errors(manifest) == [
        "$.name: must be a name like my_input: lower-case letters, digits and '_', "
        "starting with a letter, up to 63 characters (pattern)"]


@pytest.mark.parametrize(("fmt", "bad", "words"), [
    ("date-time", "20/11/2026", "a date-time like 2026-11-20T08:00:00Z"),
    ("date", "20/11/2026", "a date like 2026-11-20"),
    ("time", "8am", "a time like 08:00:00Z"),
    ("uri", "not a url", "a URL like https://api.example.com/v1"),
    ("uri-reference", "\\bad ref", "a URL or a relative reference like /v1/items"),
    ("email", "nobody", "an email address like someone@example.com"),
    ("ipv4", "300.1.1.1", "an IPv4 address like 192.0.2.10"),
    ("ipv6", "zz::", "an IPv6 address like 2001:db8::10"),
    ("uuid", "nope", "a UUID like 123e4567-e89b-12d3-a456-426614174000"),
    ("regex", "(", "a valid regular expression"),
])
def test_a_known_format_is_said_in_plain_words(fmt: str, bad: str, words: str) -> None:
    schema = {"type": "object", "properties": {"value": {"type": "string", "format": fmt}}}
    assert schema_errors(schema, {"value": bad}) == [f"$.value: must be {words} (format)"]


@pytest.mark.parametrize(("rule", "line"), [
    ({"pattern": "^[0-9]{4}$"},
     "$.value: must be text matching the regular expression ^[0-9]{4}$ (pattern)"),
    ({"pattern": "^sk_live_"}, "$.value: must start with 'sk_live_' (pattern)"),
    ({"pattern": "^[0-9]{4}$", "x-expected": "a year like 2026"},
     "$.value: must be a year like 2026 (pattern)"),
    ({"format": "uri", "x-expected": "a URL like https://example.com/hook"},
     "$.value: must be a URL like https://example.com/hook (format)"),
    ({"format": "made-up"}, None),  # formats jsonschema does not know are not checked
])
def test_a_schema_can_say_what_its_rule_expects(rule: dict[str, Any], line: str | None) -> None:
    schema = {"type": "object", "properties": {"value": {"type": "string", **rule}}}
    assert schema_errors(schema, {"value": "secret-looking value 42"}) == ([line] if line else [])


def test_the_manifest_meta_schema_takes_x_expected_as_words_only() -> None:
    def manifest(expected: Any) -> dict[str, Any]:
        prop = {"type": "string", "pattern": "^a", "description": "d", "x-expected": expected}
        return {"name": "words", "description": "d", "settings": {
            "type": "object", "properties": {"v": prop}, "additionalProperties": False}}

    assert manifest_errors(manifest("text starting with a, like abc")) == []
    assert manifest_errors(manifest(3)) == [
        "$.settings.properties.v['x-expected']: must be a string (type)"]
    assert manifest_errors(manifest("")) == [
        "$.settings.properties.v['x-expected']: must be at least 1 character long (minLength)"]


def test_a_manifest_whose_pattern_is_no_regular_expression_is_told_where(
) -> None:
    prop = {"type": "string", "pattern": "([a-z]", "description": "d"}
    manifest = {"name": "words", "description": "d", "settings": {
        "type": "object", "properties": {"v": prop}, "additionalProperties": False}}
    assert manifest_errors(manifest) == [
        "$.settings.properties.v.pattern: must be a valid regular expression (format)"]


def test_the_fast_path_still_gives_the_verdict_with_x_expected() -> None:
    schema = {"type": "string", "pattern": "^a", "x-expected": "text starting with a"}
    assert verdict(schema, "abc") is True
    assert verdict(schema, "xyz") is False


def _rules(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """Every subschema of ``node`` that holds a pattern or a format, with where it is."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str) or isinstance(node.get("format"), str):
            found.append((where, node))
        for key, value in node.items():
            found += _rules(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _rules(value, f"{where}/{index}")
    return found


def test_every_pattern_the_project_ships_says_in_words_what_it_expects() -> None:
    schemas = {name: load_schema(name) for name in ("pipeline.schema.json",
                                                    "manifest.meta.schema.json")}
    registry = discover()
    for registered in [*registry.inputs.values(), *registry.outputs.values()]:
        schemas[registered.name] = dict(registered.manifest)
    rules = [rule for name, schema in schemas.items() for rule in _rules(schema, name)]
    assert len(rules) >= 5  # the pipeline's name and env, the manifest's name, two Postman
    unsaid = [where for where, schema in rules
              if "pattern" in schema and not schema.get("x-expected")]
    assert unsaid == []
