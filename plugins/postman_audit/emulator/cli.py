"""The emulator's command line (``python -m postman_audit.emulator``): ``--kebab-case`` flags
named after the :class:`EmulatorConfig` fields, each with its help for users, and a loop that
serves until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from types import FrameType

from .config import CHOICES, MAX_LIMIT, EmulatorConfig
from .server import PostmanEmulator

__all__ = ["DESCRIPTION", "HELP", "build_parser", "main", "parse_args", "run"]

DESCRIPTION = """\
Serve an emulator of Postman's audit-log API (GET /audit/logs and GET /audit-actions) on
this machine, with made-up events, to try or test a pipeline without a Postman account.
It prints its URL on stdout, then serves until Ctrl-C or SIGTERM. Give that URL as the
pipeline's base_url and the emulator's key (--api-key) as its api_key.

The options after --api-key choose how it behaves where Postman's documentation is silent,
and which failures it injects."""

EPILOG = """\
example:
  python -m postman_audit.emulator --port 8080 --events 5000
  # a pipeline then sets base_url: http://127.0.0.1:8080 and reads the key
  # PMAK-emulator-demo-key from a secret ({env: ...} or {file: ...})"""

# argparse expands %(default)s; a literal percent sign is written %%
HELP = {
    "host": "the address to listen on (default %(default)s: this machine only)",
    "port": "the port to listen on; 0 picks a free one, which the printed URL names "
            "(default %(default)s)",
    "events": "how many audit events to make up (default %(default)s)",
    "days": "spread the events over this many days up to now (default %(default)s)",
    "seed": "the same seed makes the same events (default %(default)s)",
    "now": "the emulator's clock, an ISO 8601 date-time such as 2026-11-20T08:00:00+00:00 "
           "(default: the real time)",
    "api_key": "the one key accepted, in the X-API-Key header or the apikey query "
               "parameter (default %(default)s)",
    "since_mode": "what since and until accept: date (YYYY-MM-DD only) or datetime (RFC 3339 "
                  "date-times too, the time of day honoured) (default %(default)s)",
    "bounds": "whether since and until include their own day or instant (default "
              "%(default)s)",
    "end_signal": "how the last page says it is the last: nextCursor missing, null or "
                  "empty (\"\") (default %(default)s)",
    "limit_over_max": f"a limit over {MAX_LIMIT}: clamp it to {MAX_LIMIT}, or reject it with "
                      "HTTP 400 (default %(default)s)",
    "default_limit": f"events per page when a request gives no limit (1 to {MAX_LIMIT}, "
                     "default %(default)s)",
    "cursor_style": "nextCursor as a JSON int or string (default %(default)s)",
    "same_second_burst": "at most this many events share one second (ties) "
                         "(default %(default)s)",
    "retention_days": "how many days back events are kept: a since older than that gets "
                      "HTTP 400, older events are not served (default %(default)s)",
    "rate_limit": "requests allowed per key in each --rate-window; more get HTTP 429 "
                  "rateLimited (default: no limit)",
    "rate_window": "the rate limit's window in seconds (default %(default)s)",
    "quota": "calls allowed in all (the monthly quota); then HTTP 429 serviceLimitExhausted "
             "(default: no quota)",
    "fault_rate": "the share of requests, from 0 to 1, that get an injected fault "
                  "(default %(default)s: none)",
    "faults": "the faults to inject, comma-separated: 500, 503, reset (the connection is "
              "reset, no answer), truncate (half a body), html (a 200 with an HTML page), "
              "delay (the answer comes after --delay-seconds) (default: all of them)",
    "delay_seconds": "how long a delay fault holds the answer back (default %(default)s)",
    "error_style": "error bodies: legacy ({\"error\": {\"name\", \"message\"}}) or problem "
                   "(RFC 7807) (default %(default)s)",
    "forbidden": "answer every call with HTTP 403 ForbiddenRequest, as Postman does for a key "
                 "whose user may not read audit logs",
    "log_requests": "log each request on stderr",
}

METAVARS = {
    "events": "N", "days": "N", "seed": "N", "now": "DATETIME", "api_key": "KEY",
    "default_limit": "N", "same_second_burst": "N", "retention_days": "N", "rate_limit": "N",
    "rate_window": "SECONDS", "quota": "N", "fault_rate": "SHARE", "faults": "KINDS",
    "delay_seconds": "SECONDS",
}


def build_parser() -> argparse.ArgumentParser:
    """The emulator's argument parser: an option per EmulatorConfig field, each with help."""
    p = argparse.ArgumentParser(
        prog="python -m postman_audit.emulator",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", metavar="ADDRESS", help=HELP["host"])
    p.add_argument("--port", type=int, default=0, help=HELP["port"])
    defaults = EmulatorConfig()
    for f in fields(EmulatorConfig):
        flag, value = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        help_, metavar = HELP[f.name], METAVARS.get(f.name)
        if f.name == "now":
            p.add_argument(flag, type=datetime.fromisoformat, metavar=metavar, help=help_)
        elif f.name == "faults":
            p.add_argument(flag, default=",".join(value), metavar=metavar, help=help_)
        elif isinstance(value, bool):
            p.add_argument(flag, action="store_true", help=help_)
        elif f.name in ("rate_limit", "quota"):
            p.add_argument(flag, type=int, default=None, metavar=metavar, help=help_)
        else:
            p.add_argument(flag, type=type(value), default=value, choices=CHOICES.get(f.name),
                           metavar=metavar, help=help_)
    return p


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, EmulatorConfig]:
    """Build the config from ``--kebab-case`` flags named after the EmulatorConfig fields."""
    p = build_parser()
    args = p.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(EmulatorConfig)}
    values["faults"] = tuple(k for k in values["faults"].split(",") if k)
    config = EmulatorConfig(**values)
    try:
        config.validate()
    except ValueError as exc:
        p.error(str(exc))
    return args, config


def run(emulator_class: type[PostmanEmulator], argv: Sequence[str] | None) -> int:
    """Parse ``argv``, print the URL on stdout, then serve until SIGTERM/SIGINT."""
    args, config = parse_args(argv)
    emulator = emulator_class(config, host=args.host, port=args.port)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with emulator:
        print(emulator.url, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the URL on stdout, then serve until SIGTERM/SIGINT."""
    return run(PostmanEmulator, argv)
