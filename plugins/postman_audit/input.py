"""``PostmanAuditInput``: pages of Postman audit events and the checkpoint each one earns."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from plugin_host import InputContext, Page

from .client import InvalidCursor, PostmanClient, RetentionRefused
from .cursor import SweepWalker
from .start import RETENTION_DAYS, kept_from, oldest_since, retention_floor, start_cursor
from .timeutil import format_instant, parse_start, since_date, until_date

__all__ = ["RETENTION_DAYS", "PostmanAuditInput"]


def _manifest() -> dict[str, Any]:
    text = resources.files("plugin_host.schemas").joinpath("postman_audit.manifest.json")
    manifest: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return manifest


def _loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class PostmanAuditInput:
    """Collects a Postman team's audit logs incrementally, each event exactly once."""

    manifest: ClassVar[Mapping[str, Any]] = _manifest()

    @classmethod
    def validate_settings(
        cls, settings: Mapping[str, Any], base_dir: Path
    ) -> Iterable[tuple[str, str]]:
        """Checks beyond the schema: a real, past start; https (or http on loopback only)."""
        start = settings.get("backfill_start_time")
        if isinstance(start, str):
            try:
                instant = parse_start(start)
            except ValueError as exc:
                yield "backfill_start_time", str(exc)
            else:
                now = datetime.now(timezone.utc)
                if instant > now:
                    yield "backfill_start_time", (
                        f"is in the future ({format_instant(int(instant.timestamp()))} is after "
                        f"now, {format_instant(int(now.timestamp()))}); use a past date-time"
                    )
        url = str(settings.get("base_url", ""))
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            yield "base_url", "must be an https:// address such as https://api.getpostman.com"
        elif parts.scheme == "http" and not _loopback(parts.hostname):
            yield "base_url", (
                "plain http is refused for a non-loopback host, so the API key never crosses "
                "a network in clear: use https://"
            )
        elif parts.username or parts.password or parts.query or parts.fragment:
            yield "base_url", "must hold no user, password, query or fragment"

    @classmethod
    @contextlib.contextmanager
    def demo_environment(
        cls, folder: Path, events: int
    ) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
        """Start the bundled emulator (``events`` over 30 days); yield settings and secrets."""
        from .emulator import EmulatorConfig, PostmanEmulator

        config = EmulatorConfig(events=events, days=30)
        with PostmanEmulator(config) as emulator:
            start = datetime.now(timezone.utc) - timedelta(days=31)  # all of its 30 days
            settings = {
                "base_url": emulator.url,
                "backfill_start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "page_size": 300,
            }
            yield settings, {"api_key": config.api_key}

    @classmethod
    def ocsf_mapping(cls) -> Callable[[Mapping[str, Any]], list[dict[str, Any]]]:
        """The OCSF 1.5.0 mapping of the events, for the ``ocsf`` transform (``ocsf.py``)."""
        from .ocsf import map_record

        return map_record

    def __init__(
        self,
        settings: Mapping[str, Any],
        secrets: Mapping[str, str],
        context: InputContext,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.context = context
        self.log = context.logger
        self.clock = clock
        self.page_size = int(settings.get("page_size", 100))
        self.lookback = int(settings.get("lookback_minutes", 30)) * 60
        self.client = PostmanClient(settings, secrets["api_key"], context, transport)

    def check(self) -> None:
        """One authenticated call: the newest event, ``limit=1``."""
        self.client.audit_logs({"limit": 1, "orderBy": "desc"})

    def close(self) -> None:
        """Close connections."""
        self.client.close()

    # -- the sweep ----------------------------------------------------------------------

    def read(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        """Page newest-first down to the target; yield each page with its checkpoint."""
        now = int(self.clock())
        start = self.settings.get("backfill_start_time")
        cursor, notes = start_cursor(checkpoint, start if isinstance(start, str) else None,
                                     now, self.lookback, self.context.pipeline_name)
        for level, text in notes:
            self.log.log(level, "%s", text)
        walker = SweepWalker(cursor, self.lookback, now)
        sweep = walker.sweep
        oldest = oldest_since(kept_from(now))
        params: dict[str, Any] = {
            "orderBy": "desc",
            "limit": self.page_size,
            "since": since_date(sweep.target, oldest),
        }
        if sweep.cursor is not None:
            params["cursor"] = sweep.cursor
        elif walker.skipping and sweep.lower is not None:
            params["until"] = until_date(sweep.lower)
        adapted = False
        delivered = 0
        while True:
            try:
                trails, next_cursor = self.client.audit_logs(params)
            except InvalidCursor:
                if "cursor" not in params or not sweep.resumed or walker.skipping:
                    raise
                self.log.warning("Postman refused the saved cursor; rescanning from %s",
                                 None if sweep.lower is None else format_instant(sweep.lower))
                walker.rescan_from_lower()
                params.pop("cursor", None)
                if sweep.lower is not None:
                    params["until"] = until_date(sweep.lower)
                continue
            except RetentionRefused as exc:
                if adapted or not exc.oldest:
                    raise
                adapted = True
                first_day = date.fromisoformat(exc.oldest)
                oldest, floor = oldest_since(first_day), retention_floor(first_day)
                if floor > cursor.floor:
                    self.log.warning(
                        "Postman keeps audit logs only from %s: starting at %s instead of %s",
                        exc.oldest, format_instant(floor), format_instant(cursor.floor))
                    cursor.floor = floor
                    sweep.target = max(sweep.target, floor)
                params["since"] = since_date(sweep.target, oldest)
                continue
            outcome = walker.page(trails, next_cursor is not None)
            delivered += len(outcome.deliver)
            self._progress(delivered, walker)
            if outcome.done:
                yield Page(outcome.deliver, walker.finish())
                return
            walker.use_cursor(next_cursor)
            params["cursor"] = next_cursor
            yield Page(outcome.deliver, walker.checkpoint())

    def _progress(self, delivered: int, walker: SweepWalker) -> None:
        if not self.context.progress_enabled:
            return
        sweep, stats = walker.sweep, self.context.stats
        share = ""
        if sweep.top is not None and sweep.lower is not None and sweep.top > sweep.target:
            done = (sweep.top - sweep.lower) / (sweep.top - sweep.target)
            back_to = format_instant(sweep.target)
            share = f", {min(100.0, 100 * done):.0f}% of the way back to {back_to}"
        at = "" if sweep.lower is None else f", at {format_instant(sweep.lower)}"
        waits = stats.rate_limit_waits
        said = f", {waits} rate-limit wait{'s' if waits != 1 else ''}" if waits else ""
        events = f"{delivered} event{'s' if delivered != 1 else ''}"
        self.context.progress(f"postman_audit: {events}{at}{share}{said}")
