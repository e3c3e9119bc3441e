"""The kit's driver: run an input through the host's real runner, collect what it delivers.

``plugin_host.testing.pytest_plugin`` wraps these in fixtures and
``plugin_host.testing.contract_suite`` builds its suite on them. Nothing here imports
pytest; vcrpy is imported by ``make_vcr`` only.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .._contract import InputContext, OutputContext, Page
from .._exceptions import ValidationFailed
from .._manifest import EMPTY_OBJECT_SCHEMA, secret_names
from .._pipeline import Pipeline, own_check_errors, with_defaults
from .._registry import Registered
from .._runner import CommitPolicy, RunSummary, run_once
from .._secrets import redactor
from .._validation import schema_errors
from ..hookspecs import hookimpl
from ..state.sqlite import StateStore

__all__ = [
    "KEEP",
    "InputRun",
    "InputRunner",
    "PluginObject",
    "YieldedPage",
    "checkpoint_text",
    "make_vcr",
    "prepare",
    "read_pages",
    "vcr_config",
]

KEEP: Any = object()
"""``run_input(..., checkpoint=KEEP)``: start from what the state store holds (the default)."""

SECRET_HEADER_NAMES = ("authorization", "x-api-key", "apikey", "api-key", "x-auth-token",
                       "proxy-authorization", "cookie", "set-cookie")
SECRET_QUERY_NAMES = ("apikey", "api_key", "api-key", "key", "token", "access_token",
                      "client_secret", "password")
FILTERED = "FILTERED"


def checkpoint_text(checkpoint: Any) -> str | None:
    """The checkpoint as canonical JSON (sorted keys), or None when it is not JSON."""
    try:
        return json.dumps(checkpoint, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class YieldedPage:
    """One page as the input yielded it.

    ``checkpoint`` is the very object the input yielded; ``checkpoint_json`` is its JSON
    text taken at the moment it was yielded (None if it was not JSON), so a later change
    to the object (a mutated checkpoint) shows as a difference between the two.
    """

    records: list[Mapping[str, Any]]
    checkpoint: Mapping[str, Any]
    checkpoint_json: str | None


@dataclass
class InputRun:
    """What one run delivered.

    ``records``: every record the output received, in order. ``pages``: every page the
    input yielded. ``checkpoint``: the checkpoint committed in the state store at the end
    (None if nothing was ever committed). ``summary``: the runner's RunSummary.
    """

    records: list[Mapping[str, Any]]
    pages: list[YieldedPage]
    checkpoint: dict[str, Any] | None
    summary: RunSummary
    state_path: Path
    settings: dict[str, Any] = field(default_factory=dict)


def prepare(
    input_class: type[Any],
    settings: Mapping[str, Any] | None,
    secrets: Mapping[str, str] | None,
    base_dir: Path,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Validate settings and secrets against the manifest as a pipeline file would, fill
    defaults, and register the secret values for redaction; ValidationFailed lists errors."""
    manifest: Mapping[str, Any] = getattr(input_class, "manifest", {}) or {}
    schema = manifest.get("settings") or EMPTY_OBJECT_SCHEMA
    raw = dict(settings or {})
    errors = schema_errors(schema, raw, "$.input.settings")
    full = with_defaults(schema, raw)
    if not errors:
        errors += own_check_errors(input_class, full, base_dir, "$.input.settings")
    secret_values = {str(k): str(v) for k, v in (secrets or {}).items()}
    errors += schema_errors(manifest.get("secrets") or EMPTY_OBJECT_SCHEMA, secret_values,
                            "$.input.secrets")
    if errors:
        raise ValidationFailed([redactor(e) for e in errors])
    redactor.add(secret_values.values())
    return full, secret_values


