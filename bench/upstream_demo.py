"""The tiled-rs demo tree, rebuilt for upstream tiled 0.2.20 (bench only).

Serve with (from the bench/ directory, or with bench/ on PYTHONPATH):

    tiled serve pyobject --public --host 127.0.0.1 --port 8000 upstream_demo:tree

It reproduces, at the same paths and with the same shapes, chunks, dtypes,
values and metadata, the nodes of docs/demo.md that the benchmark touches:

- the root and container metadata,
- ``scalars/*``,
- ``nested/images/*`` and ``nested/cubes/*``; ``big_image`` (10000 x 10000
  float64, chunks 1024, last 784) is a lazy dask array whose blocks are
  generated on request with the same splitmix64 generator as our server, so
  it is never materialised (same strategy as ``tiled serve demo``),
- ``tables/short_table``, ``tables/long_table`` (100,000 rows, 5 partitions of
  20,000, via ``from_pandas(npartitions=5)``), ``tables/wide_table``,
- ``many/`` with its 1000 children, metadata and specs.

Not reproduced: ``dtypes/*`` (not used by the benchmark).

Set ``TILED_BENCH_BIG_IMAGE=materialize`` to hold big_image as an in-memory
numpy array instead (800 MB; inflates upstream RSS accordingly).
"""

import os

import dask.array
import numpy as np
import pandas as pd

from tiled.adapters.array import ArrayAdapter
from tiled.adapters.mapping import MapAdapter

try:
    from tiled.adapters.table import TableAdapter as _TableAdapter
except ImportError:  # older spelling
    from tiled.adapters.dataframe import DataFrameAdapter as _TableAdapter
from tiled.structures.core import Spec

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix(idx, seed):
    with np.errstate(over="ignore"):
        z = np.asarray(idx, dtype=np.uint64) + np.uint64(seed) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def unit(idx, seed):
    return (mix(idx, seed) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def flat_index(shape, offsets, block_shape):
    """C-order flat indices of a block starting at `offsets` in an array of `shape`."""
    idx = np.zeros(block_shape, dtype=np.uint64)
    stride = 1
    for axis in reversed(range(len(shape))):
        ax = np.arange(offsets[axis], offsets[axis] + block_shape[axis], dtype=np.uint64)
        view = [1] * len(shape)
        view[axis] = block_shape[axis]
        idx = idx + ax.reshape(view) * np.uint64(stride)
        stride *= shape[axis]
    return idx


def f64_array(shape, seed):
    n = int(np.prod(shape)) if shape else 1
    return unit(np.arange(n, dtype=np.uint64), seed).reshape(shape)


def lazy_f64(shape, chunks, seed):
    """A dask array whose blocks are generated on demand."""

    def block(block_info=None):
        info = block_info[None]
        offsets = [lo for lo, _ in info["array-location"]]
        bshape = info["chunk-shape"]
        return unit(flat_index(shape, offsets, bshape), seed)

    return dask.array.map_blocks(block, chunks=chunks, dtype=np.float64, meta=np.empty((0,) * len(shape), np.float64))


def regular_chunks(size, chunk):
    full, rest = divmod(size, chunk)
    return (chunk,) * full + ((rest,) if rest else ())


def array(arr, chunks=None, dims=None, metadata=None, specs=None):
    return ArrayAdapter.from_array(
        arr, chunks=chunks, dims=dims, metadata=metadata or {}, specs=specs or []
    )


def table(df, npartitions, metadata=None):
    return _TableAdapter.from_pandas(df, npartitions=npartitions, metadata=metadata or {})


def demo_table(rows):
    i = np.arange(rows, dtype=np.int64)
    return pd.DataFrame(
        {
            "i": i,
            "x": i * 0.5,
            "label": ["s%d" % k for k in range(rows)],
            "flag": i % 2 == 0,
            "time": pd.to_datetime(1_600_000_000 + i, unit="s").astype("datetime64[ns]"),
        }
    )


def build_tree():
    # scalars
    scalars = MapAdapter(
        {
            "pi": array(np.array(3.141592653589793, dtype="<f8")),
            "e": array(np.array(2.718281828459045, dtype="<f8")),
            "answer": array(np.array(42, dtype="<i8")),
            "negative": array(np.array(-7, dtype="<i4")),
            "yes": array(np.array(True, dtype="|b1")),
        },
        metadata={"description": "Zero-dimensional arrays"},
    )

    # images
    big_shape = (10000, 10000)
    big_chunks = (regular_chunks(10000, 1024), regular_chunks(10000, 1024))
    if os.environ.get("TILED_BENCH_BIG_IMAGE") == "materialize":
        big = f64_array(big_shape, 4)
    else:
        big = lazy_f64(big_shape, big_chunks, 4)
    images = MapAdapter(
        {
            "tiny_image": array(f64_array((50, 50), 1), chunks=((50,), (50,)), dims=("y", "x")),
            "small_image": array(
                f64_array((300, 300), 2), chunks=((100,) * 3, (100,) * 3), dims=("y", "x")
            ),
            "medium_image": array(
                f64_array((1000, 1000), 3), chunks=((300, 300, 400), (250, 750)), dims=("y", "x")
            ),
            "big_image": array(big, chunks=big_chunks, dims=("y", "x")),
        },
        metadata={"description": "Two-dimensional float64 images"},
    )
    cubes = MapAdapter(
        {
            "tiny_cube": array(f64_array((10, 10, 10), 5), chunks=((5, 5),) * 3),
            "tiny_hypercube": array(
                f64_array((4, 5, 6, 7, 8), 6),
                chunks=((2, 2), (5,), (3, 3), (7,), (4, 4)),
            ),
        },
        metadata={"description": "Higher-dimensional arrays"},
    )
    nested = MapAdapter(
        {"images": images, "cubes": cubes},
        metadata={"description": "Nested containers"},
    )

    # tables
    wide_i = np.arange(10, dtype=np.int64)
    wide = pd.DataFrame({"c%03d" % c: (wide_i * 100 + c).astype(np.float64) for c in range(100)})
    tables = MapAdapter(
        {
            "short_table": table(demo_table(10), 1),
            "long_table": table(demo_table(100_000), 5),
            "wide_table": table(wide, 1),
        },
        metadata={"description": "Tables"},
    )

    # many
    colors = ["red", "green", "blue"]
    children = {}
    for k in range(1000):
        color = colors[k % 3]
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
        specs = []
        if k % 4 == 0:
            specs.append(Spec("quad"))
        if k % 5 == 0:
            specs.append(Spec("pent"))
        if k % 2 == 0:
            node = MapAdapter({}, metadata=md, specs=specs)
        else:
            node = array(np.array([k, k + 1, k + 2], dtype="<i8"), metadata=md, specs=specs)
        children["item_%04d" % k] = node
    many = MapAdapter(children, metadata={"description": "1000 children for search"})

    return MapAdapter(
        {
            "scalars": scalars,
            "nested": nested,
            "tables": tables,
            "many": many,
        },
        metadata={"description": "tiled-rs demo tree"},
    )


tree = build_tree()
