"""Each rule of the Postman cursor alone, with plain values (``postman_audit.cursor_rules``)."""

from __future__ import annotations

from typing import Any

import pytest
from postman_audit.cursor_rules import (
    FUTURE_SKEW,
    IDLE_PAGES,
    MAX_SAME_SECOND,
    STALL_PAGES,
    WINDOW_KEYS,
    Stall,
    advance_boundary,
    advance_high_water,
    advance_top,
    already_passed,
    count_stall,
    event_time,
    future_stamped,
    in_lookback,
    in_sweep,
    is_repeat,
    known_keys,
    lowest_reached,
    merge_seen,
    page_keys,
    prune_recent,
    record_key,
    repeats_only,
    sweep_done,
    sweep_target,
)

from plugin_host import ProtocolError

T = 1_781_524_800  # 2026-06-15T12:00:00Z


# -- identity


def test_page_keys_are_the_record_keys_in_order() -> None:
    records: list[Any] = [{"id": 7}, {"id": "8"}, {"id": " 9 "}, {"id": True, "a": 1}, "text"]
    assert page_keys(records) == tuple(record_key(r) for r in records)
    assert page_keys(records)[:3] == ("7", "8", "9")
    assert page_keys([]) == ()


# -- where a sweep runs


def test_sweep_target_is_lookback_below_the_high_water_never_below_the_floor() -> None:
    assert sweep_target(floor=T - 600, high_water=None, lookback=300) == T - 600
    assert sweep_target(floor=T - 600, high_water=T, lookback=300) == T - 300
    assert sweep_target(floor=T - 600, high_water=T, lookback=3600) == T - 600
    assert sweep_target(floor=T - 600, high_water=T, lookback=0) == T


def test_event_time_is_the_stamp_else_where_the_stream_is() -> None:
    assert event_time(T - 5, position=T, top=T + 9, now=T + 60) == T - 5
    assert event_time(None, position=T - 1, top=T + 9, now=T + 60) == T - 1
    assert event_time(None, position=None, top=T + 9, now=T + 60) == T + 9
    assert event_time(None, position=None, top=None, now=T + 60) == T + 60


def test_an_event_is_in_the_sweep_from_its_target_on() -> None:
    assert in_sweep(T, target=T)
    assert in_sweep(T + 1, target=T)
    assert not in_sweep(T - 1, target=T)


@pytest.mark.parametrize("events, has_next, old_run, done", [
    (0, True, 0, True),      # an empty page
    (5, False, 0, True),     # the last page
    (5, True, 2, True),      # two events in a row below the target
    (5, True, 1, False),     # one may be a late event out of order
    (5, True, 0, False),
])
def test_a_sweep_is_done(events: int, has_next: bool, old_run: int, done: bool) -> None:
    assert sweep_done(events, has_next, old_run) is done


@pytest.mark.parametrize("ts, key, passed", [
    (T + 1, "new", True),    # newer than where the sweep stopped
    (T, "a", True),          # at that second, a key passed there
    (T, "b", False),         # at that second, a key not passed yet
    (T - 1, "a", False),     # older: the rescan is past what was passed
])
def test_a_rescan_skips_what_the_sweep_had_passed(ts: int, key: str, passed: bool) -> None:
    assert already_passed(ts, key, lower=T, at_lower={"a"}) is passed


def test_a_rescan_without_a_boundary_skips_nothing() -> None:
    assert not already_passed(T, "a", lower=None, at_lower={"a"})


# -- the top and the high water


def test_future_stamped_is_more_than_the_skew_ahead_of_now() -> None:
    assert not future_stamped(T + FUTURE_SKEW, now=T)
    assert future_stamped(T + FUTURE_SKEW + 1, now=T)


def test_the_top_is_the_newest_event_not_from_the_future() -> None:
    assert advance_top(None, T - 5, now=T) == T - 5
    assert advance_top(T - 5, T, now=T) == T
    assert advance_top(T, T - 5, now=T) == T
    assert advance_top(T, T + FUTURE_SKEW, now=T) == T + FUTURE_SKEW
    assert advance_top(T, T + FUTURE_SKEW + 1, now=T) == T
    assert advance_top(None, T + 365 * 86400, now=T) is None


