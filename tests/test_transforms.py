"""Transforms: registered and isolated like inputs and outputs, validated with the pipeline,
applied to each page between the input and the output, the checkpoint unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import CliResult
from helpers import pipeline_doc, read_jsonl, write_pipeline

from plugin_host import (
    ConfigError,
    PluginHostError,
    Registry,
    StateStore,
    TransformContext,
    hookimpl,
    load_pipeline,
    run_once,
)
from plugin_host.testing import PluginObject

Cli = Callable[..., CliResult]
_EMPTY = {"type": "object", "properties": {}, "additionalProperties": False}


class Twice:
    """Each record becomes two: the record, then a copy marked ``copy``."""

    manifest: ClassVar[Mapping[str, Any]] = {
        "name": "twice", "description": "Each record twice (a test transform).",
        "settings": _EMPTY}

    def __init__(self, settings: Mapping[str, Any], context: TransformContext) -> None:
        self.context = context

    def apply(self, records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        return [r for record in records for r in (record, {**record, "copy": True})]


class DropOdd:
    """Records whose ``n`` is odd become nothing; a generator, not a list."""

    manifest: ClassVar[Mapping[str, Any]] = {
        "name": "drop_odd", "description": "Drops odd records (a test transform).",
        "settings": {"type": "object", "additionalProperties": False, "properties": {
            "keep": {"type": "integer", "description": "One odd n to keep all the same."}}}}

    def __init__(self, settings: Mapping[str, Any], context: TransformContext) -> None:
        self.keep = settings.get("keep")

    def apply(self, records: Sequence[Mapping[str, Any]]) -> Any:
        return (r for r in records if r["n"] % 2 == 0 or r["n"] == self.keep)


class Boom:
    """Fails on the record whose ``n`` is 5."""

    manifest: ClassVar[Mapping[str, Any]] = {
        "name": "boom", "description": "Fails on n = 5 (a test transform).", "settings": _EMPTY}

    def __init__(self, settings: Mapping[str, Any], context: TransformContext) -> None:
        pass

    def apply(self, records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        if any(r["n"] == 5 for r in records):
            raise RuntimeError("cannot stand five")
        return list(records)


class EchoOnly:
    """Works with the fixture_echo input only: refuses any other when it is built."""

    manifest: ClassVar[Mapping[str, Any]] = {
        "name": "echo_only", "description": "For fixture_echo only (a test transform).",
        "settings": _EMPTY}

    def __init__(self, settings: Mapping[str, Any], context: TransformContext) -> None:
        if context.input_name != "fixture_echo":
            raise ConfigError(f"echo_only cannot read {context.input_name} records")

    def apply(self, records: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
        return records


@pytest.fixture
def transforms(registry: Registry, register_plugin: Callable[..., Registry]) -> Registry:
    """The fixture inputs and the built-ins, plus the test transforms above."""
    return register_plugin(PluginObject(transforms=[Twice, DropOdd, Boom, EchoOnly]),
                           name="test_transforms", registry=registry)


def pipeline(path: Path, steps: list[Any], **kwargs: Any) -> Path:
    return write_pipeline(path, {**pipeline_doc(**kwargs), "transforms": steps})


def saved(path: Path, name: str) -> Any:
    with StateStore(path) as store:
        state = store.load(name)
    return state.checkpoint if state else None


def test_records_pass_every_transform_in_order_and_the_checkpoint_is_the_inputs(
    tmp_path: Path, transforms: Registry, token: str
) -> None:
    path = pipeline(tmp_path / "p.yaml", [{"type": "drop_odd", "settings": {"keep": 3}},
                                          {"type": "twice"}])
    summary = run_once(load_pipeline(path, transforms))
    kept = [0, 2, 3, 4, 6, 8]
    assert read_jsonl(tmp_path / "out.jsonl") == [
        r for n in kept for r in ({"n": n}, {"n": n, "copy": True})]
    assert summary.records == 2 * len(kept)  # what the output got
    assert summary.pages == 4
    # the same checkpoint as without transforms: every record of the input delivered
    assert saved(tmp_path / ".plugin-host" / "state.db", "counter") == {"next": 10}


def test_a_transform_may_return_any_iterable_of_records(
    tmp_path: Path, transforms: Registry, token: str
) -> None:
    path = pipeline(tmp_path / "p.yaml", [{"type": "drop_odd"}])
    assert run_once(load_pipeline(path, transforms)).records == 5
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": n} for n in range(0, 10, 2)]


def test_a_run_that_fails_resumes_and_transforms_each_record_exactly_once(
    tmp_path: Path, transforms: Registry, token: str
) -> None:
    path = pipeline(tmp_path / "p.yaml", [{"type": "twice"}],
                    settings={"fail_at": 7, "failure": "upstream"})
    with pytest.raises(PluginHostError):
        run_once(load_pipeline(path, transforms))
    assert read_jsonl(tmp_path / "out.jsonl") == [
        r for n in range(6) for r in ({"n": n}, {"n": n, "copy": True})]
    pipeline(tmp_path / "p.yaml", [{"type": "twice"}])
    run_once(load_pipeline(path, transforms))
    assert read_jsonl(tmp_path / "out.jsonl") == [
        r for n in range(10) for r in ({"n": n}, {"n": n, "copy": True})]


def test_a_failing_transform_stops_the_run_with_one_line_at_the_last_page_delivered(
    tmp_path: Path, transforms: Registry, token: str, cli: Cli
) -> None:
    path = pipeline(tmp_path / "p.yaml", [{"type": "boom"}])
    result = cli("run", path)
    assert result.code == 1
    assert "Traceback" not in result.err
    assert result.err.strip().splitlines()[-1] == (
        "plugin-host: error: transform boom failed (RuntimeError: cannot stand five); the "
        "pages before this one were delivered, the next run resumes from there")
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": n} for n in range(3)]
    assert saved(tmp_path / ".plugin-host" / "state.db", "counter") == {"next": 3}


def test_every_transform_problem_is_reported_at_once(
    tmp_path: Path, transforms: Registry, token: str, cli: Cli
) -> None:
    path = pipeline(tmp_path / "p.yaml", [
        {"type": "nope"},
        {"type": "drop_odd", "settings": {"keep": "three"}},
        {"type": "echo_only"},
        {"type": "twice", "extra": 1},
        {"settings": {}},
    ])
    result = cli("validate", path)
    assert result.code == 2
    assert "Traceback" not in result.err
    lines = sorted(line.strip() for line in result.err.splitlines()[1:])
    assert lines == sorted([
        "$.transforms[0].type: unknown transform 'nope' (installed: boom, drop_odd, "
        "echo_only, ocsf, twice)",
        "$.transforms[1].settings.keep: must be a whole number (type)",
        "$.transforms[2]: echo_only cannot read fixture_counter records",
        "$.transforms[3]: unknown key 'extra'; known keys: settings, type "
        "(additionalProperties)",
        "$.transforms[4].type: is required (required)",
    ]), result.err
    assert "5 errors in the pipeline" in result.err


def test_transforms_must_be_a_list(tmp_path: Path, transforms: Registry, token: str,
                                   cli: Cli) -> None:
    path = write_pipeline(tmp_path / "p.yaml", {**pipeline_doc(), "transforms": {"type": "x"}})
    result = cli("validate", path)
    assert result.code == 2
    assert "$.transforms: must be a list (type)" in result.err


def test_validate_names_the_transforms_and_a_fitting_one_builds(
    tmp_path: Path, transforms: Registry, cli: Cli
) -> None:
    path = pipeline(tmp_path / "p.yaml", [{"type": "echo_only"}, {"type": "twice"}],
                    input_type="fixture_echo", settings={"records": [{"a": 1}]})
    result = cli("validate", path)
    assert result.code == 0, result.err
    assert result.out.strip() == (f"{path}: valid (input fixture_echo, transform echo_only, "
                                  "transform twice, output jsonl)")
    chain = load_pipeline(path, transforms).transforms
    assert chain.names == ["echo_only", "twice"]
    context = chain.steps[1].transform.context  # type: ignore[attr-defined]
    assert (context.pipeline_name, context.input_name) == ("counter", "fixture_echo")
    assert context.logger.name == "plugin_host.transform.twice"


def test_a_run_reusing_its_validation_still_checks_and_applies_its_transforms(
    tmp_path: Path, transforms: Registry, token: str
) -> None:
    path = pipeline(tmp_path / "p.yaml", [{"type": "twice"}], settings={"total": 2})
    run_once(load_pipeline(path, transforms, reuse=True))
    again = load_pipeline(path, transforms, reuse=True)
    assert again.validation_reused and again.transforms.names == ["twice"]
    run_once(again)  # nothing new: the same two records, transformed once
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 4


def test_inputs_lists_transforms_with_their_distribution(transforms: Registry, cli: Cli) -> None:
    text = cli("inputs").out.splitlines()
    assert text.index("transforms:") > text.index("outputs:")
    assert ["ocsf", "0.1.0", "plugin-host"] in [line.split() for line in text]
    assert ["twice", "0", "test-plugin"] in [line.split() for line in text]
    listed = {t["name"]: t for t in json.loads(cli("inputs", "--json").out)["transforms"]}
    assert listed["ocsf"]["distribution"] == "plugin-host"
    assert listed["ocsf"]["description"].startswith("Maps each record to OCSF events")
    assert listed["twice"]["description"] == "Each record twice (a test transform)."


class NoManifest:
    pass


class Secretive(Twice):
    manifest: ClassVar[Mapping[str, Any]] = {
        **Twice.manifest, "name": "secretive",
        "secrets": {"type": "object", "additionalProperties": False, "properties": {
            "key": {"type": "string", "writeOnly": True, "description": "A key."}}}}


class BadName(Twice):
    manifest: ClassVar[Mapping[str, Any]] = {**Twice.manifest, "name": "Bad-Name"}


def test_a_broken_transform_is_reported_and_the_others_still_load(
    register_plugin: Callable[..., Registry],
) -> None:
    registry = Registry()
    register_plugin(PluginObject(transforms=[Twice]), name="good", registry=registry)
    register_plugin(PluginObject(transforms=[NoManifest, Secretive, BadName]), name="bad",
                    distribution="bad-dist", registry=registry)
    register_plugin(PluginObject(transforms=[Twice]), name="again", distribution="other-dist",
                    registry=registry)

    class Raises:
        @hookimpl
        def plugin_host_register_transforms(self, register: Any) -> None:
            raise ImportError("needs a library that is not installed")

    register_plugin(Raises(), name="raises", distribution="raising-dist", registry=registry)

    assert sorted(registry.transforms) == ["twice"]
    assert registry.transforms["twice"].distribution == "test-plugin"
    reasons = {(f.plugin, f.distribution): f.reason for f in registry.failures
               if f.plugin != "bad"}
    bad = [f.reason for f in registry.failures if f.plugin == "bad"]
    assert len(bad) == 3, registry.failures
    assert any("NoManifest has an invalid manifest: $: a manifest must be a mapping" in r
               for r in bad)
    assert any("Secretive has an invalid manifest: $.secrets: transforms take settings only"
               in r for r in bad)
    assert any("BadName has an invalid manifest: $.name: must be a name like my_input" in r
               for r in bad)
    assert reasons[("again", "other-dist")] == (
        "ConfigError: transform name 'twice' is already registered by test-plugin")
    assert reasons[("raises", "raising-dist")] == (
        "ImportError: needs a library that is not installed")
