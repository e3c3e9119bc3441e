"""`plugin-host worker` at scale: many pipelines (each its own team and key), nothing new
upstream, the emulator's rate limit off.

    python benchmarks/bench_worker.py [--pipelines 1000] [--seconds 60] [--every 30]

For 1, 2 and 3 workers on this machine, each with the same pipeline files: the syncs done
per minute (all workers together) and the CPU each sync cost (the workers' user + system
time over the syncs they logged), measured over ``--seconds`` after every pipeline synced
once. Beside it, the CPU of one `plugin-host run` process of one such pipeline (interpreter
start included), measured in the same run. Checked: no sync of a pipeline overlapped
another of the same pipeline, no sync was busy with a request, every output holds each
event once. Needs PostgreSQL's server binaries (tests/pg.py starts a throwaway server).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from pg import PostgresServer  # noqa: E402
from postman_audit.emulator import EmulatorConfig, PostmanEmulator  # noqa: E402

KEY_PREFIX = "PMAK-bench-"
LINE = re.compile(r"^(\S+ \S+) (?:INFO|WARNING) plugin_host\.worker: sync pipeline=(\S+) "
                  r"outcome=(\S+) records=(\d+) requests=(\d+) duration=([\d.]+)s")
TICKS = os.sysconf("SC_CLK_TCK")


class AnyTeamEmulator(PostmanEmulator):
    """The emulator, answering every bench key (one team per key, the same events)."""

    def _auth(self, headers: dict[str, str], query: dict[str, str]) -> Any:
        key = headers.get("x-api-key") or query.get("apikey") or ""
        return None if key.startswith(KEY_PREFIX) else super()._auth(headers, query)


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def write_pipelines(folder: Path, url: str, n: int, every: float) -> list[Path]:
    """``n`` pipelines, each its own key (in a file), jsonl output, state in $BENCH_URL."""
    (folder / "keys").mkdir(parents=True)
    files = []
    for i in range(n):
        (folder / "keys" / f"{i}.key").write_text(f"{KEY_PREFIX}{i:05d}\n")
        doc = {
            "version": 1, "name": f"p{i:05d}",
            "input": {"type": "postman_audit",
                      "settings": {"base_url": url, "backfill_start_time": "2026-01-01T00:00:00Z",
                                   "page_size": 300,
                                   "rate_limit": {"requests": 1000, "per_seconds": 1}},
                      "secrets": {"api_key": {"file": f"keys/{i}.key"}}},
            "output": {"type": "jsonl", "settings": {"path": f"out/p{i:05d}.jsonl"}},
            "state": {"url": {"env": "BENCH_URL"}},
            "schedule": {"every": every},
        }
        path = folder / f"p{i:05d}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        files.append(path)
    return files


def syncs_of(text: str) -> list[dict[str, Any]]:
    """The workers' sync lines, parsed."""
    found = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            end = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.append({"pipeline": m[2], "outcome": m[3], "requests": int(m[5]),
                          "start": end - float(m[6]), "end": end})
    return found


def overlaps(syncs: list[dict[str, Any]]) -> int:
    """Pairs of syncs of one pipeline, both past the lease, that overlapped in time."""
    by: dict[str, list[tuple[float, float]]] = {}
    for s in syncs:
        if s["outcome"] != "busy":
            by.setdefault(s["pipeline"], []).append((s["start"], s["end"]))
    bad = 0
    for spans in by.values():
        spans.sort()
        bad += sum(1 for (_, end), (start, _) in zip(spans, spans[1:], strict=False)
                   if start < end - 0.01)
    return bad


def run_cpu(folder: Path, pipeline: Path, env: dict[str, str], times: int = 5) -> float:
    """CPU seconds of one `plugin-host run` process (nothing new), the median of ``times``."""
    costs = []
    for _ in range(times):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "plugin_host", "run", "--quiet", str(pipeline)],
                       cwd=folder, env=env, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        costs.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return sorted(costs)[len(costs) // 2]


def measure(folder: Path, files: list[Path], env: dict[str, str], workers: int,
            seconds: float, concurrency: int) -> dict[str, Any]:
    """Start ``workers`` workers, wait for every pipeline's first sync, then count syncs and
    CPU over ``seconds``; stop them with SIGTERM."""
    logs = [folder / f"worker-{workers}-{i}.err" for i in range(workers)]
    procs = [subprocess.Popen([sys.executable, "-m", "plugin_host", "worker", "--concurrency",
                               str(concurrency), *map(str, files)], cwd=folder, env=env,
                              stderr=log.open("w"), stdout=subprocess.DEVNULL) for log in logs]

    def synced() -> list[dict[str, Any]]:
        return [s for log in logs for s in syncs_of(log.read_text())]

    deadline = time.monotonic() + 600
    while len({s["pipeline"] for s in synced() if s["outcome"] == "ok"}) < len(files):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise SystemExit("workers did not sync every pipeline once: see " + str(logs[0]))
        time.sleep(1)
    before = len(synced())
    cpu = [cpu_seconds(p.pid) for p in procs]
    time.sleep(seconds)
    done = len(synced()) - before
    spent = sum(cpu_seconds(p.pid) - c for p, c in zip(procs, cpu, strict=True))
    for p in procs:
        p.send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=120) for p in procs]
    every = synced()
    return {"workers": workers, "syncs_per_minute": round(done * 60 / seconds),
            "cpu_ms_per_sync": round(1000 * spent / max(done, 1), 1),
            "overlapping_syncs": overlaps(every),
            "busy_with_requests": sum(1 for s in every if s["outcome"] == "busy"
                                      and s["requests"]),
            "failed": sum(1 for s in every if s["outcome"] in ("failed", "fenced")),
            "exit_codes": codes}


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", default="1,2,3")
    args = parser.parse_args()
    server = PostgresServer.start_new()
    with server.admin("postgres") as conn:  # the test server allows 60: 3 workers need more
        conn.execute("ALTER SYSTEM SET max_connections = 200")
    server.restart()
    rows = []
    try:
        with AnyTeamEmulator(EmulatorConfig(events=20, days=30)) as emu, \
                tempfile.TemporaryDirectory() as tmp:
            for n in (int(w) for w in args.workers.split(",")):
                db = server.new_database()
                folder = Path(tmp) / f"w{n}"
                files = write_pipelines(folder, emu.url, args.pipelines, args.every)
                env = {**os.environ, "BENCH_URL": db.url}
                if n == int(args.workers.split(",")[0]):
                    subprocess.run([sys.executable, "-m", "plugin_host", "run", "--quiet",
                                    str(files[0])], cwd=folder, env=env, check=True)
                    run_ms = 1000 * run_cpu(folder, files[0], env)
                    print(f"plugin-host run, one pipeline, nothing new: {run_ms:.0f} ms CPU "
                          "per process", flush=True)
                row = measure(folder, files, env, n, args.seconds, args.concurrency)
                lines = sum(len(Path(folder / "out" / f"p{i:05d}.jsonl").read_text()
                                .splitlines()) for i in range(args.pipelines))
                row["events_delivered"] = f"{lines} of {args.pipelines * len(emu.events)}"
                print(row, flush=True)
                rows.append(row)
    finally:
        server.close()
    bad = [r for r in rows if r["overlapping_syncs"] or r["busy_with_requests"]
           or r["failed"] or set(r["exit_codes"]) != {0}]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
