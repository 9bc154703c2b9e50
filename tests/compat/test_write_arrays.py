"""Writing arrays through the upstream client against a catalog (`serve
catalog`): `write_array` creates an array node backed by Zarr v3 storage and
uploads its bytes (whole, or block by block), reads then see the values; and
the refusals (wrong length → 422, anonymous → 401)."""

import os
import uuid

import httpx
import numpy as np
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
    return f"a_{uuid.uuid4().hex[:12]}"


def test_write_int32_and_read_back(writer):
    key = fresh_key()
    arr = np.arange(24, dtype="int32").reshape(4, 6)
    x = writer.write_array(arr, key=key, metadata={"color": "red"})
    assert x.shape == (4, 6)
    node = writer[key]
    assert dict(node.metadata) == {"color": "red"}
    assert node.dtype == np.dtype("int32")
    np.testing.assert_array_equal(node.read(), arr)
    assert node.structure().data_type.to_numpy_dtype() == np.dtype("int32")


def test_write_float64_and_slice(writer):
    key = fresh_key()
    arr = np.linspace(0, 1, 30).reshape(5, 6)
    writer.write_array(arr, key=key)
    node = writer[key]
    np.testing.assert_array_equal(node.read(), arr)
    np.testing.assert_array_equal(node[1:4, ::2], arr[1:4, ::2])
    np.testing.assert_array_equal(node.read(slice=(2,)), arr[2])


def test_write_uint8_and_bool(writer):
    key = fresh_key()
    arr = (np.arange(100) % 256).astype("uint8").reshape(10, 10)
    writer.write_array(arr, key=key)
    np.testing.assert_array_equal(writer[key].read(), arr)

    key = fresh_key()
    flags = np.array([True, False, True, True])
    writer.write_array(flags, key=key)
    np.testing.assert_array_equal(writer[key].read(), flags)


def test_overwrite_is_visible(writer):
    key = fresh_key()
    arr = np.zeros((3, 3), dtype="float32")
    x = writer.write_array(arr, key=key)
    np.testing.assert_array_equal(writer[key].read(), arr)
    x.write(arr + 7)
    np.testing.assert_array_equal(writer[key].read(), arr + 7)


def test_write_blocks_via_new(writer):
    from tiled.structures.array import ArrayStructure
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource

    key = fresh_key()
    arr = np.arange(20, dtype="int64").reshape(4, 5) * 3
    structure = ArrayStructure.from_array(arr, chunks=((2, 2), (3, 2)))
    x = writer.new(
        StructureFamily.array,
        [DataSource(structure=structure, structure_family=StructureFamily.array)],
        key=key,
        metadata={"blocks": True},
    )
    # Unwritten blocks read as the fill value (0).
    np.testing.assert_array_equal(writer[key].read(), np.zeros_like(arr))
    x.write_block(arr[:2, :3], block=(0, 0))
    x.write_block(arr[:2, 3:], block=(0, 1))
    x.write_block(arr[2:, :3], block=(1, 0))
    partial = np.zeros_like(arr)
    partial[:2, :] = arr[:2, :]
    partial[2:, :3] = arr[2:, :3]
    np.testing.assert_array_equal(writer[key].read(), partial)
    x.write_block(arr[2:, 3:], block=(1, 1))
    node = writer[key]
    assert node.chunks == ((2, 2), (3, 2))
    np.testing.assert_array_equal(node.read(), arr)
    np.testing.assert_array_equal(node.read_block((1, 1)), arr[2:, 3:])


def test_write_array_dask_chunks(writer):
    import dask.array

    key = fresh_key()
    arr = np.arange(36, dtype="float32").reshape(6, 6)
    writer.write_array(dask.array.from_array(arr, chunks=(4, 3)), key=key)
    node = writer[key]
    assert node.chunks == ((4, 2), (3, 3))
    np.testing.assert_array_equal(node.read(), arr)


