"""The kit for input authors: test an input through the host's real runner.

- ``driver``: ``InputRunner`` runs an input with ``plugin_host.run_once`` into memory (state
  in a real SQLite file) and returns an ``InputRun``; ``prepare``, ``read_pages``,
  ``vcr_config``, ``make_vcr``, ``PluginObject``.
- ``contract_suite``: ``InputContract``, the rules every input keeps, as tests to subclass.
- ``pytest_plugin``: the fixtures ``run_input``, ``register_plugin``,
  ``plugin_host_vcr_config`` and ``plugin_host_vcr`` (the ``pytest11`` entry point).

Import the names from here (``from plugin_host.testing import InputContract``); see
docs/writing-an-input.md. Each is imported on first use, so that loading the pytest plugin
(in every test run of an environment that has plugin-host) costs next to nothing.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from .contract_suite import InputContract
    from .driver import (
        KEEP,
        InputRun,
        InputRunner,
        PluginObject,
        YieldedPage,
        checkpoint_text,
        make_vcr,
        prepare,
        read_pages,
        vcr_config,
    )

_LAZY = {
    "InputContract": ".contract_suite",
    **{name: ".driver" for name in (
        "KEEP", "InputRun", "InputRunner", "PluginObject", "YieldedPage", "checkpoint_text",
        "make_vcr", "prepare", "read_pages", "vcr_config")},
}


def __getattr__(name: str) -> _typing.Any:
    """Import a public name from its module on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'plugin_host.testing' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "KEEP",
    "InputContract",
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
