#!/usr/bin/env python3
"""Load the catalog benchmark's N runs into an *upstream* tiled catalog
(created with upstream's `tiled catalog init`), SQLite or PostgreSQL, with
the same metadata as crates/tiled-catalog/examples/bench_load.rs, by plain
SQL inserts (upstream's triggers maintain its closure table and, on SQLite,
its FTS index; PostgreSQL's full text is an expression index).

    python bench/upstream_catalog_load.py /path/upstream.db N
    python bench/upstream_catalog_load.py postgresql://user@host:port/db N

Going through upstream's HTTP API would take hours at 1M nodes; this
measures its query side on the same data. Prints {"nodes", "seconds", "rate"}.
"""

import json
import sqlite3
import sys
import time

M64 = (1 << 64) - 1


def mix(i, seed):
    z = (i + seed * 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


BEAMLINES = ["ISS", "CHX", "CSX", "HXN", "IOS", "SRX", "XPD", "PDF", "SMI", "LIX", "AMX", "FMX", "NYX",
             "ESM", "SIX", "TES", "BMM", "QAS", "FXI", "ISR", "HEX", "CMS", "OPLS", "XFP", "QAS2",
             "SST1", "SST2", "TST"]
PLANS = ["count", "scan", "rel_scan", "grid_scan", "list_scan", "fly", "tune_centroid", "adaptive_scan"]
WORDS = ["silicon", "graphene", "perovskite", "zeolite", "catalyst", "protein", "lysozyme",
         "battery", "cathode", "anode", "thin", "film", "nanoparticle", "polymer", "alloy", "oxide"]


def run_metadata(i):
    r = lambda s: mix(i, s)  # noqa: E731
    beamline = BEAMLINES[r(1) % len(BEAMLINES)]
    plan = PLANS[r(2) % len(PLANS)]
    t0 = 1_500_000_000.0 + i * 30.0 + (r(3) % 1000) / 100.0
    sample = f"{WORDS[r(4) % 16]} {WORDS[r(5) % 16]} {r(6) % 1000}"
    detectors = [f"{beamline.lower()}_det{k}" for k in range(1 + r(7) % 4)]
    motors = [f"motor{k}" for k in range(1 + r(8) % 3)]
    num_points = 1 + r(9) % 500
    return {
        "start": {
            "uid": f"{r(10):016x}-{r(11):016x}",
            "time": t0,
            "scan_id": i,
            "beamline_id": beamline,
            "plan_name": plan,
            "plan_type": "generator",
            "num_points": num_points,
            "num_intervals": num_points - 1,
            "detectors": detectors,
            "motors": motors,
            "owner": f"user{r(12) % 200}",
            "group": "facility",
            "proposal": {"proposal_id": f"3{r(13) % 100_000:05}", "title": f"Study of {sample}", "type": "General User"},
            "cycle": f"{2017 + i // 200_000}-{1 + r(14) % 3}",
            "sample": {"name": sample, "composition": WORDS[r(15) % 16], "holder": f"slot {r(16) % 24}",
                       "temperature_K": 290.0 + (r(17) % 100) / 10.0},
            "plan_args": {"detectors": detectors, "num": num_points, "start": -1.0, "stop": 1.0, "per_step": "None",
                          "md": {"operator": f"op{r(18) % 10}"}},
            "hints": {"dimensions": [[motors, "primary"]]},
            "versions": {"bluesky": "1.13.0", "ophyd": "1.9.0", "databroker": "2.0.0"},
            "scan_description": f"{plan} of {sample} on {beamline} with {len(detectors)} detectors",
            "comments": "x" * (200 + r(19) % 400),
        },
        "stop": {
            "uid": f"{r(20):016x}",
            "time": t0 + num_points * 0.5,
            "exit_status": "fail" if r(21) % 50 == 0 else "success",
            "reason": "",
            "num_events": {"primary": num_points, "baseline": 2},
        },
        "summary": {"duration": num_points * 0.5, "plan_name": plan, "scan_id": i,
                    "stream_names": ["primary", "baseline"]},
    }


def connect(target):
    """A DB-API connection and its placeholder."""
    if target.startswith("postgresql://"):
        import psycopg

        return psycopg.connect(target), "%s"
    db = sqlite3.connect(target)
    db.execute("PRAGMA journal_mode=WAL")
    return db, "?"


def main():
    target, n = sys.argv[1], int(sys.argv[2])
    db, ph = connect(target)
    cur = db.cursor()
    columns = "key, parent, structure_family, metadata, specs"
    values = f"{ph}, {ph}, 'container', {ph}, {ph}"
    # Newer upstream schemas have a NOT NULL access_blob.
    cur.execute("SELECT * FROM nodes LIMIT 0")
    if "access_blob" in [d[0] for d in cur.description]:
        columns += ", access_blob"
        values += ", '{}'"
    # The root `tiled catalog init` made (parent NULL), then its `runs` child.
    cur.execute("SELECT id FROM nodes WHERE parent IS NULL ORDER BY id LIMIT 1")
    root = cur.fetchone()[0]
    find_runs = f"SELECT id FROM nodes WHERE parent = {ph} AND key = 'runs'"
    cur.execute(find_runs, (root,))
    if cur.fetchone() is None:
        cur.execute(f"INSERT INTO nodes({columns}) VALUES ({values})", ("runs", root, "{}", "[]"))
        db.commit()
    cur.execute(find_runs, (root,))
    runs = cur.fetchone()[0]
    specs = json.dumps([{"name": "BlueskyRun", "version": None}])
    t = time.time()
    batch = 5000
    for lo in range(0, n, batch):
        rows = [(f"run_{i:08d}", runs, json.dumps(run_metadata(i)), specs) for i in range(lo, min(n, lo + batch))]
        cur.executemany(f"INSERT INTO nodes({columns}) VALUES ({values})", rows)
        db.commit()
        if (lo + batch) % 100_000 == 0:
            print(f"{lo + batch} nodes, {(lo + batch) / (time.time() - t):.0f}/s", file=sys.stderr, flush=True)
    secs = time.time() - t
    print(json.dumps({"nodes": n, "seconds": secs, "rate": n / secs}))


if __name__ == "__main__":
    main()
