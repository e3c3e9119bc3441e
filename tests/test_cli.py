"""The plugin-host command: exit codes, one-line errors, logging and secret redaction."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CliResult
from helpers import TOKEN_ENV, Venv, clean_env, pipeline_doc, read_jsonl, run, write_pipeline

import plugin_host
from plugin_host import (
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
from plugin_host._exceptions import EXIT_CODES
from plugin_host.cli import COMMAND_EXIT_CODES

Cli = Callable[..., CliResult]


def counter(tmp_path: Path, **settings: Any) -> Path:
    return write_pipeline(tmp_path / "p.yaml", settings=settings)


def assert_one_line_error(result: CliResult, code: int, prefix: str = "plugin-host: error: "
                          ) -> str:
    """The command failed with ``code``, one error line on stderr, no traceback."""
    assert result.code == code, result.err
    assert "Traceback" not in result.err
    errors = [line for line in result.err.splitlines() if line.startswith("plugin-host:")]
    assert len(errors) == 1, result.err
    assert errors[0].startswith(prefix)
    return errors[0]


def test_exit_codes_follow_the_exception_hierarchy() -> None:
    assert {cls: cls.exit_code for cls in (
        PluginHostError, ConfigError, ValidationFailed, AuthError, UpstreamError,
        QuotaExhausted, ProtocolError, LocalStorageError, PipelineBusy, StopRequested)} == {
        PluginHostError: 1, ConfigError: 2, ValidationFailed: 2, AuthError: 3,
        UpstreamError: 4, QuotaExhausted: 4, ProtocolError: 4, LocalStorageError: 5,
        PipelineBusy: 6, StopRequested: 0}
    assert sorted(EXIT_CODES) == [0, 1, 2, 3, 4, 5, 6]


# the exit codes each command gives in these tests (check's 5: test_state_postgres_cli.py)
EXERCISED = {
    "inputs": {0}, "spec": {0, 2}, "validate": {0, 2}, "check": {0, 2, 3, 4, 5},
    "run": {0, 1, 2, 3, 4, 5, 6}, "state show": {0, 2, 5}, "state reset": {0, 2, 5, 6},
}


def test_each_command_is_tested_with_every_exit_code_it_declares() -> None:
    """The declared table (the README's command table and ``--help`` show it) holds no
    code that no test here gives (demo and new-input: test_demo.py, test_scaffold.py)."""
    for name, codes in EXERCISED.items():
        assert set(COMMAND_EXIT_CODES[name]) == codes, name


def help_text(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        plugin_host.cli.main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def exit_code_block(text: str) -> str:
    return text[text.index("\nexit codes:\n") + 1:]


def test_help_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code_block(help_text(capsys)) == (
        "exit codes:\n"
        "  0  success\n"
        "  1  unexpected error: a bug (rerun with --debug and report it)\n"
        "  2  configuration error: the pipeline file, settings, secrets, saved state that "
        "does not fit them, an output file that belongs to another pipeline, or an output "
        "table of another shape\n"
        "  3  authentication or permission refused by the upstream\n"
        "  4  upstream unavailable or failing after retries, a quota exhausted, or an "
        "upstream breaking its own contract\n"
        "  5  storage: the output or state cannot be written, the state file is damaged, or "
        "the state or output database is unreachable, refuses or is newer\n"
        "  6  busy: another run of the same pipeline holds its lock or lease, or took this "
        "run's lease over\n"
    )


def test_a_commands_help_lists_its_own_exit_codes(capsys: pytest.CaptureFixture[str]
                                                 ) -> None:
    assert exit_code_block(help_text(capsys, "check")) == (
        "exit codes:\n"
        "  0  success\n"
        "  2  configuration error: the pipeline file, settings, secrets, saved state that "
        "does not fit them, an output file that belongs to another pipeline, or an output "
        "table of another shape\n"
        "  3  authentication or permission refused by the upstream\n"
        "  4  upstream unavailable or failing after retries, a quota exhausted, or an "
        "upstream breaking its own contract\n"
        "  5  storage: the output or state cannot be written, the state file is damaged, or "
        "the state or output database is unreachable, refuses or is newer\n"
    )
    assert exit_code_block(help_text(capsys, "state")) == (
        "exit codes:\n"
        "  0  success\n"
        "  2  configuration error: the pipeline file, settings, secrets, saved state that "
        "does not fit them, an output file that belongs to another pipeline, or an output "
        "table of another shape\n"
        "  5  storage: the output or state cannot be written, the state file is damaged, or "
        "the state or output database is unreachable, refuses or is newer\n"
        "  6  busy: another run of the same pipeline holds its lock or lease, or took this "
        "run's lease over (reset only)\n"
    )
    assert exit_code_block(help_text(capsys, "inputs")) == "exit codes:\n  0  success\n"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        plugin_host.cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"plugin-host {plugin_host.__version__}\n"


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        plugin_host.cli.main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_inputs_lists_inputs_and_outputs(cli: Cli) -> None:
    result = cli("inputs")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == "inputs:"
    assert ["fixture_counter", "1.2.3", "plugin-host-fixture-good"] in [
        line.split() for line in lines]
    assert "outputs:" in lines
    data = json.loads(cli("inputs", "--json").out)
    assert {"name": "fixture_echo", "version": "1.2.3",
            "distribution": "plugin-host-fixture-good",
            "description": "Yields the records given in its settings, once (a test fixture)."
            } in data["inputs"]


def test_spec_prints_the_manifest_or_refuses_an_unknown_input(cli: Cli) -> None:
    from plugin_host_fixture_good import CounterInput

    result = cli("spec", "fixture_counter")
    assert result.code == 0
    assert json.loads(result.out) == CounterInput.manifest
    line = assert_one_line_error(cli("spec", "nope"), 2)
    assert "unknown input 'nope' (installed: " in line
    assert "fixture_counter" in line


def test_validate_exit_codes(tmp_path: Path, cli: Cli, token: str) -> None:
    result = cli("validate", counter(tmp_path))
    assert result.code == 0
    assert result.out == f"{tmp_path / 'p.yaml'}: valid (input fixture_counter, output jsonl)\n"
    assert result.err == ""
    result = cli("validate", counter(tmp_path, total=-1))
    assert result.code == 2
    assert "$.input.settings.total: must be at least 0 (minimum)" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(("check", "code", "message"), [
    ("ok", 0, None),
    ("auth", 3, "plugin-host: error: upstream refused the token: check refused"),
    ("upstream", 4, "plugin-host: error: upstream failed after retries: check refused"),
])
def test_check_exit_codes(
    tmp_path: Path, cli: Cli, token: str, check: str, code: int, message: str | None
) -> None:
    result = cli("check", counter(tmp_path, check=check))
    if message is None:
        assert result.code == 0
        assert result.out == "counter: configuration valid and fixture_counter reachable\n"
    else:
        assert assert_one_line_error(result, code) == message
        assert result.out == ""


def test_check_refuses_a_bad_configuration(tmp_path: Path, cli: Cli, token: str) -> None:
    result = cli("check", counter(tmp_path, check="maybe"))
    assert result.code == 2
    assert "$.input.settings.check: must be one of 'ok', 'auth', 'upstream' (enum)" in result.err


@pytest.mark.parametrize(("failure", "code", "prefix"), [
    ("auth", 3, "plugin-host: error: upstream refused the token: record 7"),
    ("upstream", 4, "plugin-host: error: upstream failed after retries: record 7"),
    ("unexpected", 1, "plugin-host: unexpected error: RuntimeError: record 7"),
])
def test_run_failures_exit_with_their_code_and_keep_the_progress_made(
    tmp_path: Path, cli: Cli, token: str, failure: str, code: int, prefix: str
) -> None:
    path = counter(tmp_path, total=12, page_size=3, fail_at=7, failure=failure)
    result = cli("run", path)
    line = assert_one_line_error(result, code, prefix)
    assert result.err == line + "\n"
    assert token not in line and "***" in line
    # the pages before the failure were delivered and committed
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(6)]
    show = json.loads(cli("state", "show", path).out)
    assert show["state"]["checkpoint"] == {"next": 6}
    write_pipeline(path, settings={"total": 12, "page_size": 3})
    assert cli("run", path).code == 0
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(12)]


def test_an_unexpected_error_shows_a_redacted_traceback_with_debug(
    tmp_path: Path, cli: Cli, token: str
) -> None:
    result = cli("--debug", "run", counter(tmp_path, fail_at=0))
    assert result.code == 1
    assert "Traceback (most recent call last)" in result.err
    assert "RuntimeError: record 0 (token ***)" in result.err
    assert token not in result.err


def test_run_exit_codes_for_configuration_storage_and_interval(
    tmp_path: Path, cli: Cli, token: str
) -> None:
    invalid = counter(tmp_path, total="ten")
    for command in (("run",), ("state", "show"), ("state", "reset")):
        assert cli(*command, invalid).code == 2
    assert_one_line_error(cli("run", "--interval", "0", counter(tmp_path)), 2)
    (tmp_path / "state.db").write_bytes(b"garbage" * 100)
    bad_state = write_pipeline(tmp_path / "q.yaml", state={"path": "state.db"})
    assert_one_line_error(cli("run", bad_state), 5)


def test_run_succeeds_with_a_summary_or_quietly(tmp_path: Path, cli: Cli, token: str) -> None:
    result = cli("run", counter(tmp_path, total=10, page_size=5))
    assert result.code == 0
    assert result.out == ""
    assert result.err.startswith("counter: 10 records in 2 pages, 2 requests, ")
    write_pipeline(tmp_path / "p.yaml", settings={"total": 12, "page_size": 5})
    result = cli("run", "--quiet", tmp_path / "p.yaml")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 12


def test_demo_of_an_input_without_an_emulator_is_refused(tmp_path: Path, cli: Cli) -> None:
    line = assert_one_line_error(cli("demo", "fixture_counter", "--dir", tmp_path / "d"), 2)
    assert "input fixture_counter has no bundled emulator" in line
    assert "unknown input 'nope'" in assert_one_line_error(cli("demo", "nope"), 2)


def test_log_level_debug_shows_debug_records(tmp_path: Path, cli: Cli, token: str) -> None:
    path = counter(tmp_path, total=4, page_size=2)
    quiet = cli("run", "--quiet", path)
    assert quiet.err == ""
    write_pipeline(path, settings={"total": 8, "page_size": 2})
    result = cli("--log-level", "debug", "run", "--quiet", path)
    assert result.code == 0
    assert " DEBUG plugin_host.input.fixture_counter: page of records 4..5" in result.err
    assert " DEBUG plugin_host.input.fixture_counter: page of records 6..7" in result.err


def test_secrets_are_redacted_from_every_log_record(tmp_path: Path, cli: Cli, token: str) -> None:
    result = cli("--log-level", "DEBUG", "run", counter(tmp_path, log_secret=True))
    assert result.code == 0
    assert token not in result.err
    assert "WARNING httpx: HTTP Request: GET https://upstream.invalid/items?token=*** " in (
        result.err)
    assert "WARNING plugin_host.input.fixture_counter: authenticating with token ***" in (
        result.err)
    assert "ERROR root: root logger sees ***" in result.err


def test_python_dash_m_plugin_host(tmp_path: Path) -> None:
    version = run([sys.executable, "-m", "plugin_host", "--version"], cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, f"plugin-host {plugin_host.__version__}\n")
    listed = run([sys.executable, "-m", "plugin_host", "inputs", "--json"], cwd=tmp_path)
    assert listed.returncode == 0
    assert {"jsonl", "stdout"} <= {o["name"] for o in json.loads(listed.stdout)["outputs"]}
    missing = run([sys.executable, "-m", "plugin_host", "validate", "nope.yaml"], cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == (
        f"plugin-host: error: {tmp_path / 'nope.yaml'}: the pipeline file does not exist\n")


@pytest.mark.slow
def test_the_installed_command_end_to_end(plugin_venv: Venv, tmp_path: Path) -> None:
    secret = "tok-end-to-end-secret-77"
    env = clean_env(**{TOKEN_ENV: secret})
    write_pipeline(tmp_path / "p.yaml", pipeline_doc(settings={"total": 9, "log_secret": True}))
    result = plugin_venv.plugin_host("run", "p.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert secret not in result.stderr
    assert "httpx: HTTP Request: GET https://upstream.invalid/items?token=***" in result.stderr
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(9)]

    write_pipeline(tmp_path / "p.yaml", pipeline_doc(settings={"check": "auth"}))
    result = plugin_venv.plugin_host("check", "p.yaml", cwd=tmp_path, env=env)
    assert (result.returncode, result.stderr) == (
        3, "plugin-host: error: upstream refused the token: check refused\n")

    write_pipeline(tmp_path / "p.yaml", pipeline_doc(settings={"total": 20, "fail_at": 15}))
    result = plugin_venv.plugin_host("run", "p.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr == (
        "plugin-host: unexpected error: RuntimeError: record 15 (token ***) "
        "(rerun with --debug)\n")
