"""Every export format, decoded by an independent library and compared with
the values computed from the demo formulas (docs/formats.md): numpy,
pandas, pyarrow, Pillow, tifffile, openpyxl, h5py, msgpack. Slicing and
column selection are combined with each, and the upstream client's
`.export()` is exercised for arrays, tables and containers."""

import io
import json

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.parquet
import pytest

from demo_values import ARRAYS, CONTAINERS, TABLE_COLUMNS, table_frame

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def get(http, url, **params):
    r = http.get(url, params=params)
    assert r.status_code == 200, (url, params, r.status_code, r.text[:300])
    return r


def array_url(path):
    return f"array/full/{path}"


# ------------------------------------------------------------------ arrays

NUMERIC_2D = ["dtypes/int64_2d", "dtypes/uint8_2d", "dtypes/uint16_2d", "nested/images/tiny_image"]
ONE_D = ["dtypes/int8", "dtypes/uint64", "dtypes/float32", "dtypes/float64", "dtypes/float64_big_endian", "dtypes/int32_big_endian", "dtypes/bool"]


@pytest.mark.parametrize("path", NUMERIC_2D + ONE_D)
@pytest.mark.parametrize("fmt,sep", [("csv", ","), ("text/csv", ","), ("tsv", "\t"), ("text/plain", ",")])
def test_array_delimited_text(http, path, fmt, sep):
    spec = ARRAYS[path]
    r = get(http, array_url(path), format=fmt)
    assert r.headers["content-type"].split(";")[0] in ("text/csv", "text/tab-separated-values", "text/plain")
    got = np.loadtxt(io.StringIO(r.text), delimiter=sep, dtype=spec.dtype.newbyteorder("=") if spec.dtype.kind != "b" else "U5", ndmin=1)
    expected = spec.full()
    if spec.dtype.kind == "b":
        expected = np.where(expected, "True", "False")
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)


@pytest.mark.parametrize("fmt,sep", [("csv", ","), ("tsv", "\t"), ("text", ",")])
@pytest.mark.parametrize("key,slice_", [((slice(2, 9), slice(3, 20, 4)), "2:9,3:20:4"), ((slice(None, None, -1), 5), "::-1,5")])
def test_array_delimited_with_slices(http, key, slice_, fmt, sep):
    spec = ARRAYS["dtypes/int64_2d"]
    r = get(http, array_url(spec.path), format=fmt, slice=slice_)
    expected = spec.region(key)
    got = np.loadtxt(io.StringIO(r.text), delimiter=sep, dtype=np.int64, ndmin=1)
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)


def test_array_csv_refuses_three_dimensions(http):
    r = http.get(array_url("nested/cubes/tiny_cube"), params={"format": "csv"})
    assert r.status_code == 406
    assert "application/octet-stream" in r.json()["detail"]
    # A 2-d slice of it is fine.
    r = get(http, array_url("nested/cubes/tiny_cube"), format="csv", slice="3")
    np.testing.assert_array_equal(np.loadtxt(io.StringIO(r.text), delimiter=","), ARRAYS["nested/cubes/tiny_cube"].region(3))


@pytest.mark.parametrize("path", [p for p in ARRAYS if p.startswith("dtypes/")] + ["nested/cubes/tiny_hypercube", "scalars/pi", "scalars/yes"])
def test_array_npy_every_dtype(http, path):
    spec = ARRAYS[path]
    r = get(http, array_url(path), format="npy")
    assert r.headers["content-type"] == "application/x-npy"
    got = np.load(io.BytesIO(r.content), allow_pickle=False)
    expected = spec.full()
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_array_npy_of_a_slice_and_a_block(http):
    spec = ARRAYS["nested/images/medium_image"]
    got = np.load(io.BytesIO(get(http, array_url(spec.path), format="npy", slice="10:20,::100").content))
    np.testing.assert_array_equal(got, spec.region((slice(10, 20), slice(None, None, 100))))
    block = np.load(io.BytesIO(get(http, f"array/block/{spec.path}", block="1,0", format="npy").content))
    np.testing.assert_array_equal(block, spec.region((slice(300, 600), slice(0, 250))))


