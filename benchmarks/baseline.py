"""The bare loop the host is measured against: the fastest honest way to copy the audit log.

One keep-alive ``httpx.Client`` pages ``GET /audit/logs?orderBy=desc&limit=N&since=DAY``
with ``nextCursor`` until the last page, parses each body with orjson and appends every
record as one orjson line to a file, with a single fsync at the end. No checkpoint, no
dedupe beyond dropping a page's first record when it is the previous page's last (an
inclusive cursor), no retries, no rate limiter: whatever the host spends beyond this is
its own.

    python benchmarks/baseline.py --url http://127.0.0.1:PORT --api-key KEY \\
        --since 2026-01-01 --out events.jsonl [--page-size 300]

Prints ``N records, M requests`` on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx
import orjson


def main(argv: list[str] | None = None) -> int:
    """Copy every event since ``--since`` into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--since", required=True, help="YYYY-MM-DD")
    parser.add_argument("--out", required=True)
    parser.add_argument("--page-size", type=int, default=300)
    args = parser.parse_args(argv)

    params: dict[str, str | int] = {"orderBy": "desc", "limit": args.page_size,
                                    "since": args.since}
    requests = records = 0
    last_id = None
    with httpx.Client(base_url=args.url, headers={"X-API-Key": args.api_key},
                      timeout=30.0) as client, open(args.out, "ab") as out:
        while True:
            response = client.get("/audit/logs", params=params)
            requests += 1
            if response.status_code != 200:
                print(f"HTTP {response.status_code}: {response.text[:200]}", file=sys.stderr)
                return 1
            body = orjson.loads(response.content)
            trails = body.get("trails") or []
            if trails and last_id is not None and trails[0].get("id") == last_id:
                trails = trails[1:]  # the cursor names the last record served: skip it
            if trails:
                out.write(b"\n".join([orjson.dumps(record) for record in trails]) + b"\n")
                records += len(trails)
                last_id = trails[-1].get("id")
            cursor = body.get("nextCursor")
            if cursor is None or cursor == "":
                break
            params["cursor"] = cursor
        out.flush()
        os.fsync(out.fileno())
    print(f"{records} records, {requests} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
