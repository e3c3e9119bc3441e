"""Starts the measured programs from a small process, so each one's peak RSS is its own.

A child's ``ru_maxrss`` is a high-water mark that survives ``exec``: a program forked from
a process holding 54 MiB reports at least 54 MiB, whatever it used itself. ``run.py`` grows
(the in-process emulators, the results), so it hands every measured command to this
process instead, which stays at a few MiB and never grows.

Reads one JSON request per line on stdin: ``{"argv": [...], "cwd": "...", "stdout": path,
"stderr": path, "timeout": seconds}``; answers one JSON line on stdout: ``{"rc", "started",
"wall", "user", "system", "maxrss_kib"}`` (``started`` on the system's monotonic clock).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time


def main() -> int:
    """Serve requests until stdin closes."""
    for line in sys.stdin:
        request = json.loads(line)
        with open(request["stdout"], "wb") as out, open(request["stderr"], "wb") as err:
            started = time.monotonic()
            child = subprocess.Popen(request["argv"], cwd=request["cwd"],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            killer = threading.Timer(request["timeout"],
                                     lambda pid=child.pid: os.kill(pid, signal.SIGKILL))
            killer.start()
            try:
                _, status, usage = os.wait4(child.pid, 0)
            finally:
                killer.cancel()
            wall = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        print(json.dumps({"rc": child.returncode, "started": started, "wall": wall,
                          "user": usage.ru_utime, "system": usage.ru_stime,
                          "maxrss_kib": usage.ru_maxrss}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
