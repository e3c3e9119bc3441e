"""The Postman input's console scripts: ``tap-postman-audit`` (Singer) and
``source-postman-audit`` (Airbyte), for Meltano's ``executable`` and PyAirbyte's
``local_executable``, which take a program without arguments."""

from __future__ import annotations

from plugin_host.protocols import airbyte_main, singer_main

__all__ = ["source", "tap"]


def tap() -> int:
    """``tap-postman-audit ARGS``: ``plugin-host singer postman_audit ARGS``."""
    return singer_main("postman_audit")


def source() -> int:
    """``source-postman-audit ARGS``: ``plugin-host airbyte postman_audit ARGS``."""
    return airbyte_main("postman_audit")
