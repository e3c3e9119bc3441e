"""Pipeline files: parse, validate everything at once, resolve secrets and paths.

A run may reuse an earlier validation: when the validation cache (``_validation_cache``)
knows this configuration, the JSON Schema checks of the file, the settings and the
manifests are skipped. Everything that can change without the file changing is checked
every time: secrets (resolved and checked against their schema), paths, and each input's
and output's own ``validate_settings``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _validation_cache as validation_cache
from ._contract import ValidatesSettings
from ._exceptions import ConfigError, ValidationFailed
from ._manifest import EMPTY_OBJECT_SCHEMA, secret_names
from ._paths import creatable_problem, resolve_path
from ._registry import Registered, Registry
from ._schemas import load_schema
from ._secrets import redactor, resolve_secret
from ._validation import join_path, schema_errors
from ._yaml import YamlError, load_yaml
from .transforms.chain import TransformChain, load_transforms

__all__ = ["DEFAULT_STATE_PATH", "Pipeline", "load_pipeline", "own_check_errors", "with_defaults"]

DEFAULT_STATE_PATH = ".plugin-host/state.db"
DEFAULT_LEASE_SECONDS = 30.0


@dataclass
class Pipeline:
    """A validated pipeline, its secrets resolved and its paths absolute."""

    path: Path
    name: str
    input: Registered
    settings: dict[str, Any]
    secrets: dict[str, str] = field(repr=False)
    output: Registered
    output_settings: dict[str, Any]
    state_path: Path
    warnings: list[str] = field(default_factory=list)
    fingerprint: str = ""  # of the configuration validated (see _validation_cache)
    validation_reused: bool = False  # the schema checks were skipped: the cache knew it
    state_url: str = field(default="", repr=False)  # a PostgreSQL state: a secret
    lease_seconds: float = DEFAULT_LEASE_SECONDS  # a PostgreSQL state's lease
    transforms: TransformChain = field(default_factory=TransformChain)  # input → output
    output_secrets: dict[str, str] = field(default_factory=dict, repr=False)
    every: float | None = None  # schedule.every: seconds between a worker's syncs

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the pipeline file are taken from."""
        return self.path.parent


