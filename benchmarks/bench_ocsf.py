"""The OCSF section of the benchmark: a backfill with ``transforms: [{type: ocsf}]`` beside
the same backfill without it (the raw pipeline) and the bare loop, on one emulator process;
and, to show what ``raw_data`` costs, one with ``settings: {raw_data: false}``.

Each of the three is a fresh child process of the spawner (see ``harness.py``); their order
turns from one repetition to the next. The raw and bare runs are checked as in the backfill
section; the OCSF run's output is checked by event id: every event the emulator serves
delivered once (a role change of several users as one OCSF event per user, each with its
own ``metadata.uid``), no event delivered raw, nothing foreign. The figure with a floor is
the OCSF pipeline's CPU against the raw pipeline's (within 1.6×).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Collection
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from harness import (
    OUTPUT_BYTES_PER_EVENT,
    UNLIMITED,
    Report,
    Stat,
    checked,
    emulator_ids,
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

__all__ = ["CPU_FLOOR", "ocsf_delivery_problems", "run_ocsf_host", "section_ocsf"]

CPU_FLOOR = 1.6  # the OCSF pipeline's CPU within this many times the raw pipeline's


def ocsf_delivery_problems(path: Path, expected: Collection[int]) -> list[str]:
    """What keeps the OCSF events in ``path`` from holding each event id in ``expected``
    exactly once (an event's id is its ``metadata.correlation_uid``, else its
    ``metadata.uid``; a fan-out's events each have their own ``metadata.uid``); an empty
    list when the run is verified."""
    events: Counter[str] = Counter()
    ids: set[int] = set()
    raw = broken = 0
    if path.exists():
        with open(path, "rb") as f:
            for line in f:
                event = None
                try:
                    event = json.loads(line)
                    metadata = event["metadata"]
                    events[metadata["uid"]] += 1
                    ids.add(int(metadata.get("correlation_uid", metadata["uid"])))
                except (ValueError, TypeError, KeyError):
                    if isinstance(event, dict) and "id" in event and "metadata" not in event:
                        raw += 1  # a record the transform could not map, delivered as it came
                    else:
                        broken += 1
    wanted = set(expected)
    lost = sorted(wanted - ids)
    repeated = sorted(uid for uid, n in events.items() if n > 1)
    foreign = sorted(ids - wanted)
    problems = [f"{len(found)} {what} (e.g. {', '.join(map(str, found[:3]))})"
                for found, what in ((lost, "ids lost"),
                                    (repeated, "OCSF events delivered twice or more"),
                                    (foreign, "ids the emulator never sent")) if found]
    if raw:
        problems.append(f"{raw} events delivered raw (not mapped)")
    if broken:
        problems.append(f"{broken} lines that are not events")
    return problems


def run_ocsf_host(work: Path, url: str, start: datetime, page_size: int,
                  expected: Collection[int] | None = None,
                  settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """One host run with ``transforms: [{type: ocsf, settings: SETTINGS}]`` in a fresh
    folder, its output checked against the ``expected`` ids; the folder is removed
    afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="ocsf-", dir=work))
    try:
        path = write_pipeline(folder, url, start, page_size, UNLIMITED)
        doc = yaml.safe_load(path.read_text())
        doc["transforms"] = [{"type": "ocsf", **({"settings": settings} if settings else {})}]
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        proc = checked(measure(host_argv(), folder), "plugin-host run (ocsf)")
        out = folder / "events.jsonl"
        found: dict[str, Any] = {**asdict(proc), **host_summary(proc.stderr),
                                 "bytes": out.stat().st_size if out.exists() else 0}
        if expected is not None:
            found["problems"] = ocsf_delivery_problems(out, expected)
        return found
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def section_ocsf(args: argparse.Namespace, work: Path, report: Report) -> None:
    """The OCSF pipeline beside the raw pipeline and the bare loop, one backfill size."""
    n, page = args.ocsf_events, args.page_size
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    start = (now - timedelta(days=31)).replace(hour=0, minute=0, second=0)
    say(f"ocsf: a backfill of {n:,} events, OCSF pipeline beside the raw one and the bare loop")
    ids = emulator_ids(n, 30, now)
    runs: dict[str, list[dict[str, Any]]] = {"ocsf": [], "lean": [], "raw": [], "bare": []}
    programs = {
        "ocsf": lambda url: run_ocsf_host(work, url, start, page, ids),
        "lean": lambda url: run_ocsf_host(work, url, start, page, ids, {"raw_data": False}),
        "raw": lambda url: run_host(work, url, start, page, UNLIMITED, ids),
        "bare": lambda url: run_baseline(work, url, start, page, ids),
    }
    with emulator_process(n, 30, now) as emulator:
        for kind in programs:  # warm-up: page cache, .pyc files; not part of any figure
            programs[kind](emulator.url)
        prefault(work, 4 * n * OUTPUT_BYTES_PER_EVENT)
        order = list(programs)
        for rep in range(args.repeat):
            say(f"  repetition {rep + 1}/{args.repeat}")
            for kind in order[rep % 4:] + order[:rep % 4]:
                runs[kind].append(programs[kind](emulator.url))
    report.raw["ocsf"] = {"events": n, "runs": runs}
    for kind, rs in runs.items():
        for r in rs:
            report.verify(f"ocsf {n}: {kind}", r)
    label = f"ocsf {n:,}"
    per = {kind: Stat([r["cpu"] * 100_000 / n for r in rs]) for kind, rs in runs.items()}
    wall = {kind: Stat([r["wall"] for r in rs]) for kind, rs in runs.items()}
    rss = {kind: Stat([r["rss_mib"] for r in rs]) for kind, rs in runs.items()}
    for kind, what in (("raw", "raw pipeline"), ("ocsf", "OCSF pipeline"),
                       ("lean", "OCSF, raw_data: false")):
        report.row(label, f"CPU s per 100k events, {what}", per[kind].fmt(2),
                   per["bare"].fmt(2), ratio(per[kind].median, per["bare"].median))
        report.row(label, f"wall time, s, {what}", wall[kind].fmt(2), wall["bare"].fmt(2),
                   ratio(wall[kind].median, wall["bare"].median))
        report.row(label, f"peak RSS, MiB, {what}", rss[kind].fmt(1), rss["bare"].fmt(1),
                   ratio(rss[kind].median, rss["bare"].median))
    report.row(label, "CPU, OCSF pipeline / raw pipeline",
               ratio(per["ocsf"].median, per["raw"].median), "", "", f"≤ {CPU_FLOOR}×")
    pairs = Stat([o["cpu"] / r["cpu"] for o, r in zip(runs["ocsf"], runs["raw"], strict=True)])
    report.row(label, "CPU, OCSF / raw, repetition by repetition", pairs.fmt(2))
    report.row(label, "CPU, OCSF with raw_data: false / raw pipeline",
               ratio(per["lean"].median, per["raw"].median))
    events = Stat([r["records"] for r in runs["ocsf"]])
    size = Stat([r["bytes"] / max(r["records"], 1) for r in runs["ocsf"]])
    report.row(label, "OCSF events written (one per user of a role change)", events.fmt(0),
               "", "", f"{n:,} events in")
    report.row(label, "bytes per OCSF event (raw_data included)", size.fmt(0))
    lean = Stat([r["bytes"] / max(r["records"], 1) for r in runs["lean"]])
    report.row(label, "bytes per OCSF event, raw_data: false", lean.fmt(0))
    report.raw["ocsf_cpu_ratio"] = per["ocsf"].median / per["raw"].median
