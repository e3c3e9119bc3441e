"""Benchmark the Singer and Airbyte modes: one backfill through ``tap-postman-audit |
target-jsonl`` and through ``source-postman-audit read``, beside ``plugin-host run`` (into
``jsonl``) and the bare loop, against one emulator process, in one run. The tap is also
measured into ``cat`` (a reader that keeps up and costs next to nothing) and into a file:
the controls that tell the tap's own work from the cost of sharing the CPUs with
target-jsonl.

    python benchmarks/protocols.py                  # 100,000 events, 3 repetitions (~1 min)
    python benchmarks/protocols.py --events 20000 --repeat 5 --json results.json
    python benchmarks/protocols.py --smoke          # a few thousand events, once
    python benchmarks/protocols.py --target-jsonl /path/to/bin/target-jsonl

Each program is measured as in ``run.py`` (a fresh child of ``spawner.py``, its own CPU
seconds and peak RSS); the pipeline's two sides are children of ``pipeline.py``, each
reaped on its own, so the tap's figures are the tap's alone and target-jsonl's its own.
The source writes its messages to a file, and so does the tap in a second measure (its CPU
without a consumer beside it). target-jsonl (0.1.4, from PyPI) is installed on
first use into a virtual environment in the system's temporary folder, unless
``--target-jsonl`` names one. Every run's records are checked against the emulator's ids,
each exactly once; a run that fails the check is a NOTE and the script exits 1.

The floor: the tap's and the source's own CPU within 1.5x of ``plugin-host run``'s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    API_KEY,
    HERE,
    OUTPUT_BYTES_PER_EVENT,
    PY,
    SPAWNER,
    UNLIMITED,
    Stat,
    checked,
    compile_bytecode,
    count_lines,
    delivery_problems,
    emulator_ids,
    emulator_process,
    measure,
    prefault,
    ratio,
    run_baseline,
    run_host,
    say,
)

TARGET_JSONL = "target-jsonl==0.1.4"
FLOOR = 1.5
SCRIPTS = Path(sysconfig.get_path("scripts"))
KINDS = ("host", "bare", "tap", "tap_cat", "tap_file", "source")


def target_jsonl(given: Path | None) -> Path:
    """target-jsonl's executable: the one given, else one installed once from PyPI."""
    if given is not None:
        return given
    venv = Path(tempfile.gettempdir()) / "plugin-host-bench-target-jsonl-0.1.4"
    exe = venv / "bin" / "target-jsonl"
    if not exe.exists():
        say(f"installing {TARGET_JSONL} into {venv}")
        subprocess.run([PY, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", TARGET_JSONL], check=True)
    return exe


def write_config(folder: Path, url: str, start: datetime, page_size: int) -> Path:
    """The protocol config of the Postman input: the pipeline's settings and the key."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"api_key": API_KEY, "base_url": url, "page_size": page_size,
              "backfill_start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "rate_limit": UNLIMITED}
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    return path


def singer_records(messages: Path, records: Path) -> None:
    """The records of the RECORD messages in ``messages``, one JSON line each, to ``records``."""
    with open(messages, encoding="utf-8") as lines, open(records, "w", encoding="utf-8") as out:
        for line in lines:
            if line.startswith('{"type":"RECORD"'):
                out.write(json.dumps(json.loads(line)["record"]) + "\n")


def run_tap(work: Path, url: str, start: datetime, page_size: int, target: Path | None,
            expected: frozenset[int]) -> dict[str, Any]:
    """``tap-postman-audit | target-jsonl`` (``| cat`` when ``target`` is None) in a fresh
    folder; each side's own figures."""
    folder = Path(tempfile.mkdtemp(prefix="tap-", dir=work))
    try:
        write_config(folder, url, start, page_size)
        (folder / "target.json").write_text(json.dumps(
            {"destination_path": "out", "do_timestamp_file": False}))
        argv = [PY, str(HERE / "pipeline.py"),
                json.dumps([str(SCRIPTS / "tap-postman-audit"), "--config", "config.json"]),
                json.dumps(["cat"] if target is None
                           else [str(target), "--config", "target.json"])]
        proc = checked(measure(argv, folder), "tap-postman-audit | target-jsonl")
        sides = json.loads(proc.stdout.strip().splitlines()[-1])
        for side in ("tap", "target"):
            if sides[side]["rc"] != 0:
                err = (folder / f"{side}.err").read_text(errors="replace")
                raise RuntimeError(f"{side} exited {sides[side]['rc']}:\n{err[-2000:]}")
        out = folder / "out" / "audit_logs.jsonl"
        if target is None:
            singer_records(folder / "target.out", out := folder / "records.jsonl")
        tap, tgt = sides["tap"], sides["target"]
        return {"wall": sides["wall"], "cpu": tap["user"] + tap["system"],
                "user": tap["user"], "system": tap["system"],
                "rss_mib": tap["maxrss_kib"] / 1024, "waits": tap["waits"],
                "target_cpu": tgt["user"] + tgt["system"],
                "target_rss_mib": tgt["maxrss_kib"] / 1024, "lines": count_lines(out),
                "problems": delivery_problems(out, expected)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_to_file(work: Path, url: str, start: datetime, page_size: int,
                expected: frozenset[int], mode: str) -> dict[str, Any]:
    """``source-postman-audit read`` (``mode`` airbyte) or ``tap-postman-audit`` (singer)
    writing its messages to a file in a fresh folder, its records checked."""
    folder = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=work))
    try:
        write_config(folder, url, start, page_size)
        (folder / "catalog.json").write_text(json.dumps({"streams": [
            {"stream": {"name": "audit_logs"}, "sync_mode": "incremental"}]}))
        argv = [str(SCRIPTS / "source-postman-audit"), "read", "--config", "config.json",
                "--catalog", "catalog.json"] if mode == "airbyte" else [
                str(SCRIPTS / "tap-postman-audit"), "--config", "config.json"]
        proc = checked(measure(argv, folder), f"the {mode} mode")
        records = folder / "records.jsonl"
        with open(records, "w", encoding="utf-8") as out:
            for line in proc.stdout.splitlines():
                if line.startswith('{"type":"RECORD"'):
                    record = json.loads(line)["record"]
                    out.write(json.dumps(record["data"] if mode == "airbyte" else record)
                              + "\n")
        found = asdict(proc)
        del found["stdout"]  # tens of MB of messages: not kept in the results
        return {**found, "lines": count_lines(records),
                "problems": delivery_problems(records, expected)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def backfills(args: argparse.Namespace, work: Path, target: Path) -> dict[str, list[Any]]:
    """Every program, ``--repeat`` times each, in a rotating order, on one emulator."""
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    days, n, page = 30, args.events, args.page_size
    start = (now - timedelta(days=days + 1)).replace(hour=0, minute=0, second=0)
    ids = emulator_ids(n, days, now)
    runs: dict[str, list[Any]] = {kind: [] for kind in KINDS}
    with emulator_process(n, days, now) as emulator:
        url = emulator.url

        def one(kind: str) -> dict[str, Any]:
            if kind == "host":
                return run_host(work, url, start, page, UNLIMITED, ids)
            if kind == "bare":
                return run_baseline(work, url, start, page, ids)
            if kind in ("tap", "tap_cat"):
                return run_tap(work, url, start, page, target if kind == "tap" else None, ids)
            return run_to_file(work, url, start, page, ids,
                               "airbyte" if kind == "source" else "singer")

        for kind in KINDS:  # warm-up: page cache, .pyc files; not part of any figure
            one(kind)
        prefault(work, 3 * n * OUTPUT_BYTES_PER_EVENT)
        for rep in range(args.repeat):
            say(f"  repetition {rep + 1}/{args.repeat}")
            order = KINDS[rep % len(KINDS):] + KINDS[:rep % len(KINDS)]
            for kind in order:
                before = emulator.cpu()
                run = one(kind)
                run["emulator_cpu"] = emulator.cpu() - before
                runs[kind].append(run)
    return runs


def report(runs: dict[str, list[Any]], n: int) -> tuple[list[tuple[str, ...]], list[str],
                                                         dict[str, float]]:
    """The table's rows, a note per unverified run, and the floor's ratios."""
    notes = [f"{kind}: {problem}" for kind, rs in runs.items() for r in rs
             for problem in r["problems"]]
    notes += [f"{kind}: {r['lines']} lines, expected {n}" for kind, rs in runs.items()
              for r in rs if r["lines"] != n]
    cpu = {kind: Stat([r["cpu"] for r in rs]) for kind, rs in runs.items()}
    host = cpu["host"].median
    rows = []
    names = {"bare": "bare loop (benchmarks/baseline.py)",
             "host": "plugin-host run (into jsonl)",
             "tap": "tap-postman-audit (into target-jsonl)",
             "tap_cat": "tap-postman-audit (into cat)",
             "tap_file": "tap-postman-audit (to a file)",
             "source": "source-postman-audit read (to a file)"}
    for kind in ("bare", "host", "tap", "tap_cat", "tap_file", "source"):
        rs = runs[kind]
        waits = Stat([r["waits"] for r in rs]).fmt(0) if "waits" in rs[0] else ""
        rows.append((names[kind], Stat([r["wall"] for r in rs]).fmt(2), cpu[kind].fmt(2),
                     ratio(cpu[kind].median, host), Stat([r["rss_mib"] for r in rs]).fmt(1),
                     Stat([r["emulator_cpu"] for r in rs]).fmt(2), waits))
    taps = runs["tap"]
    rows.append(("target-jsonl (reading the tap)", "", Stat([r["target_cpu"] for r in taps])
                 .fmt(2), "", Stat([r["target_rss_mib"] for r in taps]).fmt(1), "", ""))
    floor = {kind: cpu[kind].median / host for kind in ("tap", "tap_cat", "tap_file", "source")}
    return rows, notes, floor


def table(rows: list[tuple[str, ...]]) -> str:
    """A Markdown table, columns padded."""
    head = ("Program", "Wall s", "Its own CPU s", "CPU / plugin-host run", "Peak RSS MiB",
            "Emulator CPU s", "Voluntary switches")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the backfills, print the table and the floor; exit 1 if a run was not verified."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="backfill size (100000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per program (3)")
    parser.add_argument("--page-size", type=int, default=300, help="page size (300)")
    parser.add_argument("--smoke", action="store_true", help="3,000 events, once")
    parser.add_argument("--target-jsonl", type=Path, help="target-jsonl's executable")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.events, args.repeat = 3000, 1
    compile_bytecode()
    target = target_jsonl(args.target_jsonl)
    with tempfile.TemporaryDirectory(prefix="plugin-host-bench-protocols-") as tmp:
        say(f"backfill {args.events:,} events, {args.repeat} repetitions")
        try:
            runs = backfills(args, Path(tmp), target)
        finally:
            SPAWNER.close()
    rows, notes, floor = report(runs, args.events)
    print(f"backfill of {args.events:,} events, page size {args.page_size}, median of "
          f"{args.repeat} (min–max){' [smoke: not meaningful]' if args.smoke else ''}")
    print()
    print(table(rows))
    print()
    labels = {"tap": "tap (into target-jsonl)", "tap_cat": "tap (into cat)",
              "tap_file": "tap (to a file)",
              "source": "source"}
    for kind, value in floor.items():
        verdict = "met" if value <= FLOOR else "MISSED"
        print(f"floor: {labels[kind]} CPU / plugin-host run CPU = {value:.2f}× "
              f"(≤ {FLOOR}×): {verdict}")
    for note in notes:
        print(f"NOTE: {note}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "floor": floor, "notes": notes,
                                         "runs": runs}, indent=1, default=str))
    return 1 if notes else 0


if __name__ == "__main__":
    sys.exit(main())
