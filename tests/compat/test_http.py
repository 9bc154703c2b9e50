"""Wire-level checks with raw httpx (no tiled client), against the public server."""

import gzip
import os
import io
import json

import msgpack
import numpy as np
import pyarrow
import pytest

from demo_values import ARRAYS, CONTAINERS, MANY_KEYS, table_frame


def assert_json_error(r, status):
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/json"
    detail = r.json()["detail"]
    assert detail
    return detail


# --------------------------------------------------------------------------
# Envelope and links
# --------------------------------------------------------------------------


def test_about(http):
    r = http.get("/")
    assert r.status_code == 200
    body = r.json()
    for key in ("api_version", "library_version", "formats", "aliases", "queries", "authentication", "links", "meta"):
        assert key in body
    assert body["links"]["self"].endswith("/api/v1")
    for family in ("array", "table", "container"):
        assert family in body["formats"]


def test_healthz(public_server):
    import httpx

    r = httpx.get(f"{public_server.url}/healthz", trust_env=False)
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


def test_metadata_envelope_array(http, api):
    r = http.get("/metadata/nested/images/small_image")
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"data", "error", "links", "meta"}
    assert body["error"] is None
    data = body["data"]
    assert data["id"] == "small_image"
    attrs = data["attributes"]
    assert attrs["ancestors"] == ["nested", "images"]
    assert attrs["structure_family"] == "array"
    assert attrs["specs"] == []
    assert attrs["access_tags"] == []
    assert isinstance(attrs["metadata"], dict)
    structure = attrs["structure"]
    assert structure["shape"] == [300, 300]
    assert structure["chunks"] == [[100, 100, 100], [100, 100, 100]]
    assert structure["dims"] == ["y", "x"]
    assert structure["resizable"] is False
    assert structure["data_type"] == {"endianness": "little", "kind": "f", "itemsize": 8, "dt_units": None}
    links = data["links"]
    assert links["self"] == f"{api}/metadata/nested/images/small_image"
    assert links["full"] == f"{api}/array/full/nested/images/small_image"
    assert links["block"] == f"{api}/array/block/nested/images/small_image?block={{0}},{{1}}"


@pytest.mark.parametrize(
    "path, suffix",
    [
        ("dtypes/int8", "?block={0}"),
        ("nested/cubes/tiny_hypercube", "?block={0},{1},{2},{3},{4}"),
        ("scalars/pi", "?block="),
    ],
)
def test_block_link_templates(http, api, path, suffix):
    links = http.get(f"/metadata/{path}").json()["data"]["links"]
    assert links["block"] == f"{api}/array/block/{path}{suffix}"


def test_scalar_structure(http):
    structure = http.get("/metadata/scalars/answer").json()["data"]["attributes"]["structure"]
    assert structure["shape"] == []
    assert structure["chunks"] == []
    assert structure["data_type"]["kind"] == "i"
    assert structure["data_type"]["itemsize"] == 8


def test_container_and_table_links(http, api):
    data = http.get("/metadata/nested").json()["data"]
    assert data["attributes"]["structure_family"] == "container"
    assert data["attributes"]["structure"]["count"] == 2
    assert data["links"]["search"] == f"{api}/search/nested"
    assert data["links"]["full"] == f"{api}/container/full/nested"
    data = http.get("/metadata/tables/long_table").json()["data"]
    assert data["links"]["partition"] == f"{api}/table/partition/tables/long_table?partition={{index}}"
    assert data["links"]["full"] == f"{api}/table/full/tables/long_table"
    structure = data["attributes"]["structure"]
    assert structure["npartitions"] == 5
    assert structure["columns"] == ["i", "x", "label", "flag", "time"]
    assert structure["arrow_schema"].startswith("data:application/vnd.apache.arrow.file;base64,")


def test_root_metadata(http):
    data = http.get("/metadata/").json()["data"]
    assert data["id"] == ""
    assert data["attributes"]["ancestors"] == []
    assert data["attributes"]["metadata"] == {"description": "tiled-rs demo tree"}
    assert data["attributes"]["structure"]["count"] == len(CONTAINERS[""])


def test_etag_present(http):
    assert http.get("/metadata/dtypes/int8").headers.get("etag")
    assert http.get("/array/full/dtypes/int8").headers.get("etag")


