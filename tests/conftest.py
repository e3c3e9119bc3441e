"""Shared fixtures: a registry holding the fixture inputs, the CLI in-process, a plugin venv."""

from __future__ import annotations

import logging
import secrets
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from helpers import (
    FIXTURE_DISTS,
    GOOD_SRC,
    TOKEN_ENV,
    Venv,
    make_venv,
    pip_install,
    skip_or_fail,
)
from pg import Database, PostgresServer, PostgresUnavailable

import plugin_host._demo
import plugin_host.cli
from plugin_host import Registry, discover
from plugin_host._secrets import _RedactingFilter

sys.path.insert(0, str(GOOD_SRC))
import plugin_host_fixture_good as fixture_plugin  # noqa: E402


def add_fixture_plugin(registry: Registry) -> Registry:
    """Add the fixture inputs (fixture_counter, fixture_echo) the way discovery would."""
    assert registry.add_plugin(fixture_plugin, fixture_plugin.PLUGIN_NAME,
                               fixture_plugin.DISTRIBUTION, fixture_plugin.VERSION)
    return registry


@pytest.fixture
def registry() -> Registry:
    """The installed plugins (built-in outputs included) plus the fixture inputs."""
    return add_fixture_plugin(discover())


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh valid token in $FIXTURE_TOKEN, so no two tests share a secret."""
    value = "tok-" + secrets.token_hex(10)
    monkeypatch.setenv(TOKEN_ENV, value)
    return value


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., CliResult]]:
    """``plugin-host ARGS`` in-process, discovery returning ``registry``."""
    monkeypatch.setattr(plugin_host.cli, "discover", lambda: registry)
    monkeypatch.setattr(plugin_host._demo, "discover", lambda: registry)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def run(*args: object) -> CliResult:
        capsys.readouterr()
        code = plugin_host.cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    yield run
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture(autouse=True)
def _forget_cli_logging() -> Iterator[None]:
    """Drop the stderr handler ``main`` installs, which outlives the captured stream."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if any(isinstance(f, _RedactingFilter) for f in handler.filters):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A venv seeing the test environment's packages (plugin-host included) with every
    fixture distribution pip-installed from its folder: discovery reads real metadata."""
    venv = make_venv(tmp_path_factory.mktemp("plugin-venv") / "venv", inherit=True)
    pip_install(venv, "--no-deps", "--no-build-isolation", "--no-index", *FIXTURE_DISTS)
    return venv


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (initdb + pg_ctl in a temporary folder, on a
    loopback port). Under CI=true a server that cannot start fails the test; elsewhere the
    test is skipped with the reason (install Debian's postgresql package to run it)."""
    try:
        server = PostgresServer.start_new()
    except PostgresUnavailable as exc:
        skip_or_fail(f"PostgreSQL could not start here: {exc}")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_db(pg_server: PostgresServer) -> Database:
    """A fresh database of the session's server, owned by a role of its own (its URL
    carries that role's password), the server started again if a test stopped it."""
    if not pg_server.running():
        pg_server.start()
    return pg_server.new_database()
