"""State stores: where a pipeline's checkpoint and output position are committed.

A pipeline's ``state:`` section names one: ``path:`` (the default) is a SQLite file on this
machine (``sqlite.py``); ``url:`` is a PostgreSQL database that runs on many machines share,
with leases and fencing (``postgres.py``, its driver imported only then). Both implement the
``StateStore`` protocol of ``plugin_host._contract``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._contract import StateStore

if TYPE_CHECKING:
    from .._pipeline import Pipeline

__all__ = ["RATE_LIMIT_KEY", "open_store", "rate_limit_keys", "store_location"]

RATE_LIMIT_KEY = "x-rate-limit-key"
"""A secret's manifest annotation: this secret is the key an upstream's rate limit counts."""


def open_store(pipeline: Pipeline, *, create: bool = True) -> StateStore:
    """The state store a pipeline's ``state:`` names, opened (tables created if ``create``)."""
    if pipeline.state_url:
        from .postgres import PostgresStateStore

        return PostgresStateStore(pipeline.state_url, lease_seconds=pipeline.lease_seconds,
                                  create=create)
    from .sqlite import StateStore as SqliteStateStore

    return SqliteStateStore(pipeline.state_path, create=create)


def store_location(pipeline: Pipeline) -> str:
    """Where a pipeline's state is, to show a person: a path, or a URL without password."""
    if pipeline.state_url:
        from ._url import display

        return display(pipeline.state_url)
    return str(pipeline.state_path)


def rate_limit_keys(manifest: Mapping[str, Any], secrets: Mapping[str, str]) -> list[str]:
    """The lease names of the secrets an input's manifest marks as its rate-limit key
    (``x-rate-limit-key: true``): a hash of each value, never the value."""
    from .postgres import key_lease_name

    props = (manifest.get("secrets") or {}).get("properties") or {}
    return sorted(key_lease_name(secrets[name]) for name, prop in props.items()
                  if isinstance(prop, Mapping) and prop.get(RATE_LIMIT_KEY) is True
                  and name in secrets)