def test_the_high_water_rises_to_the_sweeps_top_and_never_falls() -> None:
    assert advance_high_water(None, T) == T
    assert advance_high_water(T - 5, T) == T
    assert advance_high_water(T, T - 5) == T
    assert advance_high_water(T, None) == T
    assert advance_high_water(None, None) is None


# -- repeats


def test_known_keys_are_a_pages_keys_found_in_any_known_set() -> None:
    page = {"1", "2", "3", "4"}
    window, seen, recent = {"1", "x"}, {"2": T}, {"y": T}
    assert known_keys(page, window, seen.keys(), recent.keys()) == {"1", "2"}
    assert known_keys(page, {"z"}, {}.keys()) == set()
    assert known_keys(page) == set()


@pytest.mark.parametrize("key, ts, boundary, repeat", [
    ("k", T - 9, T, True),       # a known key, wherever it is
    ("a", T, T, True),           # passed at the boundary second the page continues
    ("a", T, None, False),       # the page has moved off the boundary second
    ("a", T - 1, T, False),      # another second
    ("b", T, T, False),          # the boundary second, a key not passed there
])
def test_is_repeat(key: str, ts: int, boundary: int | None, repeat: bool) -> None:
    assert is_repeat(key, ts, known={"k"}, boundary=boundary, at_boundary={"a"}) is repeat


def test_a_page_repeats_only_when_it_delivers_nothing_and_the_window_holds_all_it_passed() -> None:
    window = {"1", "2", "3"}
    assert repeats_only(["1", "2"], delivered=0, window=window)
    assert not repeats_only(["1", "9"], delivered=0, window=window)
    assert not repeats_only(["1", "2"], delivered=1, window=window)
    assert repeats_only([], delivered=0, window=window)  # everything below the target


# -- the boundary


def test_a_page_without_events_leaves_the_boundary() -> None:
    held = {"a"}
    assert advance_boundary(T, held, [], []) == (T, {"a"})
    assert advance_boundary(None, set(), [], []) == (None, set())


def test_the_boundary_moves_to_the_last_second_with_the_keys_passed_there() -> None:
    lower, keys = advance_boundary(T, {"a"}, [T - 1, T - 2, T - 2], ["1", "2", "3"])
    assert (lower, keys) == (T - 2, {"2", "3"})


def test_a_page_that_stays_in_the_boundary_second_adds_to_its_keys() -> None:
    held = {"a"}
    assert advance_boundary(T, held, [T, T], ["1", "2"]) == (T, {"a", "1", "2"})
    assert held == {"a"}  # the given set is left as it was


def test_a_page_that_starts_in_the_boundary_second_and_moves_off_keeps_only_the_last() -> None:
    assert advance_boundary(T, {"a"}, [T, T - 1], ["1", "2"]) == (T - 1, {"2"})
    # back to the boundary second after another: the keys of the old second are not held
    assert advance_boundary(T, {"a"}, [T, T - 1, T], ["1", "2", "3"]) == (T, {"3"})


def test_a_first_page_sets_the_boundary() -> None:
    assert advance_boundary(None, set(), [T, T], ["1", "2"]) == (T, {"1", "2"})


def test_more_than_max_same_second_keys_at_one_second_is_a_loop() -> None:
    held = {f"h{i}" for i in range(MAX_SAME_SECOND - 1)}
    assert len(advance_boundary(T, held, [T], ["x"])[1]) == MAX_SAME_SECOND
    with pytest.raises(ProtocolError, match="over 10000 events in one second"):
        advance_boundary(T, held, [T, T], ["x", "y"])
    # keys the boundary held at another second do not count
    assert advance_boundary(T + 1, held, [T, T], ["x", "y"]) == (T, {"x", "y"})


def test_one_page_holding_more_than_max_same_second_in_one_second_is_a_loop() -> None:
    seconds = [T + 5] + [T] * (MAX_SAME_SECOND + 1) + [T - 1]
    keys = [str(i) for i in range(len(seconds))]
    with pytest.raises(ProtocolError, match="in one second"):
        advance_boundary(None, set(), seconds, keys)
    fine = [T + 5] + [T] * MAX_SAME_SECOND + [T - 1] * 2
    assert advance_boundary(None, set(), fine, [str(i) for i in range(len(fine))])[0] == T - 1