# --------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/metadata/nested/images", "/metadata/nested/images/", "/metadata//nested//images/", "/metadata/nested//images"],
)
def test_double_and_trailing_slashes_resolve(http, path):
    r = http.get(path)
    assert r.status_code == 200, r.text[:200]
    data = r.json()["data"]
    assert data["id"] == "images"
    assert data["attributes"]["ancestors"] == ["nested"]


def test_double_slash_data_route(http):
    r = http.get("/array/full//dtypes//int16")
    assert r.status_code == 200
    np.testing.assert_array_equal(np.frombuffer(r.content, "<i2"), ARRAYS["dtypes/int16"].full())


def test_root_double_slash(http):
    r = http.get("/metadata//")
    assert r.status_code == 200
    assert r.json()["data"]["id"] == ""


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def test_missing_node_404(http):
    detail = assert_json_error(http.get("/metadata/nope"), 404)
    assert isinstance(detail, str) and "nope" in detail


@pytest.mark.parametrize(
    "url",
    [
        "/array/full/nope",
        "/array/full/nested/nope/x",
        "/search/nope",
        "/table/partition/nope?partition=0",
    ],
)
def test_missing_node_404_on_data_routes(http, url):
    r = http.get(url)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "params",
    [
        {"slice": "a:b"},
        {"slice": "1:2:3:4"},
        {"slice": "0:5:0"},  # zero step
        {"slice": "..."},
        {"slice": "0,0"},  # too many dims for 1-d
        {"slice": "200"},  # integer index out of bounds
    ],
    ids=lambda p: p["slice"],
)
def test_bad_slice_is_4xx(http, params):
    r = http.get("/array/full/dtypes/int8", params=params)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "url",
    [
        "/array/block/dtypes/int8?block=5",
        "/array/block/dtypes/int8?block=2",
        "/array/block/dtypes/int8?block=0,0",
        "/array/block/dtypes/int64_2d?block=0",
        "/array/block/dtypes/int64_2d?block=3,0",
        "/array/block/dtypes/int8?block=x",
    ],
)
def test_bad_block_is_4xx(http, url):
    r = http.get(url)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])


def test_unknown_format_406(http):
    detail = assert_json_error(http.get("/array/full/dtypes/int8", params={"format": "application/x-nope"}), 406)
    assert "application/octet-stream" in detail


def test_unknown_accept_406(http):
    r = http.get("/array/full/dtypes/int8", headers={"Accept": "application/x-nope"})
    detail = assert_json_error(r, 406)
    assert "application/octet-stream" in detail


def test_table_unknown_format_406(http):
    r = http.get("/table/partition/tables/short_table", params={"partition": 0, "format": "application/x-nope"})
    detail = assert_json_error(r, 406)
    assert "application/vnd.apache.arrow.file" in detail


def test_response_size_limit(http):
    r = http.get("/array/full/nested/images/big_image")
    detail = assert_json_error(r, 400)
    assert "slic" in str(detail).lower()


def test_big_image_slice_allowed(http):
    r = http.get("/array/full/nested/images/big_image", params={"slice": "0:2,0:3"})
    assert r.status_code == 200
    got = np.frombuffer(r.content, "<f8").reshape(2, 3)
    np.testing.assert_array_equal(got, ARRAYS["nested/images/big_image"].region((slice(0, 2), slice(0, 3))))


@pytest.mark.parametrize(
    "url",
    [
        "/array/full/dtypes/int8?expected_shape=5",
        "/array/full/dtypes/int8?slice=0:10&expected_shape=11",
        "/array/full/scalars/pi?expected_shape=1",
        "/array/block/dtypes/int8?block=0&expected_shape=100",
        "/array/block/dtypes/int64_2d?block=2,2&expected_shape=7,11",
    ],
)
def test_expected_shape_mismatch_422(http, url):
    r = http.get(url)
    assert r.status_code == 422, (r.status_code, r.text[:200])


@pytest.mark.parametrize(
    "url",
    [
        "/array/full/dtypes/int8?expected_shape=100",
        "/array/full/dtypes/int8?slice=0:10&expected_shape=10",
        "/array/full/scalars/pi?expected_shape=scalar",
        "/array/block/dtypes/int64_2d?block=2,2&expected_shape=6,8",
    ],
)
def test_expected_shape_match_200(http, url):
    assert http.get(url).status_code == 200


