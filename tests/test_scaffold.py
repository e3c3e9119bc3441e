"""``plugin-host new-input``: a new input as its own distribution, discovered once installed,
passing the contract suite with its own tests."""

from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from plugin_host import __version__
from plugin_host._manifest import manifest_errors
from plugin_host.cli import main
from plugin_host.testing import InputContract

REPO = Path(__file__).resolve().parent.parent
NAME = "acme_audit"
DIST = "plugin-host-acme-audit"
CONTRACT_TESTS = {n for n in dir(InputContract) if n.startswith("test_")}


def env() -> dict[str, str]:
    """The environment without plugin-host's or pytest's switches."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PLUGIN_HOST_", "PYTEST_"))}


def run(*argv: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


def new_input(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["new-input", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_writes_a_distribution_with_package_tests_and_readme(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = new_input(capsys, NAME, "--dir", tmp_path / "new")
    assert (code, err) == (0, "")
    folder = tmp_path / "new"
    assert f"created input {NAME} ({DIST}) in {folder}" in out
    assert "pip install -e ." in out and "python -m pytest" in out
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == sorted([
        ".gitignore", "README.md", "pyproject.toml", f"{NAME}/__init__.py", f"{NAME}/plugin.py",
        f"{NAME}/input.py", f"{NAME}/manifest.json", f"{NAME}/fake_server.py",
        "tests/test_contract.py", "tests/test_input.py",
    ])
    project = (folder / "pyproject.toml").read_text().splitlines()
    assert f'name = "{DIST}"' in project
    assert f'dependencies = ["plugin-host>={__version__}"]' in project
    entry = project.index('[project.entry-points."plugin_host"]')
    assert project[entry + 1] == f'{NAME} = "{NAME}.plugin"'
    manifest = json.loads((folder / NAME / "manifest.json").read_text())
    assert manifest["name"] == NAME and manifest_errors(manifest) == []
    assert manifest["secrets"]["properties"]["api_key"]["writeOnly"] is True
    assert "InputContract" in (folder / "tests" / "test_contract.py").read_text()
    for path in folder.rglob("*"):
        if path.is_file():
            assert "${" not in path.read_text(), f"{path} holds an unrendered placeholder"


def written_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def file_table(text: str, name: str, after: str) -> set[str]:
    """The files a table lists: the first cells of the table that follows ``after``."""
    lines = text.split(after, 1)[1].lstrip("\n").splitlines()
    assert lines[0].startswith("| file |"), lines[0]
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        match = re.fullmatch(r"\| `([^`]+)` \|.*", line)
        assert match, line
        rows.append(match.group(1))
    return {row.replace("NAME", name) for row in rows}


def test_the_guide_and_the_new_readme_list_exactly_the_files_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert new_input(capsys, NAME, "--dir", tmp_path / "new")[0] == 0
    written = written_files(tmp_path / "new")
    guide = (REPO / "docs" / "writing-an-input.md").read_text(encoding="utf-8")
    assert file_table(guide, NAME, "What it writes:") == written
    readme = (tmp_path / "new" / "README.md").read_text(encoding="utf-8")
    assert file_table(readme, NAME, "## Layout") == written
    # and it links to no page the project does not say exists (a package index, say)
    assert re.findall(r"\]\((\w+:[^)]*)\)", readme) == []
    assert "pypi" not in readme.lower()


def git(*argv: str, cwd: Path) -> str:
    """``git ARGV`` in ``cwd``, the environment's own git settings left out."""
    environment = {k: v for k, v in env().items() if not k.startswith("GIT_")}
    done = subprocess.run(["git", "-c", "init.defaultBranch=main", *argv], cwd=cwd,
                          env=environment, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def untracked(folder: Path) -> set[str]:
    """The files ``git add .`` would add in ``folder``, a new repository."""
    git("init", "-q", cwd=folder)
    return {line[3:] for line in git("status", "--porcelain", "--untracked-files=all",
                                      cwd=folder).splitlines()}


def test_the_new_input_keeps_runs_builds_and_venvs_out_of_git(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "new"
    assert new_input(capsys, NAME, "--dir", folder)[0] == 0
    source = written_files(folder)
    assert ".gitignore" in source
    for leftover in ("demo-output/events.jsonl", "demo-output/state.db",
                     ".plugin-host/state.db", f"{NAME}/__pycache__/input.cpython-311.pyc",
                     "tests/__pycache__/test_input.cpython-311.pyc",
                     f"{NAME.replace('_', '-')}.egg-info/PKG-INFO", f"{NAME}.egg-info/PKG-INFO",
                     "build/lib/x.py", "dist/x.whl", ".venv/bin/python", ".pytest_cache/README"):
        (folder / leftover).parent.mkdir(parents=True, exist_ok=True)
        (folder / leftover).write_text("left by a run\n")
    assert untracked(folder) == source


def test_writes_into_dot_name_by_default_and_into_an_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert new_input(capsys, "first_kit")[0] == 0
    assert (tmp_path / "first_kit" / "first_kit" / "input.py").is_file()
    (tmp_path / "empty").mkdir()
    assert new_input(capsys, "second_kit", "--dir", "empty")[0] == 0
    assert (tmp_path / "empty" / "second_kit" / "plugin.py").is_file()


@pytest.mark.parametrize("name", ["Acme", "1acme", "acme-audit", "acme.audit", "_acme", "",
                                  "a" * 64, "class", "json", "plugin_host", "pytest"])
def test_refuses_a_bad_name_with_exit_2_and_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = new_input(capsys, name, "--dir", tmp_path / "x")
    assert code == 2 and out == ""
    assert err.startswith("plugin-host: error: input name") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_refuses_a_non_empty_folder_with_exit_2_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine\n")
    code, out, err = new_input(capsys, NAME, "--dir", tmp_path / "taken")
    assert (code, out) == (2, "")
    assert err == f"plugin-host: error: {tmp_path / 'taken'} is not empty; give an empty or " \
                  "new folder with --dir\n"
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]


def make_venv(root: Path) -> Path:
    """A venv with --system-site-packages; when the tests run in a venv themselves, it also
    sees that venv's packages (plugin-host among them), after its own."""
    done = run(sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", root,
               cwd=root.parent)
    assert done.returncode == 0, done.stderr
    python = root / "bin" / "python"
    if sys.prefix != sys.base_prefix:
        purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                      cwd=root).stdout.strip()
        lines = [f"import site; site.addsitedir({d!r})\n" for d in site.getsitepackages()]
        (Path(purelib) / "zz_outer_environment.pth").write_text("".join(lines))
    return python


