"""Where a run of the Postman input starts, as pure functions on plain values.

``start_cursor`` turns the committed checkpoint and ``backfill_start_time`` into the cursor a
run starts from, with the lines to log about it; the retention rules say how far back a
sweep may reach. Postman documents 180 days of audit logs; what its API enforces is not
documented (``RetentionRefused`` carries the oldest day it names when it refuses).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from plugin_host import ConfigError

from .cursor import Cursor, initial_cursor
from .timeutil import format_instant, parse_start

__all__ = [
    "RETENTION_DAYS", "RETENTION_MARGIN_DAYS", "Note", "expired_before", "kept_from",
    "oldest_since", "retention_floor", "start_cursor", "start_floor",
]

RETENTION_DAYS = 180
RETENTION_MARGIN_DAYS = 2  # start this far inside the retention floor, so `since` is accepted
DAY = 86400

Note = tuple[int, str]  # a line to log: its logging level and its text


def _day(epoch: int) -> date:
    return datetime.fromtimestamp(epoch, timezone.utc).date()


def expired_before(now: int) -> int:
    """The instant before which the documented retention has let events expire."""
    return now - RETENTION_DAYS * DAY


def kept_from(now: int) -> date:
    """The first day of audit logs Postman keeps under its documented retention."""
    return _day(expired_before(now))


def start_floor(now: int) -> int:
    """The oldest instant a first run starts at: ``RETENTION_MARGIN_DAYS`` inside the
    documented retention, so the ``since`` it sends is accepted."""
    return now - (RETENTION_DAYS - RETENTION_MARGIN_DAYS) * DAY


def oldest_since(first_day: date) -> date:
    """The oldest ``since`` to send when Postman keeps logs from ``first_day`` on: the day
    after it, accepted whether Postman reads the bound as inclusive or exclusive."""
    return first_day + timedelta(days=1)


def retention_floor(first_day: date) -> int:
    """The oldest instant a sweep can collect when Postman keeps logs from ``first_day`` on.

    A sweep sends as ``since`` the day before its target's day (``since_date``), so the
    target must be on the day after the oldest ``since`` or later: that day's midnight, UTC.
    """
    day = oldest_since(first_day) + timedelta(days=1)
    return int(datetime.combine(day, datetime.min.time(), timezone.utc).timestamp())


def start_cursor(
    checkpoint: Mapping[str, Any] | None,
    backfill_start: str | None,
    now: int,
    lookback: int,
    pipeline: str,
) -> tuple[Cursor, list[Note]]:
    """The cursor a run starts from, and the lines to log about it.

    The first run starts at ``backfill_start`` (at the retention floor if it is older), or
    now without one; later runs resume from ``checkpoint``. ConfigError for a start in the
    future, a checkpoint this version does not read, or a start moved before where the
    pipeline began collecting (``pipeline`` names it in the way out).
    """
    configured = None
    if backfill_start is not None:
        instant = int(parse_start(backfill_start).timestamp())
        configured = instant, format_instant(instant)
    if checkpoint is None:
        return _first_cursor(configured, now)
    notes: list[Note] = []
    try:
        cursor = Cursor.from_json(checkpoint)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"the saved state is not a postman_audit checkpoint this version reads ({exc}); "
            f"run `plugin-host state reset {pipeline}` to start afresh"
        ) from None
    if configured is not None:
        instant, text = configured
        stored = cursor.backfill_start
        began = int(parse_start(stored).timestamp()) if stored else cursor.floor
        if instant < began:
            raise ConfigError(
                f"$.input.settings.backfill_start_time moved earlier, to {text}, but this "
                f"pipeline has collected since {format_instant(began)}: events before that "
                "were never requested and an incremental run will not go back for them. "
                f"To backfill from {text}, run `plugin-host state reset "
                f"{pipeline}` (the next run then delivers everything since "
                f"{text} again, including events already delivered)"
            )
        if text != stored and instant > began:
            notes.append((logging.WARNING, (
                f"backfill_start_time {text} has no effect: this pipeline already collects "
                f"since {format_instant(began)} (reset its state to start again)")))
    target = cursor.target(lookback)
    if target < expired_before(now):
        notes.append((logging.WARNING, (
            f"the last run reached {format_instant(target)}, beyond Postman's "
            f"{RETENTION_DAYS}-day retention: events from then until "
            f"{format_instant(expired_before(now))} may have expired before they could be "
            "collected")))
    return cursor, notes


def _first_cursor(configured: tuple[int, str] | None, now: int) -> tuple[Cursor, list[Note]]:
    """The cursor of a pipeline's first run: from the configured start, or from now."""
    if configured is None:
        return initial_cursor(now, None), [(logging.INFO, (
            f"no backfill_start_time: collecting from now on ({format_instant(now)})"))]
    instant, text = configured
    if instant > now:
        raise ConfigError(f"$.input.settings.backfill_start_time: {text} is in the future")
    floor = start_floor(now)
    if instant < floor:
        return initial_cursor(floor, text), [(logging.WARNING, (
            f"backfill_start_time {text} is older than Postman's {RETENTION_DAYS}-day "
            f"audit-log retention; starting at the retention floor {format_instant(floor)}"))]
    return initial_cursor(instant, text), []
