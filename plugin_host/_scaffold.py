"""``plugin-host new-input NAME``: write a new input as its own distribution.

The templates are package data under ``plugin_host/templates/new_input/`` with a
``.tmpl`` suffix (so neither pytest nor ruff picks them up), rendered with
``string.Template``: ``${name}``, ``${class_name}``, ``${dist_name}``, ``${title}``,
``${env_name}``, ``${host_version}``, ``${transform_name}``, ``${transform_class}``,
``${plugin_hooks}`` and ``${transform_rows}`` (the README's words for either). The
``package/`` folder becomes ``NAME/``, and ``gitignore`` becomes ``.gitignore`` (package data
leaves out names that start with a dot). With ``--transform``, the files of
``templates/new_input_transform/`` are written too (its ``plugin.py`` in place of the plain
one): a transform, ``NAME_fields``, registered beside the input, with its tests.
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
TRANSFORM_ROOT = "templates/new_input_transform"
SUFFIX = ".tmpl"
RENAMED = {"package": None, "gitignore": ".gitignore"}  # None: the input's name


@dataclass(frozen=True)
class Scaffold:
    """What ``new_input`` wrote."""

    name: str
    folder: Path
    files: list[Path]
    distribution: str
    transform: bool = False

    def next_steps(self) -> str:
        """The commands from here to a discovered input passing the contract suite."""
        made = f"input {self.name}" + (f" and transform {self.name}_fields"
                                       if self.transform else "")
        return "\n".join([
            f"created {made} ({self.distribution}) in {self.folder}",
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


def _values(name: str, transform: bool) -> dict[str, str]:
    words = name.split("_")
    rows = (f"\n| `{name}/transform.py` | `{name}_fields`, a transform: keeps the fields its "
            "settings name |\n| `tests/test_transform.py` | the transform: discovered, "
            "validated, run in a pipeline |")
    return {
        "plugin_hooks": ("`plugin_host_register_inputs` and `plugin_host_register_transforms` "
                         "hook implementations" if transform
                         else "`plugin_host_register_inputs` hook implementation"),
        "transform_rows": rows if transform else "",
        "name": name,
        "class_name": "".join(w.capitalize() for w in words if w) + "Input",
        "dist_name": "plugin-host-" + name.replace("_", "-"),
        "title": " ".join(w.capitalize() for w in words if w),
        "env_name": name.upper(),
        "host_version": __version__,
        "transform_name": f"{name}_fields",
        "transform_class": "".join(w.capitalize() for w in words if w) + "FieldsTransform",
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


def new_input(name: str, folder: Path | None = None, *, transform: bool = False) -> Scaffold:
    """Write input ``name`` into ``folder`` (default ``./name``), with a transform beside it
    when ``transform``; refuse a non-empty folder."""
    check_name(name)
    if transform and len(name) > 56:
        raise ConfigError(f"input name {name!r} is too long for its transform's name "
                          f"{name}_fields (at most 63 characters); choose a shorter one")
    folder = (folder if folder is not None else Path(name)).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(f"{folder} is not empty; give an empty or new folder with --dir")
    values = _values(name, transform)
    templates = dict(_templates(resources.files("plugin_host").joinpath(TEMPLATE_ROOT)))
    if transform:  # its files beside the input's, its plugin.py in place of the plain one
        templates.update(_templates(resources.files("plugin_host").joinpath(TRANSFORM_ROOT)))
    written: list[Path] = []
    try:
        for parts, template in sorted(templates.items(), key=lambda item: item[0]):
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
    return Scaffold(name, folder, written, values["dist_name"], transform)
