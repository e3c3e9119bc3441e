"""The pipeline files a worker is started with: each validated in full, each with its state
on PostgreSQL, all on one database, each name once; and the cadence of each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .._exceptions import ConfigError
from .._pipeline import Pipeline, load_pipeline
from .._registry import Registry
from ..state import _url

__all__ = ["DEFAULT_EVERY", "WorkerConfig", "load_config", "tick_seconds"]

DEFAULT_EVERY = 300.0
"""Seconds between two syncs of a pipeline whose file sets no ``schedule.every``."""


@dataclass
class WorkerConfig:
    """The pipelines of a worker by name, how often each is synced, and their database."""

    pipelines: dict[str, Pipeline]
    every: dict[str, float]
    url: str  # the state database's URL: a secret

    @property
    def location(self) -> str:
        """The state database, as it may be shown (no password)."""
        return _url.display(self.url)

    @property
    def tick(self) -> int:
        """Seconds between two dispatches (see ``tick_seconds``)."""
        return tick_seconds(min(self.every.values()))


def tick_seconds(shortest: float) -> int:
    """How often the dispatcher looks for due pipelines: about a fifth of the shortest
    period, as a divisor of 60 (a cron step), from 1 s to 60 s."""
    for step in (60, 30, 20, 15, 12, 10, 6, 5, 4, 3, 2):
        if step * 5 <= shortest:
            return step
    return 1


def _database(url: str) -> tuple[str, int, str]:
    """Which database a URL names: host, port and database name."""
    parts = urlsplit(url.strip())
    return ((parts.hostname or "localhost").lower(), parts.port or 5432,
            parts.path.lstrip("/") or (parts.username or ""))


def load_config(paths: Sequence[str | Path], registry: Registry, default_every: float
                ) -> WorkerConfig:
    """Load and check every file (``ConfigError``, exit 2, naming the file at fault)."""
    if default_every <= 0:
        raise ConfigError("--every must be more than 0 seconds")
    pipelines: dict[str, Pipeline] = {}
    every: dict[str, float] = {}
    url = ""
    first: Pipeline | None = None
    for path in paths:
        pipeline = load_pipeline(path, registry)
        if not pipeline.state_url:
            raise ConfigError(
                f"{pipeline.path}: a worker needs the state on PostgreSQL (state: {{url: "
                "...}}), shared by every worker; this file keeps it in a SQLite file")
        if pipeline.name in pipelines:
            raise ConfigError(f"{pipeline.path}: pipeline name {pipeline.name} is also the "
                              f"name of {pipelines[pipeline.name].path}; names must differ")
        if first is None:
            first, url = pipeline, pipeline.state_url
        elif _database(pipeline.state_url) != _database(url):
            raise ConfigError(
                f"{pipeline.path}: its state database {_url.display(pipeline.state_url)} is "
                f"not {first.path}'s ({_url.display(url)}): a worker's pipelines share one")
        pipelines[pipeline.name] = pipeline
        every[pipeline.name] = pipeline.every or float(default_every)
    if not pipelines:
        raise ConfigError("a worker needs at least one pipeline file")
    return WorkerConfig(pipelines, every, url)
