#!/usr/bin/env python3
"""SIGKILL crash test for the write path of `tiled serve catalog`.

Writers hammer a catalog server (SQLite catalog + writable storage: Zarr
arrays, tables as Parquet segments) with raw HTTP writes while the server
is SIGKILLed at random moments and restarted on the same files. After every restart (and fully at the end)
the state read back is checked against a ledger of the writes the server
acknowledged (a 2xx response arrived) and of the writes that were in flight
at the kill (outcome unknown: either state is accepted).

See tests/crash/README.md. Exit status 0 only if no failure was found.
"""

from __future__ import annotations

import argparse
import base64
import functools
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

# Loopback traffic must never go through a proxy.
for _var in ("NO_PROXY", "no_proxy"):
    _cur = os.environ.get(_var)
    os.environ[_var] = "127.0.0.1,localhost" + ("," + _cur if _cur else "")
os.environ.setdefault("TILED_RETRY_ATTEMPTS", "2")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.ipc  # noqa: E402,F401

API_KEY = "crash_test_secret"
AUTH = {"Authorization": f"Apikey {API_KEY}"}
OCTET = "application/octet-stream"
ARROW_FILE = "application/vnd.apache.arrow.file"
STARTUP_TIMEOUT = 30.0
PAGE = 300  # the server's largest page
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# (name, numpy dtype, shape, chunk shape, weight)
SHAPES = [
    ("f8_64x64", "<f8", (64, 64), (32, 64), 4),
    ("i4_64x64", "<i4", (64, 64), (32, 32), 4),
    ("i4_50x40_ragged", "<i4", (50, 40), (32, 32), 3),
    ("f8_256x256", "<f8", (256, 256), (128, 128), 1),  # 128 KiB chunks
]
SHAPE_BY_NAME = {s[0]: s for s in SHAPES}

OP_WEIGHTS = {
    "create_array": 14,
    "put_full": 19,
    "put_block": 19,
    "create_container": 6,
    "meta_merge": 6,
    "meta_jsonpatch": 5,
    "meta_put": 6,
    "delete_array": 3,
    "delete_container": 2,
    "create_table": 3,
    "append": 26,
    "replace_partition": 4,
    "delete_table": 1,
}
# Counted apart in the summary: a replace_partition of a one-partition
# table sent as PUT /table/full/.
EXTRA_KINDS = ["replace_full"]

# Every table the test writes has these columns: the writer, the op that
# wrote the row, the row's index in that op's batch, and two values that
# are functions of (seed, writer, op seq, row index).
TABLE_SCHEMA = pa.schema([
    ("w", pa.int64()),
    ("seq", pa.int64()),
    ("k", pa.int64()),
    ("v", pa.float64()),
    ("s", pa.string()),
])
TABLE_COLUMNS = TABLE_SCHEMA.names
TABLE_SCHEMA_URI = ("data:application/vnd.apache.arrow.file;base64,"
                    + base64.b64encode(TABLE_SCHEMA.serialize().to_pybytes()).decode())
STRING_ALPHABET = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789 _-éß€漢"))


def default_bin() -> str:
    if os.environ.get("TILED_BIN"):
        return os.environ["TILED_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache" / "tiled-rs" / "target")
    return str(Path(target) / "debug" / "tiled")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch_add(target, ops):
    out = json.loads(json.dumps(target))
    for op in ops:
        assert op["op"] == "add" and op["path"].count("/") == 1
        out[op["path"][1:]] = op["value"]
    return out


# --------------------------------------------------------------------------
# Deterministic payloads: everything a write sends is a function of
# (seed, writer id, op seq), so the expected state is recomputed from refs.


class Payloads:
    def __init__(self, seed: int):
        self.seed = seed

    def rng(self, wid, seq):
        return np.random.default_rng([self.seed, wid, seq])

    def array(self, wid, seq, dtype, shape):
        rng = self.rng(wid, seq)
        if np.dtype(dtype).kind == "f":
            return (rng.random(shape) + 1.0).astype(dtype)  # never 0 (the fill value)
        return rng.integers(1, 2**31 - 1, size=shape, dtype=np.int64).astype(dtype)

    @functools.lru_cache(maxsize=8192)
    def table(self, wid, seq):
        """The rows of a table write (append or replacement): 1-200 rows."""
        rng = np.random.default_rng([self.seed, wid, seq, 7])
        n = int(rng.integers(1, 201))
        lens = rng.integers(0, 24, size=n)
        chars = STRING_ALPHABET[rng.integers(0, len(STRING_ALPHABET), size=int(lens.sum()))]
        strings, pos = [], 0
        for k, ln in enumerate(lens.tolist()):
            strings.append(f"{wid}.{seq}.{k}:" + "".join(chars[pos:pos + ln]))
            pos += ln
        return pa.table({
            "w": pa.array(np.full(n, wid, dtype=np.int64)),
            "seq": pa.array(np.full(n, seq, dtype=np.int64)),
            "k": pa.array(np.arange(n, dtype=np.int64)),
            "v": pa.array((rng.standard_normal(n) * 1e3).astype(np.float64)),
            "s": pa.array(strings, type=pa.string()),
        }, schema=TABLE_SCHEMA)

    def table_body(self, wid, seq, max_chunksize=None):
        """The table write as an Arrow IPC file (possibly several batches)."""
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, TABLE_SCHEMA) as w:
            w.write_table(self.table(wid, seq), max_chunksize=max_chunksize)
        return sink.getvalue().to_pybytes()

    @staticmethod
    def create_meta(wid, seq, family, shape_name=None):
        md = {"w": wid, "seq": seq, "family": family, "v": 0, "tmp": "x"}
        if shape_name:
            md["shape"] = shape_name
        return md

    @staticmethod
    def merge(wid, seq):
        return {"v": seq, "merged": {"by": wid, "seq": seq}, "tmp": None if seq % 2 else seq}

    @staticmethod
    def jsonpatch(wid, seq):
        return [{"op": "add", "path": "/v", "value": seq}, {"op": "add", "path": "/jp", "value": [wid, seq]}]

    @staticmethod
    def put(wid, seq):
        return {"w": wid, "replaced_at": seq, "v": seq}


# --------------------------------------------------------------------------
# Array geometry


