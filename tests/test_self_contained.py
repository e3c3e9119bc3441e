"""A clone is enough: no test, benchmark or module reads a path outside the repository.

The suite once read a reference folder beside the checkout, so it passed only where that
folder happened to be. ``.ci/run`` runs the suite from a bare clone; this test catches the
same mistake on any machine, without a clone, by reading the code: every path built from
``__file__`` (``parents[N]``, ``.parent`` chains, ``/ ".."``, names bound to such paths)
must stay inside the repository, and no string names the outside reference folder.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("plugin_host", "plugins", "schemas", "tests", "benchmarks")
OUTSIDE_FRAGMENTS = ("shared/reference", "../shared", "..\\shared")
REFERENCE = ROOT / "tests" / "reference"


def _inside(path: Path) -> bool:
    return path == ROOT or ROOT in path.parents


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes (a module's, class's or function's first string)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            found.add(id(body[0].value))
    return found


class _Paths:
    """Evaluates the path expressions of one module that start from ``__file__``."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.names: dict[str, Path] = {}

    def value(self, node: ast.AST) -> Path | None:
        """The path ``node`` evaluates to, when it is built from ``__file__``; else None."""
        if isinstance(node, ast.Name):
            return self.file if node.id == "__file__" else self.names.get(node.id)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            base = self.value(node.value)
            return base.parent if base else None
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "parents" and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, int):
            base = self.value(node.value.value)
            if base is None:
                return None
            level = node.slice.value
            return base.parents[level] if level < len(base.parents) else Path(base.anchor)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            base = self.value(node.left)
            if base is not None and isinstance(node.right, ast.Constant) \
                    and isinstance(node.right.value, str):
                return Path(os.path.normpath(base / node.right.value))
        return None

    def _call(self, node: ast.Call) -> Path | None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("Path", "PurePath") and len(node.args) == 1:
            return self.value(node.args[0])
        if isinstance(func, ast.Attribute) and func.attr in ("resolve", "absolute"):
            return self.value(func.value)
        if isinstance(func, ast.Attribute) and func.attr in ("dirname", "abspath", "realpath") \
                and len(node.args) == 1:
            base = self.value(node.args[0])
            if base is None:
                return None
            return base.parent if func.attr == "dirname" else base
        return None


def outside_references(source: str, file: Path) -> list[str]:
    """``line: what`` for each place ``source`` (the text of ``file``) leaves the repository."""
    tree = ast.parse(source)
    paths = _Paths(file)
    for statement in getattr(tree, "body", []):  # module-level names, in order
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
                and isinstance(statement.targets[0], ast.Name):
            bound = paths.value(statement.value)
            if bound is not None:
                paths.names[statement.targets[0].id] = bound
    docstrings = _docstrings(tree)
    problems = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings:
            problems += [f"{line}: names {fragment!r}" for fragment in OUTSIDE_FRAGMENTS
                         if fragment in node.value]
        elif isinstance(node, ast.expr) and not isinstance(node, ast.Name):
            path = paths.value(node)
            if path is not None and not _inside(path):
                problems.append(f"{line}: {ast.unparse(node)} is {path}, outside the repository")
    return sorted(set(problems), key=lambda p: int(p.split(":")[0]))


def _code_files() -> Iterator[Path]:
    for folder in CODE_FOLDERS:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_no_test_benchmark_or_module_reads_outside_the_repository() -> None:
    problems = []
    for file in _code_files():
        if file == Path(__file__).resolve():  # this file names the fragments it looks for
            continue
        found = outside_references(file.read_text(encoding="utf-8"), file)
        problems += [f"{file.relative_to(ROOT)}:{p}" for p in found]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    problems += [f".ci/run names {f!r}" for f in OUTSIDE_FRAGMENTS if f in ci]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", [
    'REFERENCE = Path(__file__).resolve().parents[2] / "spec.json"',
    "HERE = Path(__file__).resolve()\nUP = HERE.parent.parent.parent",
    'ROOT = Path(__file__).resolve().parents[1]\nOTHER = ROOT.parent / "sibling"',
    'DATA = Path(__file__).parent / ".." / ".." / "data"',
    "import os\nUP = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))",
    'SPEC = "../shared/spec.json"',
    'SPEC = "/somewhere/shared/reference/spec.json"',
])
def test_each_way_out_of_the_repository_is_caught(source: str) -> None:
    assert outside_references(source, ROOT / "tests" / "test_example.py")


@pytest.mark.parametrize("source", [
    'ROOT = Path(__file__).resolve().parents[1]\nSPEC = ROOT / "tests" / "reference"',
    'HERE = Path(__file__).parent\nDATA = HERE / "reference" / ".." / "fixtures"',
    '"""Copied from ../shared/reference (see its README)."""',
    'def f(p: Path) -> Path:\n    return p.parents[5]',
])
def test_paths_inside_the_repository_and_docstrings_pass(source: str) -> None:
    assert outside_references(source, ROOT / "tests" / "test_example.py") == []


def test_the_reference_files_are_the_ones_their_readme_describes() -> None:
    readme = (REFERENCE / "README.md").read_text(encoding="utf-8")
    noted = dict(re.findall(r"^## `([^`]+)`.*?This file's sha256: `([0-9a-f]{64})`",
                            readme, flags=re.MULTILINE | re.DOTALL))
    files = sorted(p.name for p in REFERENCE.iterdir() if p.name != "README.md")
    assert sorted(noted) == files
    for name, digest in noted.items():
        assert hashlib.sha256((REFERENCE / name).read_bytes()).hexdigest() == digest, name
