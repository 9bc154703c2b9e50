#!/usr/bin/env python3
"""Write benchmark: drives one tiled server (ours or upstream 0.2.20) through
upstream's own Python client (tiled==0.2.20, bench venv) and prints one JSON
line per measurement. Used by bench/write.sh; see bench/README.md.

    python bench/write_load.py run URL KEY --server NAME [knobs]
    python bench/write_load.py report RESULTS.jsonl OUT.md

Measurements (each one runs in a child process with a timeout, so a hung or
failing server is recorded as an error and the run goes on):

  array   float64 array, chunks (1024, 1024) = 8 MiB per block, shape
          (NBLOCKS*1024, 1024); a fresh node per repeat; `write_block` of every
          block from T threads (one client per thread); MiB/s of block payload.
          Verified afterwards: VERIFY random blocks read back byte-identical.
  table   `create_appendable_table` (x int64, y float64, s string), then T
          threads each `append_partition(0, df)` of ROWS rows for DURATION s;
          rows/s = acknowledged rows / wall time (until the last writer
          returns). Verified: the table read back has exactly the acknowledged
          rows (count, and the set of x values, which are unique per row).
  nodes   `create_container(key, metadata=small dict)` N times under a fresh
          parent, from T threads (N split among them); nodes/s. Verified: the
          parent lists N children.

JSON line: {server, measure, threads, value, unit, repeats, runs, errors, ...}.
`value` is the median of the repeats that succeeded (null when none did);
`errors` lists error messages (exception type, HTTP status, detail).
"""

import argparse
import concurrent.futures
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

MIB = 1024 * 1024
BLOCK = 1024  # block edge: 1024 x 1024 float64 = 8 MiB


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def describe(exc):
    """Short, informative text for an exception (HTTP status and body when there)."""
    resp = getattr(exc, "response", None)
    status = getattr(resp, "status_code", None)
    text = f"{type(exc).__name__}"
    if status is not None:
        text += f" HTTP {status}"
        try:
            body = resp.text
        except Exception:  # streaming response, etc.
            body = ""
        if body:
            text += f": {body[:160]}"
            return text
    msg = " ".join(str(exc).split())
    if msg:
        text += f": {msg[:1200]}"
    return text


def connect(url, key):
    from tiled.client import from_uri

    return from_uri(url, api_key=key)


class Errors:
    """Thread-safe error collection (keeps the first few distinct messages)."""

    def __init__(self, keep=5):
        self.lock = threading.Lock()
        self.count = 0
        self.messages = []
        self.keep = keep

    def add(self, exc, where=""):
        msg = (where + ": " if where else "") + describe(exc)
        with self.lock:
            self.count += 1
            if len(self.messages) < self.keep and msg not in self.messages:
                self.messages.append(msg)

    def summary(self):
        if not self.count:
            return []
        out = list(self.messages)
        if self.count > len(out):
            out.append(f"({self.count} errors in all)")
        return out


class SetupError(RuntimeError):
    """Creating the node under test failed (nothing was measured)."""


