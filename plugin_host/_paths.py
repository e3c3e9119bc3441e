"""Path helpers: resolve against the pipeline's folder, and tell whether a file can be created."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["creatable_problem", "resolve_path"]


def resolve_path(value: str, base_dir: Path) -> Path:
    """A path from a pipeline file: ``~`` expanded, relative ones taken from ``base_dir``."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base_dir / path)


def creatable_problem(path: Path) -> str | None:
    """Why ``path`` could not be created or written as a file, or None when it can."""
    try:
        return _creatable_problem(path)
    except OSError as exc:  # a name too long, a loop of links, ...
        return f"{path} cannot be used ({exc.strerror or type(exc).__name__})"


def _creatable_problem(path: Path) -> str | None:
    if path.exists():
        if path.is_dir():
            return f"{path} is a folder, not a file"
        if not os.access(path, os.W_OK):
            return f"{path} is not writable"
        return None
    ancestor = path.parent
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            return f"no existing folder above {path}"
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, so folder {path.parent} cannot be created"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"folder {ancestor} is not writable, so {path} cannot be created"
    return None