def test_table_bad_partition_400(http):
    r = http.get("/table/partition/tables/long_table", params={"partition": 5})
    assert 400 <= r.status_code < 500
    r = http.get("/table/partition/tables/short_table", params={"partition": 0, "column": "nope"})
    assert 400 <= r.status_code < 500


# --------------------------------------------------------------------------
# Array bodies
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["dtypes/float64_big_endian", "dtypes/int32_big_endian", "dtypes/unicode", "dtypes/structured", "dtypes/datetime64", "scalars/negative"],
)
def test_octet_stream_bytes(http, path):
    r = http.get(f"/array/full/{path}", headers={"Accept": "application/octet-stream"})
    assert r.status_code == 200
    assert r.content == ARRAYS[path].full().tobytes()


@pytest.mark.parametrize(
    "slice_str",
    [
        "9:-101:-1",  # the client's form of a[9::-1]: stop past the start
        "99:-101:-1",  # a[::-1]
        "24::-1",  # split reversed read: empty stop runs down to 0
        "9:-11:-1",  # empty for 100 items
        "8:2:-2",
        "0:100:1",
        "97:100:1",
        "-3:",
        ":10",
        "::7",
        "5:5",
        "-1000:1000",
        "50",
        "-1",
    ],
)
def test_slice_grammar(http, slice_str):
    parts = [int(p) if p else None for p in slice_str.split(":")]
    key = parts[0] if len(parts) == 1 else slice(*parts)
    expected = ARRAYS["dtypes/int16"].full()[key]
    r = http.get("/array/full/dtypes/int16", params={"slice": slice_str})
    assert r.status_code == 200, r.text[:200]
    np.testing.assert_array_equal(np.frombuffer(r.content, "<i2").reshape(expected.shape), expected)


def test_block_with_slice(http):
    r = http.get("/array/block/nested/images/medium_image", params={"block": "2,1", "slice": "0:3:1,-2:"})
    assert r.status_code == 200
    spec = ARRAYS["nested/images/medium_image"]
    expected = spec.region((slice(600, 603), slice(998, 1000)))
    np.testing.assert_array_equal(np.frombuffer(r.content, "<f8").reshape(3, 2), expected)


