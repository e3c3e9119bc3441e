"""What the Singer and Airbyte modes share: an input's stream, its one config file, the
checkpoint as protocol state, the input driven page by page, and stdout for messages only.

The config file of both protocols is one JSON object holding the input's settings and its
secrets side by side, each under its manifest name (``{"api_key": "...", "page_size": 300}``).
A key that is a secret in the manifest is a secret here: its value is redacted from every
log line and error, and refused in a checkpoint. A ``null`` value counts as not set (Meltano
writes one for a setting without a value).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import stat
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]

from .._contract import InputContext, Page
from .._exceptions import ConfigError, LocalStorageError, PluginHostError, StopRequested
from .._jsonl import loads
from .._manifest import EMPTY_OBJECT_SCHEMA, secret_names
from .._pipeline import own_check_errors, with_defaults
from .._registry import Registered
from .._secrets import guarded, redactor
from .._validation import join_path, schema_errors

__all__ = ["Configured", "Emitter", "Stream", "checkpoint_bytes", "config_schema",
           "drive", "load_config", "message_stdout", "read_json", "stream_of",
           "tune_collector"]

ANY_RECORD: Mapping[str, Any] = {"type": "object", "additionalProperties": True}
"""The schema of an input that declares none: any JSON object."""


@dataclass(frozen=True)
class Stream:
    """The one stream an input is in a protocol: its records' name, schema, key and cursor."""

    name: str
    schema: Mapping[str, Any]
    key: list[str] = field(default_factory=list)
    cursor: str | None = None

    @property
    def properties(self) -> Mapping[str, Any]:
        """The schema's declared properties."""
        props = self.schema.get("properties")
        return props if isinstance(props, Mapping) else {}


def stream_of(registered: Registered) -> Stream:
    """The stream of an input: its manifest's ``records``, else any object named after it."""
    records = registered.manifest.get("records")
    if not isinstance(records, Mapping):
        return Stream(registered.name, ANY_RECORD)
    return Stream(str(records.get("stream") or registered.name),
                  records.get("schema") or ANY_RECORD, list(records.get("key") or []),
                  records.get("cursor"))


def read_json(path: str, what: str) -> Any:
    """The JSON document in the file ``path`` (``what`` names it in errors: "config")."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: the {what} file does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a {what} file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: the {what} file cannot be read "
                          f"({exc.strerror or type(exc).__name__})") from None
    try:
        return loads(data)  # integers beyond 64 bits kept exact
    except (ValueError, UnicodeDecodeError) as exc:
        reason = f"{exc.msg} at line {exc.lineno}, column {exc.colno}" if isinstance(
            exc, json.JSONDecodeError) else "not UTF-8 text"
        raise ConfigError(f"{path}: the {what} file is not JSON ({reason})") from None


def config_schema(registered: Registered, secret_marks: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol config's JSON Schema: the manifest's settings and secrets as one object,
    each secret's property carrying ``secret_marks`` (``{"airbyte_secret": true}``)."""
    manifest = registered.manifest
    settings = manifest.get("settings") or EMPTY_OBJECT_SCHEMA
    secrets = manifest.get("secrets") or EMPTY_OBJECT_SCHEMA
    properties: dict[str, Any] = {}
    for name, prop in (settings.get("properties") or {}).items():
        properties[name] = dict(prop)
    for name, prop in (secrets.get("properties") or {}).items():
        properties[name] = {**prop, **secret_marks}
    required = [*(settings.get("required") or []), *(secrets.get("required") or [])]
    schema: dict[str, Any] = {"type": "object"}
    if manifest.get("title"):
        schema["title"] = manifest["title"]
    schema["description"] = manifest.get("description", "")
    schema.update({"required": list(dict.fromkeys(required)), "properties": properties,
                   "additionalProperties": False})
    return schema


@dataclass(frozen=True)
class Configured:
    """An input's settings (validated, defaults filled in) and secrets, from a config file."""

    registered: Registered
    settings: dict[str, Any]
    secrets: dict[str, str] = field(repr=False)


