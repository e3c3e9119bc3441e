"""Profile one backfill of the host with py-spy and summarise where the time goes.

    pip install py-spy
    python benchmarks/profile.py                    # 100,000 events, page size 300
    python benchmarks/profile.py --events 300000 --out /tmp/host-profile

Starts the emulator in its own process, runs ``py-spy record --format raw`` around
``python -m plugin_host run pipeline.yaml`` (fresh state and output), and prints the
share of samples per phase, the top functions by own time, and by time including callees.
The raw file is in Brendan Gregg's collapsed-stack format: https://www.speedscope.app
opens it as is, and flamegraph.pl turns it into an SVG.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as bench  # noqa: E402

# Phases: a sample belongs to the first of these found walking from the leaf to the root.
PHASES = (
    ("start-up: imports", re.compile(r"^_find_and_load ")),
    ("start-up: discovery, pipeline validation", re.compile(
        r"^(discover|load_pipeline) \(plugin_host/")),
    ("response JSON parse (orjson)", re.compile(r"^loads \(plugin_host/_jsonl")),
    ("output JSON lines (orjson dumps)", re.compile(r"^dumps_lines \(plugin_host/_jsonl")),
    ("output write(2)", re.compile(r"^JsonlOutput\._flush ")),
    ("checkpoint snapshot (orjson, secret scan)", re.compile(r"^_checked \(plugin_host/")),
    ("commit: fsync + SQLite state (either thread)", re.compile(
        r"^Committer\.(add|finish|_commit) \(plugin_host/_batch")),
    ("cursor: keys, timestamps, dedupe", re.compile(r"^SweepWalker\.page ")),
    ("cursor: checkpoint build", re.compile(r"^(SweepWalker\.(checkpoint|finish)|Cursor\.)")),
    ("HTTP: httpx/httpcore + socket wait", re.compile(r"^JsonHttpClient\._attempt ")),
    ("HTTP client set-up (TLS context, pool)", re.compile(r"^JsonHttpClient\.__init__ ")),
)


def _frame(text: str) -> str:
    match = re.match(r"(.*) \((.*):\d+\)$", text)
    if not match:
        return text
    name, path = match.groups()
    for cut in (r".*/site-packages/", r".*/work/[^/]+/", r".*/lib/python3\.\d+/",
                str(bench.HERE.parent) + "/"):
        path = re.sub(cut, "", path)
    return f"{name} ({path})"


def summarise(raw: Path, top: int) -> str:
    """Phases, top own time and top inclusive time of a py-spy raw (collapsed) profile."""
    total = 0
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    phases: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        total += samples
        own[frames[-1]] += samples
        for name in set(frames):
            inclusive[name] += samples
        phase = "other"
        for name in reversed(frames):
            found = next((label for label, rx in PHASES if rx.search(name)), None)
            if found:
                phase = found
                break
        phases[phase] += samples
    if not total:
        return "no samples"

    def pct(n: int) -> str:
        return f"{100.0 * n / total:5.1f}%"

    lines = [f"{total} samples", "", "by phase:"]
    lines += [f"  {pct(n)}  {label}" for label, n in phases.most_common()]
    lines += ["", f"top {top} by own time:"]
    lines += [f"  {pct(n)}  {name}" for name, n in own.most_common(top)]
    lines += ["", f"top {top} project functions by time including callees:"]
    ours = [(name, n) for name, n in inclusive.most_common()
            if re.search(r"\((plugin_host|plugins/postman_audit|postman_audit)/", name)]
    lines += [f"  {pct(n)}  {name}" for name, n in ours[:top]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Record a profile of one backfill and print its summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=300)
    parser.add_argument("--rate", type=int, default=500, help="samples per second (500)")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "host-profile",
                        help="where the raw profile goes (default: $TMPDIR/host-profile.txt)")
    parser.add_argument("--idle", action="store_true", help="also sample idle threads")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    raw = args.out.with_suffix(".txt")
    bench.compile_bytecode()  # profile the installed host, not Python compiling it
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    start = (now - timedelta(days=31)).replace(hour=0, minute=0, second=0)
    with tempfile.TemporaryDirectory(prefix="plugin-host-profile-") as tmp, \
            bench.emulator_process(args.events, 30, now) as emulator:
        folder = Path(tmp)
        bench.write_pipeline(folder, emulator.url, start, args.page_size, bench.UNLIMITED)
        command = [spy, "record", "--rate", str(args.rate), "--format", "raw", "--output",
                   str(raw), *(["--idle"] if args.idle else []), "--", *bench.host_argv()]
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        summary = [line for line in done.stderr.splitlines() if " records in " in line]
    print(f"profile of a {args.events:,}-event backfill (page size {args.page_size}): {raw}")
    if summary:
        print(summary[-1].strip())
    print(summarise(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
