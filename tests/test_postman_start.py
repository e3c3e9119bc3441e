"""Where a run of the Postman input starts, alone (``postman_audit.start``): plain values in,
plain values out.

Postman's ``since``/``until`` are dates (``YYYY-MM-DD``); whether they are inclusive is not
documented, nor is the retention the API enforces (180 days documented, 90 seen in the UI;
a refusal names the oldest day, "cannot be older than YYYY-MM-DD"). The floors here must
hold under every reading.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import date, datetime, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from postman_audit.cursor import Cursor, Sweep
from postman_audit.start import (
    RETENTION_DAYS,
    RETENTION_MARGIN_DAYS,
    expired_before,
    kept_from,
    oldest_since,
    retention_floor,
    start_cursor,
    start_floor,
)
from postman_audit.timeutil import format_instant, parse_start, since_date

from plugin_host import ConfigError

DAY = 86400
NOW = int(datetime(2026, 6, 15, 12, 30, 5, tzinfo=timezone.utc).timestamp())
LOOKBACK = 1800


def at(text: str) -> int:
    return int(parse_start(text).timestamp())


def first_instant_served(since: str, reading: str) -> int:
    """The oldest instant Postman serves for a date-only ``since`` under one reading."""
    midnight = at(since)
    return midnight if reading == "inclusive" else midnight + DAY


# -- retention


def test_the_documented_retention_keeps_180_days_back_from_now() -> None:
    assert expired_before(NOW) == NOW - 180 * DAY
    assert kept_from(NOW) == date(2025, 12, 17)  # 180 days before 2026-06-15
    assert RETENTION_DAYS == 180


def test_oldest_since_is_the_day_after_the_first_kept_day() -> None:
    assert oldest_since(date(2026, 3, 1)) == date(2026, 3, 2)
    assert oldest_since(date(2024, 2, 28)) == date(2024, 2, 29)  # leap day
    assert oldest_since(date(2025, 12, 31)) == date(2026, 1, 1)


def test_retention_floor_is_midnight_two_days_after_the_first_kept_day() -> None:
    assert format_instant(retention_floor(date(2026, 3, 1))) == "2026-03-03T00:00:00Z"
    assert format_instant(retention_floor(date(2025, 12, 30))) == "2026-01-01T00:00:00Z"


@given(st.dates(date(2020, 1, 1), date(2030, 1, 1)),
       st.sampled_from(["inclusive", "exclusive"]))
def test_a_sweep_down_to_the_retention_floor_asks_a_since_postman_accepts_and_covers_it(
    first_day: date, reading: str
) -> None:
    floor = retention_floor(first_day)
    since = since_date(floor, oldest_since(first_day))
    assert date.fromisoformat(since) > first_day  # not older than the day Postman named
    assert first_instant_served(since, reading) <= floor  # and every event from the floor on
    # the floor is the oldest such instant: a second earlier asks a since on the named day
    assert date.fromisoformat(since_date(floor - 1, date.min)) == first_day


@given(st.integers(NOW - 400 * DAY, NOW + 400 * DAY),
       st.sampled_from(["inclusive", "exclusive"]))
def test_a_first_run_at_the_start_floor_asks_a_since_inside_the_documented_retention(
    now: int, reading: str
) -> None:
    floor = start_floor(now)
    assert floor == now - (RETENTION_DAYS - RETENTION_MARGIN_DAYS) * DAY
    allowed = oldest_since(kept_from(now))
    since = since_date(floor, allowed)
    assert since == since_date(floor, date.min)  # not raised to the allowed day: accepted
    assert date.fromisoformat(since) >= allowed
    assert first_instant_served(since, reading) <= floor


# -- the first run


def test_a_first_run_without_a_start_collects_from_now_on_and_says_so() -> None:
    cursor, notes = start_cursor(None, None, NOW, LOOKBACK, "p")
    assert (cursor.floor, cursor.backfill_start, cursor.high_water) == (NOW, None, None)
    assert notes == [(logging.INFO,
                      "no backfill_start_time: collecting from now on (2026-06-15T12:30:05Z)")]


@pytest.mark.parametrize("text, floor", [
    ("2026-06-01", "2026-06-01T00:00:00Z"),              # a date: midnight UTC
    ("2026-06-01T08:00", "2026-06-01T08:00:00Z"),        # no offset: UTC
    ("2026-06-01T08:00:00+02:00", "2026-06-01T06:00:00Z"),
    ("2026-06-15", "2026-06-15T00:00:00Z"),              # today, date only: not the future
])
def test_a_first_run_starts_at_the_configured_start(text: str, floor: str) -> None:
    cursor, notes = start_cursor(None, text, NOW, LOOKBACK, "p")
    assert format_instant(cursor.floor) == floor
    assert cursor.backfill_start == floor
    assert notes == []


@pytest.mark.parametrize("text", ["2026-06-16", format_instant(NOW + 1)])
def test_a_start_in_the_future_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match=r"backfill_start_time: .* is in the future"):
        start_cursor(None, text, NOW, LOOKBACK, "p")


def test_a_start_at_now_is_not_the_future() -> None:
    cursor, _ = start_cursor(None, format_instant(NOW), NOW, LOOKBACK, "p")
    assert cursor.floor == NOW


def test_a_start_older_than_the_retention_starts_at_the_floor_and_names_both() -> None:
    asked = format_instant(NOW - 190 * DAY)
    cursor, notes = start_cursor(None, asked, NOW, LOOKBACK, "p")
    assert cursor.floor == start_floor(NOW)
    assert cursor.backfill_start == asked  # what was asked, to compare with later runs
    ((level, text),) = notes
    assert level == logging.WARNING
    assert text == (f"backfill_start_time {asked} is older than Postman's 180-day audit-log "
                    f"retention; starting at the retention floor {format_instant(NOW - 178 * DAY)}")


def test_a_start_exactly_at_the_floor_starts_there_without_a_warning() -> None:
    floor = format_instant(start_floor(NOW))
    assert start_cursor(None, floor, NOW, LOOKBACK, "p")[1] == []
    early = format_instant(start_floor(NOW) - 1)
    cursor, notes = start_cursor(None, early, NOW, LOOKBACK, "p")
    assert cursor.floor == start_floor(NOW) and len(notes) == 1


# -- later runs


def saved(floor: int, backfill_start: str | None, high_water: int | None = None,
          sweep: Sweep | None = None) -> dict[str, Any]:
    cursor = Cursor(floor=floor, backfill_start=backfill_start, high_water=high_water,
                    seen={"7": NOW - 60}, sweep=sweep)
    data: dict[str, Any] = json.loads(json.dumps(cursor.to_json()))
    return data


def test_a_later_run_resumes_the_checkpoint() -> None:
    sweep = Sweep(target=NOW - 3600, top=NOW - 60, lower=NOW - 600, at_lower={"9"},
                  cursor="abc")
    data = saved(NOW - DAY, "2026-06-14T12:30:05Z", NOW - 120, sweep)
    cursor, notes = start_cursor(data, "2026-06-14T12:30:05Z", NOW, LOOKBACK, "p")
    assert cursor.to_json() == data and notes == []
    assert cursor.sweep is not None and cursor.sweep.resumed


@pytest.mark.parametrize("data", [{}, {"version": 99}, {"version": 1, "floor": "soon"},
                                  {"version": 1, "floor": "2026-01-01", "seen": 3}])
def test_a_checkpoint_this_version_does_not_read_is_refused_with_the_way_out(
    data: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError) as info:
        start_cursor(data, None, NOW, LOOKBACK, "my-pipe")
    assert "not a postman_audit checkpoint" in str(info.value)
    assert "plugin-host state reset my-pipe" in str(info.value)


def test_a_start_moved_earlier_is_refused_with_the_way_out() -> None:
    data = saved(at("2026-06-10"), "2026-06-10T00:00:00Z", NOW - 60)
    with pytest.raises(ConfigError) as info:
        start_cursor(data, "2026-06-09", NOW, LOOKBACK, "my-pipe")
    text = str(info.value)
    assert "moved earlier, to 2026-06-09T00:00:00Z" in text
    assert "collected since 2026-06-10T00:00:00Z" in text
    assert "plugin-host state reset my-pipe" in text


def test_a_start_moved_later_has_no_effect_and_says_so() -> None:
    data = saved(at("2026-06-10"), "2026-06-10T00:00:00Z", NOW - 60)
    cursor, notes = start_cursor(data, "2026-06-12", NOW, LOOKBACK, "p")
    assert cursor.floor == at("2026-06-10") and cursor.backfill_start == "2026-06-10T00:00:00Z"
    assert notes == [(logging.WARNING,
                      "backfill_start_time 2026-06-12T00:00:00Z has no effect: this pipeline "
                      "already collects since 2026-06-10T00:00:00Z (reset its state to start "
                      "again)")]


def test_the_same_start_spelled_as_a_date_says_nothing() -> None:
    data = saved(at("2026-06-10"), "2026-06-10T00:00:00Z", NOW - 60)
    assert start_cursor(data, "2026-06-10", NOW, LOOKBACK, "p")[1] == []


def test_a_start_added_to_a_pipeline_that_collected_from_now_on() -> None:
    data = saved(NOW - DAY, None, NOW - 60)  # its first run had no start
    later = format_instant(NOW - DAY + 1)
    assert "has no effect" in start_cursor(data, later, NOW, LOOKBACK, "p")[1][0][1]
    with pytest.raises(ConfigError, match="moved earlier"):
        start_cursor(data, format_instant(NOW - DAY - 1), NOW, LOOKBACK, "p")


def test_a_last_run_beyond_the_retention_warns_that_events_may_have_expired() -> None:
    high_water = NOW - 200 * DAY
    data = saved(NOW - 300 * DAY, None, high_water)
    cursor, notes = start_cursor(data, None, NOW, LOOKBACK, "p")
    assert cursor.high_water == high_water
    assert notes == [(logging.WARNING,
                      f"the last run reached {format_instant(high_water - LOOKBACK)}, beyond "
                      f"Postman's 180-day retention: events from then until "
                      f"{format_instant(NOW - 180 * DAY)} may have expired before they could "
                      "be collected")]


def test_a_last_run_inside_the_retention_says_nothing() -> None:
    data = saved(NOW - 300 * DAY, None, expired_before(NOW) + LOOKBACK)
    assert start_cursor(data, None, NOW, LOOKBACK, "p")[1] == []
    data = saved(NOW - 300 * DAY, None, expired_before(NOW) + LOOKBACK - 1)
    assert len(start_cursor(data, None, NOW, LOOKBACK, "p")[1]) == 1


@pytest.fixture
def far_east(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone 14 hours ahead of UTC, for one test."""
    monkeypatch.setenv("TZ", "Etc/GMT-14")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_east")
def test_the_retention_days_are_utc_days_whatever_the_local_zone() -> None:
    late = int(datetime(2026, 6, 15, 23, 59, 59, tzinfo=timezone.utc).timestamp())
    assert time.localtime(late).tm_mday == 16  # the local day is another one
    assert kept_from(late) == date(2025, 12, 17)
