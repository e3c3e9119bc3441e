"""``plugin-host demo``: an input's bundled emulator, a pipeline against it, and a summary.

Each demo starts afresh in its folder (the previous events and state are removed).
An input offers a demo by implementing ``HasDemo``: ``demo_environment(folder, events)``,
a context manager that starts its emulator and yields ``(settings, secrets)`` for a
pipeline. Each secret goes to a file of its own (mode 0600), which the pipeline names.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ._contract import HasDemo
from ._exceptions import ConfigError
from ._pipeline import load_pipeline
from ._registry import discover
from ._runner import run_once
from ._service import progress_line

__all__ = ["run_demo"]


def run_demo(input_name: str, folder: Path, *, events: int = 5000, ocsf: bool = False) -> int:
    """Run ``input_name`` against its emulator, write JSON lines to ``folder``, print a summary;
    with ``ocsf``, through the ``ocsf`` transform (OCSF events, by the input's mapping)."""
    registry = discover()
    registered = registry.input(input_name)
    cls = registered.cls
    if not isinstance(cls, HasDemo):
        raise ConfigError(f"input {input_name} has no bundled emulator to run a demo against")
    folder = folder.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in ("events.jsonl", ".events.jsonl.owner", "state.db", "state.db-wal",
                     "state.db-shm"):
        (folder / leftover).unlink(missing_ok=True)  # each demo starts afresh
    with cls.demo_environment(folder, events) as (settings, secrets):
        refs = _write_secrets(folder, secrets)
        doc: dict[str, Any] = {
            "version": 1,
            "name": f"{input_name}-demo",
            "input": {
                "type": input_name,
                "settings": dict(settings),
                "secrets": refs,
            },
            "output": {"type": "jsonl", "settings": {"path": "events.jsonl"}},
            "state": {"path": "state.db"},
        }
        if ocsf:
            doc["transforms"] = [{"type": "ocsf"}]
        pipeline_path = folder / "pipeline.yaml"
        pipeline_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        pipeline = load_pipeline(pipeline_path, registry)
        progress = sys.stderr.isatty()
        with progress_line(progress):
            summary = run_once(pipeline, progress=progress)
    out = folder / "events.jsonl"
    print(json.dumps({**summary.as_dict(), "output": str(out), "pipeline_file": str(pipeline_path)},
                     indent=2))
    print(summary.line(), file=sys.stderr)
    return 0


def _file_names(names: Iterable[str]) -> dict[str, str]:
    """A file name in the demo folder for each secret: ``demo-NAME.secret`` for a plain
    name, else a numbered one; never two alike, even on a case-insensitive disk."""
    files: dict[str, str] = {}
    taken: set[str] = set()
    for index, name in enumerate(names):
        stem = name if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name) else f"secret-{index}"
        file, n = f"demo-{stem}.secret", 1
        while file.lower() in taken:
            file, n = f"demo-{stem}-{n}.secret", n + 1
        taken.add(file.lower())
        files[name] = file
    return files


def _write_secrets(folder: Path, secrets: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Write each secret to a file of its own, readable by its owner alone (0600 from the
    moment it exists); return the pipeline file's references to them."""
    refs: dict[str, dict[str, str]] = {}
    for name, file in _file_names(secrets).items():
        fd = os.open(folder / file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                     0o600)
        try:
            os.fchmod(fd, 0o600)  # a file left by an earlier demo keeps its mode otherwise
            os.write(fd, (str(secrets[name]) + "\n").encode("utf-8"))
        finally:
            os.close(fd)
        refs[name] = {"file": file}
    return refs