def png_of(http, path, **params):
    from PIL import Image

    r = get(http, array_url(path), format="png", **params)
    assert r.headers["content-type"] == "image/png"
    assert "content-encoding" not in r.headers
    return Image.open(io.BytesIO(r.content))


def test_png_uint8_and_uint16_are_exact(http):
    img = png_of(http, "dtypes/uint8_2d")
    assert img.mode == "L" and img.size == (30, 20)
    np.testing.assert_array_equal(np.asarray(img), ARRAYS["dtypes/uint8_2d"].full())
    img16 = png_of(http, "dtypes/uint16_2d")
    assert img16.mode.startswith("I")
    np.testing.assert_array_equal(np.asarray(img16).astype(np.uint16), ARRAYS["dtypes/uint16_2d"].full())


def test_png_rgb(http):
    img = png_of(http, "nested/images/rgb_image")
    assert img.mode == "RGB" and img.size == (48, 32)
    np.testing.assert_array_equal(np.asarray(img), ARRAYS["nested/images/rgb_image"].full())


@pytest.mark.parametrize("path,params,key", [
    ("nested/images/tiny_image", {}, ()),
    ("nested/images/small_image", {"slice": ":20,5:25"}, (slice(None, 20), slice(5, 25))),
    ("dtypes/int64_2d", {}, ()),
])
def test_png_scales_other_types_min_to_max(http, path, params, key):
    spec = ARRAYS[path]
    data = spec.region(key) if key else spec.full()
    img = png_of(http, path, **params)
    assert img.mode == "L"
    assert img.size == (data.shape[1], data.shape[0])
    pixels = np.asarray(img).astype(int)
    as_float = data.astype(np.float64)
    want = np.round((as_float - as_float.min()) / (as_float.max() - as_float.min()) * 255)
    assert np.abs(pixels - want).max() <= 1
    assert pixels.min() == 0 and pixels.max() == 255


def test_png_refuses_one_dimension(http):
    r = http.get(array_url("dtypes/float64"), params={"format": "png"})
    assert r.status_code == 406


@pytest.mark.parametrize("path,params,key", [
    ("nested/images/tiny_image", {}, ()),
    ("nested/cubes/tiny_cube", {}, ()),
    ("dtypes/uint16_2d", {}, ()),
    ("dtypes/int64_2d", {"slice": "::2,3:9"}, (slice(None, None, 2), slice(3, 9))),
    ("dtypes/float32", {}, ()),
    ("nested/cubes/tiny_hypercube", {"slice": "1"}, (1,)),
])
def test_tiff_keeps_the_dtype_and_stacks_pages(http, path, params, key):
    import tifffile

    spec = ARRAYS[path]
    expected = spec.region(key) if key else spec.full()
    r = get(http, array_url(path), format="tiff", **params)
    assert r.headers["content-type"] == "image/tiff"
    got = tifffile.imread(io.BytesIO(r.content))
    if expected.ndim == 1:
        expected = expected.reshape(1, -1)
    if expected.ndim > 3:
        expected = expected.reshape(-1, *expected.shape[-2:])
    assert got.dtype == expected.dtype.newbyteorder("=")
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)


def test_jpeg_and_msgpack_of_slices(http):
    import msgpack
    from PIL import Image

    spec = ARRAYS["nested/images/medium_image"]
    img = Image.open(io.BytesIO(get(http, array_url(spec.path), format="jpeg", slice="100:150,::10").content))
    assert img.size == (100, 50)
    got = msgpack.unpackb(get(http, array_url(spec.path), format="msgpack", slice="5,10:20").content)
    assert got == spec.region((5, slice(10, 20))).tolist()


def test_jpeg_preview(http):
    from PIL import Image

    spec = ARRAYS["nested/images/small_image"]
    r = get(http, array_url(spec.path), format="jpg")
    assert r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.mode == "L" and img.size == (300, 300)
    data = spec.full()
    scaled = (data - data.min()) / (data.max() - data.min()) * 255
    assert np.abs(np.asarray(img).astype(float) - scaled).mean() < 20
    rgb = Image.open(io.BytesIO(get(http, array_url("nested/images/rgb_image"), format="jpeg").content))
    assert rgb.mode == "RGB" and rgb.size == (48, 32)