def _recording(input_class: type[Any], pages: list[YieldedPage]) -> type[Any]:
    """A class that runs ``input_class`` and notes each page (and its checkpoint) it yields."""

    class Recording:
        manifest: ClassVar[Mapping[str, Any]] = input_class.manifest

        def __init__(
            self, settings: Mapping[str, Any], secrets: Mapping[str, str], context: InputContext
        ) -> None:
            self._inner = input_class(settings, secrets, context)

        def check(self) -> None:
            self._inner.check()

        def read(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
            for page in self._inner.read(checkpoint):
                if not isinstance(page, Page):
                    raise TypeError(
                        f"{input_class.__name__}.read yielded a {type(page).__name__}; "
                        "yield plugin_host.Page(records, checkpoint)"
                    )
                pages.append(YieldedPage(list(page.records), page.checkpoint,
                                         checkpoint_text(page.checkpoint)))
                yield page

        def close(self) -> None:
            self._inner.close()

    Recording.__name__ = Recording.__qualname__ = input_class.__name__
    return Recording


def _collecting(sink: list[Mapping[str, Any]]) -> type[Any]:
    """An output that keeps every record it is given in ``sink``."""

    class Collecting:
        manifest: ClassVar[Mapping[str, Any]] = {
            "name": "collect",
            "description": "Keeps records in memory (the testing kit's output).",
            "settings": EMPTY_OBJECT_SCHEMA,
        }

        def __init__(self, settings: Mapping[str, Any], context: OutputContext) -> None:
            pass

        def open(self, committed: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
            return None

        def write(self, records: Sequence[Mapping[str, Any]]) -> None:
            sink.extend(records)

        def durable(self) -> Mapping[str, Any] | None:
            return None

        def close(self) -> None:
            pass

    return Collecting


class InputRunner:
    """Runs inputs with ``plugin_host.run_once`` into memory, state in a real SQLite file.

    Calls share the state file and pipeline name, so a second call is an incremental run
    from the checkpoint the first one committed.
    """

    def __init__(self, folder: Path, pipeline: str = "test") -> None:
        self.folder = folder
        self.pipeline = pipeline
        self.state_path = folder / "state.db"

    def saved_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint committed in the state file (None before the first commit)."""
        if not self.state_path.exists():
            return None
        with StateStore(self.state_path) as store:
            saved = store.load(self.pipeline)
        return None if saved is None or saved.checkpoint is None else dict(saved.checkpoint)

    def __call__(
        self,
        input_class: type[Any],
        settings: Mapping[str, Any] | None = None,
        secrets: Mapping[str, str] | None = None,
        *,
        checkpoint: Any = KEEP,
        policy: CommitPolicy | None = None,
        stop_event: threading.Event | None = None,
    ) -> InputRun:
        """One run of ``input_class``; ``checkpoint`` (a mapping, or None for a first run)
        replaces the saved state first, like a restored backup. Errors propagate."""
        self.folder.mkdir(parents=True, exist_ok=True)
        full, secret_values = prepare(input_class, settings, secrets, self.folder)
        manifest = input_class.manifest
        name = str(manifest["name"])
        if checkpoint is not KEEP:
            with StateStore(self.state_path) as store:
                if checkpoint is None:
                    store.reset(self.pipeline)
                else:
                    store.commit(self.pipeline, name, checkpoint, None)
        pages: list[YieldedPage] = []
        records: list[Mapping[str, Any]] = []
        output_cls = _collecting(records)
        pipeline = Pipeline(
            path=self.folder / "pipeline.yaml",
            name=self.pipeline,
            input=Registered("input", name, _recording(input_class, pages), manifest,
                             "test", "test", ""),
            settings=full,
            secrets=secret_values,
            output=Registered("output", "collect", output_cls, output_cls.manifest,
                              "test", "test", ""),
            output_settings={},
            state_path=self.state_path,
        )
        summary = run_once(pipeline, stop_event=stop_event,
                           policy=policy or CommitPolicy(pages=1, seconds=0.0))
        return InputRun(records, pages, self.saved_checkpoint(), summary, self.state_path,
                        full)


def read_pages(
    input_class: type[Any],
    settings: Mapping[str, Any],
    secrets: Mapping[str, str],
    checkpoint: Mapping[str, Any] | None,
    *,
    base_dir: Path,
    pipeline: str = "test",
) -> list[Page]:
    """Every page ``input_class.read(checkpoint)`` yields, driven directly (no runner, no
    state store): for checking what a given checkpoint object, as is, resumes to."""
    full, secret_values = prepare(input_class, settings, secrets, base_dir)
    context = InputContext(pipeline, logging.getLogger(
        f"plugin_host.input.{input_class.manifest['name']}"))
    source = input_class(full, secret_values, context)
    try:
        return list(source.read(checkpoint))
    finally:
        source.close()


def _scrub(text: str, values: Sequence[str]) -> str:
    for value in values:
        text = text.replace(value, FILTERED)
    return text


def _manifest_of(input_class: type[Any] | Mapping[str, Any]) -> Mapping[str, Any]:
    return input_class if isinstance(input_class, Mapping) else input_class.manifest


def _credential_headers(manifest: Mapping[str, Any]) -> list[str]:
    """The headers a cassette filters by name: the usual credential headers and those
    named like a secret the manifest declares."""
    declared = secret_names(manifest)
    return list(dict.fromkeys(
        [*SECRET_HEADER_NAMES, *declared, *(n.replace("_", "-") for n in declared)]))


def _sends_the_same_credentials(names: Sequence[str]) -> Callable[[Any, Any], None]:
    wanted = {name.lower() for name in names}

    def credentials(sent: Any, recorded: Any) -> None:
        """vcrpy matcher: both requests carry the same credential headers, by name (their
        values are filtered, so any value replays)."""
        def carried(request: Any) -> list[str]:
            return sorted(k.lower() for k in request.headers if k.lower() in wanted)

        assert carried(sent) == carried(recorded), (
            f"credential headers sent {carried(sent)}, recorded {carried(recorded)}")

    return credentials


def vcr_config(
    input_class: type[Any] | Mapping[str, Any],
    secrets: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Keyword arguments for ``vcr.VCR(...)`` that keep every secret out of cassettes.

    Filtered: the headers ``Authorization``, ``X-API-Key``, ``apikey`` (and a few more
    credential headers) by name; query parameters named like a credential or like a secret
    the manifest declares; and, by value, each given secret wherever it appears in a
    request's URL, headers or body, or a response's headers or body.
    """
    manifest = _manifest_of(input_class)
    declared = secret_names(manifest)
    values = sorted({v for v in (secrets or {}).values() if v}, key=len, reverse=True)
    header_names = _credential_headers(manifest)
    query_names = list(dict.fromkeys([*SECRET_QUERY_NAMES, *declared]))

    def scrub_request(request: Any) -> Any:
        if values:
            request.uri = _scrub(request.uri, values)
            for key in list(request.headers):
                value = request.headers[key]
                if isinstance(value, str) and any(v in value for v in values):
                    request.headers[key] = FILTERED
            body = request.body
            if isinstance(body, bytes):
                text = body.decode("utf-8", "replace")
                if any(v in text for v in values):
                    request.body = _scrub(text, values).encode("utf-8")
            elif isinstance(body, str):
                request.body = _scrub(body, values)
        return request

    def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
        if not values:
            return response
        headers = response.get("headers") or {}
        for key, items in list(headers.items()):
            if key.lower() in SECRET_HEADER_NAMES:
                headers[key] = [FILTERED]
            else:
                headers[key] = [_scrub(str(item), values) for item in items]
        body = response.get("body") or {}
        raw = body.get("string")
        if isinstance(raw, bytes):
            text = raw.decode("utf-8", "replace")
            if any(v in text for v in values):
                body["string"] = _scrub(text, values).encode("utf-8")
        elif isinstance(raw, str):
            body["string"] = _scrub(raw, values)
        return response

    config: dict[str, Any] = {
        "filter_headers": [(name, FILTERED) for name in header_names],
        "filter_query_parameters": [(name, FILTERED) for name in query_names],
        "filter_post_data_parameters": [(name, FILTERED) for name in query_names],
        "before_record_request": scrub_request,
        "before_record_response": scrub_response,
        "decode_compressed_response": True,
        "record_mode": "once",
    }
    config.update(overrides)
    return config


def make_vcr(
    input_class: type[Any] | Mapping[str, Any],
    secrets: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Any:
    """A ``vcr.VCR`` built from :func:`vcr_config` (vcrpy is imported only here) that,
    unless ``match_on`` is given, also matches on the credential headers sent: a request
    without the key does not replay a recorded request that had one."""
    import vcr  # type: ignore[import-untyped]

    recorder = vcr.VCR(**vcr_config(input_class, secrets, **overrides))
    recorder.register_matcher(
        "credentials", _sends_the_same_credentials(_credential_headers(_manifest_of(input_class))))
    if "match_on" not in overrides:
        recorder.match_on = (*recorder.match_on, "credentials")
    return recorder



class PluginObject:
    """A plugin object registering the given input, output and transform classes (for
    tests)."""

    def __init__(self, inputs: Sequence[type[Any]] = (), outputs: Sequence[type[Any]] = (),
                 transforms: Sequence[type[Any]] = ()):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.transforms = list(transforms)
        self.__name__ = "_".join(str(getattr(c, "manifest", {}).get("name", c.__name__))
                                 for c in [*inputs, *outputs, *transforms])

    @hookimpl
    def plugin_host_register_inputs(self, register: Callable[[type[Any]], None]) -> None:
        """Register the input classes."""
        for cls in self.inputs:
            register(cls)

    @hookimpl
    def plugin_host_register_outputs(self, register: Callable[[type[Any]], None]) -> None:
        """Register the output classes."""
        for cls in self.outputs:
            register(cls)

    @hookimpl
    def plugin_host_register_transforms(self, register: Callable[[type[Any]], None]) -> None:
        """Register the transform classes."""
        for cls in self.transforms:
            register(cls)
