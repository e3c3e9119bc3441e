"""Transforms: the steps between a pipeline's input and its output.

A pipeline's optional ``transforms:`` list names them in order; each page's records pass
through every one before the output writes them. ``chain`` is the host's side (the list
validated and built, then applied); the built-in transforms live beside it, one module
each (``ocsf``), and this package registers them through the ``builtin_transforms`` entry
point, as any plugin registers its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..hookspecs import hookimpl
from .ocsf import OcsfTransform

__all__ = ["plugin_host_register_transforms"]


@hookimpl
def plugin_host_register_transforms(register: Callable[[type[Any]], None]) -> None:
    """Register the built-in ``ocsf`` transform."""
    register(OcsfTransform)
