"""The metadata half of the write API through the upstream client, against a
catalog (`serve catalog`): create containers, update metadata (JSON Patch,
merge patch, replace), revisions, deletes; and the refusals."""

import os
import uuid

import httpx
import pytest

from conftest import API_KEY

pytestmark = pytest.mark.skipif(
    os.environ.get("TILED_COMPAT_TREE", "demo") == "demo",
    reason="writes need a catalog tree",
)


@pytest.fixture(scope="module")
def writer(private_server):
    from tiled.client import from_uri

    return from_uri(private_server.url, api_key=API_KEY)


def fresh_key():
    return f"w_{uuid.uuid4().hex[:12]}"


def test_create_update_revisions_delete(writer):
    key = fresh_key()
    x = writer.create_container(key, metadata={"color": "red", "n": 1}, specs=["sample"])
    assert dict(x.metadata) == {"color": "red", "n": 1}
    assert key in writer
    node = writer[key]
    assert [s.name for s in node.specs] == ["sample"]
    assert dict(node.metadata) == {"color": "red", "n": 1}

    # update_metadata sends an RFC 6902 diff.
    x.update_metadata({"color": "green", "n": 1, "extra": [1, 2]})
    assert dict(writer[key].metadata) == {"color": "green", "n": 1, "extra": [1, 2]}
    revisions = writer[key].metadata_revisions
    assert len(revisions) == 1
    first = revisions[0]
    assert first["revision_number"] == 1
    assert first["attributes"]["metadata"] == {"color": "red", "n": 1}

    # replace_metadata is a PUT of the whole object.
    x.replace_metadata({"only": True}, specs=["sample", "other"])
    node = writer[key]
    assert dict(node.metadata) == {"only": True}
    assert [s.name for s in node.specs] == ["sample", "other"]
    assert len(node.metadata_revisions) == 2

    # drop_revision keeps no revision of that change.
    x.update_metadata({"only": False}, drop_revision=True)
    assert dict(writer[key].metadata) == {"only": False}
    assert len(writer[key].metadata_revisions) == 2

    writer[key].metadata_revisions.delete_revision(1)
    remaining = writer[key].metadata_revisions
    assert len(remaining) == 1 and remaining[0]["revision_number"] == 2

    # A child, then deletes: not empty without recursive → refused.
    x.create_container("child", metadata={"k": 1})
    assert list(writer[key]) == ["child"]
    with pytest.raises(Exception):
        writer[key].delete()
    assert key in writer
    writer[key].delete(recursive=True)
    assert key not in writer


def test_merge_patch_and_errors_over_http(private_server):
    api = private_server.api
    h = {"Authorization": f"Apikey {API_KEY}"}
    key = fresh_key()
    body = {"id": key, "structure_family": "container", "metadata": {"a": {"b": 1, "c": 2}},
            "specs": [], "data_sources": [], "access_tags": None}
    r = httpx.post(f"{api}/metadata/", json=body, headers=h)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == key and out["data_sources"] == [] and out["access_tags"] == []
    assert out["links"]["self"].endswith(f"/metadata/{key}")
    assert "structure" not in out
    # The same key again: 409.
    r = httpx.post(f"{api}/metadata/", json=body, headers=h)
    assert r.status_code == 409 and r.headers["content-type"] == "application/json", r.text
    # Merge patch: null deletes a key, objects merge.
    r = httpx.patch(f"{api}/metadata/{key}", headers=h, json={
        "content-type": "application/merge-patch+json", "metadata": {"a": {"c": None, "d": 4}}})
    assert r.status_code == 200, r.text
    assert r.json() == {"id": key}
    md = httpx.get(f"{api}/metadata/{key}", headers=h).json()["data"]["attributes"]["metadata"]
    assert md == {"a": {"b": 1, "d": 4}}
    # A patch type the server does not know: 406; a failing JSON Patch: 422.
    r = httpx.patch(f"{api}/metadata/{key}", headers=h, json={"content-type": "text/plain", "metadata": {}})
    assert r.status_code == 406, r.text
    r = httpx.patch(f"{api}/metadata/{key}", headers=h, json={
        "content-type": "application/json-patch+json", "metadata": [{"op": "remove", "path": "/nope"}]})
    assert r.status_code == 422, r.text
    # Too many or repeated specs: 422.
    r = httpx.put(f"{api}/metadata/{key}", headers=h, json={"metadata": None, "specs": [{"name": "s"}] * 2})
    assert r.status_code == 422, r.text
    r = httpx.put(f"{api}/metadata/{key}", headers=h,
                  json={"metadata": None, "specs": [{"name": f"s{i}"} for i in range(21)]})
    assert r.status_code == 422, r.text
    # An array needs exactly one data source (with its structure): refused
    # clearly, nothing created. (Writing arrays: test_write_arrays.py.)
    r = httpx.post(f"{api}/metadata/{key}", headers=h, json={
        "id": "arr", "structure_family": "array", "metadata": {}, "specs": [], "data_sources": []})
    assert r.status_code == 422 and "data source" in r.json()["detail"], r.text
    assert httpx.get(f"{api}/metadata/{key}/arr", headers=h).status_code == 404
    # Families without storage yet are refused with 400.
    r = httpx.post(f"{api}/metadata/{key}", headers=h, json={
        "id": "tbl", "structure_family": "awkward", "metadata": {}, "specs": [],
        "data_sources": [{"structure_family": "awkward", "structure": {"length": 1, "form": {}},
                          "id": None, "mimetype": None, "parameters": {}, "properties": {},
                          "assets": [], "management": "writable"}]})
    assert r.status_code == 400 and "not supported yet" in r.json()["detail"], r.text
    # Missing parent: 404; deleting a missing node: 404; a bad revision: 404.
    r = httpx.post(f"{api}/metadata/{key}/nope", json={**body, "id": "x"}, headers=h)
    assert r.status_code == 404, r.text
    assert httpx.delete(f"{api}/metadata/{key}/nope", headers=h).status_code == 404
    assert httpx.delete(f"{api}/revisions/{key}", params={"number": 99}, headers=h).status_code == 404
    # The root cannot be deleted.
    assert httpx.delete(f"{api}/metadata/", headers=h).status_code == 400
    assert httpx.delete(f"{api}/metadata/{key}", headers=h).status_code == 200


def test_writes_need_the_key(private_server, public_server):
    body = {"id": fresh_key(), "structure_family": "container", "metadata": {}, "specs": [], "data_sources": []}
    # Anonymous readers of a public catalog cannot write.
    r = httpx.post(f"{public_server.api}/metadata/", json=body)
    assert r.status_code == 401 and "write:metadata" in r.json()["detail"], r.text
    r = httpx.post(f"{private_server.api}/metadata/", json=body, headers={"Authorization": "Apikey wrong"})
    assert r.status_code == 401, r.text
