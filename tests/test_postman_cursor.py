"""The Postman input's cursor: pure helpers, and property tests of whole runs against a model.

The model is an in-memory Postman (``FakePostman``) behind ``httpx.MockTransport``: it serves
``orderBy=desc`` pages with ``since``/``until``/``cursor`` under each unconfirmed reading
(inclusive or exclusive bounds, how the last page ends, int or string cursors, cursors that
expire between runs, ties ordered either way). Hypothesis generates histories, runs, late
arrivals and crashes; every committed checkpoint is round-tripped through JSON, as the host
stores it.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from postman_audit.cursor import (
    CHECKPOINT_VERSION,
    Cursor,
    Sweep,
    SweepWalker,
    initial_cursor,
    keys_of,
)
from postman_audit.cursor_rules import IDLE_PAGES, MAX_SAME_SECOND, STALL_PAGES, record_key
from postman_audit.input import PostmanAuditInput
from postman_audit.timeutil import epoch_of, format_instant, parse_start, since_date, until_date

from plugin_host import InputContext, ProtocolError

KEY = "PMAK-model-test-key-0123456789"
# POSTMAN_MODEL_EXAMPLES=5000 explores the model much further than the default CI budget
MODEL_EXAMPLES = int(os.environ.get("POSTMAN_MODEL_EXAMPLES", "120"))
BASE = int(datetime(2026, 6, 15, 12, 0, 0, tzinfo=timezone.utc).timestamp())
DAY = 86400


def ts_text(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def event(ident: int, epoch: int) -> dict[str, Any]:
    return {"id": ident, "timestamp": ts_text(epoch), "action": "user.login_password_success"}


# ------------------------------------------------------------------ timeutil


@pytest.mark.parametrize("text, expected", [
    ("2026-01-02", "2026-01-02T00:00:00Z"),
    ("2026-01-02T08:09", "2026-01-02T08:09:00Z"),
    ("2026-01-02T08:09:10Z", "2026-01-02T08:09:10Z"),
    ("2026-01-02 08:09:10z", "2026-01-02T08:09:10Z"),
    ("2026-01-02T08:09:10.999999999Z", "2026-01-02T08:09:10Z"),
    ("2026-01-02T08:09:10+02:00", "2026-01-02T06:09:10Z"),
    ("2026-01-02T00:30:00-0130", "2026-01-02T02:00:00Z"),
    ("2026-01-01T23:30:00-01:00", "2026-01-02T00:30:00Z"),
    ("  2026-01-02T08:09:10Z  ", "2026-01-02T08:09:10Z"),
])
def test_parse_start_reads_dates_and_rfc3339_times_as_utc(text: str, expected: str) -> None:
    parsed = parse_start(text)
    assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0)
    assert format_instant(int(parsed.timestamp())) == expected


def test_parse_start_keeps_microseconds() -> None:
    assert parse_start("2026-01-02T08:09:10.5Z").microsecond == 500000


@pytest.mark.parametrize("text", [
    "", "yesterday", "2026-13-01", "2026-02-30", "2026-01-02T25:00:00Z", "2026-01-02T08:61",
    "2026-01-02T08:00:00+24:00", "2026-01-02T08:00:00+05:75", "20260102", "2026-01-02T",
])
def test_parse_start_refuses_what_is_not_a_real_date_or_time(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_start(text)
    assert str(info.value)  # a reason a user can read


@pytest.mark.parametrize("stamp, expected", [
    ("2026-06-15T16:24:56.000Z", "2026-06-15T16:24:56Z"),
    ("2026-06-15T16:24:56.999Z", "2026-06-15T16:24:56Z"),
    ("2026-06-15T16:24:56Z", "2026-06-15T16:24:56Z"),
    ("2026-06-15T16:24:56+00:00", "2026-06-15T16:24:56Z"),
    ("2026-06-15T18:24:56+02:00", "2026-06-15T16:24:56Z"),
    ("2026-06-15T16:24:56", "2026-06-15T16:24:56Z"),
])
def test_epoch_of_reads_api_timestamps(stamp: str, expected: str) -> None:
    value = epoch_of(stamp)
    assert value is not None and format_instant(value) == expected


@pytest.mark.parametrize("stamp", [None, 12, "", "soon", "2026-06-15T16:24:56.000Zulu", [], {}])
def test_epoch_of_is_none_for_unusable_timestamps(stamp: Any) -> None:
    assert epoch_of(stamp) is None


def test_epoch_of_is_stable_across_repeated_calls() -> None:
    assert epoch_of("2026-06-15T16:24:56.000Z") == epoch_of("2026-06-15T16:24:56.000Z")


def test_since_is_the_day_before_the_target_but_not_before_the_oldest_allowed() -> None:
    noon = int(parse_start("2026-06-15T12:00:00Z").timestamp())
    midnight = int(parse_start("2026-06-15").timestamp())
    assert since_date(noon, date(2026, 1, 1)) == "2026-06-14"
    assert since_date(midnight, date(2026, 1, 1)) == "2026-06-14"
    assert since_date(midnight - 1, date(2026, 1, 1)) == "2026-06-13"
    assert since_date(noon, date(2026, 6, 15)) == "2026-06-15"


def test_until_is_the_day_after_lower() -> None:
    assert until_date(int(parse_start("2026-06-15T23:59:59Z").timestamp())) == "2026-06-16"
    assert until_date(int(parse_start("2026-06-15T00:00:00Z").timestamp())) == "2026-06-16"


@given(st.integers(BASE - 400 * DAY, BASE + 400 * DAY), st.sampled_from(["inclusive",
                                                                         "exclusive"]))
def test_since_and_until_cover_the_instant_under_every_reading(instant: int, bounds: str) -> None:
    since = parse_start(since_date(instant, date(2000, 1, 1))).timestamp()
    until = parse_start(until_date(instant)).timestamp()
    if bounds == "exclusive":  # "after the given day" / "before the given day"
        since, until = since + DAY, until
        assert since <= instant < until
    else:
        assert since <= instant < until + DAY


def test_format_instant() -> None:
    assert format_instant(0) == "1970-01-01T00:00:00Z"
    assert format_instant(BASE) == "2026-06-15T12:00:00Z"


# ------------------------------------------------------------------ cursor.py pieces


@pytest.mark.parametrize("record, key", [
    ({"id": 123}, "123"),
    ({"id": "123"}, "123"),
    ({"id": " 123 "}, "123"),
    ({"id": 0}, "0"),
])
def test_record_key_is_the_id_whatever_its_json_type(record: Any, key: str) -> None:
    assert record_key(record) == key


@pytest.mark.parametrize("record", [{"id": None, "a": 1}, {"id": True, "a": 1}, {"id": "  "},
                                    {"a": 1}, [1, 2], "text"])
def test_record_key_without_an_id_hashes_the_content(record: Any) -> None:
    key = record_key(record)
    assert key.startswith("h:") and key == record_key(json.loads(json.dumps(record)))


def test_record_key_hash_ignores_key_order_and_tells_content_apart() -> None:
    assert record_key({"a": 1, "b": 2}) == record_key({"b": 2, "a": 1})
    assert record_key({"a": 1}) != record_key({"a": 2})
    assert keys_of([{"id": 1}, {"id": "2"}]) == ["1", "2"]


def test_cursor_round_trips_through_json() -> None:
    cursor = Cursor(floor=BASE - DAY, backfill_start="2026-06-14T12:00:00Z", high_water=BASE,
                    seen={"7": BASE, "8": BASE - 60})
    cursor.sweep = Sweep(target=BASE - 1800, top=BASE + 30, lower=BASE, at_lower={"9", "10"},
                         recent={"9": BASE}, cursor="abc")
    data = json.loads(json.dumps(cursor.to_json()))
    assert data["version"] == CHECKPOINT_VERSION
    back = Cursor.from_json(data)
    assert back.floor == cursor.floor and back.high_water == BASE and back.seen == cursor.seen
    assert back.backfill_start == "2026-06-14T12:00:00Z"
    assert back.sweep is not None and back.sweep.resumed
    assert (back.sweep.target, back.sweep.top, back.sweep.lower) == (BASE - 1800, BASE + 30, BASE)
    assert back.sweep.at_lower == {"9", "10"} and back.sweep.recent == {"9": BASE}
    assert back.sweep.cursor == "abc"


@pytest.mark.parametrize("data", [{}, {"version": 99, "floor": "2026-01-01T00:00:00Z"},
                                  {"version": CHECKPOINT_VERSION}])
def test_cursor_refuses_a_checkpoint_it_does_not_know(data: dict[str, Any]) -> None:
    with pytest.raises((KeyError, ValueError)):
        Cursor.from_json(data)


def test_target_is_lookback_below_high_water_but_never_below_the_floor() -> None:
    cursor = initial_cursor(BASE - 600, None)
    assert cursor.target(300) == BASE - 600
    cursor.high_water = BASE
    assert cursor.target(300) == BASE - 300
    assert cursor.target(3600) == BASE - 600
    assert cursor.target(0) == BASE


def test_finish_raises_high_water_and_keeps_only_keys_inside_the_lookback() -> None:
    cursor = initial_cursor(BASE - DAY, None)
    cursor.high_water = BASE - 1000
    cursor.seen = {"old": BASE - 5000, "mid": BASE - 1000}
    sweep = cursor.begin(600)
    sweep.top = BASE
    sweep.recent = {"new": BASE, "edge": BASE - 600, "below": BASE - 601}
    cursor.finish(600)
    assert cursor.high_water == BASE and cursor.sweep is None
    assert cursor.seen == {"new": BASE, "edge": BASE - 600}


def test_finish_of_an_empty_sweep_keeps_the_high_water() -> None:
    cursor = initial_cursor(BASE - DAY, None)
    cursor.high_water = BASE
    cursor.seen = {"a": BASE}
    cursor.begin(60)
    cursor.finish(60)
    assert cursor.high_water == BASE and cursor.seen == {"a": BASE}


def _walker(target: int, lookback: int = 600) -> SweepWalker:
    return SweepWalker(initial_cursor(target, None), lookback, BASE)


def test_walker_delivers_down_to_the_target_and_stops_after_older_events() -> None:
    walker = _walker(BASE - 100)
    first = walker.page([event(5, BASE), event(4, BASE), event(3, BASE - 50)], True)
    assert [r["id"] for r in first.deliver] == [5, 4, 3] and not first.done
    last = walker.page([event(2, BASE - 100), event(1, BASE - 101), event(0, BASE - 102)], True)
    assert [r["id"] for r in last.deliver] == [2] and last.done


def test_walker_stops_on_an_empty_page_or_no_next_cursor() -> None:
    walker = _walker(BASE - 100)
    assert walker.page([event(1, BASE)], False).done
    assert _walker(BASE - 100).page([], True).done


def test_walker_skips_ids_seen_by_an_earlier_sweep() -> None:
    cursor = initial_cursor(BASE - DAY, None)
    cursor.high_water = BASE
    cursor.seen = {"5": BASE, "4": BASE - 10}
    walker = SweepWalker(cursor, 600, BASE + 100)
    out = walker.page([event(6, BASE + 5), event(5, BASE), event(4, BASE - 10),
                       event(3, BASE - 20)], False)
    assert [r["id"] for r in out.deliver] == [6, 3]


def test_walker_refuses_the_same_next_cursor_twice() -> None:
    walker = _walker(BASE - 100)
    walker.use_cursor(17)
    walker.use_cursor("17")  # another value: a string is not the int
    with pytest.raises(ProtocolError, match="same nextCursor"):
        walker.use_cursor(17)


def test_walker_refuses_the_same_page_twice_in_a_row() -> None:
    walker = _walker(BASE - 100)
    walker.page([event(5, BASE), event(4, BASE)], True)
    with pytest.raises(ProtocolError, match="same page"):
        walker.page([event(5, BASE), event(4, BASE)], True)


def test_walker_drops_a_record_the_api_repeats_on_a_later_page() -> None:
    walker = _walker(BASE - 100)
    walker.page([event(5, BASE), event(4, BASE)], True)
    out = walker.page([event(4, BASE), event(3, BASE)], True)
    assert [r["id"] for r in out.deliver] == [3]


def test_walker_delivers_a_record_repeated_within_one_page_once() -> None:
    walker = _walker(BASE - 1000, lookback=0)  # nothing below the top is kept in recent
    out = walker.page([event(5, BASE), event(4, BASE - 100), event(4, BASE - 100),
                       event(3, BASE - 200), event(5, BASE)], True)
    assert [r["id"] for r in out.deliver] == [5, 4, 3]


@pytest.mark.parametrize("shape", ["plain", "with an in-page repeat"])
def test_a_resumed_sweep_drops_its_boundary_events_served_again_far_below_its_top(
    shape: str
) -> None:
    walker = _walker(BASE - 7200, lookback=60)
    walker.page([event(9, BASE), event(8, BASE - 3000), event(7, BASE - 3000)], True)
    walker.use_cursor("B")
    saved = json.loads(json.dumps(walker.checkpoint()))
    assert saved["sweep"]["recent"] == [["9", BASE]]  # 8 and 7 are held by at_lower alone
    resumed = SweepWalker(Cursor.from_json(saved), 60, BASE)
    page = [event(7, BASE - 3000), event(6, BASE - 3000), event(5, BASE - 3001)]
    if shape != "plain":
        page.append(event(5, BASE - 3001))
    again = resumed.page(page, True)
    assert [r["id"] for r in again.deliver] == [6, 5]



def test_walker_checkpoint_holds_lower_and_the_keys_delivered_at_it() -> None:
    walker = _walker(BASE - 100)
    walker.page([event(5, BASE), event(4, BASE - 1), event(3, BASE - 1)], True)
    walker.use_cursor(2)
    sweep = Cursor.from_json(json.loads(json.dumps(walker.checkpoint()))).sweep
    assert sweep is not None
    assert sweep.lower == BASE - 1 and sweep.at_lower == {"4", "3"} and sweep.cursor == 2
    assert sweep.top == BASE


def test_record_key_of_an_id_less_record_with_a_lone_surrogate() -> None:
    record = json.loads('{"m": "\\udc80"}')
    assert record_key(record).startswith("h:")


def test_a_resumed_sweep_skips_what_it_delivered_before_the_interruption() -> None:
    walker = _walker(BASE - 600)
    first = walker.page([event(4, BASE), event(3, BASE - 1)], True)
    walker.use_cursor("B")
    assert len(first.deliver) == 2
    saved = json.loads(json.dumps(walker.checkpoint()))
    resumed = SweepWalker(Cursor.from_json(saved), 600, BASE)
    again = resumed.page([event(4, BASE), event(3, BASE - 1), event(2, BASE - 2)], True)
    assert [r["id"] for r in again.deliver] == [2]


def test_the_saved_cursor_coming_back_in_a_resumed_sweep_is_a_loop() -> None:
    walker = _walker(BASE - 600)
    walker.page([event(4, BASE)], True)
    walker.use_cursor("B")
    resumed = SweepWalker(Cursor.from_json(json.loads(json.dumps(walker.checkpoint()))), 600,
                          BASE)
    resumed.page([event(3, BASE - 1)], True)
    resumed.use_cursor("A")
    with pytest.raises(ProtocolError, match="same nextCursor"):
        resumed.use_cursor("B")


@pytest.mark.parametrize("backfill", [True, False])
def test_an_event_stamped_in_the_future_is_delivered_once_and_hides_nothing(
    backfill: bool
) -> None:
    api = FakePostman(Variant())
    settings_ = {"base_url": "https://api.postman.test", "page_size": 2,
                 "rate_limit": {"requests": 1_000_000, "per_seconds": 1}}
    if backfill:
        settings_["backfill_start_time"] = format_instant(BASE - DAY)
    future = api.add(BASE + 365 * DAY)
    first = run_input(api, None, settings_, BASE)
    assert [r["id"] for r in first.delivered] == [future["id"]]
    later = [api.add(BASE + 60), api.add(BASE + 61)]
    second = run_input(api, first.checkpoint, settings_, BASE + 120)
    assert sorted(r["id"] for r in second.delivered) == sorted(r["id"] for r in later)
    third = run_input(api, second.checkpoint, settings_, BASE + 180)
    assert third.delivered == []
    assert third.checkpoint is not None
    assert Cursor.from_json(third.checkpoint).high_water == BASE + 61


def test_walker_stops_a_flood_of_events_in_one_second() -> None:
    walker = _walker(BASE - 100)
    with pytest.raises(ProtocolError, match="in one second"):
        for n in range(MAX_SAME_SECOND // 100 + 2):
            walker.page([event(n * 1000 + i, BASE) for i in range(100)], True)


def test_walker_stops_pages_that_go_round_in_a_cycle() -> None:
    walker = _walker(BASE - 100)
    a = [event(9, BASE), event(8, BASE - 1)]
    b = [event(7, BASE - 2), event(6, BASE - 3)]
    pages = 0
    with pytest.raises(ProtocolError, match="did not move back in time"):
        for n in range(STALL_PAGES + 3):
            pages += 1
            walker.page(a if n % 2 == 0 else b, True)
    assert pages == IDLE_PAGES + 2


def test_walker_stops_a_same_second_trickle_that_never_ends() -> None:
    walker = _walker(BASE - 100)
    pages = 0
    with pytest.raises(ProtocolError, match="did not move back in time"):
        for n in range(STALL_PAGES + 3):
            pages += 1
            walker.page([event(n, BASE)], True)
    assert pages == STALL_PAGES + 1


def test_walker_allows_a_burst_read_one_event_a_page_and_a_long_overlap() -> None:
    walker = _walker(BASE - 3600)
    for n in range(STALL_PAGES - 1):  # a burst in one second, an event a page
        assert walker.page([event(n, BASE)], True).deliver
    cursor = initial_cursor(BASE - 3600, None)
    cursor.high_water = BASE
    cursor.seen = {str(n): BASE - n for n in range(3000)}
    walker = SweepWalker(cursor, 3600, BASE)
    for n in range(0, 3000, 2):  # every event already delivered by the last sweep
        assert walker.page([event(n, BASE - n), event(n + 1, BASE - n - 1)], True).deliver == []


def test_rescan_skips_what_the_interrupted_sweep_passed() -> None:
    cursor = initial_cursor(BASE - 100, None)
    walker = SweepWalker(cursor, 600, BASE)
    walker.page([event(9, BASE), event(8, BASE - 5), event(7, BASE - 5)], True)
    walker.use_cursor(6)
    saved = json.loads(json.dumps(walker.checkpoint()))
    resumed = SweepWalker(Cursor.from_json(saved), 600, BASE)
    assert not resumed.skipping  # it has a cursor to continue from
    resumed.rescan_from_lower()
    out = resumed.page([event(9, BASE), event(7, BASE - 5), event(6, BASE - 5),
                        event(8, BASE - 5), event(5, BASE - 50)], False)
    assert [r["id"] for r in out.deliver] == [6, 5]


# ------------------------------------------------------------------ the model


@dataclass(frozen=True)
class Variant:
    bounds: str = "inclusive"           # since/until inclusive or exclusive
    ties: str = "id_desc"               # order within one second: id desc or id asc
    end_signal: str = "missing"         # missing | null | empty
    cursor_style: str = "int"           # int | string
    expire_cursors: bool = False        # a cursor from an earlier run is refused (400)


@dataclass
class FakePostman:
    """An in-memory ``GET /audit/logs``: newest first, strict order, opaque cursors."""

    variant: Variant
    events: list[dict[str, Any]] = field(default_factory=list)
    epochs: dict[int, int] = field(default_factory=dict)
    tokens: dict[str, tuple[int, tuple[int, int]]] = field(default_factory=dict)
    session: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(558_000_000, 7))
    _tokens: Iterator[int] = field(default_factory=lambda: itertools.count(900_001))

    def add(self, epoch: int) -> dict[str, Any]:
        record = event(next(self._ids), epoch)
        self.events.append(record)
        self.epochs[record["id"]] = epoch
        return record

    def order(self, record: Mapping[str, Any]) -> tuple[int, int]:
        ident = int(record["id"])
        return (-self.epochs[ident], -ident if self.variant.ties == "id_desc" else ident)

    def _bound(self, text: str, upper: bool) -> int:
        value = int(parse_start(text).timestamp())
        whole_day = "T" not in text
        exclusive = self.variant.bounds == "exclusive"
        if upper:
            if whole_day:
                return value - 1 if exclusive else value + DAY - 1
            return value - 1 if exclusive else value
        if whole_day:
            return value + DAY if exclusive else value
        return value + 1 if exclusive else value

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/audit/logs"
        assert request.headers["x-api-key"] == KEY
        q = dict(request.url.params)
        self.requests.append(q)
        assert q.get("orderBy") == "desc" and 1 <= int(q["limit"]) <= 300
        limit = int(q["limit"])
        low = self._bound(q["since"], upper=False) if "since" in q else 0
        high = self._bound(q["until"], upper=True) if "until" in q else 1 << 40
        rows = sorted((e for e in self.events if low <= self.epochs[e["id"]] <= high),
                      key=self.order)
        start = 0
        if "cursor" in q:
            issued = self.tokens.get(q["cursor"])
            if issued is None or (self.variant.expire_cursors and issued[0] != self.session):
                return httpx.Response(400, json={
                    "type": "https://api.postman.com/problems/bad-request",
                    "title": "Malformed request", "detail": "Invalid cursor", "status": 400})
            start = next((i for i, r in enumerate(rows) if self.order(r) >= issued[1]),
                         len(rows))
        page = rows[start:start + limit]
        body: dict[str, Any] = {"trails": page}
        if start + limit < len(rows):
            token = next(self._tokens)
            self.tokens[str(token)] = (self.session, self.order(rows[start + limit]))
            body["nextCursor"] = token if self.variant.cursor_style == "int" else str(token)
        elif self.variant.end_signal != "missing":
            body["nextCursor"] = None if self.variant.end_signal == "null" else ""
        return httpx.Response(200, json=body)


@dataclass
class Outcome:
    checkpoint: dict[str, Any] | None
    delivered: list[dict[str, Any]]
    committed: list[dict[str, Any]]


def run_input(api: FakePostman, checkpoint: dict[str, Any] | None, settings_: dict[str, Any],
              now: int, crash_after: int | None = None, commit_at: int = 0) -> Outcome:
    """One run, as the host drives it; a crash keeps only the pages up to ``commit_at``."""
    api.session += 1
    context = InputContext("model", logging.getLogger("plugin_host.input.model"))
    source = PostmanAuditInput(settings_, {"api_key": KEY}, context,
                               transport=httpx.MockTransport(api.handler), clock=lambda: now)
    pages = []
    stream = source.read(checkpoint)
    try:
        for page in stream:
            pages.append(page)
            if crash_after is not None and len(pages) >= crash_after:
                break
        else:
            crash_after = None
    finally:
        stream.close()
        source.close()
    kept = pages if crash_after is None else pages[:commit_at]
    committed = [json.loads(json.dumps(p.checkpoint)) for p in kept]
    if committed:
        checkpoint = committed[-1]
    return Outcome(checkpoint, [r for p in kept for r in p.records], committed)


def assert_bounded(api: FakePostman, checkpoint: Mapping[str, Any], lookback: int) -> None:
    """``seen`` (and a sweep's ``recent``) hold only keys inside one lookback window."""
    cursor = Cursor.from_json(checkpoint)
    if cursor.high_water is not None:
        window = [e for e in api.events if api.epochs[e["id"]] >= cursor.high_water - lookback]
        assert all(t >= cursor.high_water - lookback for t in cursor.seen.values())
        assert len(cursor.seen) <= len(window)
    else:
        assert cursor.seen == {}
    sweep = cursor.sweep
    if sweep is not None and sweep.top is not None:
        window = [e for e in api.events if api.epochs[e["id"]] >= sweep.top - lookback]
        assert len(sweep.recent) <= len(window)


VARIANTS = st.builds(
    Variant,
    bounds=st.sampled_from(["inclusive", "exclusive"]),
    ties=st.sampled_from(["id_desc", "id_asc"]),
    end_signal=st.sampled_from(["missing", "null", "empty"]),
    cursor_style=st.sampled_from(["int", "string"]),
    expire_cursors=st.booleans(),
)


@settings(max_examples=MODEL_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), variant=VARIANTS)
def test_every_event_is_delivered_exactly_once_across_runs_late_arrivals_and_crashes(
    data: st.DataObject, variant: Variant
) -> None:
    api = FakePostman(variant)
    lookback = 60 * data.draw(st.integers(0, 3), label="lookback_minutes")
    # history: several days of events with same-second bursts, some at midnight
    span = data.draw(st.integers(0, 3 * DAY), label="history span")
    for offset in data.draw(st.lists(st.integers(0, span), max_size=80), label="history"):
        epoch = BASE - offset
        if data.draw(st.integers(0, 9)) == 0:
            epoch -= epoch % DAY
        for _ in range(data.draw(st.integers(1, 4))):
            api.add(epoch)
    arrived_at: dict[int, int] = {}  # id -> newest timestamp visible when it arrived
    newest = max(api.epochs.values(), default=BASE - span)
    for ident in api.epochs:
        arrived_at[ident] = -(1 << 40)  # history: collected by the backfill
    start_text = None
    if data.draw(st.booleans(), label="backfill"):
        pick = data.draw(st.integers(0, span + 60))
        choices = sorted(api.epochs.values())
        if choices and data.draw(st.booleans(), label="start at an event"):
            pick = BASE - choices[data.draw(st.integers(0, len(choices) - 1))]
        start_text = format_instant(BASE - pick)
    settings_ = {"base_url": "https://api.postman.test", "lookback_minutes": lookback // 60,
                 "rate_limit": {"requests": 1_000_000, "per_seconds": 1},
                 "retry_initial_backoff_seconds": 0.001}
    if start_text is not None:
        settings_["backfill_start_time"] = start_text
    floor = int(parse_start(start_text).timestamp()) if start_text else BASE

    checkpoint: dict[str, Any] | None = None
    delivered: Counter[int] = Counter()
    now = BASE
    steps = data.draw(st.integers(1, 6), label="runs")
    for step in range(steps + 2):
        final = step >= steps  # two clean runs with nothing arriving
        if step and not final:
            now += data.draw(st.integers(0, 900), label="time passes")
            fresh = data.draw(st.lists(st.integers(0, 30), max_size=12), label="fresh")
            late = data.draw(st.lists(st.integers(0, lookback), max_size=4), label="late")
            too_late = data.draw(st.lists(st.integers(lookback + 1, lookback + 600),
                                          max_size=2), label="too late")
            for epoch in [now - d for d in fresh] + [newest - d for d in late + too_late]:
                record = api.add(epoch)
                arrived_at[record["id"]] = newest
            newest = max([newest, *api.epochs.values()])
        size = data.draw(st.integers(1, 9), label="page size")
        crash = None if final else data.draw(st.none() | st.integers(1, 6), label="crash")
        commit_at = 0 if crash is None else data.draw(st.integers(0, crash), label="commit")
        outcome = run_input(api, checkpoint, {**settings_, "page_size": size}, now, crash,
                            commit_at)
        for cp in outcome.committed:
            assert_bounded(api, cp, lookback)
        checkpoint = outcome.checkpoint
        delivered.update(r["id"] for r in outcome.delivered)

    assert checkpoint is not None
    final = Cursor.from_json(checkpoint)
    assert final.sweep is None
    if start_text is None:  # from the first run that committed anything on
        assert BASE <= final.floor <= now
        floor = final.floor
    else:
        assert final.floor == floor and final.backfill_start == start_text
    repeated = {i: n for i, n in delivered.items() if n > 1}
    assert not repeated, f"delivered more than once: {repeated}"
    before = [i for i in delivered if api.epochs[i] < floor]
    assert not before, f"delivered from before the floor {format_instant(floor)}: {before}"
    due = {i for i, t in api.epochs.items() if t >= floor and t >= arrived_at[i] - lookback}
    missed = sorted(due - set(delivered))
    assert not missed, f"missed: {[(i, format_instant(api.epochs[i])) for i in missed]}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=st.integers(8, 14), per_run=st.integers(20, 60), lookback_minutes=st.integers(1, 5))
