"""The incremental cursor of the Postman input: its state records and the walk of a sweep.

A run is a *sweep*: it pages newest-first (``orderBy=desc``) from the top of the log down
to a *target* instant, then stops. The target is the newest delivered event's time minus
the lookback (or the collection's floor on the first sweep), so a steady-state run costs
requests in proportion to new events plus the lookback, not to whole days, and late
events inside the lookback are still found.

Exactly once:
- ``seen`` holds the keys of events delivered at or after ``high_water - lookback``: an
  event seen again in the overlap is skipped. It is pruned at every sweep's end, so it
  is bounded by the events inside one lookback window, never by history.
- An interrupted sweep resumes from its saved ``cursor`` (the API's ``nextCursor`` after
  the last committed page). If the API refuses that cursor, it rescans from the day of
  ``lower`` and skips what the sweep already passed (``lower`` and ``at_lower``).
- Within a sweep a rolling window of recent keys drops a page the upstream repeats, and a
  resumed sweep also skips what it delivered before it was interrupted (``recent``).
- An event stamped more than ``FUTURE_SKEW`` ahead of now is delivered, but does not become
  the high water (it would move every later target past real events).
- Pages that stop going back in time (one second forever, or a cycle of pages under new
  cursors) are a loop: stopped after ``MAX_SAME_SECOND`` events, ``STALL_PAGES`` pages, or
  ``IDLE_PAGES`` pages that only repeat this run's events.

Each of these rules is a small pure function in ``cursor_rules.py``; this module holds the
state they act on (``Cursor``, ``Sweep``, ``SweepWalker``) and applies them page by page.
Nothing here does I/O; ``PostmanAuditInput`` feeds pages in and yields what comes out.
"""

from __future__ import annotations

import collections
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from plugin_host import ProtocolError

