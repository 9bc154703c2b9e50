"""Connecting and browsing the demo tree with the upstream client."""

import numpy as np
import pytest

from demo_values import (
    ARRAYS,
    CONTAINERS,
    MANY,
    METADATA_DESCRIPTION_CONTAINERS,
    TABLES,
)


def test_connect_root_is_container(client):
    assert client.structure_family == "container"
    assert dict(client.metadata) == {"description": "tiled-rs demo tree"}
    assert list(client.specs) == []


def test_root_keys_in_order(client):
    assert list(client) == CONTAINERS[""]
    assert len(client) == len(CONTAINERS[""])


def test_about_document(client):
    info = client.context.server_info
    assert info.api_version == 0
    assert "application/octet-stream" in client["dtypes/float64"].formats
    assert "application/vnd.apache.arrow.file" in client["tables/short_table"].formats


@pytest.mark.parametrize("path", METADATA_DESCRIPTION_CONTAINERS)
def test_container_description_metadata(client, path):
    md = dict(client[path].metadata)
    assert isinstance(md.get("description"), str) and md["description"]


def _walk(node, path, seen):
    """Recursively compare the tree below `node` with docs/demo.md."""
    family = node.structure_family
    if path in CONTAINERS:
        assert family == "container", path
        # items() pages through search results and builds child clients.
        items = list(node.items())
        keys = [k for k, _ in items]
        assert keys == CONTAINERS[path], f"keys of {path or '/'} differ"
        seen.add(path)
        for key, child in items:
            _walk(child, f"{path}/{key}".lstrip("/"), seen)
    elif path in ARRAYS:
        spec = ARRAYS[path]
        assert family == "array", path
        assert tuple(node.shape) == spec.shape, path
        assert node.dtype == spec.dtype, path
        assert tuple(tuple(c) for c in node.chunks) == spec.chunks, path
        assert (list(node.dims) if node.dims is not None else None) == spec.dims, path
        seen.add(path)
    elif path in TABLES:
        spec = TABLES[path]
        assert family == "table", path
        structure = node.structure()
        assert list(structure.columns) == spec["columns"], path
        assert structure.npartitions == spec["npartitions"], path
        seen.add(path)
    else:
        pytest.fail(f"unexpected node {path!r} ({family})")


def test_walk_whole_tree(client):
    seen = set()
    _walk(client, "", seen)
    expected = set(CONTAINERS) | set(ARRAYS) | set(TABLES)
    assert seen == expected


def test_getitem_with_slash_path(client):
    node = client["nested/images/small_image"]
    assert node.shape == (300, 300)
    assert client["nested"]["images"]["small_image"].shape == (300, 300)
    assert client["nested", "images", "small_image"].shape == (300, 300)


def test_missing_key_raises_keyerror(client):
    with pytest.raises(KeyError):
        client["nope"]
    with pytest.raises(KeyError):
        client["nested/images/nope"]


@pytest.mark.parametrize("k", [0, 1, 7, 20, 35, 60, 999])
def test_many_child_metadata_and_specs(client, k):
    entry = MANY[k]
    node = client["many"][entry["key"]]
    assert dict(node.metadata) == entry["metadata"]
    assert [s.name for s in node.specs] == entry["specs"]
    assert all(s.version is None for s in node.specs)
    assert node.structure_family == entry["family"]


def test_many_metadata_via_values_page(client):
    # Metadata delivered in search pages (not per-node GETs) must match too.
    for key, node in client["many"].items()[:40]:
        k = int(key.split("_")[1])
        assert dict(node.metadata) == MANY[k]["metadata"]
        assert [s.name for s in node.specs] == MANY[k]["specs"]


def test_many_even_child_is_empty_container(client):
    node = client["many/item_0004"]
    assert node.structure_family == "container"
    assert len(node) == 0
    assert list(node) == []


@pytest.mark.parametrize("k", [1, 3, 501, 999])
def test_many_odd_child_array(client, k):
    node = client["many"]["item_%04d" % k]
    arr = node.read()
    assert arr.dtype == np.dtype("<i8")
    np.testing.assert_array_equal(arr, [k, k + 1, k + 2])


def test_access_tags_is_list(client):
    node = client["dtypes/float64"]
    assert list(node.access_tags) == []
    # metadata_copy() calls list() on access_tags
    copied = node.metadata_copy()
    assert len(copied) == 3
    assert copied[0] == dict(node.metadata)
    assert copied[2] == []


@pytest.mark.parametrize("path", ["nested/images/tiny_image", "dtypes/int8", "scalars/pi"])
def test_path_parts_and_uri(client, path):
    node = client[path]
    assert node.path_parts == path.split("/")
    assert node.uri.endswith("/api/v1/metadata/" + path)


def test_from_uri_api_url(public_server):
    from tiled.client import from_uri

    c = from_uri(f"{public_server.url}/api/v1")
    assert list(c) == CONTAINERS[""]


def test_from_uri_pointing_at_node(public_server):
    from tiled.client import from_uri

    node = from_uri(f"{public_server.url}/api/v1/metadata/nested/images")
    assert node.structure_family == "container"
    assert list(node) == CONTAINERS["nested/images"]
    np.testing.assert_array_equal(
        node["tiny_image"].read(), ARRAYS["nested/images/tiny_image"].full()
    )


def test_from_uri_pointing_at_array(public_server):
    from tiled.client import from_uri

    node = from_uri(f"{public_server.url}/api/v1/metadata/dtypes/int32")
    assert node.structure_family == "array"
    np.testing.assert_array_equal(node.read(), ARRAYS["dtypes/int32"].full())


def test_from_uri_include_data_sources(public_server):
    from tiled.client import from_uri

    c = from_uri(public_server.url, include_data_sources=True)
    np.testing.assert_array_equal(c["dtypes/uint8"].read(), ARRAYS["dtypes/uint8"].full())