def test_refusals_over_http(private_server, public_server, writer):
    api = private_server.api
    h = {"Authorization": f"Apikey {API_KEY}"}
    key = fresh_key()
    writer.write_array(np.arange(6, dtype="int32"), key=key)
    octet = {**h, "Content-Type": "application/octet-stream"}

    # Wrong length → 422.
    r = httpx.put(f"{api}/array/full/{key}", content=b"\x00" * 5, headers=octet)
    assert r.status_code == 422, r.text
    assert "detail" in r.json()
    # Block out of range → 4xx.
    r = httpx.put(f"{api}/array/block/{key}?block=3", content=b"\x00" * 24, headers=octet)
    assert 400 <= r.status_code < 500, r.text
    # Anonymous → 401.
    r = httpx.put(
        f"{api}/array/full/{key}",
        content=b"\x00" * 24,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 401, r.text
    # Anonymous readers of a public catalog are told the scope a write needs.
    r = httpx.put(f"{public_server.api}/array/full/{key}", content=b"\x00" * 24,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 401 and "write:data" in r.json()["detail"], r.text
    # The right length works and answers null.
    data = np.array([5, 4, 3, 2, 1, 0], dtype="int32")
    r = httpx.put(f"{api}/array/full/{key}", content=data.tobytes(), headers=octet)
    assert r.status_code == 200, r.text
    assert r.json() is None
    np.testing.assert_array_equal(writer[key].read(), data)

    # A duplicate key → 409, and the node keeps its data.
    with pytest.raises(Exception):
        writer.write_array(np.ones(6, dtype="int32"), key=key)
    np.testing.assert_array_equal(writer[key].read(), data)

    # Irregular chunks → 4xx.
    body = {
        "id": fresh_key(),
        "structure_family": "array",
        "metadata": {},
        "specs": [],
        "access_tags": None,
        "data_sources": [
            {
                "structure_family": "array",
                "structure": {
                    "data_type": {"endianness": "little", "kind": "i", "itemsize": 4,
                                  "dt_units": None},
                    "chunks": [[1, 3]],
                    "shape": [4],
                    "dims": None,
                    "resizable": False,
                },
                "id": None,
                "mimetype": None,
                "parameters": {},
                "properties": {},
                "assets": [],
                "management": "writable",
            }
        ],
    }
    r = httpx.post(f"{api}/metadata/", json=body, headers=h)
    assert r.status_code in (400, 422), r.text
    # Writing into a container (no writable array storage) is refused.
    container = fresh_key()
    writer.create_container(container)
    r = httpx.put(f"{api}/array/full/{container}", content=b"", headers=octet)
    assert 400 <= r.status_code < 500, r.text


def stored_objects(uri):
    """Whether anything is stored at an asset URI: a local path, or keys
    under an s3:// prefix of the loopback S3 server (listed over HTTP)."""
    from pathlib import Path
    from urllib.parse import parse_qs, unquote, urlparse

    u = urlparse(uri)
    if u.scheme == "file":
        return Path(unquote(u.path)).exists()
    assert u.scheme == "s3", uri
    storage = urlparse(os.environ["TILED_TEST_WRITABLE_STORAGE"])
    endpoint = parse_qs(storage.query)["endpoint"][0]
    r = httpx.get(f"{endpoint}/{u.netloc}", params={"list-type": "2", "prefix": u.path.lstrip("/")})
    r.raise_for_status()
    return "<Key>" in r.text


def test_deleting_an_array_removes_its_store(private_server, writer):
    key = fresh_key()
    parent = writer.create_container(key)
    parent.write_array(np.ones((3, 3)), key="a")
    parent.write_table({"x": [1, 2]}, key="t")
    uris = []
    for child in ("a", "t"):
        r = httpx.get(f"{private_server.api}/metadata/{key}/{child}",
                      params={"include_data_sources": "true"},
                      headers={"Authorization": f"Apikey {API_KEY}"})
        (source,) = r.json()["data"]["attributes"]["data_sources"]
        assert source["management"] == "writable"
        uris += [a["data_uri"] for a in source["assets"]]
    assert any("zarr" in u for u in uris) and any("parquet" in u for u in uris)
    assert all(stored_objects(u) for u in uris if "parquet" in u or "zarr" in u)
    # As upstream: deleting data the server stores needs external_only=False
    # (the client sends external_only=True by default) → 409 otherwise.
    with pytest.raises(Exception, match="external_only=False"):
        writer[key].delete(recursive=True)
    assert key in writer and all(stored_objects(u) for u in uris if "zarr" in u)
    writer[key].delete(recursive=True, external_only=False)
    assert key not in writer
    assert not any(stored_objects(u) for u in uris)


def test_patch_extends_and_409_without_extend(private_server, writer):
    key = fresh_key()
    arr = np.ones((3, 2, 2))
    x = writer.write_array(arr, key=key)
    # Inside the shape: no extend needed.
    x.patch(np.full((1, 2, 2), 5.0), offset=(1,))
    expected = arr.copy()
    expected[1] = 5
    np.testing.assert_array_equal(writer[key].read(), expected)
    # Past the end without extend: the client's ValueError (server 409).
    with pytest.raises(ValueError, match="extend=true"):
        x.patch(np.zeros((1, 2, 2)), offset=(3,))
    assert writer[key].shape == (3, 2, 2)
    # With extend the array grows, keeps its data and reads the new rows.
    x.patch(np.full((2, 2, 2), 7.0), offset=(3,), extend=True)
    node = writer[key]
    assert node.shape == (5, 2, 2)
    assert node.chunks == ((3, 2), (2,), (2,))
    np.testing.assert_array_equal(
        node.read(), np.concatenate([expected, np.full((2, 2, 2), 7.0)])
    )
    # The raw response is the new structure; short offsets pad with zeros.
    h = {"Authorization": f"Apikey {API_KEY}", "Content-Type": "application/octet-stream"}
    r = httpx.patch(
        f"{private_server.api}/array/full/{key}",
        params={"offset": "6", "shape": "1,2,2", "extend": "true"},
        content=np.full((1, 2, 2), 9.0).tobytes(),
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["shape"] == [7, 2, 2]
    assert r.json()["chunks"] == [[3, 3, 1], [2], [2]]
    got = writer[key].read()
    np.testing.assert_array_equal(got[5], np.zeros((2, 2)))
    np.testing.assert_array_equal(got[6], np.full((2, 2), 9.0))
    r = httpx.patch(
        f"{private_server.api}/array/full/{key}",
        params={"offset": "8", "shape": "1,2,2"},
        content=np.zeros((1, 2, 2)).tobytes(),
        headers=h,
    )
    assert r.status_code == 409 and "Use ?extend=true" in r.json()["detail"], r.text
    r = httpx.patch(
        f"{private_server.api}/array/full/{key}",
        params={"offset": "8", "shape": "1,2,2", "extend": "true", "persist": "false"},
        content=np.zeros((1, 2, 2)).tobytes(),
        headers=h,
    )
    assert r.status_code == 400, r.text
    assert writer[key].shape == (7, 2, 2)


def test_append_frames_along_the_first_axis(writer):
    """Detector-style streaming: an array that starts with one frame and
    grows frame by frame."""
    key = fresh_key()
    frames = np.arange(5 * 4 * 3, dtype="uint16").reshape(5, 4, 3)
    x = writer.write_array(frames[:1], key=key)
    for i in range(1, 5):
        x.patch(frames[i : i + 1], offset=(i,), extend=True)
    np.testing.assert_array_equal(writer[key].read(), frames)


ALL_DTYPES = [
    np.arange(12, dtype="int8"),
    np.arange(12, dtype="int16") - 6,
    np.arange(12, dtype="uint32") * 1000,
    np.arange(12, dtype="int64") - 2**40,
    np.arange(12, dtype="uint64") + 2**63,
    np.linspace(-1, 1, 12).astype("float16"),
    np.linspace(-1, 1, 12).astype("float32"),
    np.linspace(-1, 1, 12),
    (np.arange(12) + 1j * np.arange(12)).astype("complex64"),
    np.arange(12) - 0.5j * np.arange(12),
    np.arange(12) % 3 == 0,
    np.arange(12, dtype=">i4"),
    np.linspace(0, 1, 12).astype(">f8"),
    np.datetime64("2024-01-02T03:04:05", "ns") + np.arange(12).astype("timedelta64[s]"),
    np.arange(12).astype("timedelta64[ms]") * 7,
    np.array([f"s{i}" for i in range(12)], dtype="S4"),
    np.array([f"ü{i}" for i in range(12)], dtype="<U3"),
    np.array([(i, i / 2) for i in range(12)], dtype=[("a", "<i4"), ("b", "<f8")]),
]


@pytest.mark.parametrize("arr", ALL_DTYPES, ids=lambda a: str(a.dtype))
def test_every_dtype_round_trips(writer, arr):
    from tiled.structures.array import ArrayStructure
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource

    key = fresh_key()
    if arr.dtype.fields:
        # The client's write_array describes records as opaque bytes
        # (BuiltinDtype); new() with ArrayStructure.from_array keeps fields.
        x = writer.new(
            StructureFamily.array,
            [
                DataSource(
                    structure=ArrayStructure.from_array(arr.reshape(3, 4)),
                    structure_family=StructureFamily.array,
                )
            ],
            key=key,
        )
        x.write(arr.reshape(3, 4))
    else:
        writer.write_array(arr.reshape(3, 4), key=key)
    node = writer[key]
    got = node.read()
    assert got.dtype == arr.dtype
    np.testing.assert_array_equal(got, arr.reshape(3, 4))
    np.testing.assert_array_equal(node[1:, ::2], arr.reshape(3, 4)[1:, ::2])


def test_concurrent_writers_never_interleave(writer):
    """8 threads overwrite the same array (whole, and block by block) at
    once: the result is always one writer's array, never a mix."""
    key = fresh_key()
    shape = (64, 64)
    x = writer.write_array(np.zeros(shape), key=key)
    from tiled.structures.array import ArrayStructure
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import DataSource

    def whole(w):
        for i in range(5):
            x.write(np.full(shape, float(w * 100 + i)))

    run_concurrently(whole)
    got = writer[key].read()
    assert len(np.unique(got)) == 1, np.unique(got)

    # Blocks: each writer fills every block with its own value; every block
    # ends whole (one writer's), since a block is replaced atomically.
    key = fresh_key()
    arr = np.zeros((4, 4), dtype="int32")
    y = writer.new(
        StructureFamily.array,
        [DataSource(structure=ArrayStructure.from_array(arr, chunks=((2, 2), (2, 2))),
                    structure_family=StructureFamily.array)],
        key=key,
    )

    def blocks(w):
        for b in [(0, 0), (0, 1), (1, 0), (1, 1)] * 3:
            y.write_block(np.full((2, 2), w + 1, dtype="int32"), block=b)

    run_concurrently(blocks)
    got = writer[key].read()
    for i in (0, 2):
        for j in (0, 2):
            block = got[i : i + 2, j : j + 2]
            assert len(np.unique(block)) == 1 and block[0, 0] > 0, got


def test_revalidation_after_a_write_gets_the_new_data(writer, private_server):
    """An ETag from before a write must not earn a 304 after it: the
    cached body would be stale."""
    key = fresh_key()
    x = writer.write_array(np.arange(4, dtype="int64"), key=key)
    url = f"{private_server.api}/array/full/{key}"
    auth = {"Authorization": f"Apikey {API_KEY}"}
    before = httpx.get(url, headers=auth)
    assert before.status_code == 200 and "etag" in before.headers
    x.write(np.array([9, 9, 9, 9]))
    again = httpx.get(url, headers={**auth, "If-None-Match": before.headers["etag"]})
    assert again.status_code == 200, again.status_code
    assert np.frombuffer(again.content, dtype="<i8").tolist() == [9, 9, 9, 9]
