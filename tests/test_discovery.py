"""Discovery: plugins found through real installed metadata, each loaded in isolation."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
from conftest import add_fixture_plugin
from helpers import Venv, clean_env

from plugin_host import ConfigError, Registry, hookimpl

GOOD = "plugin-host-fixture-good"


def inputs_json(venv: Venv, cwd: Path, **env: str) -> dict[str, Any]:
    result = venv.plugin_host("inputs", "--json", cwd=cwd, env=clean_env(**env))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def by_name(items: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


def failure(data: dict[str, Any], plugin: str) -> dict[str, Any]:
    return by_name(data["failures"], "plugin")[plugin]


@pytest.mark.slow
class TestInstalledPlugins:
    def test_good_plugin_is_listed_with_its_distribution_and_version(
        self, plugin_venv: Venv, tmp_path: Path
    ) -> None:
        inputs = by_name(inputs_json(plugin_venv, tmp_path)["inputs"])
        for name in ("fixture_counter", "fixture_echo"):
            assert inputs[name]["distribution"] == GOOD
            assert inputs[name]["version"] == "1.2.3"
        assert inputs["fixture_counter"]["description"].startswith("Counts from 0")

    def test_broken_plugins_are_reported_and_the_others_still_load(
        self, plugin_venv: Venv, tmp_path: Path
    ) -> None:
        data = inputs_json(plugin_venv, tmp_path)
        broken = failure(data, "fixture_broken")
        assert broken["distribution"] == "plugin-host-fixture-broken"
        assert broken["reason"].startswith("ImportError: ")
        assert "needs a module that is not installed" in broken["reason"]
        exits = failure(data, "fixture_exits")  # sys.exit on import does not end discovery
        assert exits == {"plugin": "fixture_exits", "distribution": "plugin-host-fixture-broken",
                         "reason": "SystemExit: 3"}
        assert {"stdout", "jsonl"} <= set(by_name(data["outputs"]))
        assert by_name(data["outputs"])["jsonl"]["distribution"] == "plugin-host"
        assert {"fixture_counter", "fixture_echo"} <= set(by_name(data["inputs"]))

    def test_a_secret_without_write_only_is_refused_with_the_reason(
        self, plugin_venv: Venv, tmp_path: Path
    ) -> None:
        data = inputs_json(plugin_venv, tmp_path)
        bad = failure(data, "fixture_bad_manifest")
        assert bad["distribution"] == "plugin-host-fixture-badmanifest"
        assert "invalid manifest" in bad["reason"]
        assert "$.secrets.properties.api_key.writeOnly: is required" in bad["reason"]
        assert "fixture_leaky" not in by_name(data["inputs"])

    def test_a_misspelled_hook_is_refused(self, plugin_venv: Venv, tmp_path: Path) -> None:
        typo = failure(inputs_json(plugin_venv, tmp_path), "fixture_typo")
        assert typo["distribution"] == "plugin-host-fixture-badmanifest"
        assert "unknown hook 'plugin_host_register_input'" in typo["reason"]

    def test_a_duplicate_input_name_is_refused_naming_the_first_distribution(
        self, plugin_venv: Venv, tmp_path: Path
    ) -> None:
        data = inputs_json(plugin_venv, tmp_path)
        dup = failure(data, "zz_fixture_duplicate")
        assert dup["distribution"] == "plugin-host-fixture-duplicate"
        assert dup["reason"] == (
            "ConfigError: input name 'fixture_counter' is already registered by " + GOOD
        )
        assert by_name(data["inputs"])["fixture_counter"]["distribution"] == GOOD

    def test_disable_plugins_skips_the_named_entry_points(
        self, plugin_venv: Venv, tmp_path: Path
    ) -> None:
        data = inputs_json(plugin_venv, tmp_path,
                           PLUGIN_HOST_DISABLE_PLUGINS="fixture_broken, fixture_good")
        plugins = {f["plugin"] for f in data["failures"]}
        assert "fixture_broken" not in plugins
        assert "fixture_exits" in plugins
        assert "fixture_echo" not in by_name(data["inputs"])
        # with fixture_good gone, the duplicate's fixture_counter is the only one
        assert by_name(data["inputs"])["fixture_counter"]["distribution"] == (
            "plugin-host-fixture-duplicate"
        )
        assert "zz_fixture_duplicate" not in plugins

    def test_load_plugins_loads_only_the_named_entry_points(
        self, plugin_venv: Venv, tmp_path: Path
    ) -> None:
        data = inputs_json(plugin_venv, tmp_path,
                           PLUGIN_HOST_LOAD_PLUGINS="fixture_good,builtin_outputs")
        assert data["failures"] == []
        assert sorted(by_name(data["inputs"])) == ["fixture_counter", "fixture_echo"]
        assert sorted(by_name(data["outputs"])) == ["jsonl", "postgres", "stdout"]

    def test_text_listing_names_failures_and_their_distributions(
        self, plugin_venv: Venv, tmp_path: Path
    ) -> None:
        result = plugin_venv.plugin_host("inputs", cwd=tmp_path)
        assert result.returncode == 0
        lines = result.stdout.splitlines()
        assert any(line.split() == ["fixture_counter", "1.2.3", GOOD] for line in lines)
        assert "failed to load:" in lines
        assert any(line.strip().startswith(
            "fixture_broken (from plugin-host-fixture-broken): ImportError:") for line in lines)

    def test_a_pipeline_runs_with_the_installed_input(
        self, plugin_venv: Venv, tmp_path: Path
    ) -> None:
        (tmp_path / "p.yaml").write_text(
            "version: 1\nname: installed\n"
            "input: {type: fixture_counter, settings: {total: 7}, secrets: {token: {env: TOK}}}\n"
            "output: {type: jsonl, settings: {path: out.jsonl}}\n"
        )
        result = plugin_venv.plugin_host("run", "p.yaml", cwd=tmp_path,
                                         env=clean_env(TOK="tok-installed-1"))
        assert result.returncode == 0, result.stderr
        lines = (tmp_path / "out.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == [{"n": i} for i in range(7)]


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def _input_class(name: str, **manifest: Any) -> type:
    base = {"name": name, "description": "a test input",
            "settings": {"type": "object", "properties": {}, "additionalProperties": False}}
    return type(name.title(), (), {"manifest": {**base, **manifest}})


class TestRegistry:
    """Registry.add_plugin, the path every discovered plugin takes, in-process."""

    def _plugin(self, *classes: type, kind: str = "inputs") -> types.ModuleType:
        @hookimpl
        def register_all(register: Any) -> None:
            for cls in classes:
                register(cls)

        return _module("p", **{f"plugin_host_register_{kind}": register_all})

    def test_fixture_plugin_registers_its_inputs_with_provenance(self) -> None:
        registry = add_fixture_plugin(Registry())
        counter = registry.input("fixture_counter")
        assert (counter.distribution, counter.version, counter.plugin) == (
            GOOD, "1.2.3", "fixture_good")
        assert counter.kind == "input"

    def test_unknown_input_names_the_installed_ones(self) -> None:
        registry = add_fixture_plugin(Registry())
        with pytest.raises(ConfigError, match=r"unknown input 'nope' \(installed: "
                                              r"fixture_counter, fixture_echo\)"):
            registry.input("nope")

    def test_bad_manifests_are_refused_and_the_plugin_recorded(self) -> None:
        registry = Registry()
        bad_name = _input_class("Bad-Name")
        registry.add_plugin(self._plugin(bad_name), "bad", "dist-bad")
        assert registry.inputs == {}
        assert registry.failures[0].distribution == "dist-bad"
        assert "$.name: must be a name like my_input: lower-case letters, digits and '_', " \
            "starting with a letter, up to 63 characters (pattern)" in registry.failures[0].reason

    def test_a_setting_without_description_is_refused(self) -> None:
        cls = _input_class("undocumented", settings={
            "type": "object", "additionalProperties": False,
            "properties": {"limit": {"type": "integer"}}})
        registry = Registry()
        registry.add_plugin(self._plugin(cls), "undoc", "dist-undoc")
        assert "$.settings.properties.limit.description: is required" in (
            registry.failures[0].reason)

    def test_a_transform_with_secrets_is_refused_an_output_with_secrets_is_not(self) -> None:
        secrets = {"type": "object", "additionalProperties": False, "properties": {
            "key": {"type": "string", "writeOnly": True, "description": "k"}}}
        registry = Registry()
        registry.add_plugin(self._plugin(_input_class("leaky_transform", secrets=secrets),
                                         kind="transforms"), "tr", "dist-tr")
        registry.add_plugin(self._plugin(_input_class("keyed_output", secrets=secrets),
                                         kind="outputs"), "out", "dist-out")
        assert registry.transforms == {}
        assert "$.secrets: transforms take settings only" in registry.failures[0].reason
        assert list(registry.outputs) == ["keyed_output"]

    def test_duplicate_names_keep_the_first(self) -> None:
        registry = add_fixture_plugin(Registry())
        registry.add_plugin(self._plugin(_input_class("fixture_echo")), "dup", "dist-dup")
        assert registry.input("fixture_echo").distribution == GOOD
        assert registry.failures[0].reason == (
            f"ConfigError: input name 'fixture_echo' is already registered by {GOOD}")

    def test_remove_plugin_forgets_what_it_registered(self) -> None:
        registry = add_fixture_plugin(Registry())
        registry.remove_plugin("fixture_good")
        assert registry.inputs == {}
        assert add_fixture_plugin(registry).input("fixture_counter")
