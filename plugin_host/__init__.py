"""plugin-host: discover input plugins, validate pipelines, run incremental syncs exactly once.

Plugin authors need only the names exported here; see docs/writing-an-input.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._contract import Input, InputContext, Output, OutputContext, Page, RunStats
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
from ._pipeline import Pipeline, load_pipeline
from ._registry import Registry, discover
from ._runner import CommitPolicy, RunSummary, run_once
from ._state import StateStore
from .hookspecs import hookimpl

__all__ = [
    "AuthError",
    "CommitPolicy",
    "ConfigError",
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
    "UpstreamError",
    "ValidationFailed",
    "__version__",
    "discover",
    "hookimpl",
    "load_pipeline",
    "run_once",
]
