"""The Postman input's documented config tables and its manifest say the same thing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from plugin_host import discover

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "plugins" / "postman_audit" / "README.md"


def _table(section: str) -> dict[str, dict[str, str]]:
    """The section's table of fields by name; every row must be one documented field."""
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("|")]
    assert lines[0] == "| name | type | required | default | description |", lines[0]
    rows: dict[str, dict[str, str]] = {}
    for line in lines[2:]:  # past the header and its |---| line
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 5 and re.fullmatch(r"`\w+`", cells[0]), f"not a field row: {line}"
        name = cells[0].strip("`")
        assert name not in rows, f"{name} is documented twice"
        rows[name] = dict(zip(["type", "required", "default", "description"], cells[1:],
                              strict=True))
    return rows


@pytest.fixture(scope="module")
def manifest() -> dict:
    return dict(discover().input("postman_audit").manifest)


@pytest.mark.parametrize("section, part", [("Settings", "settings"), ("Secrets", "secrets")])
def test_every_field_is_documented_with_its_type_requirement_and_default(
    manifest: dict, section: str, part: str
) -> None:
    schema = manifest[part]
    rows = _table(section)
    assert set(rows) == set(schema["properties"]), "README table and manifest list other fields"
    required = set(schema.get("required", []))
    for name, prop in schema["properties"].items():
        row = rows[name]
        assert row["type"] == prop["type"], name
        assert row["required"] == ("yes" if name in required else "no"), name
        if "default" in prop:
            default = prop["default"]
            if isinstance(default, dict):
                shown = "{" + ", ".join(f"{k}: {v}" for k, v in default.items()) + "}"
            else:
                shown = str(default)
            assert row["default"].strip("`") == shown, name
        else:
            assert row["default"] == "(none)", name


def test_advanced_settings_are_marked_advanced_in_both_places(manifest: dict) -> None:
    rows = _table("Settings")
    for name, prop in manifest["settings"]["properties"].items():
        advanced_doc = rows[name]["description"].startswith("Advanced.")
        assert advanced_doc == prop["description"].startswith("Advanced."), name


def test_every_secret_is_write_only_and_the_file_on_disk_is_the_one_registered(
    manifest: dict,
) -> None:
    on_disk = json.loads((ROOT / "schemas" / "postman_audit.manifest.json").read_text())
    assert on_disk == manifest
    assert all(p.get("writeOnly") is True for p in manifest["secrets"]["properties"].values())


def test_troubleshooting_table_names_each_exit_code_the_code_uses() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split("## Troubleshooting\n", 1)[1].split("\n## ", 1)[0]
    for phrase, code in [("HTTP 401", "3"), ("HTTP 403", "3"), ("retention", "4"),
                         ("serviceLimitExhausted", "4")]:
        row = next(line for line in table.splitlines() if phrase in line)
        assert re.search(rf"\|\s*{code}\s*\|", row), phrase