# -- the overlap and what is seen


def test_in_lookback_is_at_or_after_lookback_below_the_top() -> None:
    assert in_lookback(T - 600, top=T, lookback=600)
    assert not in_lookback(T - 601, top=T, lookback=600)
    assert in_lookback(T - 10**6, top=None, lookback=600)


def test_recent_is_pruned_to_the_lookback_once_it_outgrows_twice_the_window() -> None:
    small = {"in": T, "out": T - 601}
    assert prune_recent(small, top=T, lookback=600) == small
    full = {str(i): T - 601 for i in range(2 * WINDOW_KEYS)}  # not yet over twice the window
    assert prune_recent(full, top=T, lookback=600) == full
    big = {str(i): T - 601 for i in range(2 * WINDOW_KEYS)} | {"in": T, "edge": T - 600}
    assert prune_recent(big, top=T, lookback=600) == {"in": T, "edge": T - 600}
    assert len(big) == 2 * WINDOW_KEYS + 2  # the given mapping is left as it was
    assert prune_recent(big, top=None, lookback=600) == big


def test_merge_seen_keeps_both_inside_the_lookback_below_the_high_water() -> None:
    seen = {"old": T - 5000, "mid": T - 1000, "both": T - 100}
    recent = {"new": T, "edge": T - 600, "below": T - 601, "both": T - 50}
    merged = merge_seen(seen, recent, high_water=T, lookback=600)
    assert merged == {"new": T, "edge": T - 600, "both": T - 50}


def test_merge_seen_without_a_high_water_keeps_everything() -> None:
    assert merge_seen({"a": T}, {"b": T + 10**6}, high_water=None, lookback=0) == {
        "a": T, "b": T + 10**6}


# -- loops


def test_lowest_reached_is_the_oldest_time_so_far() -> None:
    assert lowest_reached(None, None) is None
    assert lowest_reached(None, T) == T
    assert lowest_reached(T, None) == T
    assert lowest_reached(T, T - 1) == T - 1
    assert lowest_reached(T - 1, T) == T - 1


def test_a_page_that_reaches_further_back_ends_a_stall() -> None:
    stalled = Stall(pages=5, events=50, idle=3)
    assert count_stall(stalled, before=T, after=T - 1, rescanning=False, events=10,
                       repeated=True) == Stall()
    assert count_stall(stalled, before=None, after=T, rescanning=False, events=10,
                       repeated=True) == Stall()
    assert count_stall(stalled, before=T, after=T, rescanning=True, events=10,
                       repeated=True) == Stall()


def test_a_page_that_reaches_nothing_older_counts_as_a_stall() -> None:
    after = count_stall(Stall(pages=5, events=50, idle=3), before=T, after=T,
                        rescanning=False, events=10, repeated=True)
    assert after == Stall(pages=6, events=60, idle=4)
    fresh = count_stall(after, before=T, after=T, rescanning=False, events=1, repeated=False)
    assert fresh == Stall(pages=7, events=61, idle=0)


@pytest.mark.parametrize("stall, events, repeated", [
    (Stall(pages=STALL_PAGES - 1), 1, False),
    (Stall(pages=1, events=MAX_SAME_SECOND), 1, False),
    (Stall(pages=1, idle=IDLE_PAGES - 1), 1, True),
])
def test_a_stall_past_its_bounds_is_a_loop(stall: Stall, events: int, repeated: bool) -> None:
    with pytest.raises(ProtocolError, match="did not move back in time"):
        count_stall(stall, before=T, after=T, rescanning=False, events=events,
                    repeated=repeated)


@pytest.mark.parametrize("stall, events, repeated", [
    (Stall(pages=STALL_PAGES - 2), 1, False),
    (Stall(pages=1, events=MAX_SAME_SECOND - 1), 1, False),
    (Stall(pages=1, idle=IDLE_PAGES - 2), 1, True),
])
def test_a_stall_inside_its_bounds_goes_on(stall: Stall, events: int, repeated: bool) -> None:
    count_stall(stall, before=T, after=T, rescanning=False, events=events, repeated=repeated)
