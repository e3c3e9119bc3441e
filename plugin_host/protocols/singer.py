"""Any input as a Singer tap: ``plugin-host singer INPUT --config FILE [--state FILE]
[--catalog FILE] [--discover] [--about [--format json]]``.

stdout carries messages only, one JSON object a line: the stream's SCHEMA, then for each page
of the input its RECORDs and, after them, a STATE whose value carries the input's checkpoint;
logs go to stderr. The state value is ``{"bookmarks": {STREAM: {"checkpoint": TEXT}}}``, TEXT
the checkpoint as JSON text: Meltano deep-merges the states of an interrupted run into the last
complete one, which would mix the keys of two checkpoints; a text is replaced whole. A state
file is read back in that form, also wrapped as Meltano stores it (``{"singer_state": ...}``),
or with the checkpoint as an object.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Mapping
from typing import Any

import orjson

from .. import __version__
from .._exceptions import ConfigError
from .._jsonl import dumps_each
from .._registry import Registered
from ._common import (
    Configured,
    Emitter,
    Stream,
    checkpoint_bytes,
    config_schema,
    drive,
    load_config,
    message_stdout,
    read_json,
    stream_of,
    tune_collector,
)

__all__ = ["about", "catalog", "run", "state_checkpoint"]

log = logging.getLogger("plugin_host.protocols.singer")

CAPABILITIES = ["about", "catalog", "discover", "state"]
SECRET_MARKS = {"secret": True, "writeOnly": True}


def tap_name(registered: Registered) -> str:
    """``tap-NAME``, the input's name with dashes."""
    return "tap-" + registered.name.replace("_", "-")


def about(registered: Registered, fmt: str) -> str:
    """``--about``: the settings from the manifest (secrets marked), as text or JSON."""
    settings = config_schema(registered, SECRET_MARKS)
    info = {
        "name": tap_name(registered),
        "description": registered.manifest.get("description", ""),
        "version": registered.version or __version__,
        "plugin_host_version": __version__,
        "capabilities": CAPABILITIES,
        "settings": {"$schema": "https://json-schema.org/draft/2020-12/schema", **settings},
    }
    if fmt == "json":
        return orjson.dumps(info, option=orjson.OPT_INDENT_2).decode("utf-8")
    lines = [f"Name: {info['name']}", f"Description: {info['description']}",
             f"Version: {info['version']}", f"Capabilities: {', '.join(CAPABILITIES)}",
             "Settings:"]
    required = set(settings["required"])
    for name, prop in settings["properties"].items():
        marks = [m for m, on in (("required", name in required), ("secret", prop.get("secret")))
                 if on]
        note = f" ({', '.join(marks)})" if marks else ""
        lines.append(f"  - {name}{note}: {prop.get('description', '')}")
    return "\n".join(lines)


def catalog(stream: Stream) -> dict[str, Any]:
    """The discovered catalog: the one stream, its schema and metadata, selected by default."""
    automatic = {*stream.key, *([stream.cursor] if stream.cursor else [])}
    top: dict[str, Any] = {
        "inclusion": "available",
        "selected-by-default": True,
        "table-key-properties": stream.key,
        "forced-replication-method": "INCREMENTAL",
    }
    if stream.cursor:
        top["valid-replication-keys"] = [stream.cursor]
    metadata = [{"breadcrumb": [], "metadata": top}]
    for name in stream.properties:
        inclusion = "automatic" if name in automatic else "available"
        metadata.append({"breadcrumb": ["properties", name],
                         "metadata": {"inclusion": inclusion, "selected-by-default": True}})
    entry = {"tap_stream_id": stream.name, "stream": stream.name, "schema": stream.schema,
             "key_properties": stream.key, "metadata": metadata}
    return {"streams": [entry]}


def selection(doc: Any, stream: Stream, path: str) -> tuple[bool, frozenset[str]]:
    """Whether a catalog selects the stream, and the properties it leaves out."""
    streams = doc.get("streams") if isinstance(doc, Mapping) else None
    if not isinstance(streams, list):
        raise ConfigError(f"{path}: a catalog must be an object with a list of streams")
    entry = next((s for s in streams if isinstance(s, Mapping) and stream.name in (
        s.get("tap_stream_id"), s.get("stream"))), None)
    if entry is None:
        return False, frozenset()
    metadata: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for item in entry.get("metadata") or []:
        if isinstance(item, Mapping) and isinstance(item.get("metadata"), Mapping):
            metadata[tuple(item.get("breadcrumb") or ())] = item["metadata"]
    top = metadata.get((), {})
    selected = top.get("selected", entry.get("selected", top.get("selected-by-default", False)))
    kept = {*stream.key, *([stream.cursor] if stream.cursor else [])}
    left_out = frozenset(
        str(crumb[1]) for crumb, meta in metadata.items()
        if len(crumb) == 2 and crumb[0] == "properties" and meta.get("selected") is False
        and meta.get("inclusion") != "automatic" and crumb[1] not in kept)
    return selected is True, left_out


