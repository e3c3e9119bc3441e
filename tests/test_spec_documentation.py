"""``plugin-host spec`` gives an input's documentation as a URL or as a file that exists
where the input is installed, never as a path into this repository."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult
from plugin_host_fixture_good import CounterInput

from plugin_host import Registry
from plugin_host.testing import PluginObject

Cli = Callable[..., CliResult]
HERE = Path(__file__).resolve().parent


def documented(documentation: str) -> type[Any]:
    """The fixture counter input, renamed, with ``documentation`` in its manifest."""
    manifest = {**CounterInput.manifest, "name": "documented", "documentation": documentation}
    return type("Documented", (CounterInput,), {"manifest": manifest, "__module__": __name__})


def spec_of(cls: type[Any], registry: Registry, cli: Cli) -> tuple[CliResult, dict[str, Any]]:
    assert registry.add_plugin(PluginObject(inputs=[cls]), "documented", "test-dist")
    result = cli("spec", "documented")
    assert result.code == 0, result.err
    return result, json.loads(result.out)


def test_the_postman_input_points_to_its_readme_where_it_is_installed(cli: Cli) -> None:
    import postman_audit

    result = cli("spec", "postman_audit")
    assert result.code == 0, result.err
    path = Path(json.loads(result.out)["documentation"])
    assert path.is_absolute() and path.is_file()
    assert path.parent == Path(postman_audit.__file__).resolve().parent
    assert path.read_text(encoding="utf-8").startswith("# `postman_audit`: Postman audit logs")


def test_a_relative_path_is_taken_from_the_input_module_folder(
    registry: Registry, cli: Cli
) -> None:
    result, manifest = spec_of(documented("helpers.py"), registry, cli)
    assert manifest["documentation"] == str(HERE / "helpers.py")
    assert result.err == ""


def test_a_url_is_printed_as_it_is(registry: Registry, cli: Cli) -> None:
    url = "https://docs.example.com/inputs/documented"
    assert spec_of(documented(url), registry, cli)[1]["documentation"] == url


@pytest.mark.parametrize("missing", ["NOWHERE.md", "fixtures"])
def test_a_file_that_is_not_installed_is_not_printed_but_said(
    registry: Registry, cli: Cli, missing: str
) -> None:
    result, manifest = spec_of(documented(missing), registry, cli)
    assert "documentation" not in manifest
    assert manifest["name"] == "documented"
    assert (f"WARNING plugin_host.cli: input documented: its documentation {missing} is not "
            "installed with it") in result.err
