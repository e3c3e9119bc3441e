"""plugin-host's pytest plugin: fixtures for testing an input, loaded in every pytest run
of an environment where plugin-host is installed (entry point ``pytest11``: ``plugin_host``;
disable it with ``-p no:plugin_host``).

Fixtures:
    run_input                run an input class through the host's runner, collect what it
                             delivers; state in a real SQLite file under ``tmp_path``
    register_plugin          register a throwaway plugin object for one test; returns the
                             Registry, and removes the plugin after the test
    plugin_host_vcr_config   build vcrpy keyword arguments that filter every secret
    plugin_host_vcr          build a ``vcr.VCR`` with that configuration

Everything heavier than pytest is imported inside the fixtures, so loading this plugin
costs a project that does not use it next to nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .._registry import Registry
    from .driver import InputRunner

__all__ = ["plugin_host_vcr", "plugin_host_vcr_config", "register_plugin", "run_input"]

pytest.register_assert_rewrite("plugin_host.testing.contract_suite")


@pytest.fixture
def run_input(tmp_path: Path) -> InputRunner:
    """Run an input and collect its pages, records and final checkpoint.

    ``run_input(InputClass, settings, secrets, checkpoint=KEEP)`` validates the settings
    and secrets against the manifest, runs one sync with ``plugin_host.run_once`` (each
    page committed) into an in-memory output, and returns an ``InputRun`` with
    ``.records``, ``.pages`` (each with ``.records``, ``.checkpoint``, ``.checkpoint_json``),
    ``.checkpoint`` (as committed in the state store) and ``.summary``. Calls in one test
    share the state file, so the second call is incremental. ``checkpoint=None`` starts
    afresh; a mapping replaces the saved checkpoint first. ``run_input.state_path`` is the
    SQLite file; ``run_input.saved_checkpoint()`` reads it.
    """
    from .driver import InputRunner

    return InputRunner(tmp_path / "plugin-host-run")


@pytest.fixture
def register_plugin() -> Iterator[Callable[..., Registry]]:
    """Register a throwaway plugin object for this test only.

    ``register_plugin(plugin, name=None, distribution="test-plugin", version="0",
    registry=None)`` adds ``plugin`` (a module or object with ``@hookimpl`` functions) to
    ``registry`` (default: one fresh ``Registry`` per test) exactly as discovery would, and
    returns that Registry: look at ``.inputs``, ``.outputs`` and ``.failures``. The plugin
    is removed when the test ends.
    """
    from .._registry import Registry

    added: list[tuple[Registry, str]] = []
    own: list[Registry] = []

    def register(
        plugin: Any,
        name: str | None = None,
        distribution: str = "test-plugin",
        version: str = "0",
        registry: Registry | None = None,
    ) -> Registry:
        if registry is None:
            if not own:
                own.append(Registry())
            registry = own[0]
        label = name or str(getattr(plugin, "__name__", type(plugin).__name__))
        registry.add_plugin(plugin, label, distribution, version)
        added.append((registry, label))
        return registry

    yield register
    for registry, label in reversed(added):
        registry.remove_plugin(label)


@pytest.fixture
def plugin_host_vcr_config() -> Callable[..., dict[str, Any]]:
    """``plugin_host_vcr_config(InputClass, secrets, **overrides)``: keyword arguments for
    ``vcr.VCR`` (or a pytest-recording ``vcr_config`` fixture) that filter the
    ``Authorization``, ``X-API-Key`` and ``apikey`` headers by name, query parameters named
    like a credential or like a declared secret, and every given secret value wherever it
    appears in a recorded request or response."""
    from .driver import vcr_config

    return vcr_config


@pytest.fixture
def plugin_host_vcr(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``plugin_host_vcr(InputClass, secrets, **overrides)``: a ``vcr.VCR`` with
    ``plugin_host_vcr_config``'s filters, cassettes in ``cassettes/`` beside the test file
    unless ``cassette_library_dir`` is given. vcrpy is a test dependency: imported here."""
    from .driver import make_vcr

    default_dir = str(Path(str(request.path)).parent / "cassettes")

    def build(
        input_class: type[Any] | Mapping[str, Any],
        secrets: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Any:
        overrides.setdefault("cassette_library_dir", default_dir)
        return make_vcr(input_class, secrets, **overrides)

    return build