def setup(what, fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except Exception as exc:
        raise SetupError(f"{what}: {describe(exc)}") from exc


def storage_info(node):
    """Where the server put the data: mimetype, management, parameters, asset URIs."""
    try:
        out = []
        for ds in node.data_sources() or []:
            names = [a.data_uri.rsplit("/", 2)[-1] for a in ds.assets]
            # Appended tables have one asset per append: show a few.
            shown = names[:3] + ([f"... {len(names) - 3} more"] if len(names) > 3 else [])
            out.append({"mimetype": ds.mimetype, "management": str(getattr(ds.management, "value", ds.management)),
                        "parameters": ds.parameters,
                        "assets": shown})
        return out
    except Exception as exc:
        return describe(exc)


def unique_key(prefix):
    return f"{prefix}_{os.getpid()}_{int(time.time() * 1000)}_{random.randrange(1 << 30):08x}"


# --------------------------------------------------------------------------
# measurements (one repeat each; return (value, extra) or raise)
# --------------------------------------------------------------------------
def array_once(url, key, threads, nblocks, nverify, blocks):
    import numpy as np
    from tiled.structures.array import ArrayStructure, BuiltinDtype
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource

    root = connect(url, key)
    structure = ArrayStructure(
        data_type=BuiltinDtype.from_numpy_dtype(np.dtype("float64")),
        shape=(nblocks * BLOCK, BLOCK),
        chunks=((BLOCK,) * nblocks, (BLOCK,)),
    )
    name = unique_key("wbench_array")
    setup(
        "new(array)",
        root.new,
        structure_family=StructureFamily.array,
        data_sources=[DataSource(structure=structure, structure_family=StructureFamily.array)],
        key=name,
        metadata={"bench": "write", "what": "array"},
    )
    # One client (one HTTP connection pool) per thread, set up before the clock.
    nodes = [connect(url, key)[name] for _ in range(threads)]
    errors = Errors()
    todo = list(range(nblocks))
    lock = threading.Lock()
    done = [0]

    def worker(node):
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop(0)
            try:
                node.write_block(blocks[i], block=(i, 0))
                with lock:
                    done[0] += 1
            except Exception as exc:
                errors.add(exc, f"write_block({i},0)")

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, nodes))
    secs = time.perf_counter() - t0
    if errors.count:
        raise RuntimeError("; ".join(errors.summary()))
    # Verify: random blocks read back exactly (through a fresh client).
    check = connect(url, key)[name]
    picks = sorted(random.sample(range(nblocks), min(nverify, nblocks)))
    for i in picks:
        got = np.asarray(check.read_block((i, 0)))
        if got.shape != blocks[i].shape or not np.array_equal(got, blocks[i]):
            raise RuntimeError(f"verify: block ({i},0) read back differs (shape {got.shape})")
    mib = done[0] * blocks[0].nbytes / MIB
    return mib / secs, {"seconds": round(secs, 3), "mib": mib, "verified_blocks": picks,
                        "storage": storage_info(check)}


def make_blocks(nblocks):
    import numpy as np

    rng = np.random.default_rng(12345)
    # Random doubles: incompressible, so no server gets a free ride from a codec.
    return [rng.standard_normal((BLOCK, BLOCK)) for _ in range(nblocks)]


def table_once(url, key, threads, rows, duration, append_as):
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    root = connect(url, key)
    schema = pa.schema([("x", pa.int64()), ("y", pa.float64()), ("s", pa.string())])
    name = unique_key("wbench_table")
    setup("create_appendable_table", root.create_appendable_table, schema, key=name,
          metadata={"bench": "write", "what": "table"})
    nodes = [connect(url, key)[name] for _ in range(threads)]
    errors = Errors()
    acked = [0] * threads
    batches = [0] * threads
    strings = np.array([f"s{i:06d}" for i in range(rows)], dtype=object)
    ys = np.arange(rows, dtype="float64") * 0.5
    ys_pa, strings_pa = pa.array(ys), pa.array(strings, type=pa.string())
    start = threading.Barrier(threads + 1)
    deadline = [0.0]

    def worker(t):
        node = nodes[t]
        base = np.int64(t) * 10**12
        seq = 0
        start.wait()
        while time.perf_counter() < deadline[0]:
            x = base + seq * rows + np.arange(rows, dtype="int64")
            if append_as == "pandas":
                batch = pd.DataFrame({"x": x, "y": ys, "s": strings})
            else:
                batch = pa.Table.from_arrays(
                    [pa.array(x), ys_pa, strings_pa], schema=schema
                )
            try:
                node.append_partition(0, batch)
            except Exception as exc:
                errors.add(exc, f"append_partition (writer {t})")
                if errors.count >= 20:
                    return
                time.sleep(0.05)
                continue
            seq += 1
            acked[t] += rows
            batches[t] += 1

    pool = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for th in pool:
        th.start()
    deadline[0] = time.perf_counter() + duration
    t0 = time.perf_counter()
    start.wait()
    for th in pool:
        th.join()
    secs = time.perf_counter() - t0
    total = sum(acked)
    extra = {"seconds": round(secs, 3), "rows": total, "batches": sum(batches)}
    if errors.count:
        raise RuntimeError("; ".join(errors.summary())
                           + f" [acknowledged {total} rows in {secs:.1f} s = {total / secs:.0f} rows/s]")
    # Verify: exactly the acknowledged rows, each once.
    check = connect(url, key)[name]
    extra["storage"] = storage_info(check)
    df = check.read()
    if len(df) != total:
        raise RuntimeError(f"verify: read back {len(df)} rows, {total} acknowledged")
    expect = np.sort(
        np.concatenate(
            [
                np.int64(t) * 10**12 + np.arange(acked[t], dtype="int64")
                for t in range(threads)
            ]
        )
    )
    if not np.array_equal(np.sort(df["x"].to_numpy(dtype="int64")), expect):
        raise RuntimeError("verify: the x values read back are not the appended ones")
    extra["verified_rows"] = int(len(df))
    return total / secs, extra


