#!/usr/bin/env python3
"""Turn the raw output of bench/run.sh into a markdown report (stdout).

Standard library only (runs with the system python3).
"""

import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path

MiB = 1024 * 1024

# name, label, unit kind, target ratio (ours/upstream), extra target
ROWS = [
    ("about", "about `GET /api/v1/`", "req", 50, None),
    ("metadata", "metadata `GET /api/v1/metadata/nested/images/big_image`", "req", 100, None),
    ("search", "search page of 100 `GET /api/v1/search/many?page[offset]=0&page[limit]=100`", "req", 100, None),
    ("block", "8 MiB array block `array/block/nested/images/big_image?block=0,0` (octet-stream)", "bytes", 5, 1024),
    ("table", "table partition `table/partition/tables/long_table?partition=0` (Arrow file)", "bytes", 5, None),
    ("png", "PNG of a 1000×1000 float64 image `array/full/nested/images/medium_image?format=image/png`", "bytes", 1, None),
    ("csv", "CSV of a 300×300 float64 image `array/full/nested/images/small_image?format=text/csv`", "bytes", 1, None),
    ("parquet", "table partition as Parquet `...long_table?partition=0&format=application/x-parquet`", "bytes", 1, None),
    ("tablecsv", "table partition as CSV `...long_table?partition=0&format=text/csv`", "bytes", 1, None),
    ("hdf5", "container as HDF5 `container/full/nested/cubes?format=application/x-hdf5`", "bytes", 1, None),
]


def read(path, default=None):
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def load_runs(work, server, name):
    runs = []
    for f in sorted(glob.glob(os.path.join(work, "raw", f"{server}-{name}-*.json"))):
        d = json.loads(Path(f).read_text())
        r = d.get("result")
        if not r or d.get("died"):
            runs.append(None)
            continue
        secs = r["duration_us"] / 1e6
        errors = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
        runs.append(
            {
                "rps": r["requests"] / secs,
                "mibps": r["bytes"] / secs / MiB,
                "p50_ms": r["lat_p50_us"] / 1000,
                "p99_ms": r["lat_p99_us"] / 1000,
                "cpu_ms_per_req": (d["cpu_ticks"] / d["clk_tck"] * 1000 / r["requests"]) if r["requests"] else float("nan"),
                "rss_max_kb": d["rss_max_kb"],
                "errors": errors,
                "requests": r["requests"],
            }
        )
    return runs


def med(runs, key):
    vals = [r[key] for r in runs if r is not None]
    return statistics.median(vals) if vals else None


def fmt(v, digits=1):
    if v is None:
        return "n/a"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.{max(digits, 2)}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    if r is None:
        return "n/a"
    if r >= 10:
        return f"{r:,.0f}×"
    return f"{r:.2f}×"


def machine():
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / MiB:.0f} GiB"
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {mem} RAM, Linux {platform.release()}"


def git_rev(repo):
    try:
        rev = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "crates", "Cargo.toml", "Cargo.lock"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" + uncommitted changes in crates/" if dirty else "")
    except OSError:
        return "?"


def wrk_version():
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        return (out.stdout + out.stderr).splitlines()[0].split(" [")[0]
    except (OSError, IndexError):
        return "wrk"


