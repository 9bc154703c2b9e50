"""`tiled serve directory`: files written by the reference libraries (h5py,
zarr-python, netCDF4, tifffile, pandas, pyarrow, openpyxl, numpy, Pillow)
read back through the upstream client must equal what the libraries read
themselves."""

import os
import time

import numpy as np
import pandas as pd
import pytest

from conftest import Server

pytestmark = pytest.mark.skipif(
    os.environ.get("TILED_COMPAT_TREE", "demo") != "demo",
    reason="serves its own directory; runs once, with the demo pass",
)

H5_FRAMES = np.arange(4 * 64 * 48, dtype="uint16").reshape(4, 64, 48) * 7 % 65535


def write_fixtures(d):
    import h5py
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq
    import tifffile
    from PIL import Image

    (d / "sub" / "deeper").mkdir(parents=True)
    (d / ".hidden").mkdir()
    (d / ".hidden" / "x.csv").write_text("a\n1\n")
    (d / ".secret.csv").write_text("a\n1\n")
    (d / "notes.txt").write_text("not data")
    (d / "broken.h5").write_bytes(b"this is not HDF5 at all")

    # HDF5: groups, attributes, chunked compressed data, several dtypes.
    with h5py.File(d / "scan.h5", "w") as f:
        f.attrs["title"] = "a scan"
        f.attrs["energy"] = 12.5
        entry = f.create_group("entry")
        entry.attrs["sample"] = "silicon"
        entry.attrs["temps"] = np.array([290.0, 291.5])
        entry.create_dataset("frames", data=H5_FRAMES, chunks=(1, 64, 48), compression="gzip")
        entry.create_dataset("x", data=np.linspace(0, 1, 50))
        f.create_dataset("counts", data=np.arange(10, dtype="int32"))

    # TIFF: one page, a multi-page stack, and a numbered sequence.
    tifffile.imwrite(d / "single.tif", np.arange(30 * 20, dtype="uint16").reshape(30, 20))
    tifffile.imwrite(d / "stack.tiff", (np.arange(5 * 16 * 8, dtype="float32").reshape(5, 16, 8) / 3))
    for i in [1, 2, 10]:  # natural order: 1, 2, 10
        tifffile.imwrite(d / "sub" / f"img_{i}.tif", np.full((8, 6), i, dtype="uint8"))

    # Images.
    Image.fromarray((np.arange(12 * 10) % 256).astype("uint8").reshape(12, 10)).save(d / "gray.png")
    rgb = np.stack([np.arange(8 * 9).reshape(8, 9) % 256 + k for k in range(3)], -1).astype("uint8")
    Image.fromarray(rgb).save(d / "rgb.png")
    Image.fromarray(rgb).save(d / "photo.jpg", quality=95)
    Image.fromarray((np.arange(16 * 24) % 200).astype("uint8").reshape(16, 24)).save(d / "mono.jpeg", quality=95)

    # NPY.
    np.save(d / "matrix.npy", np.arange(6 * 7, dtype=">f8").reshape(6, 7))
    np.save(d / "sub" / "deeper" / "flags.npy", np.array([True, False, True]))

    # Tables.
    df = pd.DataFrame({"i": np.arange(20), "x": np.arange(20) * 0.5, "s": [f"row {k}" for k in range(20)]})
    df.to_csv(d / "table.csv", index=False)
    df.to_csv(d / "sub" / "tabbed.tsv", index=False, sep="\t")
    pq.write_table(pa.Table.from_pandas(df), d / "groups.parquet", row_group_size=7)
    feather.write_feather(df, d / "frame.arrow")
    with pd.ExcelWriter(d / "book.xlsx") as w:
        df.to_excel(w, sheet_name="first", index=False)
        df[["x"]].to_excel(w, sheet_name="second", index=False)
    write_zarr(d)
    write_netcdf(d / "weather.nc")
    return df


ZARR_CUBE = (np.arange(6 * 10 * 8, dtype="int32").reshape(6, 10, 8) * 3) - 100


