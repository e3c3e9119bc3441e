"""The rules of the Postman cursor, each a small pure function on plain values.

Times are whole epoch seconds, keys are record keys (``record_key``). Nothing here keeps
state or does I/O: ``cursor.py`` holds the state (``Cursor``, ``Sweep``) and walks each
page through these rules, and ``tests/test_postman_cursor_rules.py`` tests each one alone.

A sweep pages newest-first down to its *target*. On the way it keeps:

- the *top*: the newest time it delivered, which becomes the next high water;
- the *boundary*: the second it has reached (``lower``) and the keys it passed there
  (``at_lower``), so a page that continues that second, or a rescan after a refused
  cursor, can tell what was already passed;
- ``recent``: the keys it delivered inside the lookback below its top, merged into the
  cursor's ``seen`` when it finishes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import operator
from collections.abc import Container, Iterable, Mapping, Sequence, Set
from typing import Any, NamedTuple

from plugin_host import ProtocolError

__all__ = [
    "FUTURE_SKEW", "IDLE_PAGES", "MAX_SAME_SECOND", "STALL_PAGES", "WINDOW_KEYS", "Stall",
    "advance_boundary", "advance_high_water", "advance_top", "already_passed", "count_stall",
    "event_time", "future_stamped", "in_lookback", "in_sweep", "is_repeat", "known_keys",
    "lowest_reached", "merge_seen", "page_keys", "prune_recent", "record_key", "repeats_only",
    "sweep_done", "sweep_target",
]

WINDOW_KEYS = 5000          # keys remembered within a sweep to drop repeated pages
MAX_SAME_SECOND = 10_000    # more events than this in one second is taken as a loop
STALL_PAGES = 1000          # pages in a row that reach no older event are taken as a loop
IDLE_PAGES = 20             # ... or 20 that only repeat events already paged in this run
FUTURE_SKEW = 300           # events stamped further ahead of now do not move the high water
OLD_EVENTS_TO_STOP = 2      # events in a row below the target that end a sweep

_SECOND = operator.itemgetter(0)


# -- identity ----------------------------------------------------------------------------


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
    text = json.dumps(record, sort_keys=True, default=str, ensure_ascii=False)
    # surrogatepass: a lone surrogate (valid JSON text) must not crash the run
    return "h:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def page_keys(records: Iterable[Any]) -> tuple[str, ...]:
    """The keys of a page's records, in order (the common integer ``id`` read inline)."""
    return tuple([
        str(r["id"]) if type(r) is dict and type(r.get("id")) is int else record_key(r)
        for r in records
    ])


# -- where a sweep runs --------------------------------------------------------------------


def sweep_target(floor: int, high_water: int | None, lookback: int) -> int:
    """Where a new sweep stops: lookback below the newest delivered, never below the floor."""
    if high_water is None:
        return floor
    return max(floor, high_water - lookback)


def event_time(stamp: int | None, position: int | None, top: int | None, now: int) -> int:
    """An event's second; one without a usable time sits where the stream is: at the last
    event passed, else at the top, else now."""
    if stamp is not None:
        return stamp
    return position if position is not None else (top or now)


def in_sweep(ts: int, target: int) -> bool:
    """Whether an event at ``ts`` is one the sweep collects: at or after its target."""
    return ts >= target


def sweep_done(events: int, has_next: bool, old_run: int) -> bool:
    """A sweep ends on an empty page, on the last page, or past two events below the target."""
    return not events or not has_next or old_run >= OLD_EVENTS_TO_STOP


def already_passed(ts: int, key: str, lower: int | None, at_lower: Container[str]) -> bool:
    """In a rescan after a refused cursor: an event the interrupted sweep had passed, newer
    than the second it stopped at (``lower``), or at that second with a key it passed there.

    Events newer than the sweep's top are passed too, without raising the top: the next
    sweep collects them (its target is below this top), and a higher top would move its
    target past them.
    """
    return lower is not None and (ts > lower or (ts == lower and key in at_lower))


# -- the top and the high water -------------------------------------------------------------


def future_stamped(ts: int, now: int) -> bool:
    """Stamped more than ``FUTURE_SKEW`` ahead of now (a clock gone wrong upstream)."""
    return ts > now + FUTURE_SKEW


def advance_top(top: int | None, ts: int, now: int) -> int | None:
    """The sweep's top after an event at ``ts``: the newer of the two, unless the event is
    stamped in the future (the next target would pass over real events)."""
    if (top is None or ts > top) and not future_stamped(ts, now):
        return ts
    return top


def advance_high_water(high_water: int | None, top: int | None) -> int | None:
    """The high water after a sweep that reached ``top``: it never goes down."""
    if top is None:
        return high_water
    return max(high_water or top, top)


# -- repeats ------------------------------------------------------------------------------


def known_keys(keys: Set[str], *known: Set[str]) -> set[str]:
    """Those of a page's keys already in any of the ``known`` sets of keys."""
    found: set[str] = set()
    for other in known:
        found.update(other & keys)
    return found


