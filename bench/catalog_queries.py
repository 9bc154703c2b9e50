#!/usr/bin/env python3
"""Latency of the catalog benchmark's requests against a running server.

    python3 bench/catalog_queries.py http://127.0.0.1:8000 [--api-key KEY] [--repeat 50]

Sends each request sequentially (one client, as a user's notebook does),
after a few warm-up requests, and prints one JSON object per request with
p50/p99 in milliseconds and the count the server reported. Standard library
only.
"""

import argparse
import json
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request

CONTAINER = "runs"


def requests(container, n):
    mid = f"run_{n // 2:08d}"
    eq = {"filter[eq][condition][key]": "start.beamline_id", "filter[eq][condition][value]": '"CHX"'}
    return [
        ("metadata GET", f"/api/v1/metadata/{container}/{mid}", {}),
        ("count of the container", f"/api/v1/metadata/{container}", {"fields": "count"}),
        ("first search page (100)", f"/api/v1/search/{container}", {"page[limit]": "100"}),
        ("eq filter (page of 10)", f"/api/v1/search/{container}", {**eq, "page[limit]": "10"}),
        (
            "range filter (comparison)",
            f"/api/v1/search/{container}",
            {
                "filter[comparison][condition][operator]": "gt",
                "filter[comparison][condition][key]": "start.scan_id",
                "filter[comparison][condition][value]": str(n - 50),
                "page[limit]": "10",
            },
        ),
        (
            "fulltext",
            f"/api/v1/search/{container}",
            {"filter[fulltext][condition][text]": "perovskite 417", "page[limit]": "10"},
        ),
        (
            "most recent of a beamline (sorted by start.time)",
            f"/api/v1/search/{container}",
            {**eq, "sort": "-start.time", "page[limit]": "1"},
        ),
    ]


def fetch(base, path, params, api_key, timeout=120):
    q = urllib.parse.urlencode(params)
    req = urllib.request.Request(base + path + ("?" + q if q else ""))
    req.add_header("Accept", "application/json")
    if api_key:
        req.add_header("Authorization", f"Apikey {api_key}")
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
        status = r.status
    return (time.perf_counter() - t) * 1000, status, body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--api-key")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--nodes", type=int, required=True, help="nodes loaded under the container")
    ap.add_argument("--container", default=CONTAINER)
    ap.add_argument("--timeout", type=float, default=120, help="seconds per request")
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    for name, path, params in requests(args.container, args.nodes):
        times = []
        try:
            for _ in range(args.warmup):
                fetch(args.base, path, params, args.api_key, args.timeout)
            for _ in range(args.repeat):
                ms, status, body = fetch(args.base, path, params, args.api_key, args.timeout)
                if status != 200:
                    raise SystemExit(f"{name}: HTTP {status}: {body[:300]!r}")
                times.append(ms)
        except TimeoutError:
            print(json.dumps({"request": name, "error": f"timed out after {args.timeout:.0f} s"}), flush=True)
            continue
        except urllib.error.HTTPError as e:
            detail = e.read()[:200].decode(errors="replace")
            print(json.dumps({"request": name, "error": f"HTTP {e.code}: {detail}"}), flush=True)
            continue
        doc = json.loads(body)
        meta = doc.get("meta") or {}
        count = meta.get("count")
        if count is None and isinstance(doc.get("data"), dict):
            st = doc["data"]["attributes"].get("structure") or {}
            count = st.get("count")
        times.sort()
        print(json.dumps({
            "request": name,
            "p50_ms": round(statistics.median(times), 2),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 2),
            "count": count,
            "results": len(doc["data"]) if isinstance(doc.get("data"), list) else 1,
        }), flush=True)


if __name__ == "__main__":
    main()
