"""pyproject.toml's packaging tables name what is there: every package, and no other data.

Python 3.10 has no tomllib, so the few tables read here are parsed by a tiny reader of
strings and lists of them (checked against tomllib where it exists).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = REPO / "pyproject.toml"


def _lines(text: str) -> list[str]:
    """The stripped lines, a list that spans lines joined into one, comments dropped."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if lines and lines[-1].count("[") > lines[-1].count("]") and "=" in lines[-1]:
            lines[-1] += " " + line
        else:
            lines.append(line)
    return lines


def _tables(text: str) -> dict[str, dict[str, Any]]:
    """Each ``[table]``'s ``key = value`` lines whose value is a string, a list of strings
    or an inline table of strings (what the packaging tables hold)."""
    tables: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] = {}
    for line in _lines(text):
        if line.startswith("[["):  # an array of tables: not read
            current = {}
        elif header := re.fullmatch(r"\[([^\[\]]+)\]", line):
            current = tables.setdefault(header.group(1).strip(), {})
        elif entry := re.fullmatch(r'("[^"]+"|[\w.-]+)\s*=\s*([\[{"].*[\]}"])', line):
            key, value = entry.group(1).strip('"'), entry.group(2)
            if value.startswith("{"):  # an inline table: {"key" = "value", key = "value"}
                value = re.sub(r'("[^"]*"|[\w.-]+)\s*=\s*',
                               lambda m: '"' + m.group(1).strip('"') + '": ', value)
            current[key] = ast.literal_eval(value)
    return tables


def packaging() -> tuple[dict[str, str], list[str], dict[str, list[str]]]:
    """pyproject's package-dir, packages and package-data."""
    tables = _tables(PYPROJECT.read_text(encoding="utf-8"))
    setuptools = tables["tool.setuptools"]
    return setuptools["package-dir"], setuptools["packages"], tables[
        "tool.setuptools.package-data"]


def package_folder(package: str, package_dir: dict[str, str]) -> Path:
    """Where setuptools takes ``package`` from: its package-dir entry, or its parent's."""
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in package_dir:
            return REPO.joinpath(package_dir[prefix], *parts[n:])
    return REPO.joinpath(*parts)


def test_the_tiny_reader_reads_what_tomllib_reads() -> None:
    try:
        tomllib: Any = importlib.import_module("tomllib")
    except ModuleNotFoundError:  # Python 3.10: the reader alone
        tomllib = None
    package_dir, packages, package_data = packaging()
    assert package_dir["plugin_host"] == "plugin_host" and "plugin_host" in packages
    assert package_data["plugin_host.schemas"] == ["*.json"]
    if tomllib is not None:
        real = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]
        assert (package_dir, packages, package_data) == (
            real["package-dir"], real["packages"], real["package-data"])


def test_every_package_data_glob_matches_a_file() -> None:
    package_dir, _, package_data = packaging()
    empty = [f"{package}: {pattern}" for package, patterns in package_data.items()
             for pattern in patterns
             if not any(p.is_file() for p in package_folder(package, package_dir).glob(pattern))]
    assert empty == [], f"pyproject.toml names package data that does not exist: {empty}"


def test_every_package_is_listed_and_every_listed_package_exists() -> None:
    package_dir, packages, _ = packaging()
    missing = [p for p in packages
               if not (package_folder(p, package_dir) / "__init__.py").is_file()]
    assert missing == [], f"listed in pyproject.toml, but not a package here: {missing}"
    found = set()
    for top in {p for p in packages if "." not in p}:
        root = package_folder(top, package_dir)
        for init in root.rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(".".join([top, *init.parent.relative_to(root).parts]))
    unlisted = sorted(found - set(packages))
    assert unlisted == [], f"packages the wheel would leave out (add them to packages): {unlisted}"
