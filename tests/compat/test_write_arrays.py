"""Writing arrays through the upstream client against a catalog (`serve
catalog`): `write_array` creates an array node backed by Zarr v3 storage and
uploads its bytes (whole, or block by block), reads then see the values; and
the refusals (wrong length → 422, anonymous → 401)."""

import os
import uuid

import httpx
import numpy as np
import pytest

from conftest import API_KEY

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


def test_refusals_over_http(private_server, writer):
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


def test_deleting_an_array_removes_its_store(private_server, writer):
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    key = fresh_key()
    parent = writer.create_container(key)
    parent.write_array(np.ones((3, 3)), key="a")
    r = httpx.get(f"{private_server.api}/metadata/{key}/a", params={"include_data_sources": "true"},
                  headers={"Authorization": f"Apikey {API_KEY}"})
    (source,) = r.json()["data"]["attributes"]["data_sources"]
    assert source["management"] == "writable" and source["mimetype"] == "application/x-zarr"
    store = Path(unquote(urlparse(source["assets"][0]["data_uri"]).path))
    assert store.is_dir()
    writer[key].delete(recursive=True)
    assert key not in writer
    assert not store.exists()
