"""Writing tables through the upstream client against a catalog (`serve
catalog`): `write_dataframe`/`write_table` (one partition and dask
partitions), `create_appendable_table` + `append_partition` (also from 8
threads at once), `write_partition` replacing a partition; values read back
exactly, and bodies that do not match the table are refused."""

import os
import uuid

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conftest import API_KEY, run_concurrently

pytestmark = pytest.mark.skipif(
    os.environ.get("TILED_COMPAT_TREE", "demo") not in ("catalog", "postgres"),
    reason="writes need a catalog tree",
)


@pytest.fixture(scope="module")
def writer(private_server):
    from tiled.client import from_uri

    return from_uri(private_server.url, api_key=API_KEY)


def fresh_key():
    return f"t_{uuid.uuid4().hex[:12]}"


def frame(start, n):
    i = np.arange(start, start + n)
    return pd.DataFrame(
        {
            "x": i.astype("int64"),
            "y": i / 4,
            "flag": i % 2 == 0,
            "name": [f"row{j}" for j in i],
            "t": pd.to_datetime(i, unit="s"),
            "small": (i % 100).astype("int8"),
        }
    )


def assert_same(got, expected):
    """Equal values and dtypes; string columns may come back as pandas'
    `string` dtype, which dask (in the client) chooses whatever the server
    sends."""
    got = got.reset_index(drop=True)
    expected = expected.reset_index(drop=True)
    assert list(got.columns) == list(expected.columns)
    for c in expected.columns:
        if expected[c].dtype.kind in "OUT" or str(expected[c].dtype) in ("str", "string"):
            assert got[c].astype(object).tolist() == expected[c].astype(object).tolist(), c
        else:
            assert got[c].dtype == expected[c].dtype, (c, got[c].dtype, expected[c].dtype)
            np.testing.assert_array_equal(got[c].to_numpy(), expected[c].to_numpy(), err_msg=c)


def test_write_dataframe_round_trips(writer):
    key = fresh_key()
    df = frame(0, 50)
    with pytest.warns(DeprecationWarning):
        writer.write_dataframe(df, key=key, metadata={"kind": "table"})
    node = writer[key]
    assert dict(node.metadata) == {"kind": "table"}
    assert node.structure().npartitions == 1
    assert_same(node.read(), df)
    assert_same(node.read(["name", "x"]), df[["name", "x"]])
    np.testing.assert_array_equal(node["y"].read(), df["y"].to_numpy())


def test_write_table_from_dict(writer):
    key = fresh_key()
    writer.write_table({"a": [1, 2, 3], "b": [4.0, 5.0, 6.0]}, key=key)
    got = writer[key].read()
    assert list(got["a"]) == [1, 2, 3]
    assert list(got["b"]) == [4.0, 5.0, 6.0]


def test_dask_partitions_are_written_one_by_one(writer):
    import dask.dataframe

    key = fresh_key()
    df = frame(0, 90)
    ddf = dask.dataframe.from_pandas(df, npartitions=3)
    writer.write_table(ddf, key=key)
    node = writer[key]
    assert node.structure().npartitions == 3
    assert_same(node.read(), df)
    # Replace one partition.
    node.write_partition(1, frame(1000, 5))
    got = node.read().reset_index(drop=True)
    assert list(got["x"]) == list(range(30)) + list(range(1000, 1005)) + list(range(60, 90))


def test_appendable_table(writer):
    key = fresh_key()
    schema = pa.Table.from_pandas(frame(0, 1), preserve_index=False).schema
    node = writer.create_appendable_table(schema, key=key, metadata={"appendable": True})
    assert len(node.read()) == 0
    parts = [frame(0, 10), frame(10, 3), frame(13, 20)]
    for p in parts:
        node.append_partition(0, p)
    expected = pd.concat(parts, ignore_index=True)
    assert_same(writer[key].read(), expected)
    # A body whose columns differ is refused, and nothing is appended.
    with pytest.raises(Exception):
        node.append_partition(0, pd.DataFrame({"x": [1]}))
    assert len(writer[key].read()) == len(expected)


def test_eight_concurrent_appenders(writer):
    key = fresh_key()
    schema = pa.Table.from_pandas(frame(0, 1), preserve_index=False).schema
    node = writer.create_appendable_table(schema, key=key)

    def append(w):
        for i in range(10):
            node.append_partition(0, frame(w * 1000 + i * 10, 10))

    run_concurrently(append)
    got = writer[key].read()
    assert len(got) == 800
    expected = sorted(w * 1000 + j for w in range(8) for j in range(100))
    assert sorted(got["x"]) == expected
    # Each batch of 10 is contiguous: appends never interleave.
    xs = list(got["x"])
    for k in range(0, 800, 10):
        assert xs[k : k + 10] == list(range(xs[k], xs[k] + 10))


def test_table_refusals_over_http(private_server, writer):
    api = private_server.api
    h = {"Authorization": f"Apikey {API_KEY}"}
    key = fresh_key()
    writer.write_table({"a": [1, 2]}, key=key)
    arrow = {**h, "Content-Type": "application/vnd.apache.arrow.file"}
    r = httpx.put(f"{api}/table/full/{key}", content=b"not arrow", headers=arrow)
    assert r.status_code == 400 and "detail" in r.json(), r.text
    sink = pa.BufferOutputStream()
    t = pa.table({"a": pa.array([7, 8, 9], pa.int64())})
    with pa.ipc.new_file(sink, t.schema) as f:
        f.write_table(t)
    body = sink.getvalue().to_pybytes()
    r = httpx.patch(f"{api}/table/partition/{key}?partition=3", content=body, headers=arrow)
    assert r.status_code == 400, r.text
    r = httpx.put(f"{api}/table/full/{key}", content=body, headers={"Content-Type": "application/vnd.apache.arrow.file"})
    assert r.status_code == 401, r.text
    r = httpx.put(f"{api}/table/full/{key}", content=body, headers={**h, "Content-Type": "text/csv"})
    assert r.status_code == 400, r.text
    r = httpx.put(f"{api}/table/full/{key}", content=body, headers=arrow)
    assert r.status_code == 200 and r.json() is None, r.text
    assert list(writer[key].read()["a"]) == [7, 8, 9]
