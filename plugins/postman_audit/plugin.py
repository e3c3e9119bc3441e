"""The entry-point module: registers the Postman audit-log input with plugin-host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plugin_host import hookimpl

from .input import PostmanAuditInput

__all__ = ["plugin_host_register_inputs"]


@hookimpl
def plugin_host_register_inputs(register: Callable[[type[Any]], None]) -> None:
    """Register ``postman_audit``."""
    register(PostmanAuditInput)
