"""The incremental cursor of the Postman input, as small pure functions and one state record.

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

Nothing here does I/O; ``PostmanAuditInput`` feeds pages in and yields what comes out.
"""

from __future__ import annotations

import collections
import hashlib
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plugin_host import ProtocolError

from .timeutil import api_epoch, api_instants, epoch_of, format_instant, parse_start

__all__ = [
    "CHECKPOINT_VERSION",
    "Cursor",
    "PageOutcome",
    "Sweep",
    "initial_cursor",
    "record_key",
]

CHECKPOINT_VERSION = 1
_TIMESTAMP = operator.itemgetter("timestamp")
WINDOW_KEYS = 5000          # keys remembered within a sweep to drop repeated pages
MAX_SAME_SECOND = 10_000    # more events than this in one second is taken as a loop
STALL_PAGES = 1000          # pages in a row that reach no older event are taken as a loop
IDLE_PAGES = 20             # ... or 20 that only repeat events already paged in this run
FUTURE_SKEW = 300           # events stamped further ahead of now do not move the high water


def record_key(record: Any) -> str:
    """A record's identity: its ``id`` (``123`` and ``"123"`` alike), else a content hash."""
    if isinstance(record, Mapping):
        ident = record.get("id")
        if isinstance(ident, bool):
            ident = None
        if isinstance(ident, int):
            return str(ident)
        if isinstance(ident, str) and ident.strip():
            return ident.strip()
    import json

    text = json.dumps(record, sort_keys=True, default=str, ensure_ascii=False)
    # surrogatepass: a lone surrogate (valid JSON text) must not crash the run
    return "h:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


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
        if self.high_water is None:
            return self.floor
        return max(self.floor, self.high_water - lookback)

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
        if sweep.top is not None:
            self.high_water = max(self.high_water or sweep.top, sweep.top)
        merged = {**self.seen, **sweep.recent}  # without a high water: only future-stamped
        if self.high_water is not None:
            keep_from = self.high_water - lookback
            merged = {k: t for k, t in merged.items() if t >= keep_from}
        self.seen = merged
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
    """Feeds the pages of one sweep through the dedupe and stop rules."""

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
        self._old_run = 0
        self._lowest: int | None = None   # the oldest time this run's pages reached
        self._stalled = 0                 # pages in a row that reached no older time
        self._stalled_events = 0          # events on those pages
        self._idle = 0                    # stalled pages that only repeat this run's events

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
        keys = tuple([  # the common record inline, anything else through record_key
            str(r["id"]) if type(r) is dict and type(r.get("id")) is int else record_key(r)
            for r in records
        ])
        if keys and keys == self._last_page:
            raise ProtocolError(
                "Postman returned the same page twice in a row; stopped rather than loop"
            )
        self._last_page = keys
        sweep, seen = self.sweep, self.cursor.seen
        target, lookback, latest = sweep.target, self.lookback, self.now + FUTURE_SKEW
        window, recent = self._window_set, sweep.recent
        top, lower, at_lower, lowest_now = sweep.top, sweep.lower, sweep.at_lower, self._lowest
        # keys repeated within this page are rare: track them only when there are some
        key_set = set(keys)
        in_page: set[str] | None = set() if len(key_set) != len(keys) else None
        lowest = self._lowest
        bulk = None if in_page is not None or self.skipping else self._bulk(records, keys, key_set)
        if bulk is not None:
            self._stall_check(lowest, len(records), repeats_only=False)
            return PageOutcome(bulk, not has_next)
        repeats_only = True  # every event of the page was already on a page of this run
        deliver: list[Mapping[str, Any]] = []
        delivered: list[str] = []
        for record, key in zip(records, keys, strict=True):
            ts = epoch_of(record.get("timestamp")) if (
                type(record) is dict or isinstance(record, Mapping)) else None
            if ts is None:  # no usable time: it sits where the stream is
                ts = lower if lower is not None else (top or self.now)
            if ts < target:
                self._old_run += 1
                continue
            self._old_run = 0
            if self.skipping:
                # A rescan passes again what the sweep had passed, and events newer than its
                # top: the next sweep collects those (its target is below this top), so they
                # must not raise the top, or the next target would pass over them.
                assert lower is not None
                if ts > lower or (ts == lower and key in at_lower):
                    continue
                self.skipping = False
            # An event stamped in the future (a clock gone wrong upstream) is delivered, but
            # must not become the high water: the next target would pass over real events.
            if (top is None or ts > top) and ts <= latest:
                top = ts
            if lowest_now is None or ts < lowest_now:
                lowest_now = ts
            in_window = key in window or (in_page is not None and key in in_page)
            if not in_window:
                repeats_only = False
            # ``recent`` holds what this sweep delivered before it was interrupted: a resumed
            # sweep whose upstream serves those again (a loop, a cursor that went back) skips them
            duplicate = in_window or key in seen or key in recent or (
                ts == lower and key in at_lower)
            if ts != lower:
                lower, at_lower = ts, set()
            at_lower.add(key)
            if len(at_lower) > MAX_SAME_SECOND:
                raise ProtocolError(
                    f"Postman returned over {MAX_SAME_SECOND} events in one second; "
                    "taken as a pagination loop and stopped"
                )
            if duplicate:
                continue
            if in_page is not None:
                in_page.add(key)
            delivered.append(key)
            if top is None or ts >= top - lookback:
                recent[key] = ts
            deliver.append(record)
        sweep.top, sweep.lower, sweep.at_lower, self._lowest = top, lower, at_lower, lowest_now
        self._remember(delivered)
        if sweep.top is not None and sweep.recent:
            floor = sweep.top - self.lookback
            if len(sweep.recent) > 2 * WINDOW_KEYS:
                sweep.recent = {k: t for k, t in sweep.recent.items() if t >= floor}
        self._stall_check(lowest, len(records), repeats_only)
        done = not records or not has_next or self._old_run >= 2
        return PageOutcome(deliver, done)

    def _stall_check(self, lowest: int | None, count: int, repeats_only: bool) -> None:
        """Newest first, every page must reach further back in time, or (a same-second
        burst) stay at its oldest second; pages that reach nothing older, whether they repeat
        one second or go round a cycle of pages, are a loop past these bounds."""
        still = lowest is not None and self._lowest == lowest and not self.skipping
        self._stalled = self._stalled + 1 if still else 0
        self._stalled_events = self._stalled_events + count if still else 0
        self._idle = self._idle + 1 if still and repeats_only else 0
        if (self._stalled >= STALL_PAGES or self._stalled_events > MAX_SAME_SECOND
                or self._idle >= IDLE_PAGES):
            raise ProtocolError(
                f"Postman pagination did not move back in time for {self._stalled} pages "
                f"({self._stalled_events} events, {self._idle} pages of repeats); "
                "stopped rather than loop"
            )

    def _bulk(
        self, records: Sequence[Any], keys: tuple[str, ...], key_set: set[str]
    ) -> list[Mapping[str, Any]] | None:
        """The common page, in bulk: every event new, timed, inside the sweep, none from the
        future, the newest first. Gives the same state as the record-by-record loop, or
        None (and changes nothing) when the page is not that simple."""
        if not records or set(map(type, records)) != {dict}:
            return None
        try:
            texts = list(map(_TIMESTAMP, records))
        except KeyError:
            return None
        span = api_instants(texts)  # then texts order as their instants, and all parse
        if span is None:
            return None
        sweep, newest_text = self.sweep, texts[0]
        if span[1] != newest_text:
            return None
        newest, oldest = api_epoch(newest_text), api_epoch(span[0])
        if oldest < sweep.target or newest > self.now + FUTURE_SKEW:
            return None
        at_lower = sweep.at_lower
        if not (self._window_set.isdisjoint(key_set)
                and self.cursor.seen.keys().isdisjoint(key_set)
                and sweep.recent.keys().isdisjoint(key_set) and at_lower.isdisjoint(key_set)):
            return None
        last_text = texts[-1]
        last = api_epoch(last_text)
        start = len(texts) - 1
        while start > 0 and texts[start - 1] == last_text:
            start -= 1
        lead = 0  # events continuing the second the previous page ended on
        while lead < len(texts) and api_epoch(texts[lead]) == sweep.lower:
            lead += 1
        if len(at_lower) + lead > MAX_SAME_SECOND:
            return None  # the loop raises it, with its message
        whole_page_continues = start == 0 and last == sweep.lower
        at_lower = at_lower | key_set if whole_page_continues else set(keys[start:])
        if len(at_lower) > MAX_SAME_SECOND:
            return None
        top = newest if sweep.top is None else max(sweep.top, newest)
        keep_from = top - self.lookback  # a backfill's pages are mostly all below it
        if oldest >= keep_from:
            sweep.recent.update(zip(keys, map(api_epoch, texts), strict=True))
        elif newest >= keep_from:
            sweep.recent.update({k: t for k, t in zip(keys, map(api_epoch, texts), strict=True)
                                 if t >= keep_from})
        sweep.top, sweep.lower, sweep.at_lower = top, last, at_lower
        self._lowest = oldest if self._lowest is None else min(self._lowest, oldest)
        self._old_run = 0
        self._remember(keys)
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
