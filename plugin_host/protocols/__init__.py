"""Any input as a Singer tap or an Airbyte source (``plugin-host singer|airbyte INPUT ...``).

Both modes drive the input's ``read(checkpoint)`` directly: the host's state store is not
used; the protocol's own state carries the checkpoint (a Singer STATE value, an Airbyte
STREAM state), emitted after the records of the page it covers. ``singer_main`` and
``airbyte_main`` make an input's console scripts (``tap-NAME``, ``source-NAME``): Meltano's
``executable`` and PyAirbyte's ``local_executable`` take a program without arguments.
``PLUGIN_HOST_LOG_LEVEL`` sets their log level (default WARNING).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["airbyte_main", "singer_main", "stop_on_signals"]

LOG_LEVEL_VARIABLE = "PLUGIN_HOST_LOG_LEVEL"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _main(mode: str, input_name: str, argv: Sequence[str] | None) -> int:
    from ..cli import main

    level = os.environ.get(LOG_LEVEL_VARIABLE, "").strip().upper() or "WARNING"
    if level not in LEVELS:
        print(f"plugin-host: error: {LOG_LEVEL_VARIABLE} must be one of {', '.join(LEVELS)}",
              file=sys.stderr)
        return 2
    rest = list(sys.argv[1:] if argv is None else argv)
    return main(["--log-level", level, mode, input_name, *rest])


def singer_main(input_name: str, argv: Sequence[str] | None = None) -> int:
    """``plugin-host singer INPUT ARGV``: the body of an input's ``tap-NAME`` script."""
    return _main("singer", input_name, argv)


def airbyte_main(input_name: str, argv: Sequence[str] | None = None) -> int:
    """``plugin-host airbyte INPUT ARGV``: the body of an input's ``source-NAME`` script."""
    return _main("airbyte", input_name, argv)


def stop_on_signals() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT (the run ends after the page in hand and
    its state); a second one interrupts. The handler only sets the event: it runs between
    any two instructions of the main thread, which may be halfway through writing a line."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
