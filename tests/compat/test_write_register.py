"""Registering external files through the upstream client: `new()` with a
data source that has assets (what `Container.register()` builds; the
client then posts to `/register/...`). The catalog records the files
(management `external`) and serves them; files outside the server's
readable storage, and data the server cannot read, are refused.

(`Container.register()` itself needs the server-side extras of the
client package, e.g. sqlalchemy, so the suite builds the same data source
by hand.)"""

import os
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from conftest import API_KEY, READABLE_DIR

pytestmark = pytest.mark.skipif(
    os.environ.get("TILED_COMPAT_TREE", "demo") not in ("catalog", "postgres"),
    reason="registration needs a catalog tree",
)


@pytest.fixture(scope="module")
def writer(private_server):
    from tiled.client import from_uri

    return from_uri(private_server.url, api_key=API_KEY)


def fresh(name):
    return f"{name}_{uuid.uuid4().hex[:10]}"


def register(writer, family, structure, mimetype, paths, key, **kw):
    from tiled.structures.data_source import Asset, DataSource, Management

    many = len(paths) > 1
    assets = [
        Asset(
            data_uri=Path(p).as_uri(),
            is_directory=False,
            parameter="data_uris" if many else "data_uri",
            num=i if many else None,
        )
        for i, p in enumerate(paths)
    ]
    source = DataSource(
        structure_family=family,
        mimetype=mimetype,
        structure=structure,
        parameters={},
        management=Management.external,
        assets=assets,
    )
    return writer.new(family, [source], key=key, **kw)


def test_register_csv(writer, private_server):
    from tiled.structures.table import TableStructure

    path = Path(READABLE_DIR) / f"{fresh('table')}.csv"
    df = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5]})
    df.to_csv(path, index=False)
    key = fresh("csv")
    register(writer, "table", TableStructure.from_pandas(df), "text/csv", [path], key,
             metadata={"source": "csv"})
    got = writer[key].read()
    assert list(got["a"]) == [1, 2, 3]
    assert list(got["b"]) == [0.5, 1.5, 2.5]
    assert writer[key].metadata["source"] == "csv"
    r = httpx.get(f"{private_server.api}/metadata/{key}", params={"include_data_sources": "true"},
                  headers={"Authorization": f"Apikey {API_KEY}"})
    (source,) = r.json()["data"]["attributes"]["data_sources"]
    assert source["management"] == "external"
    assert source["mimetype"] == "text/csv"
    # Deleting the node leaves an external file in place.
    writer[key].delete()
    assert path.exists()


def test_register_tiff_sequence(writer):
    tifffile = pytest.importorskip("tifffile")
    from tiled.structures.array import ArrayStructure

    frames = np.arange(3 * 8 * 6, dtype="uint16").reshape(3, 8, 6)
    stem = fresh("img")
    paths = []
    for i, f in enumerate(frames):
        p = Path(READABLE_DIR) / f"{stem}_{i:03}.tif"
        tifffile.imwrite(p, f)
        paths.append(p)
    key = fresh("tiffs")
    structure = ArrayStructure.from_array(frames, chunks=((1, 1, 1), (8,), (6,)))
    register(writer, "array", structure, "multipart/related;type=image/tiff", paths, key)
    np.testing.assert_array_equal(writer[key].read(), frames)
    np.testing.assert_array_equal(writer[key][1, 2:5], frames[1, 2:5])


def test_refusals(writer, tmp_path):
    from tiled.structures.table import TableStructure

    df = pd.DataFrame({"a": [1]})
    outside = tmp_path / "outside.csv"
    df.to_csv(outside, index=False)
    key = fresh("outside")
    with pytest.raises(Exception) as info:
        register(writer, "table", TableStructure.from_pandas(df), "text/csv", [outside], key)
    assert "readable storage" in str(info.value)
    assert key not in writer
    # A file that is not what the mimetype says is refused, and no node stays.
    broken = Path(READABLE_DIR) / f"{fresh('broken')}.tif"
    broken.write_bytes(b"not a tiff")
    key = fresh("broken")
    from tiled.structures.array import ArrayStructure

    with pytest.raises(Exception) as info:
        register(writer, "array", ArrayStructure.from_array(np.zeros((2, 2), "uint8")),
                 "image/tiff", [broken], key)
    assert "cannot be read" in str(info.value)
    assert key not in writer
