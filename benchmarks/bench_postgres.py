"""The postgres output's figure: a backfill into ``postgres`` beside the same into ``jsonl``
and the bare loop, in one run, on one emulator process.

    python benchmarks/bench_postgres.py                      # 100k events, 5 repetitions
    python benchmarks/bench_postgres.py --events 20000 --repeat 1
    python benchmarks/bench_postgres.py --url postgresql://USER:PASSWORD@HOST/DB

Five programs, each a fresh child process of the spawner (``harness.py``), their order
turning from one repetition to the next:

- ``bare``: the bare loop (``baseline.py``) into a JSON lines file;
- ``jsonl``: the host into ``jsonl``, its state in SQLite (the default pipeline);
- ``jsonl, PostgreSQL state``: the same with ``state: {url}``;
- ``postgres``: the host into ``postgres``, the state in the same database (the rows and
  the checkpoint in one transaction, exactly once);
- ``postgres, SQLite state``: into ``postgres`` with the state in SQLite (the rows
  committed apart, at least once, idempotent).

Every PostgreSQL run gets a database of its own (CREATE DATABASE), on a throwaway server
started like the tests' (``tests/pg.py``: initdb, pg_ctl, fsync on) unless ``--url`` names
a server whose user may create databases. Each run is checked: the jsonl files by
``delivery_problems``, the tables by id (every event once, nothing foreign). On our own
server, each PostgreSQL run's server CPU is counted too (the postmaster's processes and the
backends it reaped, over the run). The figure with a floor is the ``postgres`` run's wall
time against the ``jsonl`` run's (within 1.5×).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from harness import (
    OUTPUT_BYTES_PER_EVENT,
    SPAWNER,
    UNLIMITED,
    Report,
    Stat,
    checked,
    compile_bytecode,
    emulator_ids,
    emulator_process,
    host_argv,
    host_summary,
    measure,
    prefault,
    process_cpu,
    ratio,
    run_baseline,
    run_host,
    say,
    write_pipeline,
)

__all__ = ["WALL_FLOOR", "main", "section_postgres"]

WALL_FLOOR = 1.5  # the postgres output's wall time within this many times jsonl's
KINDS = {
    "bare": "bare loop",
    "jsonl": "jsonl, SQLite state",
    "jsonl_pg": "jsonl, PostgreSQL state",
    "postgres": "postgres, state in the same database",
    "postgres_sqlite": "postgres, SQLite state",
}


class Databases:
    """A new database per run, on a server: ours (tests/pg.py) or the one ``url`` names."""

    def __init__(self, url: str | None) -> None:
        self._server: Any = None
        self._admin = url
        self._made: list[str] = []
        if url is None:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from pg import PostgresServer

            self._server = PostgresServer.start_new()
            self._admin = self._server.admin_url()

    def new(self) -> str:
        """The URL of a new, empty database (as the server's or ``--url``'s user)."""
        import psycopg

        assert self._admin is not None
        name = "bench_" + secrets.token_hex(4)
        with psycopg.connect(self._admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self._made.append(name)
        parts = urlsplit(self._admin)
        return urlunsplit(parts._replace(path="/" + name))

    def drop(self, url: str) -> None:
        """Drop a database ``new`` made."""
        import psycopg

        name = urlsplit(url).path.lstrip("/")
        assert self._admin is not None
        with psycopg.connect(self._admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._made.remove(name)

    def server_cpu(self) -> float:
        """CPU seconds our server has used so far: the postmaster, its processes alive and
        the backends it has reaped (NaN on ``--url``'s server)."""
        if self._server is None:
            return math.nan
        pid = int((self._server.data / "postmaster.pid").read_text().split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    total += process_cpu(int(stat.parent.name))
        return total

    def close(self) -> None:
        """Drop what is left; stop our server."""
        for name in list(self._made):
            with contextlib.suppress(Exception):
                self.drop(urlunsplit(urlsplit(str(self._admin))._replace(path="/" + name)))
        if self._server is not None:
            self._server.close()


def table_problems(url: str, expected: Collection[int]) -> list[str]:
    """What keeps table ``events`` from holding each id in ``expected`` once, by id."""
    import psycopg

    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM events")]
        row = conn.execute("SELECT count(*) FROM events WHERE id <> record->>'id'").fetchone()
        mismatched = int(row[0]) if row else 0
    found = {int(i) for i in ids}
    wanted = set(expected)
    problems = [f"{n} {what}" for n, what in ((len(wanted - found), "ids lost"),
                                              (len(ids) - len(found), "rows repeated"),
                                              (len(found - wanted), "ids never sent"),
                                              (mismatched, "rows whose id is not the record's"))
                if n]
    return problems


def run_pg_host(work: Path, emulator_url: str, start: datetime, page_size: int,
                dbs: Databases, expected: Collection[int], *, output: str, state: str
                ) -> dict[str, Any]:
    """One host run into ``output`` (jsonl or postgres) with its state in ``state`` (sqlite
    or pg), on a fresh database, checked; folder and database removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="pg-", dir=work))
    url = dbs.new()
    try:
        path = write_pipeline(folder, emulator_url, start, page_size, UNLIMITED)
        doc = yaml.safe_load(path.read_text())
        secret = folder / "db-url.txt"  # a secret in a file of its own, like the API key
        secret.write_text(url + "\n")
        secret.chmod(0o600)
        if state == "pg":
            doc["state"] = {"url": {"file": secret.name}}
        if output == "postgres":
            doc["output"] = {"type": "postgres", "settings": {"table": "events"}}
            if state != "pg":
                doc["output"]["secrets"] = {"url": {"file": secret.name}}
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        server = dbs.server_cpu()
        proc = checked(measure(host_argv(), folder), f"plugin-host run ({output}, {state})")
        found: dict[str, Any] = {**asdict(proc), **host_summary(proc.stderr),
                                 "server_cpu": dbs.server_cpu() - server}
        if output == "postgres":
            found["problems"] = table_problems(url, expected)
        else:
            from harness import delivery_problems

            found["problems"] = delivery_problems(folder / "events.jsonl", expected)
        return found
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        dbs.drop(url)


def section_postgres(args: argparse.Namespace, work: Path, report: Report) -> None:
    """The postgres output beside jsonl and the bare loop, one backfill size."""
    n, page = args.events, args.page_size
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    start = (now - timedelta(days=31)).replace(hour=0, minute=0, second=0)
    say(f"postgres: a backfill of {n:,} events into postgres, jsonl and the bare loop")
    ids = emulator_ids(n, 30, now)
    dbs = Databases(args.url)
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    try:
        programs = {
            "bare": lambda url: run_baseline(work, url, start, page, ids),
            "jsonl": lambda url: run_host(work, url, start, page, UNLIMITED, ids),
            "jsonl_pg": lambda url: run_pg_host(work, url, start, page, dbs, ids,
                                                output="jsonl", state="pg"),
            "postgres": lambda url: run_pg_host(work, url, start, page, dbs, ids,
                                                output="postgres", state="pg"),
            "postgres_sqlite": lambda url: run_pg_host(work, url, start, page, dbs, ids,
                                                       output="postgres", state="sqlite"),
        }
        with emulator_process(n, 30, now) as emulator:
            for kind in programs:  # warm-up: page cache, .pyc files; not part of any figure
                programs[kind](emulator.url)
            prefault(work, 2 * n * OUTPUT_BYTES_PER_EVENT)
            order = list(programs)
            for rep in range(args.repeat):
                say(f"  repetition {rep + 1}/{args.repeat}")
                turn = rep % len(order)
                for kind in order[turn:] + order[:turn]:
                    runs[kind].append(programs[kind](emulator.url))
    finally:
        dbs.close()
    report.raw["postgres"] = {"events": n, "runs": runs}
    for kind, rs in runs.items():
        for r in rs:
            report.verify(f"postgres {n}: {kind}", r)
    label = f"postgres {n:,}"
    wall = {kind: Stat([r["wall"] for r in rs]) for kind, rs in runs.items()}
    cpu = {kind: Stat([r["cpu"] for r in rs]) for kind, rs in runs.items()}
    rate = {kind: Stat([n / r["wall"] for r in rs]) for kind, rs in runs.items()}
    for kind, what in KINDS.items():
        if kind == "bare":
            continue
        report.row(label, f"rows/s, {what}", rate[kind].fmt(0), rate["bare"].fmt(0),
                   ratio(rate[kind].median, rate["bare"].median))
        report.row(label, f"wall time, s, {what}", wall[kind].fmt(2), wall["bare"].fmt(2),
                   ratio(wall[kind].median, wall["bare"].median))
        report.row(label, f"CPU s (host process), {what}", cpu[kind].fmt(2),
                   cpu["bare"].fmt(2), ratio(cpu[kind].median, cpu["bare"].median))
        if kind != "jsonl" and not args.url:  # the server's backends, WAL writer, checkpointer
            server = Stat([r["server_cpu"] for r in runs[kind]])
            report.row(label, f"CPU s (PostgreSQL server), {what}", server.fmt(2))
    report.row(label, "wall, postgres (same database) / jsonl",
               ratio(wall["postgres"].median, wall["jsonl"].median), "", "",
               f"≤ {WALL_FLOOR}×")
    report.row(label, "wall, postgres (SQLite state) / jsonl",
               ratio(wall["postgres_sqlite"].median, wall["jsonl"].median))
    report.row(label, "wall, jsonl with a PostgreSQL state / jsonl",
               ratio(wall["jsonl_pg"].median, wall["jsonl"].median))
    report.raw["postgres_wall_ratio"] = wall["postgres"].median / wall["jsonl"].median


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: size, repetitions, page size, a server, a JSON file."""
    parser = argparse.ArgumentParser(description="The postgres output beside jsonl and the "
                                     "bare loop: a backfill's rows per second.")
    parser.add_argument("--events", type=int, default=100_000, help="backfill size (100000)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (5)")
    parser.add_argument("--page-size", type=int, default=300, help="page size (300)")
    parser.add_argument("--url", help="a PostgreSQL server (its user may CREATE DATABASE); "
                        "default: a throwaway one started here")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    return parser.parse_args(argv)


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    """A temporary folder for the runs, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="plugin-host-bench-pg-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    """Run the section and print its table (exit 1 if a run was not verified)."""
    from run import machine, table

    args = parse_args(argv)
    info, report = machine(), Report()
    compile_bytecode()
    began = time.monotonic()
    load = os.getloadavg()[0]
    with _workdir() as work:
        try:
            section_postgres(args, work, report)
        finally:
            SPAWNER.close()
    print(f"machine: {info['nproc']} CPUs ({info['cpu']}), {info['implementation']} "
          f"{info['python']}; tree {info['tree'] or '?'}; load average {load:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print(f"median of {args.repeat} (min–max); took {time.monotonic() - began:.0f} s\n")
    print(table(report.rows))
    for note in report.notes:
        print(f"NOTE: {note}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": report.rows,
                                         "notes": report.notes, "raw": report.raw},
                                        indent=1, default=str))
    return 1 if report.notes else 0


if __name__ == "__main__":
    sys.exit(main())