def test_array_html_preview(http):
    spec = ARRAYS["dtypes/int64_2d"]
    r = get(http, array_url(spec.path), format="html", slice="0:3")
    assert r.headers["content-type"].startswith("text/html")
    tables = pd.read_html(io.StringIO(r.text), header=None)
    np.testing.assert_array_equal(tables[0].to_numpy(), spec.region(slice(0, 3)))
    big = get(http, array_url("nested/images/medium_image"), format="html")
    assert "Showing 1000 of 1000 rows and 100 of 1000 columns" in big.text


@pytest.mark.parametrize("path", ["nested/images/tiny_image", "dtypes/int16", "dtypes/uint64", "scalars/answer"])
def test_array_msgpack(http, path):
    import msgpack

    r = get(http, array_url(path), format="msgpack")
    assert r.headers["content-type"] == "application/x-msgpack"
    assert msgpack.unpackb(r.content) == ARRAYS[path].full().tolist()


def test_array_accept_header_and_filename(http):
    r = http.get(array_url("dtypes/int64_2d"), headers={"Accept": "image/gif;q=1, text/csv;q=0.8, */*;q=0.1"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    r = http.get(array_url("dtypes/int64_2d"), params={"format": "npy", "filename": "x.npy"})
    assert r.headers["content-disposition"] == 'attachment; filename="x.npy"'
    r = http.get(array_url("dtypes/int64_2d"), params={"format": "application/x-nope"})
    assert r.status_code == 406
    detail = r.json()["detail"]
    for media_type in ("text/csv", "image/png", "image/tiff", "application/x-npy"):
        assert media_type in detail


# ------------------------------------------------------------------ tables

TABLE = "tables/short_table"
LONG = "tables/long_table"


def frame_equal(got: pd.DataFrame, expected: pd.DataFrame):
    """Compare, taking times as datetime64 whatever the format gave."""
    got = got.copy()
    if "time" in got:
        got["time"] = pd.to_datetime(got["time"]).astype("datetime64[ns]")
    expected = expected.copy()
    if "time" in expected:
        expected["time"] = expected["time"].astype("datetime64[ns]")
    assert list(got.columns) == list(expected.columns)
    for c in expected.columns:
        np.testing.assert_array_equal(np.asarray(got[c]), np.asarray(expected[c]), err_msg=c)


@pytest.mark.parametrize("columns", [None, ["x", "label"], ["time", "i"]])
@pytest.mark.parametrize("fmt", ["csv", "tsv", "arrow-stream", "parquet", "json", "json-seq", "xlsx", "xslx", "msgpack", "html"])
def test_table_formats(http, fmt, columns):
    params = {"format": fmt}
    if columns:
        params["column"] = columns
    r = get(http, f"table/full/{TABLE}", **params)
    expected = table_frame(TABLE)[columns or TABLE_COLUMNS]
    body = r.content
    if fmt in ("csv", "tsv"):
        got = pd.read_csv(io.BytesIO(body), sep="," if fmt == "csv" else "\t", keep_default_na=False)
        if "label" in got:
            got["label"] = got["label"].astype(str)
    elif fmt == "arrow-stream":
        assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
        got = pyarrow.ipc.open_stream(body).read_pandas()
    elif fmt == "parquet":
        assert r.headers["content-type"] == "application/x-parquet"
        assert "content-encoding" not in r.headers
        got = pyarrow.parquet.read_table(io.BytesIO(body)).to_pandas()
    elif fmt == "json":
        got = pd.DataFrame(json.loads(body))
    elif fmt == "json-seq":
        assert r.headers["content-type"] == "application/json-seq"
        assert body.startswith(b"\x1e") and body.endswith(b"\n")
        records = [json.loads(rec) for rec in body.split(b"\x1e")[1:]]
        assert len(records) == len(expected)
        got = pd.DataFrame.from_records(records, columns=list(expected.columns))
    elif fmt in ("xlsx", "xslx"):
        import openpyxl

        assert r.headers["content-type"] == XLSX
        sheet = openpyxl.load_workbook(io.BytesIO(body)).active
        rows = list(sheet.iter_rows(values_only=True))
        got = pd.DataFrame(rows[1:], columns=rows[0])
    elif fmt == "msgpack":
        import msgpack

        got = pd.DataFrame(msgpack.unpackb(body))
    elif fmt == "html":
        assert r.headers["content-type"].startswith("text/html")
        got = pd.read_html(io.StringIO(r.text))[0]
        got.columns = [str(c) for c in got.columns]
        if "label" in got:
            got["label"] = got["label"].astype(str)
        if "flag" in got:
            got["flag"] = got["flag"].astype(str).str.lower() == "true"
    frame_equal(got, expected)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "arrow-stream"])