def nodes_once(url, key, threads, n):
    root = connect(url, key)
    name = unique_key("wbench_nodes")
    setup("create_container", root.create_container, name, metadata={"bench": "write"})
    parents = [connect(url, key)[name] for _ in range(threads)]
    errors = Errors()
    created = [0] * threads

    def worker(t):
        parent = parents[t]
        for i in range(t, n, threads):
            try:
                parent.create_container(
                    f"n{i:06d}",
                    metadata={"i": i, "sample": "Si", "temperature": 293.15, "tags": ["a", "b"]},
                )
                created[t] += 1
            except Exception as exc:
                errors.add(exc, f"create_container(n{i:06d})")

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    secs = time.perf_counter() - t0
    total = sum(created)
    if errors.count:
        raise RuntimeError("; ".join(errors.summary()) + f" [created {total}]")
    got = len(connect(url, key)[name])
    if got != n:
        raise RuntimeError(f"verify: parent lists {got} children, {n} created")
    return total / secs, {"seconds": round(secs, 3), "nodes": total}


UNITS = {"array": "MiB/s", "table": "rows/s", "nodes": "nodes/s"}


def child(args):
    """One measurement (all repeats); prints one JSON object."""
    runs, errors, extras = [], [], []
    blocks = make_blocks(args.nblocks) if args.measure == "array" else None
    for r in range(args.repeat):
        try:
            if args.measure == "array":
                v, extra = array_once(args.url, args.key, args.threads, args.nblocks, args.verify, blocks)
            elif args.measure == "table":
                v, extra = table_once(args.url, args.key, args.threads, args.rows, args.duration, args.append_as)
            else:
                v, extra = nodes_once(args.url, args.key, args.threads, args.nodes)
            runs.append(round(v, 2))
            extras.append(extra)
            status = f"{runs[-1]}"
        except Exception as exc:
            errors.append(f"repeat {r + 1}: {describe(exc)}")
            status = "error: " + describe(exc)[:200]
        print(f"  {args.measure} x{args.threads} repeat {r + 1}: {status}", file=sys.stderr, flush=True)
        # A server that cannot even create the node fails the same way each time.
        if not runs and errors and "Setup" in errors[-1]:
            break
        if status.startswith("error") and not server_answers(args.url):
            errors.append(f"repeat {r + 1}: server no longer answers; remaining repeats skipped")
            break
    print(json.dumps({"runs": runs, "errors": errors, "details": extras}), flush=True)


def server_answers(url):
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/v1/", timeout=10) as r:
            return r.status == 200
    except Exception:
        return False