def with_defaults(schema: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``settings`` with each top-level property's ``default`` filled in."""
    result = copy.deepcopy(dict(settings))
    for name, prop in (schema.get("properties") or {}).items():
        if name not in result and isinstance(prop, Mapping) and "default" in prop:
            result[name] = copy.deepcopy(prop["default"])
    return result


def _read(path: Path) -> tuple[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: the pipeline file does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a pipeline file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{path}: cannot be read ({reason})") from None
    try:
        return text, load_yaml(text)
    except YamlError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def own_check_errors(
    cls: type[Any], settings: Mapping[str, Any], base_dir: Path, where: str
) -> list[str]:
    """The errors of the class's own ``validate_settings`` (``ValidatesSettings``), each as
    ``where.setting: message``; none for a class without one."""
    if not isinstance(cls, ValidatesSettings):
        return []
    problems: Iterable[tuple[str, str]] = cls.validate_settings(settings, base_dir)
    return [f"{join_path(where, [p] if p else [])}: {message}" for p, message in problems]


def _section(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, Mapping) else {}


def load_pipeline(
    path: Path | str, registry: Registry, *, resolve: bool = True, reuse: bool = False
) -> Pipeline:
    """Load and validate a pipeline file; raise ValidationFailed listing every error.

    With ``reuse``, a configuration the validation cache knows skips the schema
    checks (see the module's docstring); secrets and paths are checked all the same."""
    path = Path(path).expanduser().absolute()
    text, doc = _read(path)
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: a pipeline file must be a YAML mapping (version, name, ...)")
    warnings: list[str] = []
    base_dir = path.parent
    input_doc, output_doc = _section(doc, "input"), _section(doc, "output")
    state_doc = _section(doc, "state")
    state_value = state_doc.get("path", DEFAULT_STATE_PATH)
    state_path = resolve_path(str(state_value), base_dir)
    shared = "url" in state_doc  # a PostgreSQL state: no local file to remember validations
    known = (validation_cache.reusable(text, doc, registry, state_path)
             if reuse and resolve and not shared else None)
    errors = [] if known else schema_errors(load_schema("pipeline.schema.json"), doc)

    registered_input, settings = _component(
        "input", input_doc, registry, base_dir, errors, known.input if known else None)
    secrets: dict[str, str] = {}
    if registered_input is not None:
        secrets = _component_secrets("input", registered_input, input_doc, base_dir,
                                     resolve, errors, warnings)
    registered_output, output_settings = _component(
        "output", output_doc, registry, base_dir, errors, known.output if known else None)
    output_secrets: dict[str, str] = {}
    if registered_output is not None:
        output_secrets = _component_secrets("output", registered_output, output_doc,
                                            base_dir, resolve, errors, warnings)

    transforms = load_transforms(doc.get("transforms"), registry, registered_input,
                                 str(doc.get("name")), base_dir, errors)
    state_url = _state_url(state_doc, base_dir, errors, warnings)
    if registered_output is not None:
        errors += _state_url_defaults(registered_output, output_doc, output_secrets,
                                      state_url, shared)
    if not shared and isinstance(state_value, str) and (
            problem := creatable_problem(state_path)):
        errors.append(f"$.state.path: {problem}")

    if errors:
        raise ValidationFailed([redactor(e) for e in errors])
    assert registered_input is not None and registered_output is not None
    return Pipeline(
        path=path,
        name=str(doc["name"]),
        input=registered_input,
        settings=settings,
        secrets=secrets,
        output=registered_output,
        output_settings=output_settings,
        state_path=state_path,
        output_secrets=output_secrets,
        warnings=warnings,
        fingerprint=(known.fingerprint if known else validation_cache.fingerprint(
            text, registered_input, registered_output)) if resolve and not shared else "",
        validation_reused=known is not None,
        transforms=transforms,
        state_url=state_url,
        lease_seconds=float(state_doc.get("lease_seconds", DEFAULT_LEASE_SECONDS)),
        every=_every(doc),
    )


def _every(doc: Mapping[str, Any]) -> float | None:
    """The pipeline's ``schedule.every`` in seconds (checked by the schema), or None."""
    value = _section(doc, "schedule").get("every")
    return float(value) if isinstance(value, (int, float)) else None


def _state_url(
    state_doc: Mapping[str, Any], base_dir: Path, errors: list[str], warnings: list[str]
) -> str:
    """The state's PostgreSQL URL, resolved like a secret (always: ``state`` commands need
    it) and redacted from then on; "" for a SQLite state. Problems go to ``errors``."""
    if "url" not in state_doc:
        if "lease_seconds" in state_doc:
            errors.append("$.state.lease_seconds: applies only to a state url (PostgreSQL); "
                          "a SQLite state is locked by its running process")
        return ""
    if "path" in state_doc:
        errors.append("$.state: takes path (a SQLite file) or url (a PostgreSQL database), "
                      "not both")
    ref = state_doc["url"]
    if isinstance(ref, str):
        warnings.append("$.state.url is written into the pipeline file (it may hold a "
                        "password); prefer {env: NAME} or {file: path}")
    try:
        value = resolve_secret(ref, base_dir)
    except ValueError as exc:
        errors.append(f"$.state.url: {exc}")
        return ""
    from .state import _url

    _url.register(value)
    problem = _url.problem(value)
    if problem:
        errors.append(f"$.state.url: {problem}")
        return ""
    return value.strip()


def _component(
    kind: str, doc: Mapping[str, Any], registry: Registry, base_dir: Path, errors: list[str],
    known: Registered | None = None,
) -> tuple[Registered | None, dict[str, Any]]:
    """The registered input or output a section names, and its settings with defaults;
    every problem is appended to ``errors``. A ``known`` component's settings were
    validated before, unchanged: their schema is not checked again."""
    if not isinstance(doc.get("type"), str):
        return None, {}
    try:
        registered = known or (registry.input(doc["type"]) if kind == "input"
                               else registry.output(doc["type"]))
    except ConfigError as exc:
        errors.append(f"$.{kind}.type: {exc}")
        return None, {}
    raw = doc.get("settings") or {}
    if not isinstance(raw, Mapping):
        return registered, {}
    where = f"$.{kind}.settings"
    schema = registered.manifest.get("settings") or EMPTY_OBJECT_SCHEMA
    setting_errors = [] if known else schema_errors(schema, raw, where)
    errors += setting_errors
    settings = with_defaults(schema, raw)
    if not setting_errors:
        errors += own_check_errors(registered.cls, settings, base_dir, where)
    return registered, settings


def _component_secrets(
    kind: str, registered: Registered, doc: Mapping[str, Any], base_dir: Path, resolve: bool,
    errors: list[str], warnings: list[str],
) -> dict[str, str]:
    """The input's or output's secrets, resolved; a literal one is warned about."""
    values, secret_errors = _secrets(registered.manifest, doc.get("secrets"), base_dir,
                                     resolve, kind)
    errors += secret_errors
    refs = doc.get("secrets")
    for name, ref in (refs.items() if isinstance(refs, Mapping) else ()):
        if isinstance(ref, str):
            warnings.append(
                f"{join_path(f'$.{kind}.secrets', [name])} is written into the pipeline "
                "file; prefer {env: NAME} or {file: path}"
            )
    return values


def _state_url_defaults(
    registered: Registered, doc: Mapping[str, Any], values: dict[str, str], state_url: str,
    shared: bool,
) -> list[str]:
    """Fill each secret the output class names in ``state_url_secrets`` and the pipeline
    left out with the state's URL; without a state URL, each is an error."""
    refs = doc.get("secrets")
    refs = refs if isinstance(refs, Mapping) else {}
    errors = []
    for name in getattr(registered.cls, "state_url_secrets", ()):
        if name in refs:
            continue
        if state_url:
            values[name] = state_url
        elif not shared:  # a state url that failed is reported once, as itself
            errors.append(f"{join_path('$.output.secrets', [name])}: is required unless the "
                          "state is on PostgreSQL (state.url); set {env: NAME} or {file: path}")
    return errors


def _redact_url_parts(value: str) -> None:
    """A secret that is a URL with a password: its password alone is redacted too."""
    if "://" in value and "@" in value:
        from .state import _url

        _url.register(value)


def _secrets(
    manifest: Mapping[str, Any], refs: Any, base_dir: Path, resolve: bool, kind: str = "input"
) -> tuple[dict[str, str], list[str]]:
    """Resolve each declared secret; errors name the secret and the cause, never the value."""
    refs = refs if isinstance(refs, Mapping) else {}
    schema = manifest.get("secrets") or EMPTY_OBJECT_SCHEMA
    declared = secret_names(manifest)
    required = set(schema.get("required") or [])
    errors: list[str] = []
    values: dict[str, str] = {}
    for name in refs:
        if name not in declared:
            known = ", ".join(declared) or "none"
            where = join_path(f"$.{kind}.secrets", [name])
            errors.append(f"{where}: unknown secret (this {kind} takes: {known})")
    for name in declared:
        where = join_path(f"$.{kind}.secrets", [name])
        if name not in refs:
            if name in required:
                errors.append(f"{where}: is required (set {{env: NAME}} or {{file: path}})")
            continue
        if not resolve:
            continue
        try:
            value = resolve_secret(refs[name], base_dir)
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            continue
        redactor.add([value])
        _redact_url_parts(value)
        values[name] = value
        errors += schema_errors(schema["properties"][name], value, where)
    return values, errors