def probe(work, server, name):
    j = read(os.path.join(work, f"probe-{server}-{name}.json"))
    if not j:
        return None
    d = json.loads(j)
    d["sha"] = read(os.path.join(work, f"probe-{server}-{name}.sha"))
    hdrs = read(os.path.join(work, f"probe-{server}-{name}.headers"), "")
    d["encoding"] = None
    d["content_type"] = None
    for line in hdrs.splitlines():
        k, _, v = line.partition(":")
        if k.lower() == "content-encoding":
            d["encoding"] = v.strip()
        if k.lower() == "content-type":
            d["content_type"] = v.strip()
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--servers", default="upstream ours")
    ap.add_argument("--duration")
    ap.add_argument("--repeats")
    ap.add_argument("--threads")
    ap.add_argument("--conns")
    ap.add_argument("--ours-bin")
    ap.add_argument("--repo")
    ap.add_argument("--upstream-version")
    a = ap.parse_args()
    servers = a.servers.split()
    W = a.work

    data = {(s, n): load_runs(W, s, n) for s in servers for n, *_ in ROWS}

    out = []
    p = out.append
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    p(f"# tiled-rs vs upstream tiled {a.upstream_version} — side-by-side benchmark")
    p("")
    p(f"- date: {now}")
    p(f"- machine: {machine()}; client (wrk) and both servers share these cores")
    lb, la = read(os.path.join(W, "load-before"), "?"), read(os.path.join(W, "load-after"), "?")
    p(f"- system load average (1/5/15 min) before: {lb}; after: {la}")
    p(f"- load: `{wrk_version()}`, `-t{a.threads} -c{a.conns} -d{a.duration}`, "
      f"{a.repeats} measured runs per row and server (median shown), after a discarded warm-up run; "
      "servers measured one at a time, runs interleaved")
    if "ours" in servers:
        info = read(os.path.join(W, "ours-bin-info"), "")
        p(f"- ours: `{a.ours_bin} serve demo` ({info}; repo at git {git_rev(a.repo)} when the run ended)")
    if "upstream" in servers:
        p(f"- upstream: `tiled serve pyobject --public upstream_demo:tree` (tiled {a.upstream_version}, one uvicorn process)")
    p("")
    p("| workload | upstream | ours | ours/upstream | target |")
    p("|---|---:|---:|---:|---|")

    def val(s, n, key):
        return med(data[(s, n)], key) if s in servers else None

    for n, label, kind, tgt, abs_tgt in ROWS:
        key, unit = ("rps", "req/s") if kind == "req" else ("mibps", "MiB/s")
        u, o = val("upstream", n, key), val("ours", n, key)
        t = f"≥ {tgt}×" + (f", ≥ {abs_tgt:,} MiB/s" if abs_tgt else "")
        def fu(v):
            return "n/a" if v is None else f"{fmt(v)} {unit}"
        p(f"| {label} | {fu(u)} | {fu(o)} | {fmt_ratio(ratio(o, u))} | {t} |")

    def kb(s, what):
        v = read(os.path.join(W, f"{what}-{s}")) if s in servers else None
        return int(v) / 1024 if v else None

    def peak(s):
        if s not in servers:
            return None
        vals = [r["rss_max_kb"] for n, *_ in ROWS for r in data[(s, n)] if r]
        return max(vals) / 1024 if vals else None

    for label, fu, fo in [
        ("RSS idle at start (VmRSS once ready, before any request, MiB)", kb("upstream", "rss-start"), kb("ours", "rss-start")),
        ("RSS idle after warm-up (VmRSS 3 s after the warm-up runs, MiB)", kb("upstream", "rss-idle"), kb("ours", "rss-idle")),
        ("RSS under load (max VmRSS sampled during runs, MiB)", peak("upstream"), peak("ours")),
        ("RSS high-water mark (VmHWM at end, MiB)", kb("upstream", "hwm"), kb("ours", "hwm")),
    ]:
        p(f"| {label} | {fmt(fu)} | {fmt(fo)} | {fmt_ratio(ratio(fo, fu))} | ≤ 0.1× |")
    p("")

    p("## Details (medians)")
    p("")
    p("| workload | server | req/s | MiB/s | p50 ms | p99 ms | server CPU ms/req | max RSS MiB | errors (all runs) |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, *_ in ROWS:
        for s in servers:
            runs = data[(s, n)]
            errs = sum(r["errors"] for r in runs if r)
            missing = sum(1 for r in runs if r is None)
            e = f"{errs}" + (f" (+{missing} failed runs)" if missing else "")
            rss = max((r["rss_max_kb"] for r in runs if r), default=None)
            p(f"| {n} | {s} | {fmt(med(runs, 'rps'))} | {fmt(med(runs, 'mibps'))} | {fmt(med(runs, 'p50_ms'))} | "
              f"{fmt(med(runs, 'p99_ms'))} | {fmt(med(runs, 'cpu_ms_per_req'), 2)} | {fmt(rss / 1024 if rss else None)} | {e} |")
    p("")
    p("RSS at the end of the measured runs: " + ", ".join(f"{s} {fmt(kb(s, 'rss-end'))} MiB" for s in servers) + ".")
    p("")

    ev = read(os.path.join(W, "events"))
    if ev:
        p("**Server stopped during the run:**")
        p("")
        for line in ev.splitlines():
            p(f"- {line}")
        p("")
    p("## Responses (one probe request each, before the runs)")
    p("")
    p("| workload | server | HTTP | body bytes | content-type | content-encoding | sha256 (16) |")
    p("|---|---|---:|---:|---|---|---|")
    for n, *_ in ROWS:
        for s in servers:
            d = probe(W, s, n)
            if d is None:
                p(f"| {n} | {s} | n/a | | | | |")
                continue
            p(f"| {n} | {s} | {d['http_code']} | {d['size']:,} | {d['content_type'] or ''} | {d['encoding'] or '—'} | `{d['sha']}` |")
    if len(servers) == 2:
        a_ = probe(W, "upstream", "block")
        b_ = probe(W, "ours", "block")
        if a_ and b_:
            same = a_["sha"] == b_["sha"]
            p("")
            p(f"Array block bytes identical on both servers: **{'yes' if same else 'NO'}**.")
    p("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
