"""Packaging: the wheel built from this checkout works alone, installed in a fresh venv."""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import (
    FIXTURES,
    REPO,
    TOKEN_ENV,
    Venv,
    clean_env,
    make_venv,
    pip_install,
    pipeline_doc,
    read_jsonl,
    run,
    write_pipeline,
)

pytestmark = pytest.mark.slow

_NOT_ANYWHERE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv", ".*_cache",
    ".hypothesis", ".plugin-host", "demo-output", "out", "cassettes",
)


def _not_source(folder: str, names: list[str]) -> set[str]:
    """What the copy leaves out: build and run leftovers anywhere, and the test suite (the
    top-level ``tests``; the scaffold's ``templates/*/tests`` are package data)."""
    ignored = set(_NOT_ANYWHERE(folder, names))
    if Path(folder) == REPO:
        ignored |= {"tests"} & set(names)
    return ignored


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """plugin-host's wheel, built the way a release is (isolated, from a clean copy)."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=_not_source)
    result = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                  root / "wheels", source], cwd=root)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = (root / "wheels").glob("plugin_host-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A venv that sees no system packages: the wheel, its dependencies, the fixture plugin."""
    venv = make_venv(tmp_path_factory.mktemp("fresh") / "venv", inherit=False)
    pip_install(venv, wheel)
    pip_install(venv, "--no-deps", "--no-build-isolation", "--no-index",
                FIXTURES / "dist_good")
    return venv


def test_the_wheel_holds_the_schemas_and_the_entry_points(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_text = zf.read(entry_points).decode()
        for schema in ("pipeline.schema.json", "manifest.meta.schema.json"):
            assert json.loads(zf.read(f"plugin_host/schemas/{schema}"))["$schema"].startswith(
                "https://json-schema.org/")
    assert "plugin_host/__main__.py" in names
    assert {f"plugin_host/testing/{m}.py" for m in (
        "__init__", "driver", "contract_suite", "pytest_plugin")} <= names
    assert {f"postman_audit/emulator/{m}.py" for m in (
        "__init__", "__main__", "server", "query", "store", "config", "errors", "http",
        "fakedata", "cli")} <= names
    assert "[pytest11]\nplugin_host = plugin_host.testing.pytest_plugin\n" in entry_text.replace(
        "\r\n", "\n")
    assert not any(n.startswith("tests/") for n in names)
    assert {"plugin_host/transforms/ocsf.py", "plugin_host/transforms/chain.py",
            "postman_audit/ocsf.py", "postman_audit/ocsf_rules.py",
            "postman_audit/ocsf_fields.py",
            "plugin_host/templates/new_input_transform/package/transform.py.tmpl",
            "plugin_host/templates/new_input_transform/tests/test_transform.py.tmpl",
            "plugin_host/templates/new_input/tests/test_contract.py.tmpl"} <= names
    assert "builtin_transforms = plugin_host.transforms\n" in entry_text.replace("\r\n", "\n")
    assert "[plugin_host]\nbuiltin_outputs = plugin_host.outputs\n" in entry_text.replace(
        "\r\n", "\n")
    assert "plugin-host = plugin_host.cli:main" in entry_text


def test_the_installed_wheel_is_what_runs(fresh_venv: Venv, tmp_path: Path) -> None:
    result = run([fresh_venv.python, "-c", "import plugin_host; print(plugin_host.__file__)"],
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(fresh_venv.root)
    version = run([fresh_venv.root / "bin" / "plugin-host", "--version"], cwd=tmp_path)
    assert version.stdout == "plugin-host 0.1.0\n"
    emulator = run([fresh_venv.python, "-m", "postman_audit.emulator", "--help"], cwd=tmp_path)
    assert emulator.returncode == 0, emulator.stderr
    assert emulator.stdout.startswith("usage: python -m postman_audit.emulator ")


def test_inputs_validate_and_run_outside_the_checkout(fresh_venv: Venv, tmp_path: Path) -> None:
    listed = fresh_venv.plugin_host("inputs", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert {(o["name"], o["distribution"]) for o in data["outputs"]} >= {
        ("jsonl", "plugin-host"), ("stdout", "plugin-host")}
    assert ("fixture_counter", "plugin-host-fixture-good") in {
        (i["name"], i["distribution"]) for i in data["inputs"]}
    assert ("ocsf", "plugin-host") in {(t["name"], t["distribution"])
                                       for t in data["transforms"]}

    env = clean_env(**{TOKEN_ENV: "tok-from-the-wheel"})
    write_pipeline(tmp_path / "p.yaml", pipeline_doc(settings={"total": 5}))
    validated = fresh_venv.plugin_host("validate", "p.yaml", cwd=tmp_path, env=env)
    assert validated.returncode == 0, validated.stderr
    assert "valid (input fixture_counter, output jsonl)" in validated.stdout
    ran = fresh_venv.plugin_host("run", "p.yaml", cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(5)]


def test_formats_are_checked_with_the_declared_dependencies_alone(
    fresh_venv: Venv, tmp_path: Path
) -> None:
    env = clean_env(**{TOKEN_ENV: "tok-from-the-wheel"})
    write_pipeline(tmp_path / "p.yaml", pipeline_doc(
        settings={"since": "yesterday", "endpoint": "not a url"}))
    result = fresh_venv.plugin_host("validate", "p.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert ("$.input.settings.since: must be a date-time like 2026-11-20T08:00:00Z (format)"
            in result.stderr)
    assert ("$.input.settings.endpoint: must be a URL like https://api.example.com/v1 (format)"
            in result.stderr)


def test_spec_points_to_documentation_installed_with_the_input(
    fresh_venv: Venv, tmp_path: Path
) -> None:
    result = fresh_venv.plugin_host("spec", "postman_audit", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    path = Path(json.loads(result.stdout)["documentation"])
    assert path.is_file() and path.is_relative_to(fresh_venv.root)
    readme = REPO / "plugins" / "postman_audit" / "README.md"
    assert path.read_text(encoding="utf-8") == readme.read_text(encoding="utf-8")
