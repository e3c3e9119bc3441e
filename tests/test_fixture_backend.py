"""The fixture distributions' build backend works without ``tomllib`` (Python 3.10, which
plugin-host supports): its own reader gives the same wheels as ``tomllib``."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import FIXTURE_DISTS

BUILD = """
import sys
if sys.argv[2] == "without-tomllib":
    sys.modules["tomllib"] = None  # `import tomllib` now fails, as on Python 3.10
sys.path.insert(0, ".")
import fixture_backend
print(fixture_backend.tomllib is None, fixture_backend.build_wheel(sys.argv[1]))
"""


def _build(dist: Path, into: Path, mode: str) -> dict[str, bytes]:
    into.mkdir()
    done = subprocess.run([sys.executable, "-c", BUILD, str(into), mode], cwd=dist,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    without, name = done.stdout.split()
    assert without == str(mode == "without-tomllib")
    with zipfile.ZipFile(into / name) as wheel:
        return {info.filename: wheel.read(info) for info in wheel.infolist()}


@pytest.mark.parametrize("dist", FIXTURE_DISTS, ids=lambda d: d.name)
def test_a_fixture_wheel_is_the_same_built_without_tomllib(dist: Path, tmp_path: Path) -> None:
    with_tomllib = _build(dist, tmp_path / "with", "with-tomllib")
    without = _build(dist, tmp_path / "without", "without-tomllib")
    assert without == with_tomllib
    info = next(name for name in without if name.endswith(".dist-info/entry_points.txt"))
    assert without[info].startswith(b"[plugin_host]\n") and b" = plugin_host_fixture_" in (
        without[info])
