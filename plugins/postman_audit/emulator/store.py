"""The emulator's events: an immutable snapshot in (timestamp, id) order, each event's JSON
serialized once, replaced whole (copy-on-write) when events are added."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .fakedata import dumps

__all__ = ["SPAN", "Snapshot"]

SPAN = 1 << 40  # composite sort key: timestamp * SPAN + id


def _people(event: dict[str, Any]) -> tuple[int, ...]:
    data = event["data"]
    return tuple(p["id"] for p in (data.get("actor"), data.get("user")) if p)


@dataclass(frozen=True)
class Snapshot:
    """Immutable view of the event store, column by column, sorted by ``keys``."""

    keys: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    people: list[tuple[int, ...]] = field(default_factory=list)
    by_id: dict[int, int] = field(default_factory=dict)

    def with_events(self, new: list[tuple[int, dict[str, Any]]]) -> Snapshot:
        """A new snapshot holding these events plus ``new`` ((timestamp, event) pairs)."""
        old = self
        entries = [
            (ts * SPAN + e["id"], e["id"], dumps(e), e, e["action"], _people(e)) for ts, e in new
        ]
        entries.sort(key=lambda x: x[0])
        if old.keys and entries and entries[0][0] < old.keys[-1]:
            merged = sorted(
                [
                    *zip(
                        old.keys,
                        old.ids,
                        old.rows,
                        old.events,
                        old.actions,
                        old.people,
                        strict=True,
                    ),
                    *entries,
                ],
                key=lambda x: x[0],
            )
            cols: list[list[Any]] = [list(c) for c in zip(*merged, strict=True)]
        else:
            cols = [
                list(c) for c in (old.keys, old.ids, old.rows, old.events, old.actions, old.people)
            ]
            for entry in entries:
                for col, value in zip(cols, entry, strict=True):
                    col.append(value)
        by_id = dict(old.by_id)
        by_id.update((e[1], e[0]) for e in entries)
        keys, ids, rows, events, actions, people = cols
        return Snapshot(keys, ids, rows, events, actions, people, by_id)