def chunk_grid(shape, chunk):
    per_axis = []
    for n, c in zip(shape, chunk):
        sizes = [c] * (n // c) + ([n % c] if n % c else [])
        per_axis.append(sizes)
    return per_axis


def block_slices(shape, chunk, block):
    return tuple(slice(b * c, min(b * c + c, n)) for b, c, n in zip(block, chunk, shape))


def all_blocks(shape, chunk):
    return list(itertools.product(*[range(len(s)) for s in chunk_grid(shape, chunk)]))


# --------------------------------------------------------------------------
# Ledger


@dataclass
class PendingOp:
    kind: str  # create | delete | put_full | put_block | meta_put | meta_merge | meta_jsonpatch
    #            | append | replace (tables)
    wid: int
    seq: int
    acked: bool
    gen: int
    block: tuple | None = None
    payload: object = None  # metadata payloads (small)
    via: str | None = None  # a delete of an ancestor container
    partition: int | None = None  # append | replace: the table partition

    def describe(self):
        out = [self.kind, self.wid, self.seq]
        if self.block is not None:
            out.append(self.block)
        if self.partition is not None:
            out.append(f"p{self.partition}")
        out += ["acked" if self.acked else "unknown", self.gen]
        return tuple(out)


@dataclass
class Node:
    path: str
    family: str  # array | container | table
    owner: int
    shape_name: str | None = None
    npartitions: int = 0  # tables
    # Settled state (observed at the last verification, or the initial state).
    exists: bool = False
    meta: dict = field(default_factory=dict)
    chunks: dict = field(default_factory=dict)  # block -> ref: None (zeros) or (kind, wid, seq)
    # Tables: per partition, the op seqs whose rows it holds, in order (the
    # rows of a write are a function of (seed, owner, seq)).
    parts: list = field(default_factory=list)
    pending: list = field(default_factory=list)
    broken: bool = False
    usable: bool = False
    children: list = field(default_factory=list)
    # Tables: every seq ever written to each partition (to name stale rows).
    written: dict = field(default_factory=lambda: defaultdict(set))
    # A table its owner stopped using after a write of unknown outcome: it
    # takes it up again once a verification has settled that write.
    readopt: bool = False

    @property
    def parent(self) -> str:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""

    @property
    def geometry(self):
        _, dtype, shape, chunk, _ = SHAPE_BY_NAME[self.shape_name]
        return dtype, shape, chunk


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.nodes: dict[str, Node] = {}
        self.readopt: dict[int, list] = defaultdict(list)  # writer -> settled tables to use again
        self.readopted = 0
        self.stats = Counter()  # (kind, outcome) counts
        self.failures: list[dict] = []
        self.findings: list[dict] = []  # non-fatal (mixed chunks)

    def add_node(self, node: Node):
        with self.lock:
            self.nodes[node.path] = node
            if node.parent:
                self.nodes[node.parent].children.append(node.path)

    def fail(self, kind, **detail):
        with self.lock:
            f = {"kind": kind, **detail}
            if "history" in detail:
                # The writes in flight at a kill (outcome unknown) on this node.
                f["in_flight"] = [h[0] for h in detail["history"] if "unknown" in h]
            self.failures.append(f)

    def finding(self, kind, **detail):
        with self.lock:
            self.findings.append({"kind": kind, **detail})


# --------------------------------------------------------------------------
# Server process


class Server:
    def __init__(self, binary, workdir: Path, port: int):
        self.binary = binary
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.api = f"{self.url}/api/v1"
        self.log_path = workdir / "server.log"
        self.proc = None
        self.gen = 0
        self.log_offsets = {}

    def args(self):
        return [
            self.binary, "serve", "catalog",
            f"sqlite:///{self.workdir / 'catalog.db'}",
            "--init",
            "--writable-storage", str(self.workdir / "data"),
            "--api-key", API_KEY,
            "--host", "127.0.0.1",
            "--port", str(self.port),
        ]

    def start(self):
        self.gen += 1
        env = dict(os.environ)
        for var in ("TILED_SINGLE_USER_API_KEY", "TILED_HOST", "TILED_PORT", "TILED_CATALOG_URI",
                    "TILED_WRITABLE_STORAGE"):
            env.pop(var, None)
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== crash_test: start generation {self.gen} at {time.time():.3f} =====\n".encode())
            log.flush()
            self.log_offsets[self.gen] = log.tell()
            self.proc = subprocess.Popen(
                self.args(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = None
        with httpx.Client(trust_env=False, timeout=2.0, headers=AUTH) as http:
            while time.monotonic() < deadline:
                rc = self.proc.poll()
                if rc is not None:
                    return f"server exited with code {rc} during startup"
                try:
                    r = http.get(f"{self.api}/")
                    if r.status_code == 200:
                        return None
                    last = f"GET /api/v1/ answered {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as e:
                    last = repr(e)
                time.sleep(0.02)
        return f"server not ready after {STARTUP_TIMEOUT} s ({last})"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_since(self, gen, limit=4000):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_offsets.get(gen, 0))
                return f.read().decode(errors="replace")[-limit:]
        except OSError:
            return ""

    def log_tail(self, n=60):
        try:
            lines = ANSI.sub("", self.log_path.read_text(errors="replace")).splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def error_lines(self, gen=None, limit=20):
        text = self.log_since(gen, limit=200_000) if gen else self.log_path.read_text(errors="replace")
        text = ANSI.sub("", text)
        lines = [ln for ln in text.splitlines() if "ERROR" in ln or "panic" in ln.lower() or "WARN" in ln]
        return lines[-limit:]


# --------------------------------------------------------------------------
# Writers


class Control:
    """Lets the main thread pause the writers (after a kill) and resume them
    on the next server generation."""

    def __init__(self, n):
        self.cond = threading.Condition()
        self.running = False
        self.stop = False
        self.gen = 0
        self.idle = [True] * n

    def wait_turn(self, wid, min_gen):
        with self.cond:
            while not self.stop and not (self.running and self.gen >= min_gen):
                self.idle[wid] = True
                self.cond.notify_all()
                self.cond.wait()
            if self.stop:
                self.idle[wid] = True
                self.cond.notify_all()
                return None
            self.idle[wid] = False
            return self.gen

    def resume(self, gen):
        with self.cond:
            self.gen = gen
            self.running = True
            self.cond.notify_all()

    def pause_and_wait_idle(self, timeout=60):
        with self.cond:
            self.running = False
            self.cond.notify_all()
            return self.cond.wait_for(lambda: all(self.idle), timeout=timeout)

    def shutdown(self):
        with self.cond:
            self.stop = True
            self.running = False
            self.cond.notify_all()


def array_structure(dtype, shape, chunk):
    dt = np.dtype(dtype)
    return {
        "data_type": {"endianness": "little", "kind": dt.kind, "itemsize": dt.itemsize, "dt_units": None},
        "chunks": chunk_grid(shape, chunk),
        "shape": list(shape),
        "dims": None,
        "resizable": False,
    }


class Writer(threading.Thread):
    def __init__(self, wid, ctl: Control, ledger: Ledger, server: Server, payloads: Payloads, seed: int):
        super().__init__(name=f"writer-{wid}", daemon=True)
        self.wid = wid
        self.ctl = ctl
        self.ledger = ledger
        self.server = server
        self.payloads = payloads
        self.rng = random.Random(f"{seed}-{wid}")
        self.seq = 0
        self.arrays: list[str] = []  # usable arrays this writer owns
        self.containers: list[str] = []  # usable containers this writer owns (all at the root)
        self.tables: list[str] = []  # usable tables this writer owns
        self.follow_up: str | None = None  # an array just created: PUT its full bytes next
        self.error: str | None = None

    def run(self):
        try:
            self._run()
        except Exception:  # a bug in the test itself
            self.error = traceback.format_exc()
            with self.ctl.cond:
                self.ctl.idle[self.wid] = True
                self.ctl.cond.notify_all()

    def _run(self):
        min_gen = 0
        client, client_gen = None, None
        while True:
            gen = self.ctl.wait_turn(self.wid, min_gen)
            if gen is None:
                break
            if client_gen != gen:
                if client:
                    client.close()
                # A new connection pool per server generation: connections
                # to the killed process are never reused.
                client = httpx.Client(
                    base_url=self.server.api,
                    headers=AUTH,
                    trust_env=False,
                    timeout=httpx.Timeout(60.0, connect=5.0),
                )
                client_gen = gen
            outcome = self.one_op(client, gen)
            if outcome in ("unknown", "not_sent"):
                # The server is gone (or hung): wait for the next generation
                # so the unknown write is settled before anything else.
                min_gen = gen + 1
        if client:
            client.close()

    # -- choosing ---------------------------------------------------------

    def pick_kind(self):
        if self.follow_up:
            return "put_full"
        kinds, weights = [], []
        for k, w in OP_WEIGHTS.items():
            if k in ("put_full", "put_block", "delete_array") and not self.arrays:
                continue
            if k in ("meta_merge", "meta_jsonpatch", "meta_put") and not (
                    self.arrays or self.containers or self.tables):
                continue
            if k == "delete_container" and not self.containers:
                continue
            if k in ("append", "replace_partition", "delete_table") and not self.tables:
                continue
            kinds.append(k)
            weights.append(w)
        return self.rng.choices(kinds, weights)[0]

    # -- doing ------------------------------------------------------------

    def send(self, client, method, url, **kw):
        """-> ("acked"|"unknown"|"not_sent"|"rejected", response or error)"""
        try:
            r = client.request(method, url, **kw)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            return "not_sent", e
        except httpx.TransportError as e:
            return "unknown", e
        if 200 <= r.status_code < 300:
            return "acked", r
        return "rejected", r

    def readopt_tables(self):
        """Take up again the tables whose unknown write a verification has
        settled (the writers are paused while it runs)."""
        L = self.ledger
        with L.lock:
            paths = L.readopt.pop(self.wid, [])
        for p in paths:
            n = L.nodes[p]
            if n.exists and not n.broken and not n.pending and p not in self.tables:
                n.usable = True
                self.tables.append(p)
                with L.lock:
                    L.readopted += 1

    def one_op(self, client, gen):
        self.readopt_tables()
        kind = self.pick_kind()
        self.seq += 1
        seq, wid = self.seq, self.wid
        L = self.ledger
        if kind == "create_array":
            name, dtype, shape, chunk, _ = self.rng.choices(SHAPES, [s[4] for s in SHAPES])[0]
            parent = self.rng.choice(self.containers) if self.containers and self.rng.random() < 0.4 else ""
            key = f"a_w{wid}_{seq}"
            path = f"{parent}/{key}" if parent else key
            md = Payloads.create_meta(wid, seq, "array", name)
            node = Node(path=path, family="array", owner=wid, shape_name=name)
            node.chunks = {b: None for b in all_blocks(shape, chunk)}
            op = PendingOp("create", wid, seq, False, gen, payload=md)
            node.pending.append(op)
            L.add_node(node)
            body = {
                "id": key, "structure_family": "array", "metadata": md, "specs": [], "access_tags": None,
                "data_sources": [{
                    "structure_family": "array", "structure": array_structure(dtype, shape, chunk),
                    "id": None, "mimetype": None, "parameters": {}, "properties": {}, "assets": [],
                    "management": "writable",
                }],
            }
            outcome, r = self.send(client, "POST", f"/metadata/{parent}", json=body)
            self.settle_op(node, op, outcome, r, kind)
            if outcome == "acked":
                node.usable = True
                self.arrays.append(path)
                self.follow_up = path
        elif kind == "create_container":
            key = f"c_w{wid}_{seq}"
            md = Payloads.create_meta(wid, seq, "container")
            node = Node(path=key, family="container", owner=wid)
            op = PendingOp("create", wid, seq, False, gen, payload=md)
            node.pending.append(op)
            L.add_node(node)
            body = {"id": key, "structure_family": "container", "metadata": md, "specs": [],
                    "data_sources": [], "access_tags": None}
            outcome, r = self.send(client, "POST", "/metadata/", json=body)
            self.settle_op(node, op, outcome, r, kind)
            if outcome == "acked":
                node.usable = True
                self.containers.append(key)
        elif kind in ("put_full", "put_block"):
            if self.follow_up:
                path, self.follow_up = self.follow_up, None
                kind = "put_full"
            else:
                path = self.rng.choice(self.arrays)
            node = L.nodes[path]
            dtype, shape, chunk = node.geometry
            if kind == "put_full":
                data = self.payloads.array(wid, seq, dtype, shape)
                op = PendingOp("put_full", wid, seq, False, gen)
                url, params = f"/array/full/{path}", None
            else:
                block = self.rng.choice(all_blocks(shape, chunk))
                bshape = tuple(s.stop - s.start for s in block_slices(shape, chunk, block))
                data = self.payloads.array(wid, seq, dtype, bshape)
                op = PendingOp("put_block", wid, seq, False, gen, block=block)
                url, params = f"/array/block/{path}", {"block": ",".join(map(str, block))}
            node.pending.append(op)
            outcome, r = self.send(client, "PUT", url, params=params, content=data.tobytes(),
                                   headers={"Content-Type": OCTET})
            self.settle_op(node, op, outcome, r, kind)
        elif kind == "create_table":
            nparts = 2 if self.rng.random() < 0.75 else 1
            parent = self.rng.choice(self.containers) if self.containers and self.rng.random() < 0.4 else ""
            key = f"t_w{wid}_{seq}"
            path = f"{parent}/{key}" if parent else key
            md = Payloads.create_meta(wid, seq, "table")
            node = Node(path=path, family="table", owner=wid, npartitions=nparts)
            node.parts = [[] for _ in range(nparts)]
            op = PendingOp("create", wid, seq, False, gen, payload=md)
            node.pending.append(op)
            L.add_node(node)
            body = {
                "id": key, "structure_family": "table", "metadata": md, "specs": [], "access_tags": None,
                "data_sources": [{
                    "structure_family": "table",
                    "structure": {"arrow_schema": TABLE_SCHEMA_URI, "npartitions": nparts,
                                  "columns": TABLE_COLUMNS, "resizable": False},
                    "id": None, "mimetype": "application/x-tiled-sql-table", "parameters": {},
                    "properties": {}, "assets": [], "management": "writable",
                }],
            }
            outcome, r = self.send(client, "POST", f"/metadata/{parent}", json=body)
            self.settle_op(node, op, outcome, r, kind)
            if outcome == "acked":
                node.usable = True
                self.tables.append(path)
        elif kind in ("append", "replace_partition"):
            path = self.rng.choice(self.tables)
            node = L.nodes[path]
            part = self.rng.randrange(node.npartitions)
            # Bodies of one or several record batches (same rows).
            body = self.payloads.table_body(wid, seq, self.rng.choice([None, None, 1, 7, 64]))
            params = {"partition": part}
            if kind == "append":
                method, url = "PATCH", f"/table/partition/{path}"
            elif node.npartitions == 1 and self.rng.random() < 0.5:
                method, url, params, kind = "PUT", f"/table/full/{path}", None, "replace_full"
            else:
                method, url = "PUT", f"/table/partition/{path}"
            op = PendingOp("append" if kind == "append" else "replace", wid, seq, False, gen, partition=part)
            node.pending.append(op)
            node.written[part].add(seq)
            outcome, r = self.send(client, method, url, params=params, content=body,
                                   headers={"Content-Type": ARROW_FILE})
            self.settle_op(node, op, outcome, r, kind)
        elif kind == "delete_table":
            path = self.rng.choice(self.tables)
            node = L.nodes[path]
            op = PendingOp("delete", wid, seq, False, gen)
            node.pending.append(op)
            self.tables.remove(path)
            node.usable = False
            outcome, r = self.send(client, "DELETE", f"/metadata/{path}", params={"external_only": "false"})
            self.settle_op(node, op, outcome, r, kind)
        elif kind in ("meta_merge", "meta_jsonpatch", "meta_put"):
            path = self.rng.choice(self.arrays + self.containers + self.tables)
            node = L.nodes[path]
            if kind == "meta_merge":
                payload = Payloads.merge(wid, seq)
                req = ("PATCH", {"content-type": "application/merge-patch+json", "metadata": payload})
            elif kind == "meta_jsonpatch":
                payload = Payloads.jsonpatch(wid, seq)
                req = ("PATCH", {"content-type": "application/json-patch+json", "metadata": payload})
            else:
                payload = Payloads.put(wid, seq)
                req = ("PUT", {"metadata": payload})
            op = PendingOp(kind, wid, seq, False, gen, payload=payload)
            node.pending.append(op)
            outcome, r = self.send(client, req[0], f"/metadata/{path}", json=req[1])
            self.settle_op(node, op, outcome, r, kind)
        elif kind == "delete_array":
            path = self.rng.choice(self.arrays)
            node = L.nodes[path]
            op = PendingOp("delete", wid, seq, False, gen)
            node.pending.append(op)
            self.arrays.remove(path)
            node.usable = False
            outcome, r = self.send(client, "DELETE", f"/metadata/{path}", params={"external_only": "false"})
            self.settle_op(node, op, outcome, r, kind)
        elif kind == "delete_container":
            path = self.rng.choice(self.containers)
            node = L.nodes[path]
            op = PendingOp("delete", wid, seq, False, gen)
            node.pending.append(op)
            self.containers.remove(path)
            node.usable = False
            child_ops = []
            for cpath in node.children:
                child = L.nodes[cpath]
                if cpath in self.arrays:
                    self.arrays.remove(cpath)
                if cpath in self.tables:
                    self.tables.remove(cpath)
                child.usable = False
                if self.follow_up == cpath:
                    self.follow_up = None
                cop = PendingOp("delete", wid, seq, False, gen, via=path)
                child.pending.append(cop)
                child_ops.append((child, cop))
            outcome, r = self.send(client, "DELETE", f"/metadata/{path}", 
                                     params={"recursive": "true", "external_only": "false"})
            self.settle_op(node, op, outcome, r, kind)
            for child, cop in child_ops:
                self.settle_op(child, cop, outcome, r, None)
        else:
            raise AssertionError(kind)
        return outcome

    def settle_op(self, node, op, outcome, r, kind):
        L = self.ledger
        if kind is not None:
            with L.lock:
                L.stats[(kind, outcome)] += 1
        if outcome == "acked":
            op.acked = True
        elif outcome == "not_sent":
            node.pending.remove(op)
        elif outcome == "unknown":
            op.acked = False
        elif outcome == "rejected":
            # A live server refused a valid request: a failure (its effect is
            # unknown, so the verification accepts either state).
            op.acked = False
            if kind is not None:
                L.fail("write_rejected", path=node.path, op=kind, writer=op.wid, seq=op.seq,
                       gen=op.gen, status=r.status_code, body=r.text[:300])
        if outcome != "acked" and node.usable and op.kind != "delete":
            # Unknown outcome: this writer stops using the node; the
            # verification still checks it.
            node.usable = False
            for lst in (self.arrays, self.containers, self.tables):
                if node.path in lst:
                    lst.remove(node.path)
            if self.follow_up == node.path:
                self.follow_up = None
            if node.family == "table" and outcome == "unknown":
                node.readopt = True


# --------------------------------------------------------------------------
# Verification


class Verifier:
    MAX_UNKNOWN = 10

    def __init__(self, ledger: Ledger, server: Server, payloads: Payloads, sample=60, verbose=False,
                 table_sample=20):
        self.sample = sample
        self.table_sample = table_sample
        self.table_reads = 0
        self.ledger = ledger
        self.server = server
        self.payloads = payloads
        self.verbose = verbose
        self._cache = {}
        self.reads = 0
        self.mixed_nodes = 0
        self.resolutions = Counter()

    def expected_chunk(self, node, block, ref):
        dtype, shape, chunk = node.geometry
        sl = block_slices(shape, chunk, block)
        bshape = tuple(s.stop - s.start for s in sl)
        if ref is None:
            return np.zeros(bshape, dtype=dtype)
        kind, wid, seq = ref
        if kind == "put_full":
            key = (node.shape_name, wid, seq)
            if key not in self._cache:
                self._cache[key] = self.payloads.array(wid, seq, dtype, shape)
            return self._cache[key][sl]
        return self.payloads.array(wid, seq, dtype, bshape)

    def candidates(self, node, observed_absent):
        """Every state the node may be in: one per choice of which unknown
        writes took effect (each write taken as atomic). A delete done
        through an ancestor is settled by what the ancestor was seen to be."""
        unknown = [i for i, op in enumerate(node.pending) if not op.acked and op.via is None]
        if len(unknown) > self.MAX_UNKNOWN:
            unknown = unknown[-self.MAX_UNKNOWN:]
        out = []
        for mask in range(1 << len(unknown)):
            chosen = {unknown[j] for j in range(len(unknown)) if mask >> j & 1}
            exists, meta, chunks = node.exists, node.meta, dict(node.chunks)
            parts = [list(p) for p in node.parts]
            applied = []
            for i, op in enumerate(node.pending):
                if op.via is not None:
                    take = op.acked or op.via in observed_absent
                else:
                    take = op.acked or i in chosen
                if not take:
                    continue
                applied.append((op.kind, op.wid, op.seq))
                if op.kind == "create":
                    exists, meta = True, op.payload
                    chunks = {b: None for b in chunks}
                    parts = [[] for _ in range(node.npartitions)]
                elif op.kind == "delete":
                    exists = False
                elif op.kind == "put_full":
                    chunks = {b: ("put_full", op.wid, op.seq) for b in chunks}
                elif op.kind == "put_block":
                    chunks[op.block] = ("put_block", op.wid, op.seq)
                elif op.kind == "meta_put":
                    meta = op.payload
                elif op.kind == "meta_merge":
                    meta = merge_patch(meta, op.payload)
                elif op.kind == "meta_jsonpatch":
                    meta = json_patch_add(meta, op.payload)
                elif op.kind == "append":
                    parts[op.partition].append(op.seq)
                elif op.kind == "replace":
                    parts[op.partition] = [op.seq]
            out.append({"exists": exists, "meta": meta, "chunks": chunks, "parts": parts,
                        "applied": applied})
        return out

    # -- HTTP helpers -----------------------------------------------------

    def list_container(self, http, path):
        """-> (entries {path: item}, error or None, absent)"""
        entries, offset, count = {}, 0, None
        while True:
            try:
                r = http.get(f"/search/{path}", params={"page[offset]": offset, "page[limit]": PAGE})
            except httpx.HTTPError as e:
                return entries, f"GET /search/{path} offset {offset}: {e!r}", False
            if r.status_code == 404 and path:
                return {}, None, True
            if r.status_code != 200:
                return entries, f"GET /search/{path} offset {offset}: HTTP {r.status_code} {r.text[:300]}", False
            doc = r.json()
            count = doc["meta"]["count"]
            for item in doc["data"]:
                full = f"{path}/{item['id']}" if path else item["id"]
                if full in entries:
                    return entries, f"listing of {path!r} repeats {item['id']!r}", False
                entries[full] = item
            offset += len(doc["data"])
            if not doc["data"] or offset >= count:
                break
        if len(entries) != count:
            return entries, f"listing of {path!r}: meta.count {count} but {len(entries)} entries", False
        return entries, None, False

    def read_array(self, http, node):
        dtype, shape, chunk = node.geometry
        self.reads += 1
        try:
            r = http.get(f"/array/full/{node.path}", headers={"Accept": OCTET})
        except httpx.HTTPError as e:
            return None, f"transport error {e!r}"
        if r.status_code != 200:
            return None, f"HTTP {r.status_code}: {r.text[:300]}"
        expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if len(r.content) != expected:
            return None, f"{len(r.content)} bytes instead of {expected}"
        return np.frombuffer(r.content, dtype=dtype).reshape(shape), None

    def diagnose_unreadable(self, http, node):
        """Which blocks fail, and what the store holds on disk."""
        dtype, shape, chunk = node.geometry
        out = {"blocks": {}, "store": None, "files": {}}
        for b in all_blocks(shape, chunk):
            try:
                r = http.get(f"/array/block/{node.path}", params={"block": ",".join(map(str, b))},
                             headers={"Accept": OCTET})
                if r.status_code != 200:
                    out["blocks"][str(b)] = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx.HTTPError as e:
                out["blocks"][str(b)] = repr(e)
        try:
            r = http.get(f"/metadata/{node.path}", params={"include_data_sources": "true"})
            src = r.json()["data"]["attributes"]["data_sources"][0]
            store = Path(unquote(urlparse(src["assets"][0]["data_uri"]).path))
            out["store"] = str(store)
            if store.exists():
                for f in sorted(store.rglob("*")):
                    if f.is_file():
                        out["files"][str(f.relative_to(store))] = f.stat().st_size
            else:
                out["files"] = "STORE DIRECTORY MISSING"
        except Exception as e:  # diagnosis only
            out["store"] = f"could not locate: {e!r}"
        return out

    # -- the check --------------------------------------------------------

    def verify(self, gen, full: bool):
        """Check the nodes of the ledger against the server. Per restart:
        the root listing (metadata and existence of every root node), the
        listings of containers with recently written children, the data of
        every array with a write of unknown outcome, and the data of a
        random sample of the other arrays written since the last check (all
        of them with sample < 0); arrays written only by acknowledged writes
        and not sampled take their computed state (the final check reads
        them). With full=True: every container and every array."""
        L = self.ledger
        nodes = L.nodes
        n_fail_before = len(L.failures)
        self._cache = {}
        dirty = {p for p, n in nodes.items() if n.pending and not n.broken}
        acked_only = sorted(p for p in dirty if nodes[p].family == "array"
                            and all(o.acked for o in nodes[p].pending))
        if full or self.sample < 0 or len(acked_only) <= self.sample:
            sampled = set(acked_only)
        else:
            sampled = set(random.Random(f"{self.payloads.seed}-{gen}").sample(acked_only, self.sample))
        # Tables likewise: every one with an unknown write, and a sample of
        # the others written since the last check.
        acked_only_t = sorted(p for p in dirty if nodes[p].family == "table"
                              and all(o.acked for o in nodes[p].pending))
        if full or self.table_sample < 0 or len(acked_only_t) <= self.table_sample:
            sampled |= set(acked_only_t)
        else:
            sampled |= set(random.Random(f"{self.payloads.seed}-t{gen}").sample(acked_only_t, self.table_sample))
        walk = {""}
        for p in nodes:
            n = nodes[p]
            if n.family == "container" and (full or any(c in dirty for c in n.children) or p in dirty):
                walk.add(p)
        with httpx.Client(base_url=self.server.api, headers=AUTH, trust_env=False,
                          timeout=httpx.Timeout(60.0, connect=5.0)) as http:
            listed: dict[str, dict] = {}
            walked_present = set()
            observed_absent = set()
            # Root first, then containers (all at depth 1).
            for cpath in sorted(walk, key=lambda p: (p.count("/") + (1 if p else 0), p)):
                if cpath and cpath in observed_absent:
                    continue
                if cpath and cpath not in listed:
                    # Not in the root listing: its children cannot be listed.
                    observed_absent.add(cpath)
                    continue
                entries, err, absent = self.list_container(http, cpath)
                if err:
                    L.fail("listing_error", gen=gen, container=cpath or "/", detail=err)
                    continue
                if absent:
                    L.fail("listing_error", gen=gen, container=cpath,
                           detail="listed in its parent but /search answers 404")
                    continue
                walked_present.add(cpath)
                listed.update(entries)
            # Everything listed must be known and well-formed.
            for p, item in listed.items():
                n = nodes.get(p)
                fam = item["attributes"]["structure_family"]
                if n is None:
                    read = None
                    if fam in ("array", "table"):
                        try:
                            if fam == "array":
                                r = http.get(f"/array/full/{p}", headers={"Accept": OCTET})
                            else:
                                r = http.get(f"/table/partition/{p}", params={"partition": 0},
                                             headers={"Accept": ARROW_FILE})
                            read = f"HTTP {r.status_code}, {len(r.content)} bytes"
                        except httpx.HTTPError as e:
                            read = repr(e)
                    L.fail("phantom_node", gen=gen, path=p, detail="listed but never written by this test",
                           family=fam, read=read)
                    continue
                if fam != n.family:
                    L.fail("structure_mismatch", gen=gen, path=p, detail=f"family {fam} != {n.family}")
                    n.broken = True
                    continue
                if n.family == "array":
                    dtype, shape, chunk = n.geometry
                    want = array_structure(dtype, shape, chunk)
                    got = item["attributes"].get("structure") or {}
                    got_cmp = {k: got.get(k) for k in ("shape", "chunks")}
                    got_cmp["dt"] = {k: (got.get("data_type") or {}).get(k) for k in ("kind", "itemsize")}
                    want_cmp = {"shape": want["shape"], "chunks": want["chunks"],
                                "dt": {k: want["data_type"][k] for k in ("kind", "itemsize")}}
                    if got_cmp != want_cmp:
                        L.fail("structure_mismatch", gen=gen, path=p, got=got_cmp, want=want_cmp)
                        n.broken = True
                elif n.family == "table":
                    got = item["attributes"].get("structure") or {}
                    got_cmp = {"npartitions": got.get("npartitions"), "columns": got.get("columns")}
                    try:
                        uri = got.get("arrow_schema") or ""
                        sch = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(uri.split(",", 1)[1])))
                        got_cmp["types"] = [(f.name, str(f.type)) for f in sch]
                    except Exception as e:  # reported as a mismatch
                        got_cmp["types"] = f"undecodable arrow_schema: {e!r}"
                    want_cmp = {"npartitions": n.npartitions, "columns": TABLE_COLUMNS,
                                "types": [(f.name, str(f.type)) for f in TABLE_SCHEMA]}
                    if got_cmp != want_cmp:
                        L.fail("structure_mismatch", gen=gen, path=p, got=got_cmp, want=want_cmp)
                        n.broken = True
            # Check each node whose parent was walked; containers first (their
            # presence settles deletes done through them).
            order = sorted(nodes, key=lambda p: (p.count("/"), p))
            for p in order:
                n = nodes[p]
                if n.broken:
                    continue
                parent = n.parent
                if parent not in walked_present and parent not in observed_absent:
                    continue  # not looked at this time (clean, under an unwalked container)
                present = p in listed
                if not present:
                    observed_absent.add(p)
                cands = self.candidates(n, observed_absent)
                ok_exist = [c for c in cands if c["exists"] == present]
                if not ok_exist:
                    kind = "missing_acked_node" if not present else "resurrected_node"
                    L.fail(kind, gen=gen, path=p, family=n.family,
                           history=[(o.kind, o.wid, o.seq, "acked" if o.acked else "unknown", o.gen)
                                    for o in n.pending],
                           settled_exists=n.exists,
                           detail=("absent, but its creation was acknowledged and no unknown delete"
                                   if not present else "present, but it was deleted (acknowledged) or never created"))
                    n.broken = True
                    continue
                if not present:
                    self.note_resolution(n, cands, False, None, None)
                    n.exists, n.pending, n.readopt = False, [], False
                    continue
                # Metadata.
                got_md = listed[p]["attributes"].get("metadata")
                metas = {canon(c["meta"]): c["meta"] for c in ok_exist}
                if canon(got_md) not in metas:
                    L.fail("metadata_mismatch", gen=gen, path=p, family=n.family, got=got_md,
                           accepted=list(metas.values())[:4],
                           history=[(o.kind, o.wid, o.seq, "acked" if o.acked else "unknown", o.gen)
                                    for o in n.pending])
                    n.broken = True
                    continue
                # Data.
                if n.family == "array" and (full or n.pending):
                    if full or p in sampled or not all(o.acked for o in n.pending):
                        if not self.check_array(http, n, ok_exist, gen):
                            n.broken = True
                            continue
                    else:
                        # Acknowledged writes only: one possible state.
                        (only,) = {canon({str(b): r for b, r in c["chunks"].items()}): c
                                   for c in ok_exist}.values()
                        n.chunks = only["chunks"]
                if n.family == "table" and (full or n.pending):
                    ok_meta = [c for c in ok_exist if canon(c["meta"]) == canon(got_md)]
                    if full or p in sampled or not all(o.acked for o in n.pending):
                        if not self.check_table(http, n, ok_meta, gen):
                            n.broken = True
                            continue
                    else:
                        (only,) = {canon(c["parts"]): c for c in ok_meta}.values()
                        n.parts = only["parts"]
                self.note_resolution(n, cands, True, got_md,
                                     n.chunks if n.family == "array" else None,
                                     n.parts if n.family == "table" else None)
                n.exists, n.meta, n.pending = True, got_md, []
                if n.readopt:
                    n.readopt = False
                    with L.lock:
                        L.readopt[n.owner].append(p)
        new_fail = len(L.failures) - n_fail_before
        if new_fail and not self.server.alive():
            L.fail("server_died", gen=gen, detail="the server exited during verification",
                   log=self.server.log_tail(30))
        return new_fail

    def note_resolution(self, n, cands, present, meta, chunks, parts=None):
        """Count how the writes of unknown outcome on a node turned out:
        none applied (old), all applied (new), or something in between."""
        unknown = [o.kind + ("(of its container)" if o.via else "") for o in n.pending if not o.acked]
        if not unknown:
            return

        def same(c):
            if c["exists"] != present:
                return False
            if not present:
                return True
            if canon(c["meta"]) != canon(meta):
                return False
            if parts is not None and c["parts"] != parts:
                return False
            return chunks is None or all(c["chunks"][b] == chunks[b] for b in chunks)

        old, new = same(cands[0]), same(cands[-1])
        outcome = "old+new(indistinguishable)" if old and new else "old" if old else "new" if new else "partial"
        self.resolutions[("+".join(unknown), outcome)] += 1

    def check_array(self, http, n, cands, gen):
        L = self.ledger
        data, err = self.read_array(http, n)
        if err:
            L.fail("unreadable_node", gen=gen, path=n.path, shape=n.shape_name, error=err,
                   history=[(o.kind, o.wid, o.seq, o.block, "acked" if o.acked else "unknown", o.gen)
                            for o in n.pending],
                   diagnosis=self.diagnose_unreadable(http, n),
                   server_errors=self.server.error_lines(gen, limit=5))
            return False
        dtype, shape, chunk = n.geometry
        observed = {}
        torn = []
        for b in n.chunks:
            got = data[block_slices(shape, chunk, b)]
            refs = []
            for c in cands:
                if c["chunks"][b] not in refs:
                    refs.append(c["chunks"][b])
            found, match = False, None
            for ref in refs:
                if np.array_equal(got, self.expected_chunk(n, b, ref)):
                    found, match = True, ref
                    break
            if not found:
                # Describe the torn chunk: how much of it matches each candidate.
                desc = []
                for ref in refs:
                    exp = self.expected_chunk(n, b, ref)
                    desc.append({"ref": ref, "equal_elements": int((got == exp).sum()), "of": int(exp.size)})
                torn.append({"block": b, "candidates": desc,
                             "zeros": int((got == 0).sum()), "sample": got.ravel()[:4].tolist()})
            observed[b] = match
        if torn:
            L.fail("torn_chunk", gen=gen, path=n.path, shape=n.shape_name, chunks=torn,
                   history=[(o.kind, o.wid, o.seq, o.block, "acked" if o.acked else "unknown", o.gen)
                            for o in n.pending],
                   server_errors=self.server.error_lines(gen, limit=5))
            return False
        if not any(all(c["chunks"][b] == observed[b] for b in n.chunks) for c in cands):
            # Whole-array writes are copy-on-write (a new store swapped in by
            # one catalog transaction): a mix of two writes is a failure.
            self.mixed_nodes += 1
            L.fail("mixed_chunks", gen=gen, path=n.path, shape=n.shape_name,
                      observed={str(b): observed[b] for b in n.chunks},
                      history=[(o.kind, o.wid, o.seq, o.block, "acked" if o.acked else "unknown", o.gen)
                               for o in n.pending])
        n.chunks = observed
        return True

    # -- tables -----------------------------------------------------------

    def read_partition(self, http, node, i):
        """-> (pyarrow.Table or None, error)"""
        self.table_reads += 1
        try:
            r = http.get(f"/table/partition/{node.path}", params={"partition": i},
                         headers={"Accept": ARROW_FILE})
        except httpx.HTTPError as e:
            return None, f"transport error {e!r}"
        if r.status_code != 200:
            return None, f"HTTP {r.status_code}: {r.text[:300]}"
        try:
            return pa.ipc.open_file(pa.py_buffer(r.content)).read_all(), None
        except Exception as e:
            return None, f"not an Arrow IPC file ({len(r.content)} bytes, " \
                         f"content-type {r.headers.get('content-type')}): {e!r}"

    def diagnose_table(self, http, node):
        """The node's segments as the catalog lists them, and their files."""
        out = {"assets": []}
        try:
            r = http.get(f"/metadata/{node.path}", params={"include_data_sources": "true"})
            src = r.json()["data"]["attributes"]["data_sources"][0]
            for a in src["assets"]:
                f = Path(unquote(urlparse(a["data_uri"]).path))
                size = f.stat().st_size if f.is_file() else ("directory" if f.is_dir() else "MISSING")
                out["assets"].append({"parameter": a.get("parameter"), "num": a.get("num"),
                                      "file": f.name, "size": size})
        except Exception as e:  # diagnosis only
            out["error"] = f"could not list the segments: {e!r}"
        return out

    def parse_partition(self, n, tbl):
        """Split a partition's rows into runs (one per write: same writer and
        seq, k counting up from 0). -> (runs, schema problem or None); each
        run is {seq, rows, k0, status} with status ok | partial (a prefix,
        suffix or middle of the write's rows, exact) | corrupt (values that
        no write sent) | foreign (another writer's rows)."""
        got_types = [(f.name, str(f.type)) for f in tbl.schema]
        want_types = [(f.name, str(f.type)) for f in TABLE_SCHEMA]
        if got_types != want_types:
            return [], f"columns {got_types}, expected {want_types}"
        nulls = {c: tbl.column(c).null_count for c in TABLE_COLUMNS if tbl.column(c).null_count}
        if nulls:
            return [], f"null values: {nulls}"
        w = tbl.column("w").to_numpy()
        sq = tbl.column("seq").to_numpy()
        k = tbl.column("k").to_numpy()
        v = tbl.column("v").to_numpy()
        s = tbl.column("s").to_pylist()
        N = len(w)
        if N == 0:
            return [], None
        brk = (np.flatnonzero((w[1:] != w[:-1]) | (sq[1:] != sq[:-1]) | (k[1:] != k[:-1] + 1)) + 1).tolist()
        runs = []
        for a, b in zip([0] + brk, brk + [N]):
            wid, seq, k0 = int(w[a]), int(sq[a]), int(k[a])
            run = {"seq": seq, "rows": b - a, "k0": k0, "status": "ok"}
            if wid != n.owner or not 0 < seq <= 10**7:
                run["status"], run["w"] = "foreign", wid
            else:
                exp = self.payloads.table(wid, seq)
                ne = exp.num_rows
                if k0 < 0 or k0 + (b - a) > ne:
                    run["status"], run["expected_rows"] = "corrupt", ne
                else:
                    ev = exp.column("v").to_numpy()[k0:k0 + b - a]
                    es = exp.column("s").to_pylist()[k0:k0 + b - a]
                    bad = int((ev != v[a:b]).sum()) + sum(x != y for x, y in zip(es, s[a:b]))
                    if bad:
                        run["status"], run["bad_values"] = "corrupt", bad
                    elif k0 != 0 or b - a != ne:
                        run["status"], run["expected_rows"] = "partial", ne
            runs.append(run)
        return runs, None

    def check_table(self, http, n, cands, gen):
        """Read every partition; each must hold exactly the writes of one
        candidate state, each write's rows whole, contiguous and once."""
        L = self.ledger
        history = [o.describe() for o in n.pending]
        observed = []
        for i in range(n.npartitions):
            tbl, err = self.read_partition(http, n, i)
            if err:
                L.fail("table_unreadable", gen=gen, path=n.path, partition=i, error=err, history=history,
                       settled=n.parts, diagnosis=self.diagnose_table(http, n),
                       server_errors=self.server.error_lines(gen, limit=5))
                return False
            runs, schema_err = self.parse_partition(n, tbl)
            if schema_err:
                L.fail("table_schema_mismatch", gen=gen, path=n.path, partition=i, detail=schema_err,
                       history=history)
                return False
            seqs = [r["seq"] for r in runs]
            lists = []
            for c in cands:
                if c["parts"][i] not in lists:
                    lists.append(c["parts"][i])
            if seqs in lists and all(r["status"] == "ok" for r in runs):
                observed.append(seqs)
                continue
            kind, extra = self.classify_partition(n, i, runs, seqs, lists)
            L.fail(kind, gen=gen, path=n.path, partition=i, rows=sum(r["rows"] for r in runs),
                   observed=self.summarize_runs(runs), accepted=lists[:4], history=history,
                   settled=n.parts[i] if n.parts else None, **extra,
                   server_errors=self.server.error_lines(gen, limit=5),
                   diagnosis=self.diagnose_table(http, n))
            return False
        if not any(c["parts"] == observed for c in cands):
            L.fail("table_inconsistent", gen=gen, path=n.path, observed=observed,
                   accepted=[c["parts"] for c in cands][:4], history=history,
                   detail="each partition matches some state, but no single set of writes explains all")
            return False
        n.parts = observed
        return True

    @staticmethod
    def summarize_runs(runs, limit=40):
        """Runs as 'seq' (whole write), 'seq[k0:k1]/n' (part of it) or
        'seq!status'."""
        out = []
        for r in runs:
            if r["status"] == "ok":
                out.append(str(r["seq"]))
            elif r["status"] == "partial":
                out.append(f"{r['seq']}[{r['k0']}:{r['k0'] + r['rows']}]/{r['expected_rows']}")
            elif r["status"] == "foreign":
                out.append(f"w{r['w']}:{r['seq']}!foreign({r['rows']} rows)")
            else:
                out.append(f"{r['seq']}!corrupt({r['rows']} rows from k={r['k0']}, "
                           f"{r.get('bad_values', 'bad k')} bad)")
        if len(out) > limit:
            out = out[:limit // 2] + [f"... {len(out) - limit} more ..."] + out[-limit // 2:]
        return out

    def classify_partition(self, n, i, runs, seqs, lists):
        """Name what is wrong with a partition no candidate explains.
        -> (failure kind, details)"""
        statuses = Counter(r["status"] for r in runs)
        pending_seq = {o.seq: o for o in n.pending}

        def origin(seq):
            o = pending_seq.get(seq)
            return o.describe() if o else "settled earlier"

        if statuses["partial"]:
            bad = [r for r in runs if r["status"] == "partial"]
            return "table_partial_append", {"partial": [
                {"seq": r["seq"], "rows_present": r["rows"], "from_k": r["k0"], "of": r["expected_rows"],
                 "write": origin(r["seq"])} for r in bad[:5]]}
        if statuses["corrupt"]:
            return "table_corrupt_rows", {"corrupt": [r for r in runs if r["status"] == "corrupt"][:5]}
        if statuses["foreign"]:
            return "table_foreign_rows", {"foreign": [r for r in runs if r["status"] == "foreign"][:5]}
        dups = {s: c for s, c in Counter(seqs).items() if c > 1}
        if dups:
            return "table_duplicate_rows", {"duplicated": {str(s): {"times": c, "write": origin(s)}
                                                           for s, c in dups.items()}}
        # The accepted state closest to what was read.
        best = min(lists, key=lambda lst: len(set(lst) ^ set(seqs)))
        missing = [s for s in best if s not in seqs]
        unexpected = [s for s in seqs if s not in best]
        if missing:
            return "table_missing_rows", {"missing": [{"seq": s, "write": origin(s)} for s in missing[:10]],
                                          "unexpected": unexpected[:10], "closest": best}
        if unexpected:
            others = {s for j, ws in n.written.items() if j != i for s in ws}
            where = []
            for s in unexpected:
                if s in n.written.get(i, ()):
                    where.append({"seq": s, "is": "an earlier write to this partition (replaced)",
                                  "write": origin(s)})
                elif s in others:
                    where.append({"seq": s, "is": "a write to another partition", "write": origin(s)})
                else:
                    where.append({"seq": s, "is": "never written to this table"})
            kind = ("table_stale_rows" if all(x["is"].startswith("an earlier") for x in where)
                    else "table_wrong_partition" if all(x["is"].startswith("a write to") for x in where)
                    else "table_foreign_rows")
            return kind, {"unexpected": where[:10], "closest": best}
        return "table_order_mismatch", {"closest": best}


def inject_faults(ledger: Ledger, server: Server, payloads: Payloads):
    """Damage the state behind the test's back; -> [(expected failure kind, path)]
    (or an error string)."""
    nodes = [n for n in ledger.nodes.values() if n.exists and not n.pending and not n.broken]
    arrays = [n for n in nodes if n.family == "array"]
    tables = [n for n in nodes if n.family == "table" and any(n.parts)]
    http = httpx.Client(base_url=server.api, headers=AUTH, trust_env=False, timeout=30)
    if len(tables) < 2:
        http.close()
        return "not enough settled tables with rows to inject faults into (run more kills)"
    # A table segment file to truncate (with the server stopped).
    t_trunc, seg_trunc = None, None
    for n in tables[1:]:
        r = http.get(f"/metadata/{n.path}", params={"include_data_sources": "true"})
        if r.status_code != 200:
            continue
        for a in r.json()["data"]["attributes"]["data_sources"][0]["assets"]:
            f = Path(unquote(urlparse(a["data_uri"]).path))
            if a.get("parameter") == "data_uris" and f.is_file() and f.stat().st_size > 16:
                t_trunc, seg_trunc = n.path, f
                break
        if seg_trunc:
            break
    if not seg_trunc:
        http.close()
        return "no table segment file found to truncate"
    stores = {}
    for n in arrays:
        if len(stores) == 4:
            break
        r = http.get(f"/metadata/{n.path}", params={"include_data_sources": "true"})
        if r.status_code != 200:
            continue
        uri = r.json()["data"]["attributes"]["data_sources"][0]["assets"][0]["data_uri"]
        chunk = Path(unquote(urlparse(uri).path)) / "c" / "0" / "0"
        if chunk.is_file() and chunk.stat().st_size > 0:
            stores[n.path] = chunk
    if len(stores) < 2 or len(arrays) < 4:
        http.close()
        return "not enough settled arrays to inject faults into (run more kills)"
    (p_corrupt, c_corrupt), (p_empty, c_empty) = list(stores.items())[:2]
    others = [n.path for n in arrays if n.path not in (p_corrupt, p_empty)]
    p_delete, p_meta = others[0], others[1]
    out = []
    # API-level damage first, while the server runs.
    r = http.delete(f"/metadata/{p_delete}")
    out.append(("missing_acked_node", p_delete))
    r = http.put(f"/metadata/{p_meta}", json={"metadata": {"injected": True}})
    out.append(("metadata_mismatch", p_meta))
    r = http.post("/metadata/", json={"id": "injected_phantom", "structure_family": "container",
                                      "metadata": {}, "specs": [], "data_sources": []})
    out.append(("phantom_node", "injected_phantom"))
    # Append again, behind the test's back, the last write of a partition.
    t_dup = tables[0]
    part = next(i for i, p in enumerate(t_dup.parts) if p)
    r = http.patch(f"/table/partition/{t_dup.path}", params={"partition": part},
                   content=payloads.table_body(t_dup.owner, t_dup.parts[part][-1]),
                   headers={"Content-Type": ARROW_FILE})
    out.append(("table_duplicate_rows", t_dup.path))
    http.close()
    # Files: with the server stopped.
    server.stop()
    size = c_corrupt.stat().st_size
    c_corrupt.write_bytes(os.urandom(size))
    out.append(("torn_chunk", p_corrupt))
    c_empty.write_bytes(b"")
    out.append(("unreadable_node", p_empty))
    with open(seg_trunc, "r+b") as f:
        f.truncate(seg_trunc.stat().st_size // 2)
    out.append(("table_unreadable", t_trunc))
    err = server.start()
    if err:
        return f"restart after injecting faults failed: {err}"
    print(f"injected faults: {out}", flush=True)
    return out


def orphan_report(workdir: Path):
    """After the server stopped: stores (array stores, table directories)
    and table segment files on disk no node refers to (leaks after a kill,
    informational), and asset rows whose store or segment file is missing."""
    data = workdir / "data"
    try:
        con = sqlite3.connect(f"file:{workdir / 'catalog.db'}?mode=ro", uri=True)
        rows = list(con.execute(
            "SELECT DISTINCT a.data_uri, x.parameter FROM assets a "
            "JOIN data_source_asset_association x ON x.asset_id = a.id"))
        linked = [r[0] for r in rows]
        segments = {Path(unquote(urlparse(u).path)) for u, prm in rows if prm == "data_uris"}
        table_dirs = {Path(unquote(urlparse(u).path)) for u, prm in rows if prm == "directory"}
        unlinked = con.execute(
            "SELECT count(*) FROM assets a WHERE NOT EXISTS "
            "(SELECT 1 FROM data_source_asset_association x WHERE x.asset_id = a.id)").fetchone()[0]
        con.close()
    except sqlite3.Error as e:
        return {"error": repr(e)}
    referenced = {Path(unquote(urlparse(u).path)) for u in linked}
    on_disk = {p for p in data.iterdir()} if data.exists() else set()
    seg_files, tmp_files = set(), []
    seg_parents = {f.parent for f in segments}
    for d in table_dirs:
        if d.is_dir():
            for f in d.iterdir():
                if f.name.startswith("."):
                    tmp_files.append(f)
                else:
                    seg_files.add(f)
    return {
        "stores_on_disk": len(on_disk),
        "linked_asset_rows": len(referenced),
        "unlinked_asset_rows": unlinked,
        "orphan_store_dirs": len(on_disk - referenced),
        "table_segments_linked": len(segments),
        "orphan_segment_files": len(seg_files - segments),
        "temp_files_in_table_dirs": len(tmp_files),
        # A table's directory appears with its first segment: only a missing
        # directory of a table with segments (or a missing segment) counts.
        "table_dirs_not_yet_created": len([d for d in table_dirs if not d.exists()]),
        "linked_stores_missing": sorted(str(p) for p in referenced if not p.exists()
                                        and not (p in table_dirs and p not in seg_parents))[:20],
    }


# --------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=50, help="number of SIGKILL/restart cycles (default 50)")
    ap.add_argument("--writers", type=int, default=4, help="concurrent writer threads (default 4)")
    ap.add_argument("--min-delay", type=float, default=0.2, help="earliest kill after resuming writes (s)")
    ap.add_argument("--max-delay", type=float, default=1.5, help="latest kill after resuming writes (s)")
    ap.add_argument("--sample", type=int, default=60,
                    help="after each restart, read back every array with a write of unknown outcome plus "
                         "this many of the other arrays written since the last check (-1: all; default 60); "
                         "the final check reads every array")
    ap.add_argument("--table-sample", type=int, default=20,
                    help="likewise for tables: after each restart, read every partition of every table with "
                         "a write of unknown outcome plus this many of the other tables written since the "
                         "last check (-1: all; default 20); the final check reads every table")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    ap.add_argument("--bin", default=default_bin(),
                    help="server binary (default $TILED_BIN or ${CARGO_TARGET_DIR:-~/.cache/tiled-rs/target}/debug/tiled)")
    ap.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    ap.add_argument("--workdir", default=None, help="directory for the catalog, storage and log (default: new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (kept anyway on failure)")
    ap.add_argument("--json", default=None, help="write the summary and all failures/findings as JSON here")
    ap.add_argument("--inject-faults", action="store_true",
                    help="self-check of the checker: before the final verification, corrupt a chunk, "
                         "empty a chunk, delete a node, change metadata and add a node behind the "
                         "test's back; exit 0 only if each of these is reported")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per kill cycle")
    args = ap.parse_args(argv)

    if not Path(args.bin).exists():
        print(f"server binary not found: {args.bin} (set TILED_BIN or --bin)", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="tiled-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    server = Server(args.bin, workdir, port)
    ledger = Ledger()
    payloads = Payloads(seed)
    verifier = Verifier(ledger, server, payloads, args.sample, args.verbose, args.table_sample)
    ctl = Control(args.writers)
    writers = [Writer(w, ctl, ledger, server, payloads, seed) for w in range(args.writers)]
    t0 = time.monotonic()
    print(f"crash test: seed={seed} kills={args.kills} writers={args.writers} bin={args.bin}")
    print(f"work dir: {workdir} (server log: {server.log_path})", flush=True)

    kills = 0
    aborted = None
    injected = None
    try:
        err = server.start()
        if err:
            aborted = f"first start failed: {err}"
            raise SystemExit
        for w in writers:
            w.start()
        for cycle in range(1, args.kills + 1):
            ctl.resume(server.gen)
            delay = rng.uniform(args.min_delay, args.max_delay)
            time.sleep(delay)
            dead_before = not server.alive()
            server.kill()
            kills += 1
            if dead_before:
                ledger.fail("server_died", gen=server.gen, detail="the server exited on its own before the kill",
                            log=server.log_since(server.gen))
            if not ctl.pause_and_wait_idle(timeout=120):
                aborted = "writers did not stop after the kill"
                break
            broken_writers = [w.error for w in writers if w.error]
            if broken_writers:
                aborted = "a writer thread crashed (test bug):\n" + broken_writers[0]
                break
            err = server.start()
            if err:
                ledger.fail("restart_failed", gen=server.gen, detail=err, log=server.log_since(server.gen))
                aborted = f"restart {server.gen} failed: {err}"
                break
            tv, reads0, treads0 = time.monotonic(), verifier.reads, verifier.table_reads
            nf = verifier.verify(server.gen, full=False)
            if args.verbose:
                acked = sum(v for (k, o), v in ledger.stats.items() if o == "acked")
                print(f"  kill {cycle:3d} after {delay:.2f}s  acked={acked} nodes={len(ledger.nodes)} "
                      f"verify={time.monotonic() - tv:.2f}s ({verifier.reads - reads0} array reads, "
                      f"{verifier.table_reads - treads0} partition reads) new_failures={nf}", flush=True)
        if not aborted:
            ctl.shutdown()
            for w in writers:
                w.join(timeout=30)
            if args.inject_faults:
                injected = inject_faults(ledger, server, payloads)
                if isinstance(injected, str):
                    aborted = injected
                    raise SystemExit
            tv = time.monotonic()
            verifier.verify(server.gen, full=True)
            if args.verbose:
                print(f"  final verification: {time.monotonic() - tv:.2f}s", flush=True)
    except SystemExit:
        pass
    finally:
        ctl.shutdown()
        server.stop()
    orphans = orphan_report(workdir) if not aborted else {}
    elapsed = time.monotonic() - t0

    # ---- summary --------------------------------------------------------
    st = ledger.stats
    acked = sum(v for (k, o), v in st.items() if o == "acked")
    unknown = sum(v for (k, o), v in st.items() if o == "unknown")
    not_sent = sum(v for (k, o), v in st.items() if o == "not_sent")
    rejected = sum(v for (k, o), v in st.items() if o == "rejected")
    by_kind = defaultdict(Counter)
    for (k, o), v in st.items():
        by_kind[k][o] += v
    fail_kinds = Counter(f["kind"] for f in ledger.failures)
    print()
    print(f"=== summary (seed {seed}, {elapsed:.1f} s) ===")
    print(f"kills: {kills}   server generations: {server.gen}")
    print(f"writes: acknowledged={acked} unknown(in flight at a kill)={unknown} "
          f"not_sent(connect refused)={not_sent} rejected(non-2xx)={rejected}")
    for k in list(OP_WEIGHTS) + EXTRA_KINDS:
        c = by_kind.get(k)
        if c:
            print(f"  {k:17s} " + " ".join(f"{o}={c[o]}" for o in ("acked", "unknown", "not_sent", "rejected") if c[o]))
    fams = Counter(n.family for n in ledger.nodes.values())
    print(f"nodes in ledger: {len(ledger.nodes)} ({', '.join(f'{v} {k}s' for k, v in sorted(fams.items()))})   "
          f"array reads verified: {verifier.reads}   table partition reads verified: {verifier.table_reads}")
    live_tables = [n for n in ledger.nodes.values() if n.family == "table" and n.exists and not n.broken]
    if live_tables:
        segs = [len(p) for n in live_tables for p in n.parts]
        print(f"tables at the end: {len(live_tables)}, writes per partition: mean {sum(segs) / len(segs):.1f}, "
              f"max {max(segs)}; tables written again after their unknown write was settled: "
              f"{ledger.readopted}")
    print(f"mixed-chunk nodes (counted among the failures): "
          f"{verifier.mixed_nodes}")
    if verifier.resolutions:
        print("writes of unknown outcome, as found after the restart (old = not applied, new = applied):")
        for (kinds, outcome), v in sorted(verifier.resolutions.items()):
            print(f"  {kinds:28s} {outcome:28s} x{v}")
    for f in ledger.findings[:5]:
        print("  finding:", json.dumps(f, default=str)[:600])
    if orphans:
        print(f"storage: {json.dumps(orphans)}")
    if orphans.get("linked_stores_missing"):
        ledger.fail("store_missing", detail="catalog data sources point at stores missing on disk",
                    stores=orphans["linked_stores_missing"])
        fail_kinds = Counter(f["kind"] for f in ledger.failures)
    print(f"failures: {len(ledger.failures)} " + (json.dumps(dict(fail_kinds)) if fail_kinds else ""))
    grouped = Counter((f["kind"], ",".join(f.get("in_flight", [])) or "-") for f in ledger.failures)
    for (k, inflight), v in sorted(grouped.items()):
        print(f"  {k:20s} in-flight write(s) on the node: {inflight:20s} x{v}")
    for f in ledger.failures[:25]:
        print("  FAIL:", json.dumps(f, default=str)[:2500])
    if aborted:
        print(f"ABORTED: {aborted}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "seed": seed, "elapsed_s": elapsed, "kills": kills, "acked": acked, "unknown": unknown,
            "not_sent": not_sent, "rejected": rejected,
            "by_kind": {k: dict(v) for k, v in by_kind.items()},
            "failures": ledger.failures, "findings": ledger.findings, "storage": orphans,
            "aborted": aborted,
        }, indent=1, default=str))
    if args.inject_faults and injected and not isinstance(injected, str):
        found = {(f["kind"], f.get("path")) for f in ledger.failures}
        missed = [(k, p) for k, p in injected if (k, p) not in found]
        print(f"fault injection (self-check of the checker): {len(injected) - len(missed)}/{len(injected)} "
              f"injected faults detected" + (f"; MISSED: {missed}" if missed else ""))
        if missed or aborted:
            print("FAILED: the checker missed injected faults")
            return 1
        print("OK (every injected fault was detected; other failures above are real)")
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        return 0
    failed = bool(ledger.failures) or bool(aborted)
    if failed:
        print(f"\n--- server log tail ({server.log_path}) ---")
        print(server.log_tail(60))
        print(f"\nFAILED (work dir kept: {workdir}; rerun with --seed {seed})")
        return 1
    if not args.keep and not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