def is_repeat(
    key: str, ts: int, known: Container[str], boundary: int | None, at_boundary: Container[str]
) -> bool:
    """An event delivered before: its key is ``known`` (see ``known_keys``; a page adds what
    it delivers), or it is at the ``boundary`` second that the page still continues (from
    where the last page ended, without moving off it) and its key was passed there."""
    return key in known or (ts == boundary and key in at_boundary)


def repeats_only(passed: Iterable[str], delivered: int, window: set[str]) -> bool:
    """Whether a page only repeated events already on this run's recent pages: it delivered
    nothing, and every event it passed is in the window of recent pages."""
    return not delivered and window.issuperset(passed)


# -- the boundary ----------------------------------------------------------------------------


def advance_boundary(
    lower: int | None, at_lower: set[str], seconds: Sequence[int], keys: Sequence[str]
) -> tuple[int | None, set[str]]:
    """The boundary after a page passed events at ``seconds`` (with ``keys``), in API order:
    the last event's second, with the keys passed there since the page reached it, plus
    ``at_lower`` when the whole page stayed in the second ``lower``. More than
    ``MAX_SAME_SECOND`` keys at one second is a loop: ProtocolError."""
    if not seconds:
        return lower, at_lower
    last = seconds[-1]
    start = len(seconds) - 1
    while start and seconds[start - 1] == last:
        start -= 1
    lead = 0  # events continuing the second the previous page ended on
    while lead < len(seconds) and seconds[lead] == lower:
        lead += 1
    held = at_lower.union(keys[:lead]) if lead else at_lower
    if (lead and len(held) > MAX_SAME_SECOND) or (
        len(seconds) > MAX_SAME_SECOND and _largest_run(seconds, keys) > MAX_SAME_SECOND
    ):
        raise ProtocolError(
            f"Postman returned over {MAX_SAME_SECOND} events in one second; "
            "taken as a pagination loop and stopped"
        )
    if start == 0 and last == lower:
        return last, held
    return last, set(keys[start:])


def _largest_run(seconds: Sequence[int], keys: Sequence[str]) -> int:
    """The most keys of one run of events in the same second (only a page longer than
    ``MAX_SAME_SECOND`` can hold a run that long of its own)."""
    pairs = zip(seconds, keys, strict=True)
    return max(len({key for _, key in run}) for _, run in itertools.groupby(pairs, _SECOND))


# -- the overlap and what is seen -------------------------------------------------------------


def in_lookback(ts: int, top: int | None, lookback: int) -> bool:
    """Whether ``ts`` is inside the lookback below ``top`` (everything is, without a top)."""
    return top is None or ts >= top - lookback


def prune_recent(recent: dict[str, int], top: int | None, lookback: int) -> dict[str, int]:
    """A sweep's ``recent`` keys, cut back to the lookback below its top once they outgrow
    twice ``WINDOW_KEYS`` (until then, ``recent`` itself)."""
    if top is None or len(recent) <= 2 * WINDOW_KEYS:
        return recent
    return {k: t for k, t in recent.items() if in_lookback(t, top, lookback)}


def merge_seen(
    seen: Mapping[str, int], recent: Mapping[str, int], high_water: int | None, lookback: int
) -> dict[str, int]:
    """The cursor's ``seen`` after a sweep: its own and the sweep's keys, only those inside
    the lookback below the high water (without one: all, only future-stamped events)."""
    merged = {**seen, **recent}
    return {k: t for k, t in merged.items() if in_lookback(t, high_water, lookback)}


# -- loops ---------------------------------------------------------------------------------


class Stall(NamedTuple):
    """Pages in a row that reached no older time, their events, and those of the pages that
    only repeated this run's events."""

    pages: int = 0
    events: int = 0
    idle: int = 0


def lowest_reached(lowest: int | None, oldest: int | None) -> int | None:
    """The oldest time this run's pages reached, after a page that reached ``oldest``."""
    if oldest is None:
        return lowest
    return oldest if lowest is None else min(lowest, oldest)


def count_stall(
    stall: Stall, before: int | None, after: int | None, rescanning: bool, events: int,
    repeated: bool,
) -> Stall:
    """The stall after a page that took the oldest time reached from ``before`` to ``after``.

    Newest first, every page must reach further back in time or, a same-second burst, stay
    at its oldest second (a rescan passing again what was passed does not count). Pages that
    reach nothing older, whether they repeat one second or go round a cycle of pages, are a
    loop past ``STALL_PAGES`` pages, ``MAX_SAME_SECOND`` events, or ``IDLE_PAGES`` pages that
    only ``repeated`` this run's events: ProtocolError.
    """
    if before is None or after != before or rescanning:
        return Stall()
    now = Stall(stall.pages + 1, stall.events + events, stall.idle + 1 if repeated else 0)
    if now.pages >= STALL_PAGES or now.events > MAX_SAME_SECOND or now.idle >= IDLE_PAGES:
        raise ProtocolError(
            f"Postman pagination did not move back in time for {now.pages} pages "
            f"({now.events} events, {now.idle} pages of repeats); "
            "stopped rather than loop"
        )
    return now
