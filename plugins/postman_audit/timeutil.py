"""Time helpers for the Postman input: parse the API's timestamps and users' start times."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone

__all__ = ["epoch_of", "epochs_of", "format_instant", "parse_start", "since_date", "until_date"]

_START = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?)?$",
    re.IGNORECASE,
)


def parse_start(text: str) -> datetime:
    """A date or RFC 3339 date-time as an aware UTC datetime; UTC when no offset is given.

    Raises ValueError with a short reason when the text is not a real date or time.
    """
    match = _START.match(text.strip())
    if not match:
        raise ValueError("must be a date (2026-01-01) or a date-time (2026-01-01T08:00:00Z)")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        value = datetime(
            int(year), int(month), int(day),
            int(hour or 0), int(minute or 0), int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
        )
    except ValueError as exc:
        raise ValueError(f"is not a real date or time ({exc})") from None
    if offset and offset.upper() != "Z":
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            raise ValueError("has an offset that is not a real one")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        return value.replace(tzinfo=tz).astimezone(timezone.utc)
    return value.replace(tzinfo=timezone.utc)


_EPOCH = datetime(1970, 1, 1)
_SECOND = timedelta(seconds=1)


def _fast_epoch(ts: str) -> int | None:
    """The API's own shape, ``YYYY-MM-DDTHH:MM:SS[.fff]Z``, parsed by the C parser of
    ``datetime.fromisoformat`` on its first 19 characters (three times faster)."""
    if len(ts) < 20 or ts[10] != "T" or ts[13] != ":" or ts[16] != ":":
        return None
    tail = ts[19:]
    if tail != ".000Z" and tail != "Z" and not (
        tail[0] == "." and tail[-1] == "Z" and tail[1:-1].isdigit() and tail.isascii()
    ):
        return None
    try:
        moment = datetime.fromisoformat(ts[:19])
    except ValueError:
        return None
    return (moment - _EPOCH) // _SECOND


def epoch_of(timestamp: object) -> int | None:
    """Whole epoch seconds of an API timestamp (``2026-06-15T16:24:56.000Z``); None if unusable."""
    if type(timestamp) is not str:
        return None
    fast = _fast_epoch(timestamp)
    if fast is not None:
        return fast
    text = timestamp.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() // 1)


def epochs_of(timestamps: Iterable[object]) -> list[int | None]:
    """``epoch_of`` of each value; the API's usual ``….000Z`` shape without a call apiece."""
    parse, epoch, second = datetime.fromisoformat, _EPOCH, _SECOND
    result: list[int | None] = []
    append = result.append
    for ts in timestamps:
        if (type(ts) is str and len(ts) == 24 and ts[19:] == ".000Z" and ts[10] == "T"
                and ts[13] == ":" and ts[16] == ":"):
            try:
                append((parse(ts[:19]) - epoch) // second)
                continue
            except ValueError:
                pass
        append(epoch_of(ts))
    return result


@functools.lru_cache(maxsize=1024)  # a checkpoint per page repeats the same few instants
def format_instant(epoch: int) -> str:
    """Epoch seconds as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(epoch: int) -> date:
    return datetime.fromtimestamp(epoch, timezone.utc).date()


def since_date(target: int, oldest_allowed: date) -> str:
    """The ``since`` to send so ``target`` is covered whether the API's bound is inclusive,
    exclusive, by day or by instant: the day before ``target``'s day, not before ``oldest_allowed``.
    """
    return max(_day(target) - timedelta(days=1), oldest_allowed).isoformat()


def until_date(lower: int) -> str:
    """The ``until`` that still covers instant ``lower`` under every reading of the bound."""
    return (_day(lower) + timedelta(days=1)).isoformat()