def state_checkpoint(doc: Any, stream: Stream, path: str) -> Mapping[str, Any] | None:
    """The input's checkpoint in a Singer state value (None: start from the beginning)."""
    if isinstance(doc, Mapping) and "singer_state" in doc and "bookmarks" not in doc:
        doc = doc["singer_state"]  # as Meltano stores it
    if doc is None or doc == {}:
        return None
    bookmarks = doc.get("bookmarks") if isinstance(doc, Mapping) else None
    if not isinstance(bookmarks, Mapping):
        raise ConfigError(f"{path}: a state must be an object with bookmarks by stream")
    bookmark = bookmarks.get(stream.name)
    if bookmark is None:
        return None
    value = bookmark.get("checkpoint") if isinstance(bookmark, Mapping) else None
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            value = None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: bookmarks.{stream.name}.checkpoint must be the JSON text "
                          "of a checkpoint this tap wrote")
    return value


def _state_line(stream_key: bytes, checkpoint: bytes | None) -> bytes:
    bookmark = b"{}" if checkpoint is None else (
        b'{' + stream_key + b':{"checkpoint":' + orjson.dumps(checkpoint.decode("utf-8"))
        + b"}}")
    return b'{"type":"STATE","value":{"bookmarks":' + bookmark + b"}}\n"


def sync(configured: Configured, stream: Stream, left_out: frozenset[str],
         checkpoint: Mapping[str, Any] | None, out: Emitter, stop: threading.Event) -> int:
    """SCHEMA, then each page's RECORDs followed by its STATE; returns the records sent."""
    schema = stream.schema
    if left_out:
        schema = {**schema, "properties": {k: v for k, v in stream.properties.items()
                                           if k not in left_out}}
    schema_message: dict[str, Any] = {"type": "SCHEMA", "stream": stream.name, "schema": schema,
                                      "key_properties": stream.key}
    if stream.cursor:
        schema_message["bookmark_properties"] = [stream.cursor]
    out.message(schema_message)
    name = orjson.dumps(stream.name)
    head = b'{"type":"RECORD","stream":' + name + b',"record":'
    between = b"}\n" + head
    sent = 0
    last: bytes | None = None
    for page in drive(configured, checkpoint, tap_name(configured.registered), stop):
        state = checkpoint_bytes(page.checkpoint, configured)
        records = page.records
        if left_out:
            records = [{k: v for k, v in r.items() if k not in left_out} for r in records]
        if not records and state == last:
            continue
        lines = head + between.join(dumps_each(records)) + b"}\n" if records else b""
        out.write(lines + _state_line(name, state))
        sent += len(records)
        last = state
    if last is None:  # no page: pass the state given on, so the target keeps it
        given = None if checkpoint is None else checkpoint_bytes(checkpoint, configured)
        out.write(_state_line(name, given))
    return sent


def run(registered: Registered, args: argparse.Namespace, stop: threading.Event) -> int:
    """The ``singer`` command: ``--about``, ``--discover`` or a sync."""
    if args.about:
        print(about(registered, args.format))
        return 0
    stream = stream_of(registered)
    configured = load_config(args.config, registered)
    if args.discover:
        print(orjson.dumps(catalog(stream), option=orjson.OPT_INDENT_2).decode("utf-8"))
        return 0
    catalog_path = args.catalog or args.properties
    selected, left_out = (True, frozenset()) if catalog_path is None else selection(
        read_json(catalog_path, "catalog"), stream, catalog_path)
    checkpoint = None if args.state is None else state_checkpoint(
        read_json(args.state, "state"), stream, args.state)
    if not selected:
        log.warning("the catalog does not select stream %s: nothing to sync", stream.name)
        return 0
    tune_collector()
    with message_stdout() as out:
        sent = sync(configured, stream, left_out, checkpoint, out, stop)
    log.info("%s: %d records sent", stream.name, sent)
    return 0