def test_table_partition_formats(http, fmt):
    r = get(http, f"table/partition/{LONG}", partition=2, format=fmt, column=["i", "x"])
    if fmt == "parquet":
        got = pyarrow.parquet.read_table(io.BytesIO(r.content)).to_pandas()
    elif fmt == "csv":
        got = pd.read_csv(io.BytesIO(r.content))
    else:
        got = pyarrow.ipc.open_stream(r.content).read_pandas()
    from demo_values import partition_bounds

    lo, hi = partition_bounds(LONG, 2)
    frame_equal(got, table_frame(LONG, lo, hi)[["i", "x"]].reset_index(drop=True))


def test_table_columns_posted(http):
    r = http.post(f"table/full/{TABLE}", params={"format": "csv"}, json=["label", "i"])
    assert r.status_code == 200
    frame_equal(pd.read_csv(io.BytesIO(r.content), keep_default_na=False).astype({"label": str}), table_frame(TABLE)[["label", "i"]])


# ------------------------------------------------------------------ containers


def test_container_hdf5_is_the_default(http):
    import h5py

    r = get(http, "container/full/nested/cubes")
    assert r.headers["content-type"] == "application/x-hdf5"
    with h5py.File(io.BytesIO(r.content), "r") as f:
        assert sorted(f) == sorted(CONTAINERS["nested/cubes"])
        assert f.attrs["description"] == "3-d and 5-d arrays"
        np.testing.assert_array_equal(f["tiny_cube"][()], ARRAYS["nested/cubes/tiny_cube"].full())
    r = get(http, "container/full/nested", field="cubes")
    with h5py.File(io.BytesIO(r.content), "r") as f:
        assert list(f) == ["cubes"]
        np.testing.assert_array_equal(f["cubes/tiny_hypercube"][()], ARRAYS["nested/cubes/tiny_hypercube"].full())
    # All of nested/ holds the 800 MB big_image: refused from its structure.
    too_big = http.get("container/full/nested")
    assert too_big.status_code == 400
    assert "response_bytesize_limit" in too_big.json()["detail"]


def test_container_hdf5_dtypes_and_fields(http):
    import h5py

    r = get(http, "container/full/dtypes", format="h5")
    with h5py.File(io.BytesIO(r.content), "r") as f:
        for name in CONTAINERS["dtypes"]:
            spec = ARRAYS[f"dtypes/{name}"]
            got = f[name][()]
            expected = spec.full()
            if name == "unicode":
                got = np.array([s.decode() for s in got], dtype=expected.dtype)
                assert f[name].attrs["numpy_dtype"] == "<U8"
            elif name in ("datetime64", "timedelta64"):
                assert f[name].attrs["numpy_dtype"] == expected.dtype.str
                got = got.view(expected.dtype)
            elif name == "structured":
                assert got.dtype.names == expected.dtype.names
                for field in expected.dtype.names:
                    np.testing.assert_array_equal(got[field], expected[field], err_msg=field)
                continue
            else:
                assert got.dtype == expected.dtype, name
            np.testing.assert_array_equal(got, expected, err_msg=name)
    only = get(http, "container/full/dtypes", format="hdf5", field=["int8", "bytes"])
    with h5py.File(io.BytesIO(only.content), "r") as f:
        assert sorted(f) == ["bytes", "int8"]


