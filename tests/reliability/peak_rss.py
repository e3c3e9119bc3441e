"""Run a command and write its peak resident memory (KiB) to a file:

    python peak_rss.py REPORT_FILE COMMAND [ARGS...]

A child's ``ru_maxrss`` carries over the memory of the process it was forked from (the
high-water mark survives ``exec``), so a child forked straight from a large test process
would report the test's memory. This small process forks the command itself and reports
what ``wait4`` says about it; it exits with the command's code.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    report, argv = sys.argv[1], sys.argv[2:]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - replaced by exec
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    with open(report, "w") as handle:
        handle.write(str(usage.ru_maxrss))
    return os.waitstatus_to_exitcode(status) % 256


if __name__ == "__main__":
    sys.exit(main())