def load_config(path: str | None, registered: Registered) -> Configured:
    """Read and validate a protocol config file against the input's manifest; every error
    in one ConfigError line, never a secret's value. Secrets are registered for redaction
    before anything is checked."""
    if path is None:
        raise ConfigError("--config FILE is required: the input's settings and secrets as "
                          "one JSON object")
    doc = read_json(path, "config")
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: the config file must hold a JSON object (settings and "
                          "secrets by name)")
    manifest = registered.manifest
    settings_schema = manifest.get("settings") or EMPTY_OBJECT_SCHEMA
    secrets_schema = manifest.get("secrets") or EMPTY_OBJECT_SCHEMA
    declared_secrets = secret_names(manifest)
    declared_settings = list((settings_schema.get("properties") or {}).keys())
    redactor.add(str(doc[n]) for n in declared_secrets if isinstance(doc.get(n), str))
    settings: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    errors: list[str] = []
    for name, value in doc.items():
        if value is None:
            continue
        if name in declared_secrets:
            secrets[name] = value
        elif name in declared_settings:
            settings[name] = value
        else:
            known = ", ".join([*declared_settings, *declared_secrets]) or "none"
            errors.append(f"{join_path('$', [name])}: unknown setting (this input takes: "
                          f"{known})")
    errors += schema_errors(settings_schema, settings)
    errors += schema_errors(secrets_schema, secrets)
    settings = with_defaults(settings_schema, settings)
    if not errors:
        errors += own_check_errors(registered.cls, settings, Path.cwd(), "$")
    if errors:
        raise ConfigError(f"{path}: " + "; ".join(redactor(e) for e in errors))
    return Configured(registered, settings, {k: str(v) for k, v in secrets.items()})


def checkpoint_bytes(checkpoint: Mapping[str, Any], configured: Configured) -> bytes:
    """The checkpoint as JSON (a snapshot the input can no longer change); refused when it
    is not JSON or holds a secret."""
    name = configured.registered.name
    try:
        data = orjson.dumps(checkpoint)
    except TypeError:  # keys that are not strings, integers beyond 64 bits
        try:
            data = json.dumps(checkpoint, sort_keys=True, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise PluginHostError(
                f"input {name} yielded a checkpoint that is not JSON ({exc})") from None
    if any(value.encode("utf-8") in data for value in configured.secrets.values()):
        raise PluginHostError(f"input {name} put a secret into its checkpoint; no state "
                              "was emitted for it")
    return data


def tune_collector() -> None:
    """As ``plugin-host run`` does before a sync: what is loaded by now lives for the whole
    process, so keep the collector off it, and collect the young a little less often (a
    read allocates many short-lived records, few cycles)."""
    gc.freeze()
    gc.set_threshold(2_000, 10, 10)


def drive(
    configured: Configured, checkpoint: Mapping[str, Any] | None, label: str,
    stop: threading.Event,
) -> Iterator[Page]:
    """The input's pages from ``checkpoint``, its secrets guarded; ends after the page in
    hand once ``stop`` is set, and quietly when the input stops on a request."""
    registered = configured.registered
    context = InputContext(label, logging.getLogger(f"plugin_host.input.{registered.name}"),
                           stop_event=stop)
    with guarded(configured.secrets):
        source = registered.cls(configured.settings, configured.secrets, context)
        try:
            for page in source.read(checkpoint):
                yield page
                if stop.is_set():
                    logging.getLogger("plugin_host.protocols").warning(
                        "stop requested: ended after the page in hand and its state")
                    return
        except StopRequested:
            return
        finally:
            source.close()


class Emitter:
    """Protocol messages onto the real stdout, whole lines, one writer at a time; a reader
    that went away is a LocalStorageError (exit 5). A write made while this thread is
    writing already (a signal handler that logs, in the Airbyte mode) waits for the write
    in hand to end, so that no line is ever split."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._writer: int | None = None
        self._pending: list[bytes] = []
        self.broken = False

    def write(self, data: bytes) -> None:
        """Write ``data`` (whole lines) and flush it."""
        if self._writer == threading.get_ident():
            self._pending.append(data)
            return
        with self._lock:
            self._writer = threading.get_ident()
            try:
                self._write(data)
                while self._pending:
                    self._write(self._pending.pop(0))
            finally:
                self._writer = None

    def _write(self, data: bytes) -> None:
        if not self.broken:
            try:
                self._out.write(data)
                self._out.flush()
            except OSError as exc:
                self.broken = True
                with contextlib.suppress(OSError, ValueError):
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, self._out.fileno())  # no second error at exit
                reason = "the reader went away" if isinstance(exc, BrokenPipeError) \
                    else (exc.strerror or type(exc).__name__)
                raise LocalStorageError(f"cannot write to stdout ({reason})") from None

    def message(self, doc: Any) -> None:
        """Write one message as a JSON line."""
        self.write(orjson.dumps(doc) + b"\n")


def _widen_pipe(stream: Any) -> None:
    """A pipe on stdout holds 1 MiB instead of 64 KiB where the system allows it (Linux):
    a page of messages then goes to the reader in one piece, not in a dozen turns."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        fd = stream.fileno()
        if setpipe is not None and stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, setpipe, 1 << 20)


@contextlib.contextmanager
def message_stdout() -> Iterator[Emitter]:
    """The real stdout as an Emitter, while ``sys.stdout`` points at stderr: nothing but
    protocol messages reaches stdout, whatever a plugin prints."""
    saved = sys.stdout
    emitter = Emitter(saved.buffer)
    saved.flush()
    _widen_pipe(saved)
    sys.stdout = sys.stderr
    try:
        yield emitter
    finally:
        sys.stdout = saved
