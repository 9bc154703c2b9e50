"""Expected contents of the demo tree (`tiled serve demo`), recomputed from the
formulas in docs/demo.md.

Nothing here talks to the server: the tests compare what the server returns
with what these functions compute.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# ---------------------------------------------------------------------------
# The value generator (docs/demo.md, "The value generator")
# ---------------------------------------------------------------------------

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix(idx, seed):
    """splitmix64 finaliser of (idx + seed * GOLDEN); wrapping uint64 arithmetic."""
    with np.errstate(over="ignore"):
        z = np.asarray(idx, dtype=np.uint64) + np.uint64(seed) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def unit(idx, seed):
    """float64 in [0, 1)."""
    return (mix(idx, seed) >> np.uint64(11)).astype(np.float64) * 2.0**-53


STRUCT_DTYPE = np.dtype([("x", "<f8"), ("y", "<i4"), ("name", "S4")])


def values_for(kind: str, dtype: np.dtype, idx: np.ndarray, seed) -> np.ndarray:
    """Element values for flat indices `idx` (any shape) of an array."""
    idx = np.asarray(idx, dtype=np.uint64)
    if kind == "float64":
        out = unit(idx, seed)
    elif kind == "float32":
        out = unit(idx, seed).astype(np.float32)
    elif kind == "float16":
        out = ((mix(idx, seed) % np.uint64(2048)).astype(np.float64) / 8).astype(
            np.float16
        )
    elif kind in ("int", "uint"):
        out = mix(idx, seed).astype(dtype.newbyteorder("="))
    elif kind == "bool":
        out = (mix(idx, seed) & np.uint64(1)) == np.uint64(1)
    elif kind == "complex":
        out = (unit(idx, seed) + 1j * unit(idx, seed + 1000)).astype(
            dtype.newbyteorder("=")
        )
    elif kind == "datetime64":
        ns = np.int64(1_600_000_000_000_000_000) + (
            mix(idx, seed) % np.uint64(10**15)
        ).astype(np.int64)
        out = ns.astype(np.int64).view("M8[ns]")
    elif kind == "timedelta64":
        out = (mix(idx, seed) % np.uint64(1_000_000)).astype(np.int64).view("m8[s]")
    elif kind == "bytes":
        flat = [b"b%d" % int(i) for i in idx.ravel()]
        out = np.array(flat, dtype="S10").reshape(idx.shape)
    elif kind == "unicode":
        flat = ["u%d" % int(i) for i in idx.ravel()]
        out = np.array(flat, dtype="<U8").reshape(idx.shape)
    elif kind == "struct":
        out = np.empty(idx.shape, dtype=STRUCT_DTYPE)
        out["x"] = unit(idx, seed)
        out["y"] = mix(idx, seed + 1).astype(np.int32)
        out["name"] = np.array(
            [b"n%d" % (int(i) % 1000) for i in idx.ravel()], dtype="S4"
        ).reshape(idx.shape)
    elif kind == "scalar":
        raise ValueError("scalars are handled by ArraySpec.full()")
    else:  # pragma: no cover
        raise ValueError(kind)
    return np.asarray(out).astype(dtype)


# ---------------------------------------------------------------------------
# Node catalogue (docs/demo.md, "Nodes")
# ---------------------------------------------------------------------------


def _regular_chunks(shape, chunk):
    out = []
    for n, c in zip(shape, chunk):
        full, rest = divmod(n, c)
        out.append((c,) * full + ((rest,) if rest else ()))
    return tuple(out)


class ArraySpec:
    def __init__(self, path, shape, chunks, dtype, kind, seed=None, value=None, dims=None):
        self.path = path
        self.shape = tuple(shape)
        self.chunks = tuple(tuple(c) for c in chunks)
        self.dtype = np.dtype(dtype)
        self.kind = kind
        self.seed = seed
        self.value = value
        self.dims = dims

    def __repr__(self):
        return f"ArraySpec({self.path})"

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    def full(self) -> np.ndarray:
        """The whole expected array (do not call for big_image)."""
        if self.kind in ("scalar", "literal"):
            return np.array(self.value, dtype=self.dtype)
        assert self.size <= 10_000_000, "too big to materialise"
        idx = np.arange(self.size, dtype=np.uint64).reshape(self.shape)
        return values_for(self.kind, self.dtype, idx, self.seed)

    def region(self, key) -> np.ndarray:
        """Expected `array[key]` computed only over the selected elements.

        `key` is an int, slice, or tuple of ints/slices (no Ellipsis, no
        fancy indexing), with NumPy semantics.
        """
        if self.kind in ("scalar", "literal"):
            return self.full()[key]
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (len(self.shape) - len(key))
        strides = [int(np.prod(self.shape[d + 1 :], dtype=np.int64)) for d in range(len(self.shape))]
        axes = []  # one 1-d index array per kept dim, or a scalar for dropped dims
        for n, k, st in zip(self.shape, key, strides):
            sel = np.arange(n, dtype=np.uint64)[k]
            axes.append((sel * np.uint64(st), isinstance(k, (int, np.integer))))
        kept = [a for a, dropped in axes if not dropped]
        flat = np.zeros([len(a) for a in kept], dtype=np.uint64)
        ki = 0
        for a, dropped in axes:
            if dropped:
                flat = flat + a
            else:
                shape = [1] * len(kept)
                shape[ki] = len(a)
                flat = flat + a.reshape(shape)
                ki += 1
        return values_for(self.kind, self.dtype, flat, self.seed)

    def block_bounds(self, block):
        """Slices covering block `block` (tuple of block indices)."""
        out = []
        for b, ch in zip(block, self.chunks):
            start = sum(ch[:b])
            out.append(slice(start, start + ch[b]))
        return tuple(out)


IMAGE_DIMS = ["y", "x"]

ARRAYS: dict[str, ArraySpec] = {}


def _add(spec: ArraySpec):
    ARRAYS[spec.path] = spec


# scalars/
_add(ArraySpec("scalars/pi", (), (), "<f8", "scalar", value=3.141592653589793))
_add(ArraySpec("scalars/e", (), (), "<f8", "scalar", value=2.718281828459045))
_add(ArraySpec("scalars/answer", (), (), "<i8", "scalar", value=42))
_add(ArraySpec("scalars/negative", (), (), "<i4", "scalar", value=-7))
_add(ArraySpec("scalars/yes", (), (), "|b1", "scalar", value=True))

# nested/images, nested/cubes
_add(ArraySpec("nested/images/tiny_image", (50, 50), _regular_chunks((50, 50), (50, 50)), "<f8", "float64", 1, dims=IMAGE_DIMS))
_add(ArraySpec("nested/images/small_image", (300, 300), _regular_chunks((300, 300), (100, 100)), "<f8", "float64", 2, dims=IMAGE_DIMS))
_add(ArraySpec("nested/images/medium_image", (1000, 1000), ((300, 300, 400), (250, 750)), "<f8", "float64", 3, dims=IMAGE_DIMS))
_add(ArraySpec("nested/images/big_image", (10000, 10000), _regular_chunks((10000, 10000), (1024, 1024)), "<f8", "float64", 4, dims=IMAGE_DIMS))
_add(ArraySpec("nested/images/rgb_image", (32, 48, 3), _regular_chunks((32, 48, 3), (16, 48, 3)), "|u1", "uint", 7))
_add(ArraySpec("nested/cubes/tiny_cube", (10, 10, 10), _regular_chunks((10, 10, 10), (5, 5, 5)), "<f8", "float64", 5))
_add(ArraySpec("nested/cubes/tiny_hypercube", (4, 5, 6, 7, 8), _regular_chunks((4, 5, 6, 7, 8), (2, 5, 3, 7, 4)), "<f8", "float64", 6))

# dtypes/
_C100 = ((50, 50),)
_DTYPES = [
    ("bool", "|b1", "bool", 10),
    ("int8", "<i1", "int", 11),
    ("int16", "<i2", "int", 12),
    ("int32", "<i4", "int", 13),
    ("int64", "<i8", "int", 14),
    ("uint8", "<u1", "uint", 15),
    ("uint16", "<u2", "uint", 16),
    ("uint32", "<u4", "uint", 17),
    ("uint64", "<u8", "uint", 18),
    ("float16", "<f2", "float16", 19),
    ("float32", "<f4", "float32", 20),
    ("float64", "<f8", "float64", 21),
    ("float64_big_endian", ">f8", "float64", 22),
    ("int32_big_endian", ">i4", "int", 23),
    ("complex64", "<c8", "complex", 24),
    ("complex128", "<c16", "complex", 26),
    ("bytes", "|S10", "bytes", None),
    ("unicode", "<U8", "unicode", None),
    ("datetime64", "<M8[ns]", "datetime64", 27),
    ("timedelta64", "<m8[s]", "timedelta64", 28),
    ("structured", STRUCT_DTYPE, "struct", 29),
]
for _name, _dt, _kind, _seed in _DTYPES:
    _add(ArraySpec(f"dtypes/{_name}", (100,), _C100, _dt, _kind, _seed))
_add(ArraySpec("dtypes/int64_2d", (20, 30), ((7, 7, 6), (11, 11, 8)), "<i8", "int", 30))
_add(ArraySpec("dtypes/uint8_2d", (20, 30), ((10, 10), (30,)), "|u1", "uint", 31))
_add(ArraySpec("dtypes/uint16_2d", (20, 30), ((10, 10), (30,)), "<u2", "uint", 32))

DTYPE_NAMES = [d[0] for d in _DTYPES] + ["int64_2d", "uint8_2d", "uint16_2d"]

# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------

TABLE_COLUMNS = ["i", "x", "label", "flag", "time"]
WIDE_COLUMNS = ["c%03d" % j for j in range(100)]
TABLES = {
    "tables/short_table": {"rows": 10, "npartitions": 1, "columns": TABLE_COLUMNS},
    "tables/long_table": {"rows": 100_000, "npartitions": 5, "columns": TABLE_COLUMNS},
    "tables/wide_table": {"rows": 10, "npartitions": 1, "columns": WIDE_COLUMNS},
}


def table_frame(path: str, start: int = 0, stop: int | None = None) -> pd.DataFrame:
    """Expected rows [start, stop) of a table, with a fresh RangeIndex."""
    spec = TABLES[path]
    stop = spec["rows"] if stop is None else stop
    i = np.arange(start, stop, dtype=np.int64)
    if path == "tables/wide_table":
        return pd.DataFrame(
            {c: (i * 100 + j).astype(np.float64) for j, c in enumerate(WIDE_COLUMNS)}
        )
    return pd.DataFrame(
        {
            "i": i,
            "x": i * 0.5,
            "label": ["s%d" % k for k in i],
            "flag": (i % 2) == 0,
            "time": (np.int64(1_600_000_000) + i).astype("M8[s]").astype("M8[ns]"),
        }
    )


def table_column(path: str, column: str) -> np.ndarray:
    frame = table_frame(path)
    return frame[column].to_numpy()


def partition_bounds(path: str, partition: int):
    spec = TABLES[path]
    size = spec["rows"] // spec["npartitions"]
    return partition * size, (partition + 1) * size


# ---------------------------------------------------------------------------
# Tree layout (container keys, in order)
# ---------------------------------------------------------------------------

MANY_N = 1000
MANY_KEYS = ["item_%04d" % k for k in range(MANY_N)]

CONTAINERS: dict[str, list[str]] = {
    "": ["scalars", "nested", "dtypes", "tables", "many", "xarray"],
    "scalars": ["pi", "e", "answer", "negative", "yes"],
    "nested": ["images", "cubes"],
    "nested/images": ["tiny_image", "small_image", "medium_image", "big_image", "rgb_image"],
    "nested/cubes": ["tiny_cube", "tiny_hypercube"],
    "dtypes": DTYPE_NAMES,
    "tables": ["short_table", "long_table", "wide_table"],
    "many": MANY_KEYS,
    "xarray": ["time", "temperature", "pressure", "image"],
}

# xarray/: an xarray-style dataset (spec xarray_dataset; variables carry
# xarray_coord / xarray_data_var and metadata {"attrs": ...}).
_add(ArraySpec("xarray/time", (100,), ((100,),), "<f8", "literal", value=[i * 0.5 for i in range(100)], dims=["time"]))
_add(ArraySpec("xarray/temperature", (100,), ((100,),), "<f8", "float64", 40, dims=["time"]))
_add(ArraySpec("xarray/pressure", (100,), ((100,),), "<i8", "int", 41, dims=["time"]))
_add(ArraySpec("xarray/image", (100, 20), ((50, 50), (20,)), "<f8", "float64", 42, dims=["time", "x"]))
XARRAY_ATTRS = {"title": "A demo dataset"}
XARRAY_VAR_ATTRS = {"time": {"units": "s"}, "temperature": {"units": "K"}, "pressure": {}, "image": {"long_name": "detector image"}}
XARRAY_COORDS = ["time"]
for _k in range(0, MANY_N, 2):
    CONTAINERS["many/item_%04d" % _k] = []
for _k in range(1, MANY_N, 2):
    ARRAYS["many/item_%04d" % _k] = ArraySpec(
        "many/item_%04d" % _k, (3,), ((3,),), "<i8", "literal", value=[_k, _k + 1, _k + 2]
    )


def many_array(k: int) -> np.ndarray:
    return np.array([k, k + 1, k + 2], dtype=np.int64)


# ---------------------------------------------------------------------------
# many/ metadata and specs
# ---------------------------------------------------------------------------

COLORS = ["red", "green", "blue"]


def many_metadata(k: int) -> dict:
    color = COLORS[k % 3]
    md = {
        "i": k,
        "group": k % 10,
        "color": color,
        "score": k * 0.25,
        "name": "item %d" % k,
        "tags": ["even" if k % 2 == 0 else "odd"] + (["fizz"] if k % 3 == 0 else []),
        "nested": {"x": k % 7, "label": "l%d" % (k % 5)},
        "description": "A %s sample from group %d" % (color, k % 10),
    }
    if k % 7 == 0:
        md["optional"] = k
    return md


def many_specs(k: int) -> list[str]:
    out = []
    if k % 4 == 0:
        out.append("quad")
    if k % 5 == 0:
        out.append("pent")
    return out


def many_family(k: int) -> str:
    return "container" if k % 2 == 0 else "array"


MANY = [
    {"key": MANY_KEYS[k], "k": k, "metadata": many_metadata(k), "specs": many_specs(k), "family": many_family(k)}
    for k in range(MANY_N)
]

_MISSING = object()


def lookup(md, dotted: str):
    """Value at a dotted key, or _MISSING."""
    cur = md
    for part in dotted.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur


def keys_where(pred) -> list[str]:
    """Keys of many/ (in order) whose entry satisfies pred(entry)."""
    return [e["key"] for e in MANY if pred(e)]


def md_where(dotted: str, pred) -> list[str]:
    """Keys whose metadata has `dotted` and pred(value) holds."""
    out = []
    for e in MANY:
        v = lookup(e["metadata"], dotted)
        if v is not _MISSING and pred(v):
            out.append(e["key"])
    return out


def strings_in(value):
    """Every string inside a JSON value, recursively."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


METADATA_DESCRIPTION_CONTAINERS = [
    "scalars",
    "nested",
    "nested/images",
    "nested/cubes",
    "dtypes",
    "tables",
    "many",
]