def test_array_json_format(http):
    r = http.get("/array/full/dtypes/int64_2d", params={"format": "application/json"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == ARRAYS["dtypes/int64_2d"].full().tolist()


def read_arrow_file(body):
    """Arrow IPC file -> pyarrow.Table, ignoring pandas index columns
    (`__index_level_N__`), which the client turns back into the index."""
    table = pyarrow.ipc.open_file(io.BytesIO(body)).read_all()
    keep = [n for n in table.column_names if not n.startswith("__index_level_")]
    return table.select(keep)


def test_table_partition_arrow_file(http):
    r = http.get(
        "/table/partition/tables/long_table",
        params={"partition": 1},
        headers={"Accept": "application/vnd.apache.arrow.file"},
    )
    assert r.status_code == 200
    assert r.content[:6] == b"ARROW1"
    table = read_arrow_file(r.content)
    assert table.column_names == ["i", "x", "label", "flag", "time"]
    assert table.num_rows == 20_000
    assert table.schema.field("time").type == pyarrow.timestamp("ns")
    assert table.column("i").to_pylist() == list(range(20_000, 40_000))
    assert table.column("label").to_pylist()[:2] == ["s20000", "s20001"]


def test_table_partition_post_columns(http):
    r = http.post(
        "/table/partition/tables/wide_table",
        params={"partition": 0},
        json=["c003", "c001"],
        headers={"Accept": "application/vnd.apache.arrow.file"},
    )
    assert r.status_code == 200
    table = read_arrow_file(r.content)
    assert table.column_names == ["c003", "c001"]
    assert table.column("c003").to_pylist() == table_frame("tables/wide_table")["c003"].tolist()


# --------------------------------------------------------------------------
# Search pages
# --------------------------------------------------------------------------


def test_page_limit_clamped(http):
    r = http.get("/search/many", params={"page[offset]": 0, "page[limit]": 1000, "fields": ""})
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert 0 < len(body["data"]) <= 300
    assert body["meta"]["count"] == 1000
    assert body["links"]["next"]


def test_follow_next_links(http, api):
    keys = []
    url = f"{api}/search/many?page[offset]=0&page[limit]=300"
    pages = 0
    while url:
        # (httpx would replace the link's query by `params`, so append by hand)
        body = http.get(url + "&fields=").json()
        keys.extend(item["id"] for item in body["data"])
        url = body["links"]["next"]
        pages += 1
        assert pages < 20, "links.next never became null"
    assert keys == MANY_KEYS
    assert pages == 4


def test_catalog_next_links_are_cursors(http, api):
    # A catalog hands out keyset cursors, which stay correct while others
    # insert; in-memory trees (immutable) page by offset. Either way the
    # links are followed as given, with sort re-added by the client.
    catalog = os.environ.get("TILED_COMPAT_TREE", "demo") != "demo"
    for sort in ["", "-", "-score", "color,-group"]:
        params = {"page[offset]": 0, "page[limit]": 150, "fields": "", "sort": sort}
        body = http.get("/search/many", params=params).json()
        first = body["links"]["next"]
        assert ("page[cursor]=" in first) == catalog, first
        keys = [item["id"] for item in body["data"]]
        url = first
        while url:
            body = http.get(url + f"&fields=&sort={sort}").json()
            keys.extend(item["id"] for item in body["data"])
            url = body["links"]["next"]
        whole = http.get("/search/many", params={**params, "page[limit]": 300}).json()
        expected = [item["id"] for item in whole["data"]]
        assert keys[:300] == expected, sort
        assert sorted(keys) == sorted(MANY_KEYS), sort


def test_fields_count(http):
    body = http.get("/search/many", params={"fields": "count"}).json()
    assert body["data"] == []
    assert body["meta"]["count"] == 1000


def test_offset_past_end(http):
    body = http.get("/search/many", params={"page[offset]": 5000}).json()
    assert body["data"] == []
    assert body["links"]["next"] is None


def test_raw_filter_encoding(http):
    params = {
        "filter[in][condition][key]": "color",
        "filter[in][condition][value]": json.dumps(["red", "blue"]),
        "filter[comparison][condition][operator]": "lt",
        "filter[comparison][condition][key]": "i",
        "filter[comparison][condition][value]": "10",
        "fields": "",
    }
    ids = [d["id"] for d in http.get("/search/many", params=params).json()["data"]]
    assert ids == ["item_%04d" % k for k in range(10) if k % 3 != 1]


def test_sort_descending_default_order(http):
    body = http.get("/search/many", params={"sort": "-", "page[limit]": 2, "fields": ""}).json()
    assert [d["id"] for d in body["data"]] == ["item_0999", "item_0998"]


def test_search_on_array_404(http):
    assert http.get("/search/dtypes/int8").status_code == 404


# --------------------------------------------------------------------------
# Content negotiation: msgpack, compression
# --------------------------------------------------------------------------


def test_msgpack_when_asked(http):
    r = http.get("/metadata/many/item_0007", headers={"Accept": "application/x-msgpack"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-msgpack"
    body = msgpack.unpackb(r.content, timestamp=3)
    assert body["data"]["id"] == "item_0007"
    assert body["data"]["attributes"]["metadata"]["optional"] == 7
    json_body = http.get("/metadata/many/item_0007").json()
    assert body["data"]["attributes"]["metadata"] == json_body["data"]["attributes"]["metadata"]


def test_json_by_default(http):
    r = http.get("/metadata/many/item_0007")
    assert r.headers["content-type"] == "application/json"


def _decompress(encoding, raw):
    if encoding == "gzip":
        return gzip.decompress(raw)
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj().decompress(raw)


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_compressed_large_body(http, encoding):
    params = {"page[limit]": 300}
    plain = http.get("/search/many", params=params, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert "content-encoding" not in plain.headers
    assert len(plain.content) > 10_000
    with http.stream("GET", "/search/many", params=params, headers={"Accept-Encoding": encoding}) as r:
        assert r.status_code == 200
        assert r.headers.get("content-encoding") == encoding
        raw = b"".join(r.iter_raw())
    assert len(raw) < len(plain.content)
    assert json.loads(_decompress(encoding, raw))["data"] == plain.json()["data"]


def test_no_lz4_even_if_offered(http):
    r = http.get("/search/many", params={"page[limit]": 300}, headers={"Accept-Encoding": "lz4"})
    assert r.status_code == 200
    assert r.headers.get("content-encoding") in (None, "identity")


# --------------------------------------------------------------------------
# Parameter validation and smaller protocol features (spec sections 2, 3, 4.4, 10)
# --------------------------------------------------------------------------


def test_invalid_sort_key_422(http):
    r = http.get("/search/many", params={"sort": "bad!"})
    assert r.status_code == 422


def test_duplicate_sort_key_400(http):
    r = http.get("/search/many", params=[("sort", "i"), ("sort", "-i")])
    assert r.status_code == 400


def test_offset_and_cursor_400(http):
    r = http.get("/search/many", params={"page[offset]": 0, "page[cursor]": 0})
    assert r.status_code == 400


def test_bad_comparison_operator_422(http):
    params = {
        "filter[comparison][condition][operator]": "zz",
        "filter[comparison][condition][key]": "i",
        "filter[comparison][condition][value]": "1",
    }
    assert http.get("/search/many", params=params).status_code == 422


def test_bad_structure_family_422(http):
    params = {"filter[structure_family][condition][value]": "zz"}
    assert http.get("/search/many", params=params).status_code == 422


def test_bad_regex_is_4xx(http):
    params = {"filter[regex][condition][key]": "name", "filter[regex][condition][pattern]": "("}
    r = http.get("/search/many", params=params)
    assert 400 <= r.status_code < 500


def test_two_lookups_with_different_keys_match_nothing(http):
    params = [
        ("filter[lookup][condition][key]", "item_0001"),
        ("filter[lookup][condition][key]", "item_0002"),
        ("fields", "count"),
    ]
    assert http.get("/search/many", params=params).json()["meta"]["count"] == 0
    one = http.get("/search/many", params=[("filter[lookup][condition][key]", "item_0002")]).json()
    assert [d["id"] for d in one["data"]] == ["item_0002"]


def test_unknown_filter_name_ignored(http):
    params = {"filter[nosuch][condition][key]": "a", "fields": "count"}
    assert http.get("/search/many", params=params).json()["meta"]["count"] == 1000


def test_select_metadata(http):
    body = http.get("/metadata/many/item_0003", params={"select_metadata": "nested.x"}).json()
    assert body["data"]["attributes"]["metadata"] == {"selected": 3}
    assert http.get("/metadata/many/item_0003", params={"select_metadata": "[[["}).status_code == 400


def test_fields_empty_means_keys_only(http):
    data = http.get("/metadata/dtypes/int8", params={"fields": ""}).json()["data"]
    attrs = data["attributes"]
    assert attrs["ancestors"] == ["dtypes"]
    assert attrs["metadata"] is None and attrs["structure"] is None
    assert set(data["links"]) == {"self"}


def test_if_none_match_304(http):
    r = http.get("/metadata/dtypes/int8")
    etag = r.headers["etag"]
    r2 = http.get("/metadata/dtypes/int8", headers={"If-None-Match": etag})
    assert r2.status_code == 304
    assert r2.content == b""
    r3 = http.get("/metadata/dtypes/int8", headers={"If-None-Match": '"something-else"'})
    assert r3.status_code == 200


def test_filename_sets_content_disposition(http):
    r = http.get("/array/full/dtypes/int8", params={"filename": "x.bin"})
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="x.bin"'


def test_table_json_format(http):
    r = http.get("/table/full/tables/short_table", params={"format": "application/json"})
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["i", "x", "label", "flag", "time"]
    assert body["i"] == list(range(10))
    assert body["x"] == [i * 0.5 for i in range(10)]
    assert body["label"] == ["s%d" % i for i in range(10)]
    assert body["flag"] == [i % 2 == 0 for i in range(10)]
    assert body["time"][0].startswith("2020-09-13T12:26:40")


def test_msgpack_search_page(http):
    r = http.get(
        "/search/many",
        params={"page[offset]": 10, "page[limit]": 5},
        headers={"Accept": "application/x-msgpack"},
    )
    assert r.headers["content-type"] == "application/x-msgpack"
    body = msgpack.unpackb(r.content, timestamp=3)
    assert [d["id"] for d in body["data"]] == MANY_KEYS[10:15]
    assert body["meta"]["count"] == 1000
    assert [d["attributes"]["metadata"]["i"] for d in body["data"]] == list(range(10, 15))
