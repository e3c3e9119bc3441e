"""Any input as an Airbyte source: ``plugin-host airbyte INPUT spec|check|discover|read
[--config FILE] [--catalog FILE] [--state FILE]``.

stdout carries Airbyte messages only, one JSON object a line; logging becomes LOG messages
(secrets redacted) and a failure a TRACE ERROR (``config_error`` for a bad config or a refused
key, ``transient_error`` for an upstream that failed, ``system_error`` otherwise) before the
command exits with its code. ``read`` brackets the stream with STREAM_STATUS traces and
follows each page's RECORDs with a STREAM STATE whose ``stream_state`` is
``{"checkpoint": <the input's checkpoint>}``. A state file is read leniently: a list of
state messages (``[]`` on a first read), extra and null keys ignored.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

from .._exceptions import (
    AuthError,
    ConfigError,
    PluginHostError,
    UpstreamError,
    one_line,
)
from .._jsonl import dumps_each
from .._manifest import documentation
from .._registry import Registered
from .._secrets import guarded, install_redaction, redactor
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

__all__ = ["catalog", "run", "spec", "state_checkpoint"]

log = logging.getLogger("plugin_host.protocols.airbyte")

SECRET_MARKS = {"airbyte_secret": True}
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
_LEVELS = {logging.CRITICAL: "FATAL", logging.ERROR: "ERROR", logging.WARNING: "WARN",
           logging.INFO: "INFO", logging.DEBUG: "DEBUG"}


def _now_ms() -> int:
    return int(time.time() * 1000)


class _LogMessages(logging.Handler):
    """Each log record as an Airbyte LOG message on stdout, secrets redacted."""

    def __init__(self, out: Emitter) -> None:
        super().__init__()
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = _LEVELS.get(record.levelno, "INFO")
            text = record.getMessage()
            if record.exc_text:
                text += "\n" + record.exc_text
            self.out.message({"type": "LOG", "log": {"level": level,
                                                     "message": f"{record.name}: {text}"}})
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _log_messages(out: Emitter) -> Iterator[None]:
    """Route every log record to LOG messages while the command runs."""
    root = logging.getLogger()
    saved = list(root.handlers)
    handler = _LogMessages(out)
    install_redaction(handler)
    for old in saved:
        root.removeHandler(old)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for old in saved:
            root.addHandler(old)


def spec(registered: Registered) -> dict[str, Any]:
    """The SPEC message: the config's schema from the manifest, secrets ``airbyte_secret``."""
    schema = {"$schema": DRAFT_07, **config_schema(registered, SECRET_MARKS)}
    body: dict[str, Any] = {"connectionSpecification": schema, "supportsIncremental": True}
    where = documentation(registered.manifest, registered.cls)
    if where and "://" in where:
        body["documentationUrl"] = where
    return {"type": "SPEC", "spec": body}


def catalog(stream: Stream) -> dict[str, Any]:
    """The CATALOG message: the one stream, incremental, with its cursor and primary key."""
    entry: dict[str, Any] = {
        "name": stream.name,
        "json_schema": {"$schema": DRAFT_07, **stream.schema},
        "supported_sync_modes": ["full_refresh", "incremental"],
        "source_defined_cursor": True,
        "is_resumable": True,
    }
    if stream.cursor:
        entry["default_cursor_field"] = [stream.cursor]
    if stream.key:
        entry["source_defined_primary_key"] = [[k] for k in stream.key]
    return {"type": "CATALOG", "catalog": {"streams": [entry]}}


def _check(registered: Registered, args: argparse.Namespace, out: Emitter,
           stop: threading.Event) -> int:
    """CONNECTION_STATUS: SUCCEEDED, or FAILED with the reason (a bad config included)."""
    from .._contract import InputContext

    try:
        configured = load_config(args.config, registered)
        context = InputContext(f"source-{registered.name}",
                               logging.getLogger(f"plugin_host.input.{registered.name}"),
                               stop_event=stop)
        with guarded(configured.secrets):
            source = registered.cls(configured.settings, configured.secrets, context)
            try:
                source.check()
            finally:
                source.close()
    except PluginHostError as exc:
        message = one_line(redactor(str(exc)))
        out.message({"type": "CONNECTION_STATUS",
                     "connectionStatus": {"status": "FAILED", "message": message}})
        return 0
    out.message({"type": "CONNECTION_STATUS", "connectionStatus": {
        "status": "SUCCEEDED", "message": f"configuration valid and {registered.name} reachable"}})
    return 0


def state_checkpoint(doc: Any, stream: Stream, path: str) -> Mapping[str, Any] | None:
    """The input's checkpoint in a state file: the STREAM state of ``stream`` among a list of
    state messages (or one); None when there is none."""
    entries = doc if isinstance(doc, list) else [doc] if isinstance(doc, Mapping) else None
    if entries is None:
        raise ConfigError(f"{path}: a state file must hold a list of state messages")
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("type") == "STATE" and isinstance(
                entry.get("state"), Mapping):
            entry = entry["state"]  # a whole message
        if not isinstance(entry, Mapping) or not isinstance(entry.get("stream"), Mapping):
            continue
        descriptor = entry["stream"].get("stream_descriptor")
        if not isinstance(descriptor, Mapping) or descriptor.get("name") != stream.name:
            continue
        blob = entry["stream"].get("stream_state")
        if blob is None:
            return None
        checkpoint = blob.get("checkpoint") if isinstance(blob, Mapping) else None
        if not isinstance(checkpoint, Mapping):
            raise ConfigError(f"{path}: the state of stream {stream.name} must be "
                              "{\"checkpoint\": {...}}, as this source wrote it")
        return checkpoint
    return None


