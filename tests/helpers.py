"""Helpers the host-core tests share: pipeline files, JSON lines, subprocesses, venvs."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
GOOD_SRC = FIXTURES / "dist_good" / "src"
FIXTURE_DISTS = [FIXTURES / n for n in ("dist_good", "dist_broken", "dist_badmanifest",
                                         "dist_duplicate", "dist_demo")]
CRASH_DRIVER = FIXTURES / "crash_driver.py"
TOKEN_ENV = "FIXTURE_TOKEN"


def pipeline_doc(
    *,
    name: str = "counter",
    input_type: str = "fixture_counter",
    settings: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    output: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A pipeline document; by default fixture_counter into out.jsonl, token from the env."""
    if secrets is None:
        secrets = {"token": {"env": TOKEN_ENV}} if input_type == "fixture_counter" else {}
    doc: dict[str, Any] = {
        "version": 1,
        "name": name,
        "input": {"type": input_type, "settings": dict(settings or {})},
        "output": dict(output or {"type": "jsonl", "settings": {"path": "out.jsonl"}}),
    }
    if secrets:
        doc["input"]["secrets"] = dict(secrets)
    if state is not None:
        doc["state"] = dict(state)
    return doc


def write_pipeline(path: Path, doc: Mapping[str, Any] | None = None, **kwargs: Any) -> Path:
    """Write a pipeline file (``doc``, or ``pipeline_doc(**kwargs)``) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(doc or pipeline_doc(**kwargs)), sort_keys=False))
    return path


def read_jsonl(path: Path) -> list[Any]:
    """Every line of a JSON lines file, parsed; fails on a partial last line."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path} ends in a partial line"
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def read_terminal(master: int) -> bytes:
    """Everything written to the pseudo-terminal whose other end is ``master``, until the
    writers close it; ``master`` is closed."""
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    return seen


def skip_or_fail(reason: str) -> NoReturn:
    """Skip, saying why, where this machine cannot set up what a test needs; under CI
    (CI=true) fail instead, so CI never passes a test that did not run."""
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}; CI=true, so this fails rather than skips", pytrace=False)
    pytest.skip(reason)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without plugin-host's switches, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGIN_HOST_")}
    env.update(extra)
    return env


def run(
    argv: list[str | Path], *, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, capturing text output."""
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=dict(env or clean_env()), capture_output=True,
        text=True, timeout=timeout, check=False,
    )


@dataclass(frozen=True)
class Venv:
    """A virtual environment the tests made, and a way to run plugin-host in it."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def plugin_host(
        self, *args: str | Path, cwd: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``python -m plugin_host ARGS`` with this venv's interpreter."""
        return run([self.python, "-m", "plugin_host", *args], cwd=cwd, env=env)


def make_venv(root: Path, *, inherit: bool) -> Venv:
    """A venv without its own pip (the running interpreter's pip installs into it).

    With ``inherit``, it also sees the running environment's packages (plugin-host and
    its dependencies, however they were installed there) after its own: like
    ``--system-site-packages``, but for the environment the tests run in, a venv or not.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   capture_output=True)
    venv = Venv(root)
    if inherit:
        purelib = subprocess.run(
            [str(venv.python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True, capture_output=True, text=True).stdout.strip()
        lines = [f"import site; site.addsitedir({d!r})\n" for d in site.getsitepackages()]
        (Path(purelib) / "zz_inherit_test_environment.pth").write_text("".join(lines))
    return venv


def pip_install(venv: Venv, *args: str | Path) -> None:
    """``pip install ARGS`` into ``venv`` with the running interpreter's pip."""
    argv = [sys.executable, "-m", "pip", "--python", str(venv.python), "install", "-q", *args]
    result = run(list(argv), cwd=TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
