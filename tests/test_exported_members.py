"""The public API: exactly the names plugin authors and embedders may rely on."""

from __future__ import annotations

import types
from importlib import metadata

import plugin_host

EXPECTED = [
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


def test_all_is_exactly_the_sorted_expected_list() -> None:
    assert plugin_host.__all__ == EXPECTED
    assert sorted(EXPECTED) == EXPECTED


def test_every_public_member_is_exported() -> None:
    for name in EXPECTED:  # names imported lazily appear in the namespace once used
        getattr(plugin_host, name)
    public = {
        name for name, value in vars(plugin_host).items()
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__
    }
    assert public == set(EXPECTED)


def test_every_exported_name_resolves() -> None:
    for name in EXPECTED:
        assert getattr(plugin_host, name) is not None, name
    assert plugin_host.__version__ == metadata.version("plugin-host")


def test_errors_share_one_base() -> None:
    for name in EXPECTED:
        value = getattr(plugin_host, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, plugin_host.PluginHostError), name