def test_container_hdf5_tables_and_metadata(http):
    import h5py

    r = get(http, "container/full/tables", format="application/x-hdf5", field="short_table")
    expected = table_frame(TABLE)
    with h5py.File(io.BytesIO(r.content), "r") as f:
        g = f["short_table"]
        np.testing.assert_array_equal(g["i"][()], expected["i"].to_numpy())
        np.testing.assert_array_equal(g["x"][()], expected["x"].to_numpy())
        assert [s.decode() for s in g["label"][()]] == list(expected["label"])
    many = get(http, "container/full/many", format="h5", field=["item_0003", "item_0004"])
    with h5py.File(io.BytesIO(many.content), "r") as f:
        attrs = f["item_0004"].attrs
        assert attrs["color"] == "green" and attrs["i"] == 4
        assert list(attrs["tags"]) == ["even"]
        assert json.loads(attrs["nested"]) == {"x": 4, "label": "l4"}
        np.testing.assert_array_equal(f["item_0003"][()], [3, 4, 5])


# ------------------------------------------------------------------ compression


def test_blosc2_when_listed(http):
    import blosc2

    url = f"table/partition/{LONG}"
    with http.stream("GET", url, params={"partition": 0}, headers={"Accept-Encoding": "blosc2"}) as r:
        assert r.headers.get("content-encoding") == "blosc2"
        # The raw bytes: once tiled.client is imported, httpx itself decodes
        # blosc2 (the client registers a decoder).
        encoded = b"".join(r.iter_raw())
    raw = blosc2.decompress(encoded)
    assert len(encoded) < len(raw) / 2
    table = pyarrow.ipc.open_file(raw).read_pandas()
    from demo_values import partition_bounds

    lo, hi = partition_bounds(LONG, 0)
    frame_equal(table, table_frame(LONG, lo, hi).reset_index(drop=True))


def test_client_default_reads_with_its_encodings(client, http):
    # The client lists gzip, deflate, zstd and blosc2 and decodes them all.
    listed = client.context.http_client.headers["accept-encoding"]
    assert "zstd" in listed and "blosc2" in listed
    for url, params, accept in [
        (f"table/partition/{LONG}", {"partition": 1}, "application/vnd.apache.arrow.file"),
        ("array/full/dtypes/int64_2d", {}, "application/octet-stream"),
        ("search/many", {"page[limit]": 50}, "application/json"),
    ]:
        with http.stream("GET", url, params=params, headers={"Accept-Encoding": listed, "Accept": accept}) as r:
            assert r.status_code == 200
            raw = b"".join(r.iter_raw())
            # Compressible bodies come back encoded with one of those listed.
            if len(raw) >= 1000 and r.headers.get("content-encoding") is None:
                assert url.startswith("array/"), (url, dict(r.headers))
            elif len(raw) >= 1000:
                assert r.headers["content-encoding"] in listed
    spec = ARRAYS["nested/images/medium_image"]
    np.testing.assert_array_equal(client[spec.path][100:300, :], spec.region((slice(100, 300), slice(None))))
    df = client[LONG].read()
    assert len(df) == 100_000


def test_images_and_parquet_are_not_compressed_again(http):
    for url, params in [
        (array_url("nested/images/small_image"), {"format": "png"}),
        (f"table/partition/{LONG}", {"partition": 0, "format": "parquet"}),
    ]:
        r = http.get(url, params=params, headers={"Accept-Encoding": "gzip, zstd"})
        assert r.status_code == 200
        assert "content-encoding" not in r.headers, url


def test_caching_headers(http):
    import os

    r = get(http, array_url("dtypes/int64_2d"), format="csv")
    # In-memory trees cannot change; a catalog's nodes can.
    if os.environ.get("TILED_COMPAT_TREE", "demo") == "demo":
        assert "max-age" in r.headers["cache-control"]
    else:
        assert r.headers["cache-control"] == "no-cache"
    again = http.get(array_url("dtypes/int64_2d"), params={"format": "csv"}, headers={"If-None-Match": r.headers["etag"]})
    # A tree nothing writes to answers a revalidation with 304; a writable
    # catalog's ETags never match (a write may have changed the data).
    if os.environ.get("TILED_COMPAT_TREE", "demo") == "demo":
        assert again.status_code == 304
    else:
        assert again.status_code == 200
        assert again.content == r.content


# ------------------------------------------------------------------ seed URLs


