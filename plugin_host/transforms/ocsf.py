"""The ``ocsf`` transform: each record becomes OCSF events, by the mapping its input ships.

An input ships a mapping by implementing ``HasOcsfMapping``: a classmethod
``ocsf_mapping()`` returning a function from one record to a list of OCSF events (dicts),
which raises ``Unmappable`` for a record that cannot be one. The transform calls it on
every record, in order, and keeps the original record, as compact JSON, in each event's
``raw_data`` (setting ``raw_data: false`` leaves it out).

Nothing is lost: a record the mapping refuses, or fails on, is delivered as it came, and
the page's first such record is named in one WARNING line.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import orjson

from .._contract import TransformContext
from .._exceptions import ConfigError
from .._words import plural

__all__ = ["HasOcsfMapping", "OcsfMapping", "OcsfTransform", "Unmappable"]

OcsfMapping = Callable[[Mapping[str, Any]], list[dict[str, Any]]]
"""One record → its OCSF events (one or more), each a new dict the transform may extend;
the objects inside may be shared with other events (a mapping remembers what repeats), so
a step after the transform copies what it changes."""


class Unmappable(ValueError):
    """A record that cannot be an OCSF event (no time, no action): it is delivered as it
    came. The message completes "the record ..." (``has no timestamp``)."""


@runtime_checkable
class HasOcsfMapping(Protocol):
    """An input class that ships its OCSF mapping, for the ``ocsf`` transform (a
    classmethod, so the class itself satisfies the protocol)."""

    def ocsf_mapping(self) -> OcsfMapping:
        """The function that maps one of the input's records to its OCSF events."""
        ...


class OcsfTransform:
    """Maps each record to OCSF events with the mapping the pipeline's input ships."""

    manifest: ClassVar[Mapping[str, Any]] = {
        "name": "ocsf",
        "title": "OCSF events",
        "description": "Maps each record to OCSF events (Open Cybersecurity Schema Framework) "
                       "with the mapping the pipeline's input ships; a record that cannot be "
                       "mapped is delivered as it came, with a warning.",
        "settings": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "raw_data": {
                    "type": "boolean",
                    "default": True,
                    "description": "Keep the original record, as compact JSON, in each "
                                   "event's raw_data.",
                },
            },
        },
    }

    def __init__(self, settings: Mapping[str, Any], context: TransformContext) -> None:
        cls = context.input_class
        if not isinstance(cls, HasOcsfMapping):
            raise ConfigError(
                f"transform ocsf needs an input that ships an OCSF mapping; input "
                f"{context.input_name} ships none (its class has no ocsf_mapping())"
            )
        self._map: OcsfMapping = cls.ocsf_mapping()
        self._raw: bool = bool(settings.get("raw_data", True))
        self._log: logging.Logger = context.logger

    def apply(self, records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Each record's OCSF events, in order; a record that cannot be mapped, as it came."""
        out: list[Mapping[str, Any]] = []
        append, extend, mapping, raw = out.append, out.extend, self._map, self._raw
        dumps = orjson.dumps
        refused: list[str] = []
        # The events are young containers that live until the page is written: the
        # collector, run every few hundred of them, would walk the page again and again.
        # It waits until the page is mapped (a cycle made meanwhile is collected then).
        collecting = gc.isenabled()
        gc.disable()
        try:
            for record in records:
                try:
                    events = mapping(record)
                    if raw:
                        try:
                            text = dumps(record).decode("utf-8")
                        except TypeError:  # integers beyond 64 bits
                            text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
                        for event in events:
                            event["raw_data"] = text
                except Exception as exc:  # a record is never lost to a mapping, even a broken one
                    refused.append(_why(record, exc))
                    append(record)
                    continue
                extend(events)
        finally:
            if collecting:
                gc.enable()
        if refused:
            self._log.warning("%s could not be mapped to OCSF and %s (%s)",
                              plural(len(refused), "record"),
                              "was delivered as it came" if len(refused) == 1
                              else "were delivered as they came", refused[0])
        return out


def _why(record: Any, exc: Exception) -> str:
    """Which record the mapping refused and why, in one short phrase (no field values
    beyond the record's id)."""
    rid = record.get("id") if isinstance(record, Mapping) else None
    which = f"record {rid}" if type(rid) in (int, str) and len(str(rid)) <= 40 else "a record"
    if isinstance(exc, Unmappable):
        return f"{which} {exc}"
    return f"{which}: the mapping failed with {type(exc).__name__}"