def write_zarr(d):
    import numcodecs
    import zarr

    # v3 with zstd and a sharded array; v2 with blosc.
    root = zarr.open_group(d / "store.zarr", mode="w", zarr_format=3)
    root.attrs["instrument"] = "zarr bench"
    cube = root.create_array("cube", shape=ZARR_CUBE.shape, chunks=(2, 5, 4), dtype="int32",
                             compressors=zarr.codecs.ZstdCodec())
    cube[:] = ZARR_CUBE
    cube.attrs["units"] = "counts"
    nested = root.create_group("nested")
    sharded = nested.create_array("sharded", shape=(8, 12), chunks=(2, 3), shards=(4, 6), dtype="float64")
    sharded[:] = np.arange(96, dtype="float64").reshape(8, 12) / 4
    v2 = zarr.open_group(d / "old.zarr", mode="w", zarr_format=2)
    arr = v2.create_array("values", shape=(30,), chunks=(7,), dtype="<u2",
                          compressors=numcodecs.Blosc(cname="lz4", clevel=5))
    arr[:] = np.arange(30, dtype="<u2") * 11


def write_netcdf(path):
    import netCDF4

    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.title = "weather"
        ds.version = 3
        ds.createDimension("time", 5)
        ds.createDimension("x", 4)
        t = ds.createVariable("time", "f8", ("time",))
        t.long_name = "seconds since start"
        t[:] = np.arange(5) * 60.0
        x = ds.createVariable("x", "f8", ("x",))
        x.long_name = "position"
        x[:] = np.linspace(0, 1.5, 4)
        temp = ds.createVariable("temperature", "f8", ("time", "x"), chunksizes=(1, 4))
        temp.long_name = "air temperature"
        temp[:] = np.arange(20, dtype="f8").reshape(5, 4) + 273.15
        counts = ds.createVariable("counts", "i4", ("x",))
        counts[:] = [3, 1, 4, 1]
        # Packed and masked, as CF files often are: xarray (and so upstream)
        # serves `stored * scale_factor + add_offset`, fill values as NaN.
        packed = ds.createVariable("packed", "i2", ("time", "x"), fill_value=-32767)
        packed.scale_factor = np.float32(0.5)
        packed.add_offset = np.float32(100.0)
        packed.set_auto_maskandscale(False)
        raw = (np.arange(20, dtype="i2").reshape(5, 4) * 3)
        raw[1, 2] = -32767
        packed[:] = raw
        masked = ds.createVariable("masked", "f4", ("x",), fill_value=np.float32(-1.0))
        masked.set_auto_mask(False)
        masked[:] = np.array([1.5, -1.0, 2.5, 3.5], dtype="f4")


