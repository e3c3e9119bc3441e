"""The emulator's command line (``python -m postman_audit.emulator``): ``--kebab-case`` flags
named after the :class:`EmulatorConfig` fields, and a loop that serves until SIGTERM/SIGINT.

:func:`postman_audit.emulator.main` calls :func:`run` with the emulator class and its module
docstring, so this module never imports the emulator (no cycle, and no second copy of it
when it runs as ``__main__``)."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING

from ._emulator_config import CHOICES, EmulatorConfig

if TYPE_CHECKING:
    from .emulator import PostmanEmulator

__all__ = ["parse_args", "run"]


def parse_args(
    argv: Sequence[str] | None, description: str | None
) -> tuple[argparse.Namespace, EmulatorConfig]:
    """Build the config from ``--kebab-case`` flags named after the EmulatorConfig fields."""
    p = argparse.ArgumentParser(
        prog="python -m postman_audit.emulator",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    defaults = EmulatorConfig()
    for f in fields(EmulatorConfig):
        flag, value = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        if f.name == "now":
            p.add_argument(flag, type=datetime.fromisoformat, help="ISO 8601 (default: real now)")
        elif f.name == "faults":
            p.add_argument(flag, default=",".join(value), help="comma-separated fault kinds")
        elif isinstance(value, bool):
            p.add_argument(flag, action="store_true")
        elif f.name in ("rate_limit", "quota"):
            p.add_argument(flag, type=int, default=None)
        else:
            p.add_argument(flag, type=type(value), default=value, choices=CHOICES.get(f.name))
    args = p.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(EmulatorConfig)}
    values["faults"] = tuple(k for k in values["faults"].split(",") if k)
    config = EmulatorConfig(**values)
    try:
        config.validate()
    except ValueError as exc:
        p.error(str(exc))
    return args, config


def run(
    emulator_class: type[PostmanEmulator],
    argv: Sequence[str] | None,
    description: str | None,
) -> int:
    """Parse ``argv``, print the URL on stdout, then serve until SIGTERM/SIGINT."""
    args, config = parse_args(argv, description)
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
