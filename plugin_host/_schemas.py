"""The JSON Schema documents shipped with plugin-host (the repository's ``schemas/``)."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

__all__ = ["load_schema"]


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """Return a bundled schema document by file name, e.g. ``pipeline.schema.json``."""
    text = resources.files("plugin_host.schemas").joinpath(name).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document