def test_seed_url_style(base_url):
    import httpx
    from PIL import Image

    with httpx.Client(base_url=base_url, trust_env=False) as h:
        r = h.get("/array/full/nested/images/tiny_image", params={"format": "png", "slice": ":50,10:40"})
        assert r.status_code == 200
        assert Image.open(io.BytesIO(r.content)).size == (30, 50)
        r = h.get("/dataframe/full/tables/short_table", params=[("format", "csv"), ("column", "i"), ("column", "label")])
        frame_equal(pd.read_csv(io.BytesIO(r.content)), table_frame(TABLE)[["i", "label"]])
        r = h.get("/dataframe/partition/tables/long_table", params={"partition": 1, "format": "xslx", "column": "i"})
        assert r.headers["content-type"] == XLSX


# ------------------------------------------------------------------ client export


def _html_reader(p):
    return pd.read_html(p, header=None)[0].to_numpy()


def _msgpack_reader(p):
    import msgpack

    return np.array(msgpack.unpackb(open(p, "rb").read()))


@pytest.mark.parametrize("name,reader", [
    ("a.csv", lambda p: np.loadtxt(p, delimiter=",")),
    ("a.tsv", lambda p: np.loadtxt(p, delimiter="\t")),
    ("a.txt", lambda p: np.loadtxt(p, delimiter=",")),
    ("a.npy", np.load),
    ("a.tif", lambda p: __import__("tifffile").imread(p)),
    ("a.tiff", lambda p: __import__("tifffile").imread(p)),
    ("a.json", lambda p: np.array(json.load(open(p)))),
    ("a.msgpack", _msgpack_reader),
    ("a.html", _html_reader),
])
def test_client_array_export(client, tmp_path, name, reader):
    spec = ARRAYS["nested/images/tiny_image"]
    target = tmp_path / name
    client[spec.path].export(str(target))
    np.testing.assert_array_equal(reader(target), spec.full())
    sliced = tmp_path / ("s_" + name)
    client[spec.path].export(str(sliced), slice=np.s_[5:10, 3:30])
    np.testing.assert_array_equal(np.asarray(reader(sliced)).reshape(5, -1), spec.region((slice(5, 10), slice(3, 30))))


def test_client_array_export_png_by_media_type(client, tmp_path):
    from PIL import Image

    target = tmp_path / "x.bin"
    client["dtypes/uint8_2d"].export(str(target), format="image/png")
    np.testing.assert_array_equal(np.asarray(Image.open(target)), ARRAYS["dtypes/uint8_2d"].full())
    for name in ("x.png", "x.jpg", "x.jpeg"):
        client["nested/images/rgb_image"].export(str(tmp_path / name))
        assert Image.open(tmp_path / name).size == (48, 32)


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.parquet", "t.xlsx", "t.json", "t.arrow", "t.feather", "t.html", "t.msgpack"])
def test_client_table_export(client, tmp_path, name):
    target = tmp_path / name
    client[TABLE].export(str(target), columns=["i", "x"])
    if name.endswith(".csv"):
        got = pd.read_csv(target)
    elif name.endswith(".tsv"):
        got = pd.read_csv(target, sep="\t")
    elif name.endswith(".html"):
        got = pd.read_html(target)[0]
    elif name.endswith(".msgpack"):
        import msgpack

        got = pd.DataFrame(msgpack.unpackb(open(target, "rb").read()))
    elif name.endswith(".parquet"):
        got = pd.read_parquet(target)
    elif name.endswith(".xlsx"):
        got = pd.read_excel(target)
    elif name.endswith(".json"):
        got = pd.DataFrame(json.load(open(target)))
    else:
        got = pyarrow.ipc.open_file(str(target)).read_pandas()
    frame_equal(got, table_frame(TABLE)[["i", "x"]])


@pytest.mark.parametrize("ext", ["h5", "hdf5"])
def test_client_container_export(client, tmp_path, ext):
    import h5py

    target = tmp_path / f"c.{ext}"
    client["nested/cubes"].export(str(target))
    with h5py.File(target, "r") as f:
        np.testing.assert_array_equal(f["tiny_hypercube"][()], ARRAYS["nested/cubes/tiny_hypercube"].full())
    target_json = tmp_path / "c.json"
    client["scalars"].export(str(target_json))
    doc = json.load(open(target_json))
    assert doc["contents"]["pi"]["data"] == ARRAYS["scalars/pi"].full().tolist()
