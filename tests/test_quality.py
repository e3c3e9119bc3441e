"""The project's own checks: ruff and mypy (strict) pass on the tree, as committed, and no
module of the host, the Postman input or the benchmarks is over 500 lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_ruff_finds_nothing() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict_passes_on_the_host_and_the_postman_input() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_no_module_is_over_500_lines() -> None:
    modules = [p for folder in ("plugin_host", "plugins", "benchmarks")
               for p in (ROOT / folder).rglob("*.py")]
    assert len(modules) > 40
    long = {str(p.relative_to(ROOT)): n for p in modules
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert long == {}, f"modules over 500 lines (split them): {long}"