def _configured_stream(doc: Any, stream: Stream, path: str) -> Mapping[str, Any] | None:
    """Our stream's entry in a configured catalog; an unknown stream is a ConfigError."""
    streams = doc.get("streams") if isinstance(doc, Mapping) else None
    if not isinstance(streams, list):
        raise ConfigError(f"{path}: a configured catalog must be an object with a list of "
                          "streams")
    ours = None
    for entry in streams:
        described = entry.get("stream") if isinstance(entry, Mapping) else None
        name = described.get("name") if isinstance(described, Mapping) else None
        if name != stream.name:
            raise ConfigError(f"{path}: unknown stream {name!r} (this source has: "
                              f"{stream.name})")
        ours = entry
    return ours


def _status(out: Emitter, stream: bytes, status: str) -> None:
    out.write(b'{"type":"TRACE","trace":{"type":"STREAM_STATUS","emitted_at":'
              + str(_now_ms()).encode() + b',"stream_status":{"stream_descriptor":{"name":'
              + stream + b'},"status":"' + status.encode() + b'"}}}\n')


def _read(registered: Registered, args: argparse.Namespace, out: Emitter,
          stop: threading.Event) -> int:
    """RECORDs, each page followed by its STREAM STATE, between STREAM_STATUS traces."""
    configured = load_config(args.config, registered)
    stream = stream_of(registered)
    if args.catalog is None:
        raise ConfigError("read needs --catalog FILE: the configured catalog")
    entry = _configured_stream(read_json(args.catalog, "catalog"), stream, args.catalog)
    if entry is None:
        log.info("the catalog does not name stream %s: nothing to read", stream.name)
        return 0
    incremental = entry.get("sync_mode", "incremental") == "incremental"
    checkpoint = state_checkpoint(read_json(args.state, "state"), stream, args.state) \
        if incremental and args.state else None
    name = orjson.dumps(stream.name)
    tune_collector()
    _status(out, name, "STARTED")
    try:
        _pages(configured, stream, name, checkpoint, out, stop)
    except BaseException:
        _status(out, name, "INCOMPLETE")
        raise
    _status(out, name, "COMPLETE")
    return 0


def _pages(configured: Configured, stream: Stream, name: bytes,
           checkpoint: Mapping[str, Any] | None, out: Emitter, stop: threading.Event) -> None:
    head = b'{"type":"RECORD","record":{"stream":' + name + b',"data":'
    state_head = (b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":'
                  b'{"name":' + name + b'},"stream_state":{"checkpoint":')
    running = False
    last: bytes | None = None
    for page in drive(configured, checkpoint, f"source-{configured.registered.name}", stop):
        state = checkpoint_bytes(page.checkpoint, configured)
        records = page.records
        if not records and state == last:
            continue
        if records and not running:
            _status(out, name, "RUNNING")
            running = True
        tail = b',"emitted_at":' + str(_now_ms()).encode() + b"}}\n"
        lines = head + (tail + head).join(dumps_each(records)) + tail if records else b""
        out.write(lines + state_head + state + b'}},"sourceStats":{"recordCount":'
                  + str(float(len(records))).encode() + b"}}}\n")
        last = state
    if last is None:  # a source always emits state, even with no records
        given = b"null" if checkpoint is None else checkpoint_bytes(checkpoint, configured)
        out.write(state_head + given + b'}},"sourceStats":{"recordCount":0.0}}}\n')


def _failure_type(exc: BaseException) -> str:
    if isinstance(exc, (ConfigError, AuthError)):
        return "config_error"
    if isinstance(exc, UpstreamError):
        return "transient_error"
    return "system_error"


def _trace_error(out: Emitter, exc: BaseException) -> None:
    """A TRACE ERROR for ``exc``: one redacted line, and its kind."""
    text = one_line(redactor(str(exc))) if isinstance(exc, PluginHostError) else one_line(
        redactor(f"unexpected error: {type(exc).__name__}: {exc}"))
    with contextlib.suppress(PluginHostError):
        out.message({"type": "TRACE", "trace": {
            "type": "ERROR", "emitted_at": float(_now_ms()),
            "error": {"message": text, "internal_message": type(exc).__name__,
                      "failure_type": _failure_type(exc)}}})


def run(registered: Registered, args: argparse.Namespace, stop: threading.Event) -> int:
    """The ``airbyte`` command: spec, check, discover or read; a failure is a TRACE ERROR,
    then raised for the command line to report and exit with its code."""
    actions: dict[str, Callable[..., int]] = {"check": _check, "read": _read}
    with message_stdout() as out, _log_messages(out):
        try:
            if args.action == "spec":
                out.message(spec(registered))
                return 0
            if args.action == "discover":
                load_config(args.config, registered)
                out.message(catalog(stream_of(registered)))
                return 0
            return actions[args.action](registered, args, out, stop)
        except Exception as exc:
            _trace_error(out, exc)
            raise