from .cursor_rules import (
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
from .timeutil import api_epoch, api_instants, epoch_of, format_instant, parse_start

__all__ = [
    "CHECKPOINT_VERSION",
    "Cursor",
    "PageOutcome",
    "Sweep",
    "SweepWalker",
    "initial_cursor",
    "keys_of",
]

CHECKPOINT_VERSION = 1
_TIMESTAMP = operator.itemgetter("timestamp")


@dataclass
class Sweep:
    """One pass from the top of the log down to ``target``."""

    target: int
    top: int | None = None
    lower: int | None = None
    at_lower: set[str] = field(default_factory=set)
    recent: dict[str, int] = field(default_factory=dict)
    cursor: str | int | None = None
    resumed: bool = False

    def to_json(self) -> dict[str, Any]:
        """The sweep as checkpoint data."""
        return {
            "target": format_instant(self.target),
            "top": None if self.top is None else format_instant(self.top),
            "lower": None if self.lower is None else format_instant(self.lower),
            "at_lower": sorted(self.at_lower),
            "recent": [[k, v] for k, v in self.recent.items()],
            "cursor": self.cursor,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sweep:
        """A sweep from checkpoint data."""
        return cls(
            target=_instant(data["target"]),
            top=_maybe_instant(data.get("top")),
            lower=_maybe_instant(data.get("lower")),
            at_lower=set(map(str, data.get("at_lower") or [])),
            recent={str(k): int(v) for k, v in data.get("recent") or []},
            cursor=data.get("cursor"),
            resumed=True,
        )


def _instant(text: str) -> int:
    return int(parse_start(str(text)).timestamp())


def _maybe_instant(text: Any) -> int | None:
    return None if text is None else _instant(text)


@dataclass
class Cursor:
    """Everything the input needs to resume: the committed checkpoint, parsed."""

    floor: int
    backfill_start: str | None
    high_water: int | None = None
    seen: dict[str, int] = field(default_factory=dict)
    sweep: Sweep | None = None

    def to_json(self) -> dict[str, Any]:
        """The cursor as a fresh, JSON-ready checkpoint (safe to keep after later changes)."""
        return {
            "version": CHECKPOINT_VERSION,
            "floor": format_instant(self.floor),
            "backfill_start": self.backfill_start,
            "high_water": None if self.high_water is None else format_instant(self.high_water),
            "seen": [[k, v] for k, v in self.seen.items()],
            "sweep": None if self.sweep is None else self.sweep.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cursor:
        """A cursor from a committed checkpoint; ValueError if it is not one of ours."""
        if data.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {data.get('version')!r} is not supported")
        sweep = data.get("sweep")
        return cls(
            floor=_instant(data["floor"]),
            backfill_start=data.get("backfill_start"),
            high_water=_maybe_instant(data.get("high_water")),
            seen={str(k): int(v) for k, v in data.get("seen") or []},
            sweep=Sweep.from_json(sweep) if sweep else None,
        )

    def target(self, lookback: int) -> int:
        """Where the next sweep stops: lookback below the newest delivered, not below the floor."""
        return sweep_target(self.floor, self.high_water, lookback)

    def begin(self, lookback: int) -> Sweep:
        """The sweep to run now: the interrupted one, or a new one down to the target."""
        if self.sweep is None:
            self.sweep = Sweep(target=self.target(lookback))
        return self.sweep

    def finish(self, lookback: int) -> None:
        """Close the sweep: raise the high-water mark, keep only the keys still in the overlap."""
        sweep = self.sweep
        if sweep is None:
            return
        self.high_water = advance_high_water(self.high_water, sweep.top)
        self.seen = merge_seen(self.seen, sweep.recent, self.high_water, lookback)
        self.sweep = None


def initial_cursor(floor: int, backfill_start: str | None) -> Cursor:
    """The cursor of a pipeline's first run, collecting from ``floor`` on."""
    return Cursor(floor=floor, backfill_start=backfill_start)


@dataclass
class PageOutcome:
    """What one API page yields: the records to deliver, and whether the sweep is done."""

    deliver: list[Mapping[str, Any]]
    done: bool


class SweepWalker:
    """Walks the pages of one sweep through the rules of ``cursor_rules``."""

    def __init__(self, cursor: Cursor, lookback: int, now: int) -> None:
        self.cursor = cursor
        self.lookback = lookback
        self.sweep = cursor.begin(lookback)
        self.now = now
        # A resumed sweep continues from its saved cursor exactly; only a rescan (no usable
        # cursor) must skip what the sweep had already passed.
        self.skipping = (
            self.sweep.resumed and self.sweep.cursor is None and self.sweep.lower is not None
        )
        self._window: collections.deque[Sequence[str]] = collections.deque()  # by page
        self._window_set: set[str] = set()
        self._window_size = 0
        # the saved cursor a resumed sweep starts from counts as used: its return is a loop
        self._cursors: set[str] = set() if self.sweep.cursor is None else {
            repr(self.sweep.cursor)}
        self._last_page: tuple[str, ...] | None = None
        self._old_run = 0                 # events in a row below the target
        self._lowest: int | None = None   # the oldest time this run's pages reached
        self._stall = Stall()

    def use_cursor(self, cursor: str | int | None) -> None:
        """Note the API cursor that fetches the next page; a repeat is a loop."""
        if cursor is not None:
            token = repr(cursor)
            if token in self._cursors:
                raise ProtocolError(
                    "Postman returned the same nextCursor twice in one run (a pagination "
                    "loop); stopped so it cannot repeat forever"
                )
            self._cursors.add(token)
        self.sweep.cursor = cursor

    def rescan_from_lower(self) -> None:
        """The saved cursor was refused: rescan from ``lower``'s day, skipping what was passed."""
        self.sweep.cursor = None
        self.skipping = self.sweep.lower is not None

    def page(self, records: Sequence[Any], has_next: bool) -> PageOutcome:
        """Process one page in API order; return what to deliver and whether to stop."""
        keys = page_keys(records)
        if keys and keys == self._last_page:
            raise ProtocolError(
                "Postman returned the same page twice in a row; stopped rather than loop"
            )
        self._last_page = keys
        key_set = set(keys)
        before = self._lowest
        simple = len(key_set) == len(keys) and not self.skipping
        bulk = self._bulk(records, keys, key_set) if simple else None
        delivered: Sequence[str]
        passed: Sequence[str]
        if bulk is not None:
            deliver, delivered, passed = bulk, keys, keys
        else:
            deliver, delivered, passed = self._walk(records, keys, key_set)
        sweep = self.sweep
        sweep.recent = prune_recent(sweep.recent, sweep.top, self.lookback)
        repeated = repeats_only(passed, len(delivered), self._window_set)
        self._remember(delivered)
        self._stall = count_stall(
            self._stall, before, self._lowest, self.skipping, len(records), repeated)
        return PageOutcome(deliver, sweep_done(len(records), has_next, self._old_run))

    def _walk(
        self, records: Sequence[Any], keys: Sequence[str], key_set: set[str]
    ) -> tuple[list[Mapping[str, Any]], list[str], list[str]]:
        """Any page, record by record: what to deliver, its keys, and the keys passed."""
        sweep, now, lookback = self.sweep, self.now, self.lookback
        lower, at_lower, top, target = sweep.lower, sweep.at_lower, sweep.top, sweep.target
        known = known_keys(key_set, self._window_set, self.cursor.seen.keys(),
                           sweep.recent.keys())
        boundary = lower  # the second the last page ended on, until this page moves off it
        seconds: list[int] = []  # of the events passed: at or after the target, not skipped
        passed: list[str] = []
        delivered: list[str] = []
        deliver: list[Mapping[str, Any]] = []
        for record, key in zip(records, keys, strict=True):
            ts = event_time(_stamp(record), seconds[-1] if seconds else lower, top, now)
            if not in_sweep(ts, target):
                self._old_run += 1
                continue
            self._old_run = 0
            if self.skipping:  # a rescan, until it is past what the sweep had passed
                if already_passed(ts, key, lower, at_lower):
                    continue
                self.skipping = False
            top = advance_top(top, ts, now)
            if ts != boundary:
                boundary = None
            seconds.append(ts)
            passed.append(key)
            if is_repeat(key, ts, known, boundary, at_lower):
                continue
            known.add(key)
            delivered.append(key)
            deliver.append(record)
            if in_lookback(ts, top, lookback):
                sweep.recent[key] = ts
        sweep.top = top
        sweep.lower, sweep.at_lower = advance_boundary(lower, at_lower, seconds, passed)
        self._lowest = lowest_reached(self._lowest, min(seconds, default=None))
        return deliver, delivered, passed

    def _bulk(
        self, records: Sequence[Any], keys: tuple[str, ...], key_set: set[str]
    ) -> list[Mapping[str, Any]] | None:
        """The common page at once: every event new, timed in the API's own shape, inside
        the sweep, none from the future, the newest first. The rules the walk applies to
        each event, applied to the page's newest, oldest and last seconds, give the same
        state; None (and nothing changed) when the page is not that simple."""
        if not records or set(map(type, records)) != {dict}:
            return None
        try:
            texts = list(map(_TIMESTAMP, records))
        except KeyError:
            return None
        span = api_instants(texts)  # then texts order as their instants, and all parse
        if span is None or span[1] != texts[0]:
            return None
        sweep, lookback = self.sweep, self.lookback
        newest, oldest = api_epoch(texts[0]), api_epoch(span[0])
        if not in_sweep(oldest, sweep.target) or future_stamped(newest, self.now):
            return None
        # no key known and none passed at the boundary: no event of the page is a repeat
        if known_keys(key_set, self._window_set, self.cursor.seen.keys(), sweep.recent.keys(),
                      sweep.at_lower):
            return None
        lower, at_lower = advance_boundary(sweep.lower, sweep.at_lower, _Seconds(texts), keys)
        top = advance_top(sweep.top, newest, self.now)  # the newest first: the page's top
        if in_lookback(oldest, top, lookback):
            sweep.recent.update(zip(keys, map(api_epoch, texts), strict=True))
        elif in_lookback(newest, top, lookback):  # a backfill's pages are mostly all below
            sweep.recent.update({k: t for k, t in zip(keys, map(api_epoch, texts), strict=True)
                                 if in_lookback(t, top, lookback)})
        sweep.top, sweep.lower, sweep.at_lower = top, lower, at_lower
        self._lowest = lowest_reached(self._lowest, oldest)
        self._old_run = 0
        return list(records)

    def _remember(self, keys: Sequence[str]) -> None:
        """Add a page's delivered keys to the rolling window of recent keys: the newest
        pages holding at least ``WINDOW_KEYS`` keys (or all of them, if fewer)."""
        if not keys:
            return
        self._window.append(keys)
        self._window_set.update(keys)
        self._window_size += len(keys)
        while self._window_size - len(self._window[0]) >= WINDOW_KEYS:
            oldest = self._window.popleft()
            self._window_set.difference_update(oldest)
            self._window_size -= len(oldest)

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint that holds once the pages so far are delivered."""
        return self.cursor.to_json()

    def finish(self) -> dict[str, Any]:
        """Close the sweep and return the final checkpoint."""
        self.cursor.finish(self.lookback)
        return self.cursor.to_json()


def keys_of(records: Iterable[Any]) -> list[str]:
    """The keys of records, in order (a helper for tests and tools)."""
    return [record_key(r) for r in records]


def _stamp(record: Any) -> int | None:
    """The epoch second a record is stamped with; None when it has no usable one."""
    if type(record) is dict or isinstance(record, Mapping):
        return epoch_of(record.get("timestamp"))
    return None


class _Seconds(Sequence[int]):
    """The seconds of timestamp texts ``api_instants`` accepted, each read when asked for:
    the boundary rule reads a page's first and last few."""

    def __init__(self, texts: Sequence[str]) -> None:
        self._texts = texts

    def __len__(self) -> int:
        return len(self._texts)

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[int]: ...

    def __getitem__(self, index: int | slice) -> int | Sequence[int]:
        if isinstance(index, slice):
            return [api_epoch(text) for text in self._texts[index]]
        return api_epoch(self._texts[index])
