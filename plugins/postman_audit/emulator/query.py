"""The answer to ``GET /audit/logs``: its parameters checked (400 with Postman's bodies), then
one page of a snapshot of the events, newest or oldest first, and the cursor to the next."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone

from .config import MAX_LIMIT, EmulatorConfig
from .errors import INVALID_ACTION, INVALID_CURSOR, BadRequest, error_body
from .store import SPAN, Snapshot

__all__ = ["LogsQuery"]

_DAY = 86400
_RE_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z")
_RE_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})?\Z"
)
_RE_ACTION = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+\Z")
_RE_INT = re.compile(r"-?\d{1,18}\Z")


class LogsQuery:
    """One ``GET /audit/logs`` under the emulator's switches and clock at that moment."""

    __slots__ = ("_now", "config")

    def __init__(self, config: EmulatorConfig, now: datetime) -> None:
        self.config = config
        self._now = now

    def page(self, snap: Snapshot, q: Mapping[str, str]) -> bytes:
        """The 200 body of GET /audit/logs from ``snap``, or raise BadRequest."""
        cfg = self.config
        action = q.get("action")
        if action is not None and not _RE_ACTION.match(action):
            raise BadRequest(INVALID_ACTION)
        user_id = None
        if "userId" in q:
            if not _RE_INT.match(q["userId"]):
                raise self._bad_param("Invalid 'userId': expected an integer.")
            user_id = int(q["userId"])
        limit = cfg.default_limit
        if "limit" in q:
            if not _RE_INT.match(q["limit"]) or int(q["limit"]) < 1:
                raise self._bad_param("Invalid 'limit': expected a positive integer.")
            limit = int(q["limit"])
            if limit > MAX_LIMIT:
                if cfg.limit_over_max == "reject":
                    raise self._bad_param(
                        f"Invalid 'limit': must be less than or equal to {MAX_LIMIT}."
                    )
                limit = MAX_LIMIT
        order = (q.get("orderBy") or q.get("order_by") or "desc").lower()
        if order not in ("asc", "desc"):
            raise self._bad_param("Invalid 'orderBy': expected 'asc' or 'desc'.")
        floor = self._floor_day()
        lo_ts = int(datetime(floor.year, floor.month, floor.day, tzinfo=timezone.utc).timestamp())
        hi_ts = 1 << 40
        if "since" in q:
            lo_ts = max(lo_ts, self._bound(q["since"], "since", upper=False))
        if "until" in q:
            hi_ts = self._bound(q["until"], "until", upper=True)
        cursor_key = None
        if "cursor" in q:
            raw = q["cursor"]
            cid = int(raw) if _RE_INT.match(raw) else None
            cursor_key = snap.by_id.get(cid) if cid is not None else None
            if cursor_key is None:
                raise BadRequest(INVALID_CURSOR)
        keys = snap.keys
        lo = bisect.bisect_left(keys, lo_ts * SPAN)
        hi = bisect.bisect_right(keys, hi_ts * SPAN + SPAN - 1)
        pred: Callable[[int], bool] | None = None
        if action is not None or user_id is not None:
            acts, ppl = snap.actions, snap.people

            def match(i: int) -> bool:
                return (action is None or acts[i] == action) and (
                    user_id is None or user_id in ppl[i]
                )

            pred = match

        picked: list[int]
        nxt: int | None = None
        if order == "asc":
            start = lo if cursor_key is None else max(lo, bisect.bisect_left(keys, cursor_key))
            if pred is None:
                end = min(hi, start + limit)
                rows = snap.rows[start:end] if start < end else []
                nxt = snap.ids[end] if end < hi else None
            else:
                picked = self._scan(range(start, hi), pred, limit + 1)
                rows, nxt = self._split(snap, picked, limit)
        else:
            top = hi - 1
            if cursor_key is not None:
                top = min(top, bisect.bisect_left(keys, cursor_key))
            if pred is None:
                bottom = max(lo, top - limit + 1)
                rows = snap.rows[bottom : top + 1][::-1] if bottom <= top else []
                nxt = snap.ids[bottom - 1] if bottom - 1 >= lo and bottom <= top else None
            else:
                picked = self._scan(range(top, lo - 1, -1), pred, limit + 1)
                rows, nxt = self._split(snap, picked, limit)
        return b'{"trails":[' + b",".join(rows) + b"]" + self._cursor_bytes(nxt) + b"}"

    @staticmethod
    def _scan(indexes: range, pred: Callable[[int], bool], want: int) -> list[int]:
        out: list[int] = []
        for i in indexes:
            if pred(i):
                out.append(i)
                if len(out) == want:
                    break
        return out

    @staticmethod
    def _split(snap: Snapshot, picked: list[int], limit: int) -> tuple[list[bytes], int | None]:
        nxt = snap.ids[picked[limit]] if len(picked) > limit else None
        return [snap.rows[i] for i in picked[:limit]], nxt

    def _cursor_bytes(self, nxt: int | None) -> bytes:
        if nxt is None:
            return {"missing": b"", "null": b',"nextCursor":null', "empty": b',"nextCursor":""'}[
                self.config.end_signal
            ]
        if self.config.cursor_style == "string":
            return b',"nextCursor":"%d"' % nxt
        return b',"nextCursor":%d' % nxt

    def _bound(self, value: str, name: str, upper: bool) -> int:
        """Epoch-second bound (inclusive) for since (lower) or until (upper)."""
        cfg = self.config
        exclusive = cfg.bounds == "exclusive"
        fmt = "YYYY-MM-DD" if cfg.since_mode == "date" else "YYYY-MM-DD or an RFC 3339 date-time"
        m = _RE_DATE.match(value)
        try:
            if m:
                day = date(int(m[1]), int(m[2]), int(m[3]))
                start = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())
                if name == "since":
                    self._check_retention(day)
                if upper:
                    return start - 1 if exclusive else start + _DAY - 1
                return start + _DAY if exclusive else start
            m = _RE_DATETIME.match(value) if cfg.since_mode == "datetime" else None
            if not m:
                raise ValueError(value)
            frac = int((m[7] or "0")[:6].ljust(6, "0"))
            tz = timezone.utc
            if m[8] and m[8] not in "Zz":
                sign = -1 if m[8][0] == "-" else 1
                tz = timezone(sign * timedelta(hours=int(m[8][1:3]), minutes=int(m[8][4:6])))
            dt = datetime(
                int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]), frac, tzinfo=tz
            )
        except ValueError:
            raise self._bad_param(f"Invalid '{name}': expected {fmt}.") from None
        if name == "since":
            self._check_retention(dt.astimezone(timezone.utc).date())
        secs = int(dt.timestamp() // 1)
        whole = frac == 0
        if upper:  # ts <= until (inclusive) / ts < until (exclusive)
            return secs if not exclusive else (secs - 1 if whole else secs)
        return (secs if whole else secs + 1) if not exclusive else secs + 1

    def _floor_day(self) -> date:
        return (self._now - timedelta(days=self.config.retention_days)).date()

    def _check_retention(self, day: date) -> None:
        floor = self._floor_day()
        if day < floor:
            raise self._bad_param(
                f"Invalid 'since': date cannot be older than {floor.isoformat()}."
            )

    def _bad_param(self, message: str) -> BadRequest:
        return BadRequest(error_body(
            self.config.error_style, 400, ("invalidParamsError", message),
            ("bad-request", "Malformed request", message)))