EXPECTED_TOP = {"scan", "single", "stack", "gray", "rgb", "photo", "mono", "matrix", "table", "groups", "frame", "book", "sub", "broken",
                "store", "old", "weather"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("served")
    df = write_fixtures(d)
    started = time.monotonic()
    server = Server(["--public"], tree_args=["directory", str(d)])
    from tiled.client import from_uri

    client = from_uri(server.url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if EXPECTED_TOP <= set(client) and {"img_", "tabbed", "deeper"} <= set(client["sub"]):
                if "flags" in client["sub"]["deeper"]:
                    break
        except KeyError:
            pass
        time.sleep(0.1)
    yield {"client": client, "dir": d, "df": df, "server": server, "ready_s": time.monotonic() - started}
    server.stop()


def test_mapping_of_files_to_keys(served):
    c = served["client"]
    assert set(c) == EXPECTED_TOP  # hidden files, .txt skipped; extensions stripped
    assert set(c["sub"]) == {"img_", "tabbed", "deeper"}
    assert c["sub"]["img_"].structure_family == "array"
    assert c["table"].structure_family == "table"
    assert c["book"].structure_family == "container"
    assert set(c["book"]) == {"first", "second"}


def test_unreadable_file_is_an_error_node(served):
    node = served["client"]["broken"]
    assert node.structure_family == "container"
    assert "error" in node.metadata
    assert len(node) == 0


def test_hdf5_tree_attributes_and_values(served):
    import h5py

    c = served["client"]["scan"]
    assert set(c) == {"entry", "counts"}
    assert c.metadata["title"] == "a scan"
    assert c.metadata["energy"] == 12.5
    entry = c["entry"]
    assert entry.metadata["sample"] == "silicon"
    assert entry.metadata["temps"] == [290.0, 291.5]
    assert "title" not in entry.metadata  # root attributes are not copied down
    with h5py.File(served["dir"] / "scan.h5") as f:
        frames = f["entry/frames"][()]
        np.testing.assert_array_equal(entry["frames"].read(), frames)
        np.testing.assert_array_equal(entry["frames"][2, 10:20, ::3], frames[2, 10:20, ::3])
        np.testing.assert_array_equal(entry["frames"][:, 5, -4:], frames[:, 5, -4:])
        np.testing.assert_array_equal(entry["x"].read(), f["entry/x"][()])
        got = c["counts"].read()
        assert got.dtype == np.dtype("int32")
        np.testing.assert_array_equal(got, f["counts"][()])
    assert entry["frames"].structure().chunks[0] == (1, 1, 1, 1)  # the file's chunking


def test_tiff_single_stack_and_sequence(served):
    import tifffile

    c = served["client"]
    d = served["dir"]
    np.testing.assert_array_equal(c["single"].read(), tifffile.imread(d / "single.tif"))
    stack = tifffile.imread(d / "stack.tiff")
    np.testing.assert_array_equal(c["stack"].read(), stack)
    np.testing.assert_array_equal(c["stack"][3, 2:9, ::2], stack[3, 2:9, ::2])
    seq = c["sub"]["img_"].read()
    assert seq.shape == (3, 8, 6)
    assert [int(seq[i, 0, 0]) for i in range(3)] == [1, 2, 10]


def test_png_and_npy(served):
    from PIL import Image

    c = served["client"]
    d = served["dir"]
    np.testing.assert_array_equal(c["gray"].read(), np.asarray(Image.open(d / "gray.png")))
    np.testing.assert_array_equal(c["rgb"].read(), np.asarray(Image.open(d / "rgb.png")))
    want = np.load(d / "matrix.npy")
    got = c["matrix"].read()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(c["matrix"][1:5, ::-2], want[1:5, ::-2])
    np.testing.assert_array_equal(c["sub"]["deeper"]["flags"].read(), np.load(d / "sub" / "deeper" / "flags.npy"))


def test_jpeg_within_decoder_rounding(served):
    from PIL import Image

    c = served["client"]
    d = served["dir"]
    want = np.asarray(Image.open(d / "photo.jpg")).astype(int)
    got = c["photo"].read()
    assert got.shape == want.shape == (8, 9, 3) and got.dtype == np.uint8
    # Independent JPEG decoders may round the inverse DCT differently.
    assert np.abs(got.astype(int) - want).max() <= 2
    mono = c["mono"].read()
    want = np.asarray(Image.open(d / "mono.jpeg")).astype(int)
    assert mono.shape == want.shape == (16, 24)
    assert np.abs(mono.astype(int) - want).max() <= 2


def test_watch_picks_up_new_changed_and_removed_files(tmp_path):
    from tiled.client import from_uri

    d = tmp_path / "watched"
    d.mkdir()
    np.save(d / "first.npy", np.arange(3))
    server = Server(["--public"], tree_args=["directory", str(d), "--watch"])
    try:
        c = from_uri(server.url)

        def wait_for(predicate, what):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if predicate():
                    return
                time.sleep(0.1)
            raise AssertionError(f"not seen within 10 s: {what}")

        wait_for(lambda: set(c) == {"first"}, "the initial file")
        np.save(d / "second.npy", np.ones((2, 2)))
        wait_for(lambda: "second" in c, "a new file")
        np.testing.assert_array_equal(c["second"].read(), np.ones((2, 2)))
        np.save(d / "first.npy", np.arange(5) * 2)
        wait_for(lambda: c["first"].shape == (5,), "a changed file")
        np.testing.assert_array_equal(c["first"].read(), np.arange(5) * 2)
        (d / "second.npy").unlink()
        wait_for(lambda: set(c) == {"first"}, "a removed file")
    finally:
        server.stop()


def test_tables(served):
    c = served["client"]
    d = served["dir"]
    df = served["df"]
    pd.testing.assert_frame_equal(c["table"].read(), pd.read_csv(d / "table.csv"), check_dtype=False)
    pd.testing.assert_frame_equal(
        c["sub"]["tabbed"].read(), pd.read_csv(d / "sub" / "tabbed.tsv", sep="\t"), check_dtype=False
    )
    parquet = c["groups"]
    assert parquet.structure().npartitions == 3  # row groups of 7, 7, 6
    # The client concatenates partitions keeping each one's own index.
    whole = parquet.read().reset_index(drop=True)
    pd.testing.assert_frame_equal(whole, pd.read_parquet(d / "groups.parquet"), check_dtype=False)
    some = parquet.read(["s", "i"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(some, df[["s", "i"]], check_dtype=False)
    np.testing.assert_array_equal(parquet["x"].read(), df["x"].to_numpy())
    pd.testing.assert_frame_equal(c["frame"].read(), pd.read_feather(d / "frame.arrow"), check_dtype=False)
    first = c["book"]["first"].read()
    pd.testing.assert_frame_equal(first, pd.read_excel(d / "book.xlsx", sheet_name="first"), check_dtype=False)
    second = c["book"]["second"].read()
    pd.testing.assert_frame_equal(second, pd.read_excel(d / "book.xlsx", sheet_name="second"), check_dtype=False)


def test_zarr_v3_and_v2(served):
    import zarr

    c = served["client"]
    d = served["dir"]
    store = c["store"]
    assert set(store) == {"cube", "nested"}
    assert store.metadata["instrument"] == "zarr bench"
    cube = store["cube"]
    assert cube.metadata["units"] == "counts"
    want = zarr.open_array(d / "store.zarr" / "cube")[:]
    np.testing.assert_array_equal(cube.read(), want)
    np.testing.assert_array_equal(cube[1:5, ::3, -2:], want[1:5, ::3, -2:])
    sharded = zarr.open_array(d / "store.zarr" / "nested" / "sharded")[:]
    np.testing.assert_array_equal(store["nested"]["sharded"].read(), sharded)
    np.testing.assert_array_equal(store["nested"]["sharded"][3, 5:11], sharded[3, 5:11])
    old = zarr.open_array(d / "old.zarr" / "values")[:]
    np.testing.assert_array_equal(c["old"]["values"].read(), old)


def test_netcdf_is_an_xarray_dataset(served):
    import xarray

    c = served["client"]
    node = c["weather"]
    assert "xarray_dataset" in [s.name for s in node.specs]
    got = node.read()
    want = xarray.open_dataset(served["dir"] / "weather.nc")
    try:
        xarray.testing.assert_identical(got, want.load())
    finally:
        want.close()
    np.testing.assert_array_equal(node["temperature"][2:4, 1:], want_values(served))


def want_values(served):
    import netCDF4

    with netCDF4.Dataset(served["dir"] / "weather.nc") as ds:
        return ds["temperature"][2:4, 1:].data


def test_search_over_registered_files(served):
    from tiled.queries import Eq

    c = served["client"]
    assert list(c.search(Eq("title", "a scan"))) == ["scan"]
    hits = c["scan"].search(Eq("sample", "silicon"))
    assert list(hits) == ["entry"]


def test_register_then_serve_catalog(served, tmp_path):
    """`tiled register` writes the same nodes into a catalog database that
    `serve catalog --readable-storage` then serves."""
    import subprocess

    from conftest import TILED_BIN
    from tiled.client import from_uri

    db = tmp_path / "registered.db"
    uri = f"sqlite:///{db}"
    d = served["dir"]
    r = subprocess.run([str(TILED_BIN), "register", uri, str(d), "--prefix", "files"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "registered" in r.stderr
    server = Server(["--public"], tree_args=["catalog", uri, "--readable-storage", str(d)])
    try:
        c = from_uri(server.url)["files"]
        assert set(c) == EXPECTED_TOP
        np.testing.assert_array_equal(c["matrix"].read(), np.load(d / "matrix.npy"))
        pd.testing.assert_frame_equal(c["table"].read(), pd.read_csv(d / "table.csv"), check_dtype=False)
    finally:
        server.stop()


def test_register_through_a_running_server(served):
    """`tiled register http://server DIR`: the same walk, posted to the
    server's write API (`/register`), which serves the files from its
    readable storage."""
    import subprocess

    from conftest import TILED_BIN
    from tiled.client import from_uri

    d = served["dir"]
    key = "s3cretregister"
    server = Server(["--private", "--api-key", key],
                    tree_args=["catalog", "--temp", "--readable-storage", str(d)])
    try:
        env = {k: v for k, v in os.environ.items() if k != "TILED_API_KEY"}
        r = subprocess.run([str(TILED_BIN), "register", server.url, str(d), "--prefix", "files"],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode != 0 and "API key" in r.stderr, r.stderr
        r = subprocess.run([str(TILED_BIN), "register", server.url, str(d), "--prefix", "files",
                            "--api-key", key], capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        c = from_uri(server.url, api_key=key)["files"]
        assert set(c) == EXPECTED_TOP
        np.testing.assert_array_equal(c["matrix"].read(), np.load(d / "matrix.npy"))
        pd.testing.assert_frame_equal(c["table"].read(), pd.read_csv(d / "table.csv"), check_dtype=False)
        assert set(c["book"]) == {"first", "second"}
        assert "error" in c["broken"].metadata
        np.testing.assert_array_equal(c["sub"]["img_"].read(),
                                      served["client"]["sub"]["img_"].read())
    finally:
        server.stop()


def test_data_sources_are_shown_when_asked(served):
    import httpx

    api = served["server"].api
    body = httpx.get(f"{api}/metadata/matrix", params={"include_data_sources": "true"}).json()
    (source,) = body["data"]["attributes"]["data_sources"]
    assert source["mimetype"] == "application/x-npy"
    assert source["management"] == "external"
    assert source["structure_family"] == "array"
    assert source["structure"]["shape"] == [6, 7]
    (asset,) = source["assets"]
    assert asset["data_uri"].startswith("file://localhost/") and asset["data_uri"].endswith("/matrix.npy")
    assert asset["parameter"] == "data_uri" and asset["is_directory"] is False
    body = httpx.get(f"{api}/metadata/sub/img_", params={"include_data_sources": "true"}).json()
    (source,) = body["data"]["attributes"]["data_sources"]
    assert source["mimetype"] == "multipart/related;type=image/tiff"
    assert [(a["parameter"], a["num"]) for a in source["assets"]] == [("data_uris", 0), ("data_uris", 1), ("data_uris", 2)]
    assert [a["data_uri"].rsplit("/", 1)[1] for a in source["assets"]] == ["img_1.tif", "img_2.tif", "img_10.tif"]
    # Without the parameter, none are listed (upstream: null).
    body = httpx.get(f"{api}/metadata/matrix").json()
    assert body["data"]["attributes"]["data_sources"] is None
    # The upstream client asks for them with include_data_sources=True.
    from tiled.client import from_uri

    c = from_uri(served["server"].url, include_data_sources=True)
    (ds,) = c["table"].data_sources()
    assert ds.mimetype == "text/csv"
