"""Export formats decoded by independent libraries (pyarrow, xarray, json)
and compared with the values computed from the demo formulas. The array and
table export formats of the formats issue will add their tests here."""

import io
import json

import numpy as np
import pyarrow

from demo_values import ARRAYS


def fetch(http, url, **params):
    r = http.get(url, params=params)
    assert r.status_code == 200, (url, params, r.status_code, r.text[:300])
    return r


# ---------------------------------------------------------------- containers


def test_xarray_dataset_reads_back(client):
    import xarray

    from demo_values import XARRAY_ATTRS, XARRAY_COORDS, XARRAY_VAR_ATTRS

    ds = client["xarray"].read()
    assert isinstance(ds, xarray.Dataset)
    assert ds.attrs == XARRAY_ATTRS
    assert list(ds.coords) == XARRAY_COORDS
    for name, attrs in XARRAY_VAR_ATTRS.items():
        spec = ARRAYS[f"xarray/{name}"]
        np.testing.assert_array_equal(ds[name].values, spec.full(), err_msg=name)
        assert ds[name].dims == tuple(spec.dims), name
        assert ds[name].attrs == attrs, name


def test_container_fields_as_arrow(http):
    r = fetch(http, "container/full/xarray", format="application/vnd.apache.arrow.file", field=["temperature", "time"])
    table = pyarrow.ipc.open_file(r.content).read_all()
    assert table.column_names == ["temperature", "time"]
    np.testing.assert_array_equal(table["temperature"].to_numpy(), ARRAYS["xarray/temperature"].full())
    posted = http.post("container/full/xarray", params={"format": "arrow"}, json=["pressure"])
    assert posted.status_code == 200
    np.testing.assert_array_equal(
        pyarrow.ipc.open_file(posted.content).read_all()["pressure"].to_numpy(), ARRAYS["xarray/pressure"].full()
    )
    assert http.get("container/full/xarray", params={"format": "arrow", "field": "image"}).status_code == 406
    assert http.get("container/full/xarray", params={"format": "arrow", "field": "nope"}).status_code == 400


def test_container_json_tree(http):
    from demo_values import CONTAINERS

    doc = fetch(http, "container/full/dtypes", format="json").json()
    assert list(doc["contents"]) == CONTAINERS["dtypes"]
    assert doc["contents"]["int16"]["data"] == ARRAYS["dtypes/int16"].full().tolist()
    assert doc["metadata"]["description"]
    only = fetch(http, "container/full/dtypes", format="json", field=["int8"]).json()
    assert list(only["contents"]) == ["int8"]
    big = fetch(http, "container/full/nested/images", format="json").json()
    assert big["contents"]["big_image"]["data"] is None


def test_client_export_container(client, tmp_path):
    target = tmp_path / "c.json"
    client["nested/cubes"].export(str(target), format="application/json")
    doc = json.loads(target.read_text())
    assert list(doc["contents"]) == ["tiny_cube", "tiny_hypercube"]
