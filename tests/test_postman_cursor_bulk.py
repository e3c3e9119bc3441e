"""The bulk path of ``SweepWalker.page`` is the record-by-record loop, only faster.

Two walkers start from the same cursor; one may take the bulk path, the other never does.
Fed the same pages (new events, repeats, ties, disorder, events without a time, from the
future or before the target), they must deliver the same events and reach the same state.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from postman_audit.cursor import Cursor, SweepWalker

from plugin_host import ProtocolError

NOW = int(datetime(2026, 6, 15, 12, 0, 0, tzinfo=timezone.utc).timestamp())
LOOKBACK = 1800


def _stamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@st.composite
def pages(draw: Any) -> list[list[Any]]:
    result = []
    clock = NOW - draw(st.integers(0, 600))
    for _ in range(draw(st.integers(1, 6))):
        page: list[Any] = []
        for _ in range(draw(st.integers(0, 12))):
            kind = draw(st.sampled_from(["next", "next", "next", "tie", "jump", "odd", "shape"]))
            if kind == "next":
                clock -= draw(st.integers(0, 400))
            elif kind == "jump":
                clock += draw(st.integers(1, 900))
            ident = draw(st.integers(1, 60))
            if kind == "odd":
                page.append(draw(st.sampled_from([
                    {"id": ident}, {"id": ident, "timestamp": "nope"}, "text", {"x": 1},
                    {"id": ident, "timestamp": _stamp(NOW + 3600)},
                ])))
            elif kind == "shape":  # a time in another spelling, or not a real one
                text = _stamp(clock)
                page.append({"id": ident, "timestamp": draw(st.sampled_from([
                    text.replace(".000Z", "Z"), text.replace(".000Z", ".999Z"),
                    text.replace("T", " "), text.lower(), text[:8] + "31" + text[10:],
                    text[:11] + "24" + text[13:], clock, f" {text}",
                ]))})
            else:
                page.append({"id": ident, "timestamp": _stamp(clock)})
        result.append(page)
    return result


def _state(walker: SweepWalker) -> tuple[Any, ...]:
    sweep = walker.sweep
    return (sweep.top, sweep.lower, sorted(sweep.at_lower), sorted(sweep.recent.items()),
            walker._lowest, walker._old_run, sorted(walker._window_set), walker._stall)


@settings(max_examples=400, deadline=None)
@given(pages(), st.integers(0, 3000), st.lists(st.integers(1, 60), max_size=10))
def test_bulk_and_loop_agree(feed: list[list[Any]], below: int, seen_ids: list[int]) -> None:
    cursor = Cursor(floor=NOW - 7200, backfill_start=None, high_water=NOW - below,
                    seen={str(i): NOW - below for i in seen_ids})
    fast = SweepWalker(copy.deepcopy(cursor), LOOKBACK, NOW)
    slow = SweepWalker(copy.deepcopy(cursor), LOOKBACK, NOW)
    slow._bulk = lambda *args: None  # type: ignore[method-assign]
    for number, page in enumerate(feed):
        outcomes = []
        for walker in (fast, slow):
            try:
                outcome = walker.page(page, has_next=number < len(feed) - 1)
                outcomes.append((outcome.deliver, outcome.done))
            except ProtocolError as exc:
                outcomes.append(("error", str(exc)))
        assert outcomes[0] == outcomes[1]
        if outcomes[0][0] == "error":
            return
        assert _state(fast) == _state(slow)
        assert fast.checkpoint() == slow.checkpoint()
        if outcomes[0][1]:
            break
    assert fast.finish() == slow.finish()


def test_a_plain_page_takes_the_bulk_path() -> None:
    cursor = Cursor(floor=NOW - 7200, backfill_start=None)
    walker = SweepWalker(cursor, LOOKBACK, NOW)
    page = [{"id": 100 - i, "timestamp": _stamp(NOW - 10 * i)} for i in range(50)]
    keys = tuple(str(r["id"]) for r in page)
    assert walker._bulk(page, keys, set(keys)) == page
    assert walker.sweep.top == NOW and walker.sweep.lower == NOW - 490
    assert len(walker.sweep.recent) == 50  # all inside the lookback below the top


def test_a_bulk_page_that_raises_the_top_prunes_recent_as_the_loop_does() -> None:
    cursor = Cursor(floor=NOW - 7200, backfill_start=None)
    fast = SweepWalker(copy.deepcopy(cursor), LOOKBACK, NOW)
    slow = SweepWalker(copy.deepcopy(cursor), LOOKBACK, NOW)
    slow._bulk = lambda *args: None  # type: ignore[method-assign]
    per_second, size = 6, 300
    feed = [[{"id": 10**6 - n, "timestamp": _stamp(NOW - 1000 - n // per_second)}
             for n in range(p * size, (p + 1) * size)] for p in range(36)]
    feed.append([{"id": 2 * 10**6 + i, "timestamp": _stamp(NOW - 10 - i)} for i in range(3)])
    for page in feed:
        assert fast.page(page, True).deliver == slow.page(page, True).deliver == page
        assert _state(fast) == _state(slow)
    # the newer page moved the lookback up: what fell below it is no longer kept
    assert fast.sweep.top == NOW - 10
    assert min(fast.sweep.recent.values()) >= NOW - 10 - LOOKBACK


def test_a_page_led_by_a_future_stamp_takes_its_top_from_the_first_real_time() -> None:
    cursor = Cursor(floor=NOW - 7200, backfill_start=None)
    fast = SweepWalker(copy.deepcopy(cursor), LOOKBACK, NOW)
    slow = SweepWalker(copy.deepcopy(cursor), LOOKBACK, NOW)
    slow._bulk = lambda *args: None  # type: ignore[method-assign]
    page = [{"id": 3, "timestamp": _stamp(NOW + 3600)}, {"id": 2, "timestamp": _stamp(NOW - 5)},
            {"id": 1, "timestamp": _stamp(NOW - 9)}]
    assert fast.page(page, True).deliver == slow.page(page, True).deliver == page
    assert _state(fast) == _state(slow)
    assert fast.sweep.top == NOW - 5
