"""The validation cache: a run of an unchanged pipeline skips the JSON Schema checks.

The fingerprint of a configuration is a SHA-256 of the pipeline file's text, the input's
and output's manifests, the pipeline schema, the host's version and jsonschema's version;
never of a secret. A run that validated its configuration in full remembers the
fingerprint (``remember``), in a ``validated`` table of the state's SQLite file (written
through the run's open state store); the next ``run`` of the same file reads it
(``reusable``: read-only, straight from the file, before anything is written) and, when
it matches, skips the schema checks of the file, the settings and the manifests.
``state reset`` forgets it (``forget``). This module alone reads and writes that table.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import __version__
from ._registry import Registered, Registry
from ._schemas import load_schema

if TYPE_CHECKING:  # the loader reads the cache without the state store: see ``remembered``
    from .state.sqlite import StateStore

__all__ = ["Reuse", "fingerprint", "forget", "remember", "remembered", "reusable"]

_TABLE = """
CREATE TABLE IF NOT EXISTS validated (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    validated_at TEXT NOT NULL
)
"""


class Reuse(NamedTuple):
    """A configuration validated in full before, unchanged since: its input and output
    (their manifests not checked again) and its fingerprint."""

    input: Registered
    output: Registered
    fingerprint: str


@functools.cache
def jsonschema_version() -> str:
    """The installed jsonschema's version, read from its metadata (jsonschema itself is
    not imported: a run that reuses its validation never needs it); "" if it is missing."""
    try:
        return metadata.version("jsonschema")
    except metadata.PackageNotFoundError:
        return ""


def fingerprint(text: str, input_: Registered, output: Registered) -> str:
    """The identity of a configuration for reusing its validation: the pipeline file's
    text, the input's and output's manifests, the pipeline schema, the host's and
    jsonschema's versions."""
    digest = hashlib.sha256()
    for part in ("plugin-host validation 2", __version__, jsonschema_version(),
                 json.dumps(load_schema("pipeline.schema.json"), sort_keys=True),
                 input_.kind, json.dumps(input_.manifest, sort_keys=True, default=repr),
                 output.kind, json.dumps(output.manifest, sort_keys=True, default=repr), text):
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def remembered(state_path: Path, name: str) -> str | None:
    """The fingerprint of pipeline ``name``'s last fully validated configuration, read
    without creating or changing anything; None when there is none or it cannot be read."""
    try:
        if state_path.stat().st_size == 0:
            return None
        db = sqlite3.connect(f"{state_path.resolve().as_uri()}?mode=ro", uri=True)
    except (OSError, ValueError, sqlite3.Error):
        return None
    try:
        row = db.execute("SELECT fingerprint FROM validated WHERE name = ?", (name,)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return str(row[0]) if row else None


def reusable(
    text: str, doc: Mapping[str, Any], registry: Registry, state_path: Path
) -> Reuse | None:
    """The input, output and fingerprint of the pipeline file ``text`` (parsed: ``doc``)
    when the state says it was validated in full before, unchanged since; None when it
    must be validated now."""
    name = doc.get("name")
    input_doc, output_doc = doc.get("input"), doc.get("output")
    input_type = input_doc.get("type") if isinstance(input_doc, Mapping) else None
    output_type = output_doc.get("type") if isinstance(output_doc, Mapping) else None
    if not (isinstance(name, str) and isinstance(input_type, str)
            and isinstance(output_type, str)):
        return None
    registered_input = registry.unchecked("input", input_type)
    registered_output = registry.unchecked("output", output_type)
    if registered_input is None or registered_output is None:
        return None
    known = remembered(state_path, name)
    if known is None:
        return None
    current = fingerprint(text, registered_input, registered_output)
    return Reuse(registered_input, registered_output, current) if current == known else None


def remember(store: StateStore, name: str, fingerprint: str) -> None:
    """Record in ``store`` that pipeline ``name``'s configuration with ``fingerprint`` is
    valid."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    store.execute(_TABLE)
    store.execute("INSERT INTO validated VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                  "fingerprint = excluded.fingerprint, validated_at = excluded.validated_at",
                  (name, fingerprint, now))


def forget(store: StateStore, name: str) -> None:
    """Forget pipeline ``name``'s fingerprint: its next run validates in full."""
    store.execute(_TABLE)
    store.execute("DELETE FROM validated WHERE name = ?", (name,))
