"""Stdlib-only emulator of Postman's ``GET /audit/logs`` and ``GET /audit-actions``.

A ``ThreadingHTTPServer`` on 127.0.0.1 serving deterministic fake events (see ``fakedata``),
with HTTP/1.1 keep-alive, ``TCP_NODELAY`` and every response written in one ``sendall``.
Page bodies are joined from per-event JSON bytes serialized once at generation.

Switches (fields of :class:`EmulatorConfig`; all may be changed at run time through
``emulator.config``, except the generation fields ``events``/``days``/``seed``):

- ``events``, ``days``, ``seed``, ``now``: what is generated, over which span, up to when.
- ``api_key``: the only accepted key (``X-API-Key`` header or ``apikey`` query parameter).
- ``since_mode``: ``"date"`` (``YYYY-MM-DD`` only) or ``"datetime"`` (also RFC 3339 date-times,
  time of day honoured).
- ``bounds``: ``"inclusive"`` or ``"exclusive"`` treatment of ``since``/``until``.
- ``end_signal``: last page has ``nextCursor`` ``"missing"``, ``"null"`` or ``"empty"`` (``""``).
- ``limit_over_max``: ``limit`` > 300 is ``"clamp"``-ed or ``"reject"``-ed with 400.
- ``default_limit``: page size when ``limit`` is absent.
- ``cursor_style``: ``nextCursor`` as JSON ``"int"`` or ``"string"``.
- ``same_second_burst``: up to this many generated events share one second (ties).
- ``retention_days``: ``since`` before this floor gets 400 "cannot be older than YYYY-MM-DD";
  older events are not served.
- ``rate_limit``, ``rate_window``: fixed-window limit per key (429 ``rateLimited``).
  ``RateLimit-Reset`` counts in 60ths of the window: whole seconds for the real 60-second
  window, so a window scaled down for a test keeps the header's relative precision.
- ``quota``: monthly call quota (429 ``serviceLimitExhausted`` once used up).
- ``fault_rate``, ``faults``, ``delay_seconds``: seeded injected faults: ``"500"``, ``"503"``,
  ``"reset"`` (RST, no response), ``"truncate"`` (half a body), ``"html"`` (200 text/html),
  ``"delay"`` (sleep, then answer normally).
- ``error_style``: ``"legacy"`` ``{"error":{name,message}}`` or ``"problem"`` (RFC 7807) bodies.
- ``forbidden``: every call gets 403 ``ForbiddenRequest``.
- ``log_requests``: log each request to stderr (off by default).

Decisions where Postman's behaviour is undocumented: ``userId`` matches the actor or the
subject user; ``action`` must match exactly; an unparsable cursor or an id that was never served
gets the "Invalid cursor" problem body; a date-only value in ``"datetime"`` mode covers whole
days exactly like ``"date"`` mode; empty query values count as absent; ``since`` > ``until``
gives an empty page.

Modules: ``server`` (``PostmanEmulator``: clock, lifecycle, keys, limits and faults, the
answer to each request), ``query`` (``GET /audit/logs``: parameters, bounds, paging),
``store`` (the events, a copy-on-write snapshot), ``fakedata`` (the generated events),
``config`` (``EmulatorConfig``, the switches above), ``errors`` (Postman's error bodies),
``http`` (the HTTP layer), ``cli`` (the command line, ``python -m postman_audit.emulator``).
"""

from __future__ import annotations

from .cli import main
from .config import CHOICES, FAULT_KINDS, MAX_LIMIT, EmulatorConfig
from .server import PostmanEmulator

__all__ = ["CHOICES", "FAULT_KINDS", "MAX_LIMIT", "EmulatorConfig", "PostmanEmulator", "main"]