def test_seen_stays_bounded_however_long_the_history(
    runs: int, per_run: int, lookback_minutes: int
) -> None:
    api = FakePostman(Variant())
    lookback = lookback_minutes * 60
    settings_ = {"base_url": "https://api.postman.test", "lookback_minutes": lookback_minutes,
                 "page_size": 25, "backfill_start_time": format_instant(BASE - DAY),
                 "rate_limit": {"requests": 1_000_000, "per_seconds": 1}}
    checkpoint = None
    now = BASE
    total = 0
    for _ in range(runs):
        now += 3600
        for i in range(per_run):
            api.add(now - i * 7)
        outcome = run_input(api, checkpoint, settings_, now)
        total += len(outcome.delivered)
        checkpoint = outcome.checkpoint
        assert checkpoint is not None
        cursor = Cursor.from_json(checkpoint)
        assert cursor.high_water == now
        in_window = sum(1 for t in api.epochs.values() if t >= now - lookback)
        assert len(cursor.seen) <= in_window
    assert total == len(api.events)
    # never the history: at most the events of the last lookback window
    assert len(Cursor.from_json(checkpoint).seen) <= min(per_run, lookback // 7 + 1)


def test_a_refused_cursor_is_rescanned_without_loss_or_duplicate() -> None:
    api = FakePostman(Variant(expire_cursors=True, ties="id_asc"))
    for i in range(40):
        for _ in range(3):
            api.add(BASE - i * 10)
    settings_ = {"base_url": "https://api.postman.test", "page_size": 7,
                 "backfill_start_time": format_instant(BASE - DAY),
                 "rate_limit": {"requests": 1_000_000, "per_seconds": 1}}
    first = run_input(api, None, settings_, BASE, crash_after=5, commit_at=4)
    assert first.checkpoint is not None and first.checkpoint["sweep"]["cursor"] is not None
    second = run_input(api, first.checkpoint, settings_, BASE)
    assert any("until" in q and "cursor" not in q for q in api.requests)
    ids = [r["id"] for r in first.delivered + second.delivered]
    assert sorted(ids) == sorted(e["id"] for e in api.events)
