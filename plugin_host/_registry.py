"""Discovery: plugins found through the ``plugin_host`` entry-point group, loaded one by one.

A plugin that fails to import, uses an unknown hook, or registers a bad manifest is
recorded with its distribution's name and does not stop the others. Manifests are
checked against the meta-schema when the registry is first read (``inputs``, ``outputs``,
``transforms``, ``failures``, ``input()``, ``output()``, ``transform()``), so that a run
whose configuration was validated before (``unchecked``) needs no JSON Schema validator at
all.

Environment switches, for debugging:
    PLUGIN_HOST_LOAD_PLUGINS     comma-separated entry-point names: load only these
    PLUGIN_HOST_DISABLE_PLUGINS  comma-separated entry-point names: skip these
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from ._exceptions import ConfigError
from ._manifest import manifest_errors

__all__ = ["ENTRY_POINT_GROUP", "LoadFailure", "Registered", "Registry", "discover"]

ENTRY_POINT_GROUP = "plugin_host"


@dataclass(frozen=True)
class Registered:
    """One registered input, output or transform, with where it came from."""

    kind: str  # "input", "output" or "transform"
    name: str
    cls: type[Any]
    manifest: Mapping[str, Any]
    plugin: str
    distribution: str
    version: str


@dataclass(frozen=True)
class _Pending:
    """A registration whose manifest is not checked yet."""

    kind: str
    cls: type[Any]
    manifest: Any
    plugin: str
    dist: str
    version: str

    def registered(self) -> Registered | None:
        """As a Registered, if the manifest is at least a mapping with a text name."""
        manifest = self.manifest
        if not isinstance(manifest, Mapping) or not isinstance(manifest.get("name"), str):
            return None
        return Registered(self.kind, manifest["name"], self.cls, manifest, self.plugin,
                          self.dist, self.version)


@dataclass(frozen=True)
class LoadFailure:
    """A plugin, or one registration of it, that could not be loaded."""

    plugin: str
    distribution: str
    reason: str


class Registry:
    """A typed facade over pluggy: core code never touches ``pm.hook`` directly."""

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._inputs: dict[str, Registered] = {}
        self._outputs: dict[str, Registered] = {}
        self._transforms: dict[str, Registered] = {}
        self._failures: list[LoadFailure] = []
        self._pending: list[_Pending] = []  # registered, manifest not checked yet

    @property
    def inputs(self) -> dict[str, Registered]:
        """Every input whose manifest is valid, by name."""
        self._settle()
        return self._inputs

    @property
    def outputs(self) -> dict[str, Registered]:
        """Every output whose manifest is valid, by name."""
        self._settle()
        return self._outputs

    @property
    def transforms(self) -> dict[str, Registered]:
        """Every transform whose manifest is valid, by name."""
        self._settle()
        return self._transforms

    @property
    def failures(self) -> list[LoadFailure]:
        """Every plugin, or registration of one, that could not be loaded."""
        self._settle()
        return self._failures

    def record_failure(self, plugin: str, distribution: str, reason: str) -> None:
        """Note a plugin that could not be loaded (it is listed with ``failures``)."""
        self._failures.append(LoadFailure(plugin, distribution, reason))

    def add_plugin(self, plugin: Any, name: str, distribution: str, version: str = "") -> bool:
        """Register one plugin object (a module or instance) and collect what it registers."""
        try:
            self._pm.register(plugin, name=name)
            self._pm.check_pending()
        except Exception as exc:  # a misspelled hook or a plugin pluggy refuses
            if self._pm.is_registered(plugin):
                self._pm.unregister(plugin)
            self._failures.append(LoadFailure(name, distribution, _reason(exc)))
            return False
        for kind, hook in (
            ("input", self._pm.hook.plugin_host_register_inputs),
            ("output", self._pm.hook.plugin_host_register_outputs),
            ("transform", self._pm.hook.plugin_host_register_transforms),
        ):
            for impl in hook.get_hookimpls():
                if impl.plugin is plugin:
                    self._call_impl(impl.function, kind, name, distribution, version)
        return True

    def remove_plugin(self, name: str) -> None:
        """Forget a plugin and everything it registered (used by tests)."""
        plugin = self._pm.get_plugin(name)
        if plugin is not None:
            self._pm.unregister(plugin)
        for table in (self._inputs, self._outputs, self._transforms):
            for key in [k for k, r in table.items() if r.plugin == name]:
                del table[key]
        self._pending = [r for r in self._pending if r.plugin != name]

    def _call_impl(
        self, function: Callable[..., Any], kind: str, plugin: str, dist: str, version: str
    ) -> None:
        def register(cls: type[Any]) -> None:
            self._register(kind, cls, plugin, dist, version)

        try:
            function(register=register)
        except Exception as exc:
            self._failures.append(LoadFailure(plugin, dist, _reason(exc)))

    def _register(self, kind: str, cls: type[Any], plugin: str, dist: str, version: str) -> None:
        self._pending.append(_Pending(kind, cls, getattr(cls, "manifest", None), plugin, dist,
                                      version))

    def _settle(self) -> None:
        """Check the pending manifests, in registration order: the valid ones join the
        tables, the others (and a second use of a name) become failures."""
        pending, self._pending = self._pending, []
        for entry in pending:
            try:
                self._admit(entry)
            except ConfigError as exc:
                self._failures.append(LoadFailure(entry.plugin, entry.dist, _reason(exc)))

    def _admit(self, entry: _Pending) -> None:
        kind, manifest = entry.kind, entry.manifest
        errors = manifest_errors(manifest)
        if kind == "transform" and isinstance(manifest, Mapping) and manifest.get("secrets"):
            errors.append(f"$.secrets: {kind}s take settings only")
        label = getattr(entry.cls, "__name__", repr(entry.cls))
        if errors:
            raise ConfigError(f"{kind} {label} has an invalid manifest: " + "; ".join(errors))
        registered = entry.registered()
        assert registered is not None
        table = self._table(kind)
        if registered.name in table:
            other = table[registered.name]
            raise ConfigError(
                f"{kind} name '{registered.name}' is already registered by {other.distribution}"
            )
        table[registered.name] = registered

    def unchecked(self, kind: str, name: str) -> Registered | None:
        """The one input or output registered as ``name``, its manifest not checked: for a
        configuration validated before, whose fingerprint covers the manifest. None when
        there is none, or more than one."""
        table = self._table(kind)
        found = [r for e in self._pending
                 if e.kind == kind and (r := e.registered()) is not None and r.name == name]
        if name in table:
            found.append(table[name])
        return found[0] if len(found) == 1 else None

    def _table(self, kind: str) -> dict[str, Registered]:
        return {"input": self._inputs, "output": self._outputs,
                "transform": self._transforms}[kind]

    def input(self, name: str) -> Registered:
        """The registered input called ``name``, or a ConfigError naming the known ones."""
        return self._lookup(self.inputs, "input", name)

    def output(self, name: str) -> Registered:
        """The registered output called ``name``, or a ConfigError naming the known ones."""
        return self._lookup(self.outputs, "output", name)

    def transform(self, name: str) -> Registered:
        """The registered transform called ``name``, or a ConfigError naming the known ones."""
        return self._lookup(self.transforms, "transform", name)

    @staticmethod
    def _lookup(table: Mapping[str, Registered], kind: str, name: str) -> Registered:
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise ConfigError(f"unknown {kind} '{name}' (installed: {known})")
        return table[name]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _names(variable: str) -> set[str] | None:
    raw = os.environ.get(variable)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def _entry_points(registry: Registry) -> Iterable[tuple[metadata.EntryPoint, str, str]]:
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        ours = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
        if not ours:
            continue  # reading a distribution's METADATA costs more than its entry points
        name = dist.metadata["Name"] or "?"
        for ep in ours:
            if ep.name in seen:
                if seen[ep.name] != name:
                    registry.record_failure(
                        ep.name, name, f"entry point name '{ep.name}' is already used by "
                        f"{seen[ep.name]}; not loaded")
                continue
            seen[ep.name] = name
            yield ep, name, dist.version or ""


def discover() -> Registry:
    """Load every installed plugin, each in isolation, honouring the environment switches."""
    registry = Registry()
    only = _names("PLUGIN_HOST_LOAD_PLUGINS")
    skip = _names("PLUGIN_HOST_DISABLE_PLUGINS") or set()
    for ep, dist, version in sorted(_entry_points(registry), key=lambda t: t[0].name):
        if ep.name in skip or (only is not None and ep.name not in only):
            continue
        try:
            plugin = ep.load()
        except BaseException as exc:  # a plugin may even call sys.exit on import
            if isinstance(exc, KeyboardInterrupt):
                raise
            registry.record_failure(ep.name, dist, _reason(exc))
            continue
        registry.add_plugin(plugin, ep.name, dist, version)
    return registry
