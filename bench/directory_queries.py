#!/usr/bin/env python3
"""Time a directory server: first answer, all files searchable, one-frame
slice latency and whole-array read throughput.

    python bench/directory_queries.py BASE N --started EPOCH [--api-key KEY]

`--started` is the time.time() just before the server process was
launched. Prints one JSON object. Standard library only.
"""

import argparse
import json
import random
import statistics
import subprocess
import time
import urllib.error
import urllib.request


def get(base, path, key, timeout=300):
    req = urllib.request.Request(base + path)
    if key:
        req.add_header("Authorization", f"Apikey {key}")
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
    return time.perf_counter() - t, body


def curl_rate(a, path):
    cmd = ["curl", "-sf", "-o", "/dev/null", "-w", "%{time_total} %{size_download}", a.base + path]
    if a.api_key:
        cmd[1:1] = ["-H", f"Authorization: Apikey {a.api_key}"]
    seconds, size = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    assert int(size) == a.frames * 1024 * 1024 * 2, size
    return int(size) / float(seconds) / 2**20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("n", type=int)
    ap.add_argument("--started", type=float, required=True)
    ap.add_argument("--api-key")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--slices", type=int, default=50)
    ap.add_argument("--full-reads", type=int, default=3)
    ap.add_argument("--file-offset", type=int, default=0, help="shift the whole-array files (use different files per server)")
    a = ap.parse_args()
    out = {}
    # First answer.
    while True:
        try:
            get(a.base, "/api/v1/", a.api_key, timeout=2)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.02)
    out["first_answer_s"] = round(time.time() - a.started, 3)
    # All files searchable: the top-level count reaches N and the last
    # file's dataset resolves.
    last = f"/api/v1/metadata/f{a.n - 1:04d}/entry/data"
    while True:
        try:
            _, body = get(a.base, "/api/v1/search/?fields=count", a.api_key)
            count = json.loads(body)["meta"]["count"]
            if count >= a.n:
                get(a.base, last, a.api_key)
                break
        except (urllib.error.URLError, ConnectionError, KeyError, TimeoutError):
            pass
        time.sleep(0.05)
    out["all_searchable_s"] = round(time.time() - a.started, 3)
    # One-frame slices of random files (2 MiB each), after one warm-up.
    rng = random.Random(1 + a.file_offset)
    get(a.base, "/api/v1/array/full/f0000/entry/data?slice=0,:,:&format=application/octet-stream", a.api_key)
    times = []
    for _ in range(a.slices):
        i, k = rng.randrange(a.n), rng.randrange(a.frames)
        dt, body = get(a.base, f"/api/v1/array/full/f{i:04d}/entry/data?slice={k},:,:&format=application/octet-stream", a.api_key)
        assert len(body) == 1024 * 1024 * 2, len(body)
        times.append(dt * 1000)
    out["frame_p50_ms"] = round(statistics.median(times), 2)
    out["frame_p99_ms"] = round(sorted(times)[min(len(times) - 1, int(len(times) * 0.99))], 2)
    # Whole arrays: files not read before (cold: from disk unless cached),
    # then the same files again (warm: from the page cache), so the
    # server's own cost shows apart from the disk's.
    # curl does the download: Python's own HTTP client tops out near
    # 650 MiB/s here, below what a fast server sends.
    cold, warm = [], []
    files = [(j * 7 + 1 + a.file_offset) % a.n for j in range(a.full_reads)]
    for rates, repeat in ((cold, 1), (warm, 3)):
        for i in files:
            for _ in range(repeat):
                rates.append(curl_rate(a, f"/api/v1/array/full/f{i:04d}/entry/data?format=application/octet-stream"))
    out["full_read_cold_MiB_s"] = round(statistics.median(cold), 1)
    out["full_read_warm_MiB_s"] = round(statistics.median(warm), 1)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
