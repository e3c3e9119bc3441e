"""Pipeline files: every error at once, formats and unknown keys checked, paths and secrets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult
from helpers import TOKEN_ENV, pipeline_doc, read_jsonl, write_pipeline

from plugin_host import ConfigError, Registry, ValidationFailed, load_pipeline

Cli = Callable[..., CliResult]


def errors_of(path: Path, registry: Registry) -> list[str]:
    with pytest.raises(ValidationFailed) as info:
        load_pipeline(path, registry)
    return info.value.errors


def error_lines(result: CliResult) -> list[str]:
    """The ``$.path: ...`` lines of a ValidationFailed report on stderr."""
    return [line.strip() for line in result.err.splitlines() if line.startswith("  $")]


def assert_clean_failure(result: CliResult, code: int = 2) -> None:
    assert result.code == code, result.err
    assert "Traceback" not in result.err
    assert result.out == ""


def test_a_valid_pipeline_loads_with_defaults_and_absolute_paths(
    tmp_path: Path, registry: Registry, token: str
) -> None:
    path = write_pipeline(tmp_path / "p.yaml", settings={"total": 4})
    pipeline = load_pipeline(path, registry)
    assert pipeline.name == "counter"
    assert pipeline.settings == {"total": 4, "page_size": 3, "check": "ok",
                                 "failure": "unexpected", "delay_ms": 0, "pad": 0,
                                 "log_secret": False}
    assert pipeline.secrets == {"token": token}
    assert token not in repr(pipeline)
    assert pipeline.output_settings == {"path": "out.jsonl"}
    assert pipeline.state_path == tmp_path / ".plugin-host" / "state.db"
    assert pipeline.warnings == []


def test_five_errors_are_all_reported_at_once(tmp_path: Path, cli: Cli, token: str) -> None:
    (tmp_path / "p.yaml").write_text(
        "version: 2\n"
        "name: five\n"
        "colour: blue\n"
        "input:\n"
        "  type: fixture_counter\n"
        "  settings: {total: ten, since: yesterday}\n"
        f"  secrets: {{token: {{env: {TOKEN_ENV}}}}}\n"
        "output: {type: nope}\n"
    )
    result = cli("validate", tmp_path / "p.yaml")
    assert_clean_failure(result)
    assert result.err.startswith("plugin-host: error: ")
    assert "5 errors in the pipeline:" in result.err
    assert sorted(error_lines(result)) == sorted([
        "$.version: must be 1 (const)",
        "$: unknown key 'colour'; known keys: input, name, output, schedule, state, transforms, "
        "version (additionalProperties)",
        "$.input.settings.total: must be a whole number (type)",
        "$.input.settings.since: must be a date-time like 2026-11-20T08:00:00Z (format)",
        "$.output.type: unknown output 'nope' (installed: jsonl, postgres, stdout)",
    ])


@pytest.mark.parametrize(("since", "valid"), [
    ("yesterday", False),
    ("2024-13-01T00:00:00Z", False),
    ("2024-02-30T10:00:00Z", False),
    ("2024-01-01", False),
    ("2024-01-01T00:00:00Z", True),
    ("2024-06-30T23:59:59.5+02:00", True),
])
def test_date_time_settings_are_really_checked(
    tmp_path: Path, registry: Registry, token: str, since: str, valid: bool
) -> None:
    path = write_pipeline(tmp_path / "p.yaml", settings={"since": since})
    if valid:
        assert load_pipeline(path, registry).settings["since"] == since
    else:
        assert errors_of(path, registry) == [
            "$.input.settings.since: must be a date-time like 2026-11-20T08:00:00Z (format)"]


@pytest.mark.parametrize(("endpoint", "valid"), [
    ("not a url", False),
    ("https://api.example.com/v1", True),
])
def test_uri_settings_are_really_checked(
    tmp_path: Path, registry: Registry, token: str, endpoint: str, valid: bool
) -> None:
    path = write_pipeline(tmp_path / "p.yaml", settings={"endpoint": endpoint})
    if valid:
        assert load_pipeline(path, registry).settings["endpoint"] == endpoint
    else:
        assert errors_of(path, registry) == [
            "$.input.settings.endpoint: must be a URL like https://api.example.com/v1 (format)"]


def test_an_unquoted_yaml_timestamp_stays_text(
    tmp_path: Path, registry: Registry, token: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nname: ts\n"
        "input: {type: fixture_counter, settings: {since: 2024-01-01T00:00:00Z},"
        f" secrets: {{token: {{env: {TOKEN_ENV}}}}}}}\n"
        "output: {type: stdout}\n"
    )
    assert load_pipeline(path, registry).settings["since"] == "2024-01-01T00:00:00Z"


def _with(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = doc
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return doc


@pytest.mark.parametrize(("where", "expected"), [
    ("colour", "$: unknown key 'colour'"),
    ("input.colour", "$.input: unknown key 'colour'"),
    ("input.settings.colour", "$.input.settings: unknown key 'colour'"),
    ("output.colour", "$.output: unknown key 'colour'"),
    ("output.settings.colour", "$.output.settings: unknown key 'colour'"),
    ("state.colour", "$.state: unknown key 'colour'"),
    ("input.secrets.colour", "$.input.secrets.colour: unknown secret (this input takes: token)"),
])
def test_unknown_keys_are_refused_at_every_level(
    tmp_path: Path, registry: Registry, token: str, where: str, expected: str
) -> None:
    doc = _with(pipeline_doc(state={"path": "s.db"}), where, "blue")
    if where == "input.secrets.colour":
        doc["input"]["secrets"]["colour"] = {"env": TOKEN_ENV}
    errors = errors_of(write_pipeline(tmp_path / "p.yaml", doc), registry)
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected)


def test_a_secret_reference_with_an_extra_key_is_refused(
    tmp_path: Path, registry: Registry, token: str
) -> None:
    doc = pipeline_doc(secrets={"token": {"env": TOKEN_ENV, "colour": "blue"}})
    errors = errors_of(write_pipeline(tmp_path / "p.yaml", doc), registry)
    assert errors == ["$.input.secrets.token: does not match any of the allowed forms (oneOf)"]


@pytest.mark.parametrize("section", ["output", "state"])
def test_a_path_under_a_regular_file_is_refused(
    tmp_path: Path, cli: Cli, token: str, section: str
) -> None:
    (tmp_path / "blocker").write_text("a file, not a folder\n")
    doc = pipeline_doc()
    if section == "output":
        doc["output"]["settings"]["path"] = "blocker/sub/out.jsonl"
        where, folder = "$.output.settings.path", tmp_path / "blocker" / "sub"
    else:
        doc["state"] = {"path": "blocker/state.db"}
        where, folder = "$.state.path", tmp_path / "blocker"
    result = cli("validate", write_pipeline(tmp_path / "p.yaml", doc))
    assert_clean_failure(result)
    assert error_lines(result) == [
        f"{where}: {tmp_path / 'blocker'} is a file, so folder {folder} cannot be created"]


def test_an_output_path_that_is_a_folder_is_refused(
    tmp_path: Path, registry: Registry, token: str
) -> None:
    (tmp_path / "out.jsonl").mkdir()
    errors = errors_of(write_pipeline(tmp_path / "p.yaml"), registry)
    assert errors == [f"$.output.settings.path: {tmp_path / 'out.jsonl'} is a folder, not a file"]


def test_relative_paths_resolve_against_the_pipeline_folder(
    tmp_path: Path, cli: Cli, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, elsewhere = tmp_path / "pipes", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "keys").mkdir(parents=True)
    (folder / "keys" / "token.txt").write_text(token + "\n")
    doc = pipeline_doc(settings={"total": 5}, secrets={"token": {"file": "keys/token.txt"}},
                       output={"type": "jsonl", "settings": {"path": "data/out.jsonl"}},
                       state={"path": "var/state.db"})
    write_pipeline(folder / "p.yaml", doc)
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv(TOKEN_ENV)
    result = cli("run", "--quiet", "../pipes/p.yaml")
    assert result.code == 0, result.err
    assert read_jsonl(folder / "data" / "out.jsonl") == [{"n": i} for i in range(5)]
    assert (folder / "var" / "state.db").is_file()
    assert list(elsewhere.iterdir()) == []


def test_the_default_state_file_sits_beside_the_pipeline(
    tmp_path: Path, cli: Cli, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd").mkdir()
    path = write_pipeline(tmp_path / "pipes" / "p.yaml")
    monkeypatch.chdir(tmp_path / "cwd")
    assert cli("run", path).code == 0
    assert (tmp_path / "pipes" / ".plugin-host" / "state.db").is_file()
    assert list((tmp_path / "cwd").iterdir()) == []


def test_missing_parent_folders_are_created_on_run(tmp_path: Path, cli: Cli, token: str) -> None:
    doc = pipeline_doc(output={"type": "jsonl", "settings": {"path": "a/b/c/out.jsonl"}},
                       state={"path": "x/y/z/state.db"})
    path = write_pipeline(tmp_path / "p.yaml", doc)
    assert cli("validate", path).code == 0
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "x").exists()
    assert cli("run", path).code == 0
    assert len(read_jsonl(tmp_path / "a" / "b" / "c" / "out.jsonl")) == 10
    assert (tmp_path / "x" / "y" / "z" / "state.db").is_file()


@pytest.mark.parametrize(("value", "expected"), [
    ("WRONG-secret-value-8812", "$.input.secrets.token: must start with 'tok-' (pattern)"),
    ("tok-9x", "$.input.secrets.token: must be at least 8 characters long (minLength)"),
])
@pytest.mark.parametrize("given_as", ["literal", "env", "file"])
def test_a_bad_secret_value_never_appears_in_any_output(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, value: str, expected: str,
    given_as: str,
) -> None:
    if given_as == "literal":
        ref: Any = value
    elif given_as == "env":
        monkeypatch.setenv("BAD_TOKEN", value)
        ref = {"env": "BAD_TOKEN"}
    else:
        (tmp_path / "token.txt").write_text(value)
        ref = {"file": "token.txt"}
    path = write_pipeline(tmp_path / "p.yaml", secrets={"token": ref})
    for command in ("validate", "check", "run"):
        result = cli(command, path)
        assert_clean_failure(result)
        assert error_lines(result) == [expected]
        assert value not in result.err
        assert value not in result.out
    assert not (tmp_path / "out.jsonl").exists()


def test_a_literal_secret_is_accepted_with_a_warning(tmp_path: Path, cli: Cli) -> None:
    literal = "tok-literal-in-the-file-3141"
    path = write_pipeline(tmp_path / "p.yaml", secrets={"token": literal})
    result = cli("validate", path)
    assert result.code == 0, result.err
    assert "WARNING" in result.err
    assert "$.input.secrets.token is written into the pipeline file" in result.err
    assert "prefer {env: NAME} or {file: path}" in result.err
    assert literal not in result.err + result.out
    assert result.out == f"{path}: valid (input fixture_counter, output jsonl)\n"


@pytest.mark.parametrize(("ref", "expected"), [
    ({"env": "FIXTURE_TOKEN_NOT_SET"},
     "$.input.secrets.token: environment variable FIXTURE_TOKEN_NOT_SET is not set"),
    ({"file": "missing-token.txt"}, "$.input.secrets.token: file {dir}/missing-token.txt does "
                                    "not exist"),
])
def test_an_unresolvable_secret_is_one_line_naming_its_path(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, ref: dict[str, str], expected: str
) -> None:
    monkeypatch.delenv("FIXTURE_TOKEN_NOT_SET", raising=False)
    path = write_pipeline(tmp_path / "p.yaml", secrets={"token": ref})
    result = cli("validate", path)
    assert_clean_failure(result)
    assert result.err.splitlines() == [
        "plugin-host: error: 1 error in the pipeline:",
        "  " + expected.format(dir=tmp_path),
    ]


def test_an_empty_secret_is_refused(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMPTY_TOKEN", "  ")
    (tmp_path / "empty.txt").write_text("\n")
    path = write_pipeline(tmp_path / "p.yaml", secrets={"token": {"env": "EMPTY_TOKEN"}})
    assert errors_of(path, registry) == [
        "$.input.secrets.token: environment variable EMPTY_TOKEN is empty"]
    path = write_pipeline(tmp_path / "p.yaml", secrets={"token": {"file": "empty.txt"}})
    assert errors_of(path, registry) == [
        f"$.input.secrets.token: file {tmp_path / 'empty.txt'} is empty"]


def test_a_missing_required_secret_is_reported(tmp_path: Path, registry: Registry) -> None:
    doc = pipeline_doc()
    del doc["input"]["secrets"]
    assert errors_of(write_pipeline(tmp_path / "p.yaml", doc), registry) == [
        "$.input.secrets.token: is required (set {env: NAME} or {file: path})"]


def test_duplicate_yaml_keys_are_refused_with_the_line(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "p.yaml").write_text(
        "version: 1\n"
        "name: dup\n"
        "input:\n"
        "  type: fixture_counter\n"
        "  settings:\n"
        "    total: 3\n"
        "    total: 4\n"
        "output: {type: stdout}\n"
    )
    result = cli("validate", tmp_path / "p.yaml")
    assert_clean_failure(result)
    assert result.err == (
        f"plugin-host: error: {tmp_path / 'p.yaml'}: line 7, column 5: duplicate key 'total'\n")


def test_invalid_yaml_gives_line_and_column_and_no_traceback(tmp_path: Path, cli: Cli) -> None:
    secret = "tok-never-shown-2718"
    (tmp_path / "p.yaml").write_text(
        "version: 1\n"
        "name: broken\n"
        "input:\n"
        "  type: fixture_counter\n"
        f'  secrets: {{token: "{secret}}}\n'
        "output: {type: stdout}\n"
    )
    result = cli("validate", tmp_path / "p.yaml")
    assert_clean_failure(result)
    assert len(result.err.splitlines()) == 1
    assert result.err.startswith(f"plugin-host: error: {tmp_path / 'p.yaml'}: line ")
    assert ", column " in result.err
    assert secret not in result.err


@pytest.mark.parametrize(("text", "expected"), [
    ("- a\n- b\n", "a pipeline file must be a YAML mapping"),
    ("", "a pipeline file must be a YAML mapping"),
    (b"version: 1\nname: \xff\n", "is not UTF-8 text"),
])
def test_a_file_that_is_not_a_pipeline_mapping_is_refused(
    tmp_path: Path, cli: Cli, text: str | bytes, expected: str
) -> None:
    path = tmp_path / "p.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    result = cli("validate", path)
    assert_clean_failure(result)
    assert expected in result.err
    assert len(result.err.splitlines()) == 1


def test_a_missing_pipeline_file_is_a_config_error(tmp_path: Path, cli: Cli) -> None:
    result = cli("validate", tmp_path / "nope.yaml")
    assert_clean_failure(result)
    assert result.err == (
        f"plugin-host: error: {tmp_path / 'nope.yaml'}: the pipeline file does not exist\n")


def test_an_unknown_input_names_the_installed_ones(
    tmp_path: Path, registry: Registry
) -> None:
    path = write_pipeline(tmp_path / "p.yaml", input_type="nope")
    installed = ", ".join(sorted(registry.inputs))
    assert "fixture_counter, fixture_echo" in installed
    assert errors_of(path, registry) == [
        f"$.input.type: unknown input 'nope' (installed: {installed})"]


def test_load_pipeline_raises_config_error_for_one_line_problems(
    tmp_path: Path, registry: Registry
) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_pipeline(tmp_path / "absent.yaml", registry)
