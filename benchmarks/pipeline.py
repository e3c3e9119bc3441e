"""Runs ``TAP | TARGET`` and reports each side's own wall time, CPU seconds and peak RSS.

    python benchmarks/pipeline.py '["tap-postman-audit", "--config", "c.json"]' \\
        '["target-jsonl", "--config", "t.json"]'

Both are children of this small process, reaped with ``os.wait4``, so the figures of each
are its own (see spawner.py). The target's stdout goes to ``target.out`` in the current
folder, each one's stderr to ``tap.err`` and ``target.err``. Prints one JSON line:
``{"wall", "tap": {"rc", "user", "system", "maxrss_kib", "waits"}, "target": {...}}``
(``waits``: voluntary context switches, each a block on a full pipe or a read, and a wakeup).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> int:
    """Run the pipeline given as two JSON argument lists."""
    tap_argv, target_argv = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    began = time.monotonic()
    with open("tap.err", "wb") as tap_err, open("target.err", "wb") as target_err, \
            open("target.out", "wb") as target_out:
        tap = subprocess.Popen(tap_argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=tap_err)
        target = subprocess.Popen(target_argv, stdin=tap.stdout, stdout=target_out,
                                  stderr=target_err)
        assert tap.stdout is not None
        tap.stdout.close()  # the target alone holds the pipe's reading end
        found = {}
        for name, child in (("tap", tap), ("target", target)):
            _, status, usage = os.wait4(child.pid, 0)
            found[name] = {"rc": os.waitstatus_to_exitcode(status), "user": usage.ru_utime,
                           "system": usage.ru_stime, "maxrss_kib": usage.ru_maxrss,
                           "waits": usage.ru_nvcsw}
            child.returncode = found[name]["rc"]
    print(json.dumps({"wall": time.monotonic() - began, **found}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
