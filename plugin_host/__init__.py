"""plugin-host: discover input plugins, validate pipelines, run incremental syncs exactly once.

Plugin authors need only the names exported here, ``plugin_host.testing`` (the kit for
testing an input) and, to ship an OCSF mapping, ``plugin_host.transforms.ocsf``; see
docs/writing-an-input.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib as _importlib
import typing as _typing

from ._exceptions import (
    AuthError,
    ConfigError,
    LocalStorageError,
    PipelineBusy,
    PluginHostError,
    ProtocolError,
    QuotaExhausted,
    StopRequested,
    UpstreamError,
    ValidationFailed,
)
from .hookspecs import hookimpl

if _typing.TYPE_CHECKING:
    from ._contract import (
        BackgroundSyncOutput,
        HasDemo,
        Input,
        InputContext,
        Output,
        OutputContext,
        Page,
        RunStats,
        TransactionalOutput,
        Transform,
        TransformContext,
        ValidatesSettings,
    )
    from ._pipeline import Pipeline, load_pipeline
    from ._registry import Registry, discover
    from ._runner import CommitPolicy, RunSummary, run_once
    from .state.sqlite import StateStore

# Imported on first use, so that importing plugin_host (the pytest plugin does, in every
# test run of an environment that has it) does not pay for jsonschema and SQLite.
_LAZY = {
    "Input": "._contract", "InputContext": "._contract", "Output": "._contract",
    "OutputContext": "._contract", "Page": "._contract", "RunStats": "._contract",
    "HasDemo": "._contract", "ValidatesSettings": "._contract",
    "BackgroundSyncOutput": "._contract", "TransactionalOutput": "._contract",
    "Transform": "._contract", "TransformContext": "._contract",
    "Pipeline": "._pipeline", "load_pipeline": "._pipeline",
    "Registry": "._registry", "discover": "._registry",
    "CommitPolicy": "._runner", "RunSummary": "._runner", "run_once": "._runner",
    "StateStore": ".state.sqlite",
}


def __getattr__(name: str) -> _typing.Any:
    """Import a public name from its module on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'plugin_host' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AuthError",
    "BackgroundSyncOutput",
    "CommitPolicy",
    "ConfigError",
    "HasDemo",
    "Input",
    "InputContext",
    "LocalStorageError",
    "Output",
    "OutputContext",
    "Page",
    "Pipeline",
    "PipelineBusy",
    "PluginHostError",
    "ProtocolError",
    "QuotaExhausted",
    "Registry",
    "RunStats",
    "RunSummary",
    "StateStore",
    "StopRequested",
    "TransactionalOutput",
    "Transform",
    "TransformContext",
    "UpstreamError",
    "ValidatesSettings",
    "ValidationFailed",
    "__version__",
    "discover",
    "hookimpl",
    "load_pipeline",
    "run_once",
]
