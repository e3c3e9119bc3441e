"""Benchmark plugin-host's Postman audit input against its emulator and a bare loop.

    python benchmarks/run.py                       # the full run (a few minutes)
    python benchmarks/run.py --smoke               # every section on tiny data (< 60 s)
    python benchmarks/run.py --events 20000,100000 --repeat 5 --json results.json

Every measured program is a fresh child process (``python -m plugin_host run
pipeline.yaml`` for the host, ``benchmarks/baseline.py`` for the bare loop) of the small
``spawner.py``, reaped with ``os.wait4`` so its own wall time, CPU seconds and peak RSS are
read, not the sum of all children. Each repetition gets a fresh state file and output.
The plumbing is in ``harness.py``. Sections:

- backfill: every event of an emulator process (``python -m postman_audit.emulator``, so
  its CPU is never counted), no rate limit, page size 300; host beside the bare loop.
- rate limit: an in-process emulator enforcing 300 requests per ``--rate-window`` seconds,
  the pipeline's ``rate_limit`` set to the same; the time from the first to the last
  request against the ideal, and the 429s the emulator answered.
- steady state: 10,000 events a day, a run every 5 emulated minutes (``advance`` +
  ``add_events``), requests per run against ceil((new + lookback events) / page size) + 1.
- start-up: from spawning the process to the emulator seeing its first request.
- emulator alone: pages of 300 records per second served to a client that discards them.
- ocsf: a backfill with ``transforms: [{type: ocsf}]`` beside the raw one (``bench_ocsf.py``).

Each figure is the median of the repetitions, with (min-max) when there are several.
Every run's output is checked against the emulator's event ids (each exactly once); a run
that fails the check is a NOTE line, and the script then exits 1.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ocsf import section_ocsf  # noqa: E402
from harness import (  # noqa: E402
    API_KEY,
    DOC_RATE,
    HEADERS,
    HERE,
    LIMITER_MARGIN,
    LOOKBACK,
    OUTPUT_BYTES_PER_EVENT,
    SPAWNER,
    UNLIMITED,
    Report,
    Stat,
    checked,
    compile_bytecode,
    day_of,
    delivery_problems,
    emulator_ids,
    emulator_in_process,
    emulator_process,
    host_argv,
    host_summary,
    measure,
    prefault,
    ratio,
    run_baseline,
    run_host,
    say,
    write_pipeline,
)


def section_backfill(args: argparse.Namespace, work: Path, report: Report) -> None:
    """Full backfills, host beside the bare loop, on the same emulator process."""
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    days = 30
    start = (now - timedelta(days=days + 1)).replace(hour=0, minute=0, second=0)
    page = args.page_size
    raw: dict[str, Any] = {}
    warmed = False
    served_at: tuple[int, tuple[Stat, Stat]] | None = None
    pages_per_s: dict[int, tuple[float, float]] = {}
    rss_by_size: dict[int, Stat] = {}
    emulator_size = min(args.sizes, key=lambda n: abs(n - 100_000))
    for n in args.sizes:
        say(f"backfill {n:,} events: starting the emulator")
        runs: dict[str, list[dict[str, Any]]] = {"host": [], "bare": []}
        ids = emulator_ids(n, days, now)
        with emulator_process(n, days, now) as emulator:
            url = emulator.url
            if not warmed:  # page cache, .pyc files: not part of any figure
                run_host(work, url, start, page, UNLIMITED)
                run_baseline(work, url, start, page)
                warmed = True
            prefault(work, 2 * n * OUTPUT_BYTES_PER_EVENT)
            for rep in range(args.repeat):
                say(f"  repetition {rep + 1}/{args.repeat}")
                for kind in ("host", "bare") if rep % 2 == 0 else ("bare", "host"):
                    before = emulator.cpu()
                    run = (run_host(work, url, start, page, UNLIMITED, ids) if kind == "host"
                           else run_baseline(work, url, start, page, ids))
                    run["emulator_cpu"] = emulator.cpu() - before
                    runs[kind].append(run)
            if n == emulator_size and "emulator" in args.sections:
                served_at = (n, section_emulator(args, url, start, n, report))
        raw[str(n)] = runs
        for kind, rs in runs.items():
            for r in rs:
                report.verify(f"backfill {n}: {kind}", r)
                if r["lines"] != n or r["records"] != n:
                    report.notes.append(f"backfill {n}: {kind} wrote {r['lines']} lines "
                                        f"({r['records']} records), expected {n}")
        h, b = runs["host"], runs["bare"]
        wall_h, wall_b = Stat([r["wall"] for r in h]), Stat([r["wall"] for r in b])
        cpu_h = Stat([r["cpu"] * 100_000 / n for r in h])
        cpu_b = Stat([r["cpu"] * 100_000 / n for r in b])
        rss_h, rss_b = Stat([r["rss_mib"] for r in h]), Stat([r["rss_mib"] for r in b])
        rss_by_size[n] = rss_h
        eps_h = Stat([n / r["wall"] for r in h])
        eps_b = Stat([n / r["wall"] for r in b])
        req_h, req_b = Stat([r["requests"] for r in h]), Stat([r["requests"] for r in b])
        emu_h = Stat([r["emulator_cpu"] for r in h if not math.isnan(r["emulator_cpu"])])
        emu_b = Stat([r["emulator_cpu"] for r in b if not math.isnan(r["emulator_cpu"])])
        pages_per_s[n] = (Stat([r["requests"] / r["wall"] for r in h]).median,
                          Stat([r["requests"] / r["wall"] for r in b]).median)
        label = f"backfill {n:,}"
        target = "≤ 1.25× at 100k" if n == 100_000 else ""
        report.row(label, "wall time, s", wall_h.fmt(2), wall_b.fmt(2),
                   ratio(wall_h.median, wall_b.median), target)
        report.row(label, "events/s", eps_h.fmt(0), eps_b.fmt(0),
                   ratio(eps_h.median, eps_b.median))
        report.row(label, "CPU s per 100k events", cpu_h.fmt(2), cpu_b.fmt(2),
                   ratio(cpu_h.median, cpu_b.median))
        report.row(label, "peak RSS, MiB", rss_h.fmt(1), rss_b.fmt(1),
                   ratio(rss_h.median, rss_b.median))
        report.row(label, "requests", req_h.fmt(0), req_b.fmt(0),
                   ratio(req_h.median, req_b.median))
        report.row(label, "emulator's CPU s during the run", emu_h.fmt(2), emu_b.fmt(2))
    report.raw["backfill"] = raw
    if len(rss_by_size) >= 2:
        small, large = min(rss_by_size), max(rss_by_size)
        growth = rss_by_size[large].median - rss_by_size[small].median
        report.row("backfill", f"peak RSS growth {small:,} → {large:,}, MiB",
                   f"{growth:+.1f}", "", "", "≤ 10 MiB")
        report.raw["rss_growth_mib"] = growth
    if served_at is not None:
        n, (pages_s, records_s) = served_at
        host_pps, bare_pps = pages_per_s[n]
        report.row("emulator alone", f"pages of {page}/s to a null client ({n:,} events)",
                   pages_s.fmt(0), "", f"backfill used: host {host_pps:.0f}/s, bare "
                   f"{bare_pps:.0f}/s", "never the bottleneck")
        report.row("emulator alone", "records/s served to a null client", records_s.fmt(0))


def section_emulator(args: argparse.Namespace, url: str, start: datetime, events: int,
                     report: Report) -> tuple[Stat, Stat]:
    """Pages of ``page_size`` records per second served to a client that discards them."""
    pages_s, records_s = Stat(), Stat()
    params = {"orderBy": "desc", "limit": args.page_size, "since": day_of(start)}
    with httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}) as client:
        for _ in range(args.repeat):
            pages = records = 0
            query: dict[str, Any] = dict(params)
            began = time.monotonic()
            while time.monotonic() - began < args.emulator_seconds:
                response = client.get("/audit/logs", params=query)
                body = response.content
                pages += 1
                records += body.count(b'"timestamp"')
                match = re.search(rb'"nextCursor":(\d+)\}$', body)
                if match:
                    query["cursor"] = match.group(1).decode()
                else:
                    query = dict(params)
            elapsed = time.monotonic() - began
            pages_s.values.append(pages / elapsed)
            records_s.values.append(records / elapsed)
    report.raw["emulator"] = {"events": events, "pages_per_s": pages_s.values,
                              "records_per_s": records_s.values}
    return pages_s, records_s


def section_rate(args: argparse.Namespace, work: Path, report: Report) -> None:
    """A backfill under the documented limit (300 per window), the window scaled down."""
    window, page, events = args.rate_window, args.rate_page_size, args.rate_events
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    start = (now - timedelta(days=31)).replace(hour=0, minute=0, second=0)
    rate = {"requests": DOC_RATE, "per_seconds": window}
    say(f"rate limit: {events:,} events, page size {page}, {DOC_RATE} requests per {window:g} s")
    spans, ideals, naives, walls, overs = Stat(), Stat(), Stat(), Stat(), Stat()
    margined, overs_margined = Stat(), Stat()
    got429, waits, reqs = Stat(), Stat(), Stat()
    raw = []
    with emulator_in_process(events=events, days=30, now=now, rate_limit=DOC_RATE,
                             rate_window=window) as (emulator, log):
        ids = frozenset(e["id"] for e in emulator.events)
        for rep in range(args.repeat):
            time.sleep(window * 1.1)  # a fresh fixed window at the emulator
            say(f"  repetition {rep + 1}/{args.repeat}")
            log.times.clear()
            before = emulator.status_counts[429]
            run = run_host(work, emulator.url, start, page, rate, ids)
            report.verify(f"rate limit run {rep + 1}", run)
            n = run["requests"]
            times = list(log.times)
            full = min(DOC_RATE, n)
            pace = (times[full - 1] - times[0]) / (full - 1) if full > 1 else 0.0
            bursts = math.ceil(n / DOC_RATE)
            last = n - (bursts - 1) * DOC_RATE
            ideal = (bursts - 1) * window + (last - 1) * pace
            with_margin = (bursts - 1) * window * (1 + LIMITER_MARGIN) + (last - 1) * pace
            span = times[-1] - times[0]
            count429 = emulator.status_counts[429] - before
            raw.append({**run, "span": span, "ideal": ideal, "ideal_with_margin": with_margin,
                        "pace": pace, "429": count429})
            spans.values.append(span)
            ideals.values.append(ideal)
            naives.values.append(n / DOC_RATE * window)
            walls.values.append(run["wall"])
            overs.values.append(100.0 * (span / ideal - 1) if ideal else math.nan)
            margined.values.append(with_margin)
            overs_margined.values.append(100.0 * (span / with_margin - 1)
                                         if with_margin else math.nan)
            got429.values.append(count429)
            waits.values.append(run["waits_after_429"])
            reqs.values.append(n)
    report.raw["rate_limit"] = {"window": window, "page_size": page, "events": events,
                                "runs": raw}
    label = f"rate limit {DOC_RATE}/{window:g}s"
    report.row(label, f"requests ({events:,} events, page {page})", reqs.fmt(0))
    report.row(label, "first → last request, s", spans.fmt(2), "",
               f"{ratio(spans.median, ideals.median)} of ideal", "≤ 1.05× ideal")
    report.row(label, "ideal: (⌈N/300⌉−1)·W + last burst at free pace, s", ideals.fmt(2))
    report.row(label, "naive N/300·W, s", naives.fmt(2))
    report.row(label, "over ideal, %", overs.fmt(1), "", "", "≤ 5 %")
    report.row(label, f"ideal with the limiter's {LIMITER_MARGIN:.0%} margin, s", margined.fmt(2))
    report.row(label, "over ideal with margin, %", overs_margined.fmt(1))
    report.row(label, "process wall time, s", walls.fmt(2))
    report.row(label, "429s answered by the emulator", got429.fmt(0), "", "", "0")
    report.row(label, "host's rate-limit waits (after a 429)", waits.fmt(0), "", "", "0")


def section_steady(args: argparse.Namespace, work: Path, report: Report) -> None:
    """10,000 events a day, a run every 5 minutes, page sizes 100 and 300."""
    from postman_audit.timeutil import epoch_of

    per_day, every = 10_000, timedelta(minutes=5)
    days, ticks = args.steady_days, args.steady_runs
    warmup = math.ceil(LOOKBACK / every.total_seconds())  # until the lookback holds only ours
    new_per_run = round(per_day * every.total_seconds() / 86400)
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=6)
    start = (now - timedelta(days=days + 1)).replace(hour=0, minute=0, second=0)
    sizes = (100, 300)
    say(f"steady state: {per_day * days:,} events over {days} days, then {warmup} + {ticks} "
        f"runs of +{new_per_run} events every 5 min")
    folders = {p: Path(tempfile.mkdtemp(prefix=f"steady{p}-", dir=work)) for p in sizes}
    requests: dict[int, Stat] = {p: Stat() for p in sizes}
    bounds: dict[int, Stat] = {p: Stat() for p in sizes}
    walls: dict[int, Stat] = {p: Stat() for p in sizes}
    cpus: dict[int, Stat] = {p: Stat() for p in sizes}
    over: dict[int, int] = dict.fromkeys(sizes, 0)
    raw: dict[str, Any] = {str(p): [] for p in sizes}
    try:
        with emulator_in_process(events=per_day * days, days=days, now=now) as (emulator, _):
            stamps = sorted(t for e in emulator.events
                            if (t := epoch_of(e.get("timestamp"))) is not None)
            for p in sizes:
                write_pipeline(folders[p], emulator.url, start, p, UNLIMITED)
                first = checked(measure(host_argv(), folders[p]), "initial backfill")
                raw[str(p)].append({"initial": True, **host_summary(first.stderr),
                                    "wall": first.wall})
            for tick in range(-warmup, ticks):
                high_water = stamps[-1]
                in_lookback = len(stamps) - bisect.bisect_left(stamps, high_water - LOOKBACK)
                emulator.advance(every)
                added = emulator.add_events(new_per_run)
                stamps.extend(sorted(t for e in added
                                     if (t := epoch_of(e.get("timestamp"))) is not None))
                for p in sizes:
                    bound = math.ceil((len(added) + in_lookback) / p) + 1
                    proc = checked(measure(host_argv(), folders[p]), f"steady run {tick}")
                    summary = host_summary(proc.stderr)
                    if summary["records"] != len(added):
                        report.notes.append(
                            f"steady page {p} run {tick}: delivered {summary['records']} "
                            f"records, {len(added)} were added")
                    over[p] += summary["requests"] > bound
                    raw[str(p)].append({"tick": tick, "new": len(added),
                                        "lookback_events": in_lookback, "bound": bound,
                                        **summary, "wall": proc.wall, "cpu": proc.cpu})
                    if tick < 0:  # the lookback still holds the generated history
                        continue
                    requests[p].values.append(summary["requests"])
                    bounds[p].values.append(bound)
                    walls[p].values.append(proc.wall)
                    cpus[p].values.append(proc.cpu)
            ids = frozenset(e["id"] for e in emulator.events)
            for p in sizes:
                report.notes.extend(f"steady page {p}: {problem}" for problem in
                                    delivery_problems(folders[p] / "events.jsonl", ids))
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
    report.raw["steady"] = raw
    for p in sizes:
        label = f"steady, page {p}"
        report.row(label, f"requests per run (last {ticks} runs, +{new_per_run} events each)",
                   requests[p].fmt(0), "", f"bound {bounds[p].fmt(0)}",
                   "≤ ⌈(new + lookback)/page⌉ + 1")
        report.row(label, "runs over the bound (all runs)", f"{over[p]} of {warmup + ticks}",
                   "", "", "0")
        report.row(label, "wall time per run, s", walls[p].fmt(2))
        report.row(label, "CPU s per run", cpus[p].fmt(2))


def section_startup(args: argparse.Namespace, work: Path, report: Report) -> None:
    """From spawning the process to the emulator seeing its first /audit/logs request."""
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    start = (now - timedelta(days=2)).replace(hour=0, minute=0, second=0)
    host, bare, host_wall, bare_wall, later = Stat(), Stat(), Stat(), Stat(), Stat()
    say("start-up")
    again = Path(tempfile.mkdtemp(prefix="host-again-", dir=work))
    with emulator_in_process(events=300, days=1, now=now) as (emulator, log):
        url, ids = emulator.url, frozenset(e["id"] for e in emulator.events)
        run_host(work, url, start, 300, UNLIMITED)  # warm-up
        run_baseline(work, url, start, 300)
        write_pipeline(again, url, start, 300, UNLIMITED)

        def run_again() -> dict[str, Any]:
            return asdict(checked(measure(host_argv(), again), "plugin-host run"))

        run_again()  # from now on its state remembers the validated pipeline

        for _ in range(max(args.repeat, 3)):
            for stat, wall, runner in (
                (host, host_wall, lambda: run_host(work, url, start, 300, UNLIMITED, ids)),
                (bare, bare_wall, lambda: run_baseline(work, url, start, 300, ids)),
                (later, None, run_again),
            ):
                log.times.clear()
                run = runner()
                report.verify("start-up", run)
                stat.values.append(1000 * (log.times[0] - run["started"]))
                if wall is not None:
                    wall.values.append(1000 * run["wall"])
    report.notes.extend(f"start-up, a later run: {problem}" for problem in
                        delivery_problems(again / "events.jsonl", ids))
    shutil.rmtree(again, ignore_errors=True)
    report.raw["startup_ms"] = {"host": host.values, "bare": bare.values,
                                "host_later_run": later.values,
                                "host_wall": host_wall.values, "bare_wall": bare_wall.values}
    report.row("start-up", "spawn → first request, ms", host.fmt(0), bare.fmt(0),
               ratio(host.median, bare.median))
    report.row("start-up", "spawn → first request, a later run, ms", later.fmt(0), bare.fmt(0),
               ratio(later.median, bare.median))
    report.row("start-up", "whole run of 300 events, ms", host_wall.fmt(0), bare_wall.fmt(0),
               ratio(host_wall.median, bare_wall.median))


# --------------------------------------------------------------------------- output


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import httpx as _httpx
    import orjson

    tree = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        tree = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE.parent,
                              capture_output=True, text=True, timeout=10).stdout.strip()
    return {
        "tree": tree,
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "httpx": _httpx.__version__,
        "orjson": orjson.__version__,
    }


def table(rows: list[tuple[str, ...]]) -> str:
    """A Markdown table, columns padded."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(HEADERS), line(["-" * w for w in widths]),
                      *(line(r) for r in rows)])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark plugin-host's Postman input against its emulator and a bare loop.")
    parser.add_argument("--events", default="20000,100000,300000",
                        help="backfill sizes, comma-separated (default 20000,100000,300000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per figure (3)")
    parser.add_argument("--smoke", action="store_true",
                        help="every section on a few thousand events, once (checks the script)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--sections", default="backfill,emulator,rate,steady,startup,ocsf",
                        help="which sections to run (default: all)")
    parser.add_argument("--page-size", type=int, default=300, help="backfill page size (300)")
    parser.add_argument("--rate-window", type=float, default=2.0,
                        help="seconds per 300 requests in the rate-limit section (2.0)")
    parser.add_argument("--rate-events", type=int, default=100_000)
    parser.add_argument("--rate-page-size", type=int, default=100)
    parser.add_argument("--steady-days", type=int, default=2)
    parser.add_argument("--steady-runs", type=int, default=12)
    parser.add_argument("--emulator-seconds", type=float, default=2.0)
    parser.add_argument("--ocsf-events", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.smoke:
        args.events, args.repeat = "2000,5000", 1
        args.rate_window, args.rate_events, args.rate_page_size = 0.5, 4000, 10
        args.steady_days, args.steady_runs, args.emulator_seconds, args.ocsf_events = 1, 3, .5, 3000
    args.sizes = [int(x.replace("_", "")) for x in args.events.split(",") if x.strip()]
    args.sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    if args.repeat < 1 or not args.sizes:
        parser.error("--repeat must be >= 1 and --events must name a size")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    load_before = os.getloadavg()
    report = Report()
    compile_bytecode()  # measure the installed host, not Python compiling it
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="plugin-host-bench-") as tmp:
        work = Path(tmp)
        try:
            if "backfill" in args.sections or "emulator" in args.sections:
                section_backfill(args, work, report)
            if "rate" in args.sections:
                section_rate(args, work, report)
            if "steady" in args.sections:
                section_steady(args, work, report)
            if "startup" in args.sections:
                section_startup(args, work, report)
            if "ocsf" in args.sections:
                section_ocsf(args, work, report)
        finally:
            SPAWNER.close()
    took = time.monotonic() - began
    info["loadavg_before"], info["loadavg_after"] = load_before, os.getloadavg()
    print(f"machine: {info['nproc']} CPUs ({info['cpu']}), {info['implementation']} "
          f"{info['python']}, httpx {info['httpx']}, orjson {info['orjson']}, "
          f"{info['platform']}; tree {info['tree'] or '?'}; "
          f"load average {load_before[0]:.2f} before, {info['loadavg_after'][0]:.2f} after")
    print(f"median of {args.repeat} repetition{'s' if args.repeat > 1 else ''} "
          f"(min–max){' [smoke: sizes and speed not meaningful]' if args.smoke else ''}; "
          f"took {took:.0f} s")
    if load_before[0] > 0.5:
        print(f"WARNING: the load average was {load_before[0]:.2f} on {info['nproc']} CPUs "
              "before the run: if other processes kept competing for the CPU, wall times (and "
              "ratios of them) are inflated and noisy; CPU seconds, RSS and request counts hold")
    print()
    print(table(report.rows))
    for note in report.notes:
        print(f"NOTE: {note}")
    if report.notes:
        print("NOT VERIFIED: a run above did not deliver every event exactly once; its figures "
              "do not count", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(
            {"machine": info, "args": {k: (sorted(v) if isinstance(v, set) else
                                           str(v) if isinstance(v, Path) else v)
                                       for k, v in vars(args).items()},
             "seconds": took, "headers": HEADERS, "rows": report.rows, "notes": report.notes,
             "raw": report.raw}, indent=1, default=str))
    return 1 if report.notes else 0


if __name__ == "__main__":
    sys.exit(main())
