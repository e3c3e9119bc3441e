"""``plugin-host new-input NAME``: write a new input as its own distribution.

The templates are package data under ``plugin_host/templates/new_input/`` with a
``.tmpl`` suffix (so neither pytest nor ruff picks them up), rendered with
``string.Template``: ``${name}``, ``${class_name}``, ``${dist_name}``, ``${title}``,
``${env_name}`` and ``${host_version}``. The ``package/`` folder becomes ``NAME/``, and
``gitignore`` becomes ``.gitignore`` (package data leaves out names that start with a dot).
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import string
import sys
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from . import __version__
from ._exceptions import ConfigError

__all__ = ["NAME_PATTERN", "Scaffold", "check_name", "new_input"]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TEMPLATE_ROOT = "templates/new_input"
SUFFIX = ".tmpl"
RENAMED = {"package": None, "gitignore": ".gitignore"}  # None: the input's name


@dataclass(frozen=True)
class Scaffold:
    """What ``new_input`` wrote."""

    name: str
    folder: Path
    files: list[Path]
    distribution: str

    def next_steps(self) -> str:
        """The commands from here to a discovered input passing the contract suite."""
        return "\n".join([
            f"created input {self.name} ({self.distribution}) in {self.folder}",
            "next, in the virtual environment where plugin-host is installed:",
            f"  cd {self.folder}",
            "  pip install -e .            # every command from here runs in this folder",
            f"  plugin-host inputs          # lists {self.name}",
            "  python -m pytest            # the contract suite, against the fake server",
            f"  plugin-host demo {self.name}",
        ])


def check_name(name: str) -> None:
    """Refuse a name that is not a usable input, package and entry-point name."""
    if not NAME_PATTERN.match(name):
        raise ConfigError(
            f"input name {name!r} is not valid: use a lowercase letter, then lowercase "
            "letters, digits or underscores (at most 63 characters), such as acme_events"
        )
    if keyword.iskeyword(name) or name in sys.stdlib_module_names or name in (
        "plugin_host", "tests", "test"
    ):
        raise ConfigError(f"input name {name!r} is taken by Python itself; choose another")
    try:
        taken = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        taken = True
    if taken:
        raise ConfigError(
            f"input name {name!r} is already an importable module here; choose another"
        )


def _values(name: str) -> dict[str, str]:
    words = name.split("_")
    return {
        "name": name,
        "class_name": "".join(w.capitalize() for w in words if w) + "Input",
        "dist_name": "plugin-host-" + name.replace("_", "-"),
        "title": " ".join(w.capitalize() for w in words if w),
        "env_name": name.upper(),
        "host_version": __version__,
    }


def _templates(folder: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                               Traversable]]:
    found: list[tuple[tuple[str, ...], Traversable]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            found += _templates(entry, (*prefix, entry.name))
        elif entry.name.endswith(SUFFIX):
            found.append(((*prefix, entry.name[: -len(SUFFIX)]), entry))
    return found


def new_input(name: str, folder: Path | None = None) -> Scaffold:
    """Write input ``name`` into ``folder`` (default ``./name``); refuse a non-empty folder."""
    check_name(name)
    folder = (folder if folder is not None else Path(name)).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(f"{folder} is not empty; give an empty or new folder with --dir")
    values = _values(name)
    root = resources.files("plugin_host").joinpath(TEMPLATE_ROOT)
    written: list[Path] = []
    try:
        for parts, template in _templates(root):
            first = RENAMED.get(parts[0], parts[0]) or name
            relative = Path(first, *parts[1:])
            text = string.Template(template.read_text(encoding="utf-8")).substitute(values)
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            written.append(target)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the new input into {folder} ({exc.strerror or exc})"
        ) from None
    return Scaffold(name, folder, written, values["dist_name"])
