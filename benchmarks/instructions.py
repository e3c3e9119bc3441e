"""Count the instructions of one backfill of the host and of the bare loop, a figure the
machine's load does not change (CPU seconds on a shared 2-core machine swing by a third).

    python benchmarks/instructions.py                          # 100,000 events, page size 300
    python benchmarks/instructions.py --events 300000 --page-size 100
    /other/tree/.venv/bin/python benchmarks/instructions.py    # another checkout's host

Each process runs once under ``valgrind --tool=cachegrind --cache-sim=no`` (user-space
instructions only: system calls are not in it), against an emulator in a process of its
own. The host is ``python -m plugin_host run`` of the interpreter that runs this script,
so the same script counts an older checkout's host when started with that checkout's
Python. The output is checked to hold every event once.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as bench  # noqa: E402

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def count(argv: Sequence[str], cwd: Path) -> int:
    """Instructions ``argv`` executes in ``cwd`` (cachegrind's ``I refs``), or an error."""
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         *argv], cwd=cwd, capture_output=True, text=True, check=False,
    )
    found = _REFS.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{argv[1:3]} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv: Sequence[str] | None = None) -> int:
    """Print the host's and the bare loop's instructions per event, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="backfill size (100000)")
    parser.add_argument("--page-size", type=int, default=300, help="page size (300)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    days = 30
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = (now - timedelta(days=days + 1)).replace(hour=0, minute=0, second=0)
    expected = bench.emulator_ids(args.events, days, now)
    figures: dict[str, int] = {}
    unlimited: dict[str, float] = dict(bench.UNLIMITED)
    with bench.emulator_process(args.events, days, now) as emulator, \
            tempfile.TemporaryDirectory() as work:
        for name in ("host", "bare loop"):
            folder = Path(work) / name.replace(" ", "-")
            bench.write_pipeline(folder, emulator.url, start, args.page_size, unlimited)
            since = bench.day_of(start)
            command = (bench.host_argv() if name == "host"
                       else bench.baseline_argv(emulator.url, since, args.page_size))
            figures[name] = count(command, folder)
            problems = bench.delivery_problems(folder / "events.jsonl", expected)
            if problems:
                raise RuntimeError(f"{name}: {problems[:3]}")
    print(f"{args.events:,} events, page size {args.page_size}, host {sys.executable}")
    print("| process | instructions | per event |")
    print("| --- | --- | --- |")
    for name, figure in figures.items():
        print(f"| {name} | {figure / 1e9:.2f} G | {figure / args.events / 1e3:.1f} k |")
    print(f"host / bare loop: {figures['host'] / figures['bare loop']:.2f}x")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        print(f"NOTE: {exc}", file=sys.stderr)
        sys.exit(1)
