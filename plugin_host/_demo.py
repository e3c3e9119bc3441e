"""``plugin-host demo``: an input's bundled emulator, a pipeline against it, and a summary.

Each demo starts afresh in its folder (the previous events and state are removed).
An input offers a demo by defining ``demo_environment(folder, events)``: a context
manager that starts its emulator and yields ``(settings, secrets)`` for a pipeline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from ._exceptions import ConfigError
from ._pipeline import load_pipeline
from ._registry import discover
from ._runner import run_once
from ._service import progress_line

__all__ = ["run_demo"]


def run_demo(input_name: str, folder: Path, *, events: int = 5000) -> int:
    """Run ``input_name`` against its emulator, write JSON lines to ``folder``, print a summary."""
    registry = discover()
    registered = registry.input(input_name)
    environment = getattr(registered.cls, "demo_environment", None)
    if environment is None:
        raise ConfigError(f"input {input_name} has no bundled emulator to run a demo against")
    folder = folder.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in ("events.jsonl", ".events.jsonl.owner", "state.db", "state.db-wal",
                     "state.db-shm"):
        (folder / leftover).unlink(missing_ok=True)  # each demo starts afresh
    with environment(folder, events) as (settings, secrets):
        secrets_path = folder / "demo-api-key.txt"
        secrets_path.write_text(str(secrets.get("api_key", "")) + "\n")
        secrets_path.chmod(0o600)
        doc: dict[str, Any] = {
            "version": 1,
            "name": f"{input_name}-demo",
            "input": {
                "type": input_name,
                "settings": settings,
                "secrets": {name: {"file": secrets_path.name} for name in secrets},
            },
            "output": {"type": "jsonl", "settings": {"path": "events.jsonl"}},
            "state": {"path": "state.db"},
        }
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