@pytest.mark.slow
def test_a_new_input_installs_is_discovered_and_passes_its_contract_tests(
    tmp_path: Path,
) -> None:
    scaffold = tmp_path / "acme"
    made = run(sys.executable, "-m", "plugin_host", "new-input", NAME, "--dir", scaffold,
               cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    source = written_files(scaffold)

    python = make_venv(tmp_path / "venv")
    installed = run(sys.executable, "-m", "pip", "--python", python, "install", "-q",
                    "--no-deps", "--no-build-isolation", scaffold, cwd=tmp_path)
    assert installed.returncode == 0, (
        installed.stdout + installed.stderr
        + "\n(setuptools older than 70.1 needs the wheel package to build: pip install wheel)")

    listed = run(python, "-m", "plugin_host", "inputs", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    inputs = {i["name"]: i for i in json.loads(listed.stdout)["inputs"]}
    assert inputs[NAME]["distribution"] == DIST
    assert inputs[NAME]["version"] == "0.1.0"
    assert json.loads(listed.stdout)["failures"] == []
    outside = run(sys.executable, "-m", "plugin_host", "inputs", "--json", cwd=tmp_path)
    assert NAME not in {i["name"] for i in json.loads(outside.stdout)["inputs"]}

    report = tmp_path / "report.xml"
    tested = run(python, "-m", "pytest", scaffold / "tests", "-q", "-p", "no:cacheprovider",
                 f"--junitxml={report}", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-2000:]
    cases = list(ET.parse(report).getroot().iter("testcase"))
    passed = {c.get("name") for c in cases
              if not any(c.find(tag) is not None for tag in ("failure", "error", "skipped"))}
    assert passed == {c.get("name") for c in cases}
    assert passed >= CONTRACT_TESTS
    assert len(passed - CONTRACT_TESTS) >= 3

    # the guide's last step, in the input's folder: what it leaves there stays out of git
    demo = run(python, "-m", "plugin_host", "demo", NAME, "--events", "12", cwd=scaffold)
    assert demo.returncode == 0, demo.stderr
    assert (scaffold / "demo-output" / "events.jsonl").is_file()
    assert untracked(scaffold) == source


def test_with_transform_it_adds_a_registered_transform_and_its_tests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain, with_transform = tmp_path / "plain", tmp_path / "with"
    assert new_input(capsys, NAME, "--dir", plain)[0] == 0
    code, out, err = new_input(capsys, NAME, "--dir", with_transform, "--transform")
    assert (code, err) == (0, "")
    assert f"created input {NAME} and transform {NAME}_fields ({DIST})" in out
    added = written_files(with_transform) - written_files(plain)
    assert added == {f"{NAME}/transform.py", "tests/test_transform.py"}
    guide = (REPO / "docs" / "writing-an-input.md").read_text(encoding="utf-8")
    assert file_table(guide, NAME, "these files are added:") == added
    readme = (with_transform / "README.md").read_text(encoding="utf-8")
    assert file_table(readme, NAME, "## Layout") == written_files(with_transform)
    plugin = (with_transform / NAME / "plugin.py").read_text()
    assert "def plugin_host_register_transforms(" in plugin
    assert "def plugin_host_register_transforms(" not in (plain / NAME / "plugin.py").read_text()
    for path in with_transform.rglob("*"):
        if path.is_file():
            assert "${" not in path.read_text(), f"{path} holds an unrendered placeholder"


def test_a_name_too_long_for_its_transform_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "a" * 57
    code, out, err = new_input(capsys, name, "--dir", tmp_path / "x", "--transform")
    assert code == 2
    assert err.strip() == (f"plugin-host: error: input name '{name}' is too long for its "
                           f"transform's name {name}_fields (at most 63 characters); choose "
                           "a shorter one")
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_new_input_with_a_transform_installs_and_passes_its_tests(tmp_path: Path) -> None:
    scaffold = tmp_path / "acme"
    made = run(sys.executable, "-m", "plugin_host", "new-input", NAME, "--dir", scaffold,
               "--transform", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = make_venv(tmp_path / "venv")
    installed = run(sys.executable, "-m", "pip", "--python", python, "install", "-q",
                    "--no-deps", "--no-build-isolation", scaffold, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = json.loads(run(python, "-m", "plugin_host", "inputs", "--json",
                            cwd=tmp_path).stdout)
    assert {t["name"]: t["distribution"] for t in listed["transforms"]}[f"{NAME}_fields"] == DIST
    assert listed["failures"] == []
    report = tmp_path / "report.xml"
    tested = run(python, "-m", "pytest", scaffold / "tests", "-q", "-p", "no:cacheprovider",
                 f"--junitxml={report}", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-2000:]
    cases = list(ET.parse(report).getroot().iter("testcase"))
    transform_cases = {c.get("name") for c in cases if "test_transform" in (c.get("classname")
                                                                            or "")}
    assert len(transform_cases) >= 4
    assert all(not any(c.find(tag) is not None for tag in ("failure", "error", "skipped"))
               for c in cases)