def run_all(args):
    plan = []
    for m in args.measures.split(","):
        m = m.strip()
        if m not in UNITS:
            sys.exit(f"unknown measure {m!r}")
        for t in getattr(args, f"{m}_threads").split(","):
            plan.append((m, int(t)))
    for measure, threads in plan:
        cmd = [
            sys.executable, os.path.abspath(__file__), "_child", args.url, args.key,
            "--measure", measure, "--threads", str(threads), "--repeat", str(args.repeat),
            "--nblocks", str(args.nblocks), "--verify", str(args.verify), "--rows", str(args.rows),
            "--duration", str(args.duration), "--nodes", str(args.nodes), "--append-as", args.append_as,
        ]
        print(f"[{time.strftime('%T')}] {args.server}: {measure} x{threads}", file=sys.stderr, flush=True)
        t0 = time.time()
        rec = {"server": args.server, "measure": measure, "threads": threads, "value": None,
               "unit": UNITS[measure], "repeats": 0, "runs": [], "errors": []}
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, timeout=args.timeout)
            lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
            if p.returncode != 0 or not lines:
                rec["errors"].append(f"child exited {p.returncode}: {p.stdout[-300:]}")
            else:
                out = json.loads(lines[-1])
                rec["runs"] = out["runs"]
                rec["errors"] = out["errors"]
                rec["details"] = out["details"]
        except subprocess.TimeoutExpired:
            rec["errors"].append(f"timeout after {args.timeout} s")
        if not server_answers(args.url):
            rec["errors"].append("server did not answer after this measurement (crashed or hung)")
        rec["repeats"] = len(rec["runs"])
        if rec["runs"]:
            rec["value"] = round(statistics.median(rec["runs"]), 2)
        rec["elapsed"] = round(time.time() - t0, 1)
        print(json.dumps(rec), flush=True)


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def report(args):
    allrecs = [json.loads(ln) for ln in open(args.results) if ln.startswith("{")]
    recs = [r for r in allrecs if r["measure"] in UNITS]
    notes = [r for r in allrecs if r["measure"] not in UNITS]
    by = {(r["measure"], r["threads"], r["server"]): r for r in recs}
    rows = sorted({(r["measure"], r["threads"]) for r in recs},
                  key=lambda mt: (list(UNITS).index(mt[0]), mt[1]))
    label = {"array": "array blocks, 8 MiB `write_block`", "table": "table `append_partition`",
             "nodes": "`create_container`"}

    def cell(r):
        if r is None:
            return "—"
        if r["value"] is None:
            return "error"
        v = r["value"]
        s = f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"
        return s + (" ⚠" if r["errors"] else "")

    out = [
        "# Write benchmark: tiled-rs vs upstream tiled 0.2.20",
        "",
        f"{args.header}" if args.header else "",
        "",
        "| measure | writers | unit | upstream | ours | ours / upstream |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for m, t in rows:
        u, o = by.get((m, t, "upstream")), by.get((m, t, "ours"))
        ratio = "—"
        if u and o and u["value"] and o["value"] is not None:
            ratio = f"{o['value'] / u['value']:.2f}×"
        out.append(f"| {label[m]} | {t} | {UNITS[m]} | {cell(u)} | {cell(o)} | {ratio} |")
    out += ["", "Medians of the repeats that succeeded; per-repeat values:", ""]
    for r in recs:
        out.append(f"- {r['server']} {r['measure']} ×{r['threads']}: runs {r['runs']} "
                   f"({r.get('elapsed', '?')} s incl. setup and verification)")
    seen = set()
    stor = []
    for r in recs:
        for d in r.get("details") or []:
            if "storage" in d and (r["server"], r["measure"]) not in seen:
                seen.add((r["server"], r["measure"]))
                stor.append(f"- {r['server']} {r['measure']}: `{json.dumps(d['storage'])}`")
    if stor:
        out += ["", "Storage the servers chose (data sources of the written nodes):", ""] + stor
    if notes:
        out += ["", "## Server notes", ""]
        for r in notes:
            for e in r["errors"]:
                out.append(f"- {r['server']}: {e}")
    errs = [r for r in recs if r["errors"]]
    if errs:
        out += ["", "## Errors", ""]
        for r in errs:
            for e in r["errors"]:
                out.append(f"- {r['server']} {r['measure']} ×{r['threads']}: {e}".replace("\n", " "))
    text = "\n".join(out).replace("\n\n\n", "\n\n") + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("run", "_child"):
        p = sub.add_parser(name)
        p.add_argument("url")
        p.add_argument("key")
        p.add_argument("--server", default="server")
        p.add_argument("--repeat", type=int, default=3)
        p.add_argument("--nblocks", type=int, default=32, help="8 MiB blocks per array")
        p.add_argument("--verify", type=int, default=4, help="blocks read back per array")
        p.add_argument("--rows", type=int, default=1000, help="rows per append")
        p.add_argument("--duration", type=float, default=10.0, help="seconds of appending")
        p.add_argument("--nodes", type=int, default=300, help="containers per run")
        p.add_argument("--append-as", choices=["arrow", "pandas"], default="arrow",
                       help="append_partition argument: pyarrow.Table, or pandas.DataFrame "
                       "(upstream 0.2.20's client then sends the index as a column, which "
                       "upstream's SQL table store rejects with HTTP 500)")
        p.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement")
        if name == "run":
            p.add_argument("--measures", default="array,table,nodes")
            p.add_argument("--array-threads", default="1,4")
            p.add_argument("--table-threads", default="1,8")
            p.add_argument("--nodes-threads", default="1,8")
        else:
            p.add_argument("--measure", required=True)
            p.add_argument("--threads", type=int, required=True)
    p = sub.add_parser("report")
    p.add_argument("results")
    p.add_argument("out")
    p.add_argument("--header", default="")
    args = ap.parse_args()
    if args.cmd == "run":
        run_all(args)
    elif args.cmd == "_child":
        child(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
