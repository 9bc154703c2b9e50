"""Upstream's tag definitions (roles, per-user scopes, auto_tags, owners,
public tags) in a tag file, with the upstream client: scopes granted per
tag, retagging nodes through `update_metadata(access_tags=...)` under
upstream's rules, API keys restricted to tags, and a tag file edited while
the server runs."""

import json
import os
import tempfile
import time
import uuid

import httpx
import numpy as np
import pytest

from conftest import Server, password_login as login

pytestmark = pytest.mark.skipif(
    os.environ.get("TILED_COMPAT_TREE", "demo") != "demo",
    reason="tested once, with the demo run",
)

TAGS = """\
roles:
  reader: {scopes: [read:metadata, read:data]}
  writer:
    scopes: [read:metadata, read:data, write:metadata, write:data, create:node, delete:node]
tags:
  proposal:
    users:
      - {name: alice, role: writer}
      - {name: bob, role: reader}
      - {name: erin, role: writer}
  beamline:
    users:
      - {name: alice, role: writer}
    auto_tags: [{name: proposal}]
  open_data:
    auto_tags: [{name: public}]
  staff:
    users:
      - {name: dave, scopes: [read:metadata]}
tag_owners:
  proposal: {users: [{name: alice}]}
  beamline: {users: [{name: alice}]}
  open_data: {users: [{name: alice}]}
"""


def policy_server(d, tags_source, users=("alice", "bob", "dave"), catalog_args=None,
                  authentication=None, init=True):
    """`tiled serve config` in `d`: one catalog at / (with `catalog_args`),
    DictionaryAuthenticator users of provider `toy` (each password is the
    name's first letter), and the tag policy with `tags_source` (its tag
    definitions' args). The config is written as JSON, which is YAML."""
    catalog = {"uri": f"sqlite:///{d}/catalog.db", "writable_storage": f"{d}/data",
               **({"init_if_not_exists": True} if init else {}), **(catalog_args or {})}
    config = {
        "trees": [{"path": "/", "tree": "catalog", "args": catalog}],
        "authentication": {
            "providers": [{
                "provider": "toy",
                "authenticator": "tiled.authenticators:DictionaryAuthenticator",
                "args": {"users_to_passwords": {u: u[0] for u in users}},
            }],
            "secret_keys": [uuid.uuid4().hex],
            **(authentication or {}),
        },
        "database": {"uri": f"sqlite:///{d}/auth.db"},
        "access_control": {
            "access_policy": "tiled.access_control.access_policies:TagBasedAccessPolicy",
            "args": {"provider": "toy", **tags_source},
        },
    }
    (d / "config.yml").write_text(json.dumps(config))
    return Server([], tree_args=["config", str(d / "config.yml")])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("tags")
    (d / "tags.yml").write_text(TAGS)
    s = policy_server(d, {"tag_config": "tags.yml"},
                      users=("alice", "bob", "carol", "dave", "erin"),
                      authentication={"tiled_admins": [{"provider": "toy", "id": "carol"}],
                                      "allow_anonymous_access": True})
    s.tags_file = d / "tags.yml"
    yield s
    s.stop()


@pytest.fixture(scope="module")
def users(server):
    return {name: login(server, name, name[0]) for name in ["alice", "bob", "carol", "dave", "erin"]}


def test_scopes_are_granted_per_tag(server, users):
    from tiled.client.utils import ClientError

    alice, bob = users["alice"], users["bob"]
    alice.write_array(np.arange(3), key="p1", access_tags=["proposal"])
    alice.write_array(np.arange(3), key="b1", access_tags=["beamline"])
    # bob reads what `proposal` grants him...
    np.testing.assert_array_equal(bob["p1"].read(), np.arange(3))
    # ...and `beamline` reaches him through its auto_tags (proposal).
    np.testing.assert_array_equal(bob["b1"].read(), np.arange(3))
    # A visible node he lacks the scope for is a 403, not a 404.
    with pytest.raises(ClientError) as e:
        bob["p1"].write(np.zeros(3, dtype=int))
    assert e.value.response.status_code == 403
    with pytest.raises(ClientError) as e:
        bob["p1"].update_metadata({"x": 1})
    assert e.value.response.status_code == 403
    # alice (writer) may write.
    alice["p1"].write(np.array([7, 8, 9]))
    np.testing.assert_array_equal(bob["p1"].read(), [7, 8, 9])
    # dave holds `staff` with read:metadata only: he sees staff nodes' metadata
    # but may not read their data.
    users["carol"].write_array(np.arange(2), key="s1", access_tags=["staff"])
    dave = users["dave"]
    assert "s1" in dave
    assert "p1" not in dave
    r = dave.context.http_client.get(f"{server.api}/array/full/s1")
    assert r.status_code == 403, r.text
    assert "read:data" in r.json()["detail"]


def test_public_tags_reach_anonymous_callers(server, users):
    from tiled.client import from_uri

    users["carol"].write_array(np.arange(5), key="open", access_tags=["open_data"])
    os.environ["TILED_CACHE_DIR"] = tempfile.mkdtemp(prefix="tiled-tokens-")
    anonymous = from_uri(server.url)
    assert "open" in anonymous
    assert "p1" not in anonymous
    np.testing.assert_array_equal(anonymous["open"].read(), np.arange(5))


def test_retagging_follows_upstreams_rules(server, users):
    from tiled.client.utils import ClientError

    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    node = alice.write_array(np.arange(2), key="mine")
    assert list(node.access_tags) == ["user:alice"]
    assert "mine" not in bob
    # alice owns `proposal`: she may share her node through it (and drop
    # her own tag, which she owns intrinsically).
    node.update_metadata(access_tags=["proposal"])
    assert list(alice["mine"].access_tags) == ["proposal"]
    assert "mine" in bob
    r = bob.context.http_client.get(f"{server.api}/metadata/mine")
    assert r.json()["data"]["attributes"]["access_tags"] == ["proposal"]

    def refused(client, path, tags, words):
        r = client.context.http_client.patch(
            f"{server.api}/metadata/{path}",
            json={"content-type": "application/merge-patch+json", "access_tags": tags})
        assert r.status_code == 403, r.text
        assert words in r.json()["detail"], r.text

    # bob sees the node but may not write its metadata; erin may, but owns
    # no tag, so she may not retag it.
    refused(bob, "mine", ["proposal", "beamline"], "write:metadata")
    refused(users["erin"], "mine", ["proposal", "beamline"], "not an owner")
    refused(users["erin"], "mine", [], "empty tag list")
    # Nobody applies undefined tags, user tags, or (non-admins) `public`.
    refused(alice, "mine", ["nonesuch"], "not defined")
    refused(alice, "mine", ["proposal", "user:bob"], "user tags")
    refused(alice, "mine", ["proposal", "public"], "only Tiled admins")
    refused(alice, "mine", [], "empty tag list")
    # A change that would take alice's own write access away is refused:
    # she owns `open_data`, but it grants her only reading.
    refused(alice, "mine", ["open_data"], "would not grant you")
    # An admin may do all of it.
    r = carol.context.http_client.patch(
        f"{server.api}/metadata/mine",
        json={"content-type": "application/json-patch+json",
              "access_tags": [{"op": "add", "path": "/1", "value": "public"}]})
    assert r.status_code == 200, r.text
    assert r.json()["access_tags"] == ["proposal", "public"]
    # A patch that does not produce a list of strings is a 422.
    r = alice.context.http_client.patch(
        f"{server.api}/metadata/mine",
        json={"content-type": "application/merge-patch+json", "access_tags": [1]})
    assert r.status_code == 422, r.text
    # Refused edits changed nothing; a revision records the accepted ones.
    assert list(alice["mine"].access_tags) == ["proposal", "public"]


def test_tags_at_creation_follow_the_same_rules(server, users):
    from tiled.client.utils import ClientError

    for tags, words in [(["nonesuch"], "not defined"), (["user:bob"], "user tags"),
                        (["public"], "only Tiled admins"), (["open_data"], "would not grant")]:
        with pytest.raises(ClientError) as e:
            users["alice"].write_array(np.arange(2), key=f"x{uuid.uuid4().hex[:6]}",
                                       access_tags=tags)
        assert e.value.response.status_code == 403
        assert words in e.value.response.json()["detail"]
    # bob cannot create where he may only read, nor tag with what he does not own.
    with pytest.raises(ClientError) as e:
        users["bob"].write_array(np.arange(2), key="bobs", access_tags=["proposal"])
    assert e.value.response.status_code == 403


def test_api_key_restricted_to_tags(server, users):
    from tiled.client import from_uri

    alice = users["alice"]
    alice.write_array(np.arange(2), key="own2")
    key = alice.context.create_api_key(access_tags=["proposal"], note="proposal only")
    os.environ["TILED_CACHE_DIR"] = tempfile.mkdtemp(prefix="tiled-tokens-")
    restricted = from_uri(server.url, api_key=key["secret"])
    visible = set(restricted)
    assert "p1" in visible and "mine" in visible
    assert "own2" not in visible  # her own tag is not one the key names
    assert "b1" not in visible
    # It may create only nodes tagged with its tags.
    r = restricted.context.http_client.post(
        f"{server.api}/metadata/",
        json={"id": "k1", "structure_family": "container", "metadata": {}, "specs": [],
              "data_sources": [], "access_tags": None})
    assert r.status_code == 403, r.text
    restricted.create_container("k2", access_tags=["proposal"])
    assert list(alice["k2"].access_tags) == ["proposal"]


def test_tag_file_edits_apply_without_restart(server, users):
    bob = users["bob"]
    users["alice"].write_array(np.arange(2), key="late", access_tags=["beamline"])
    users["carol"].write_array(np.arange(2), key="staffonly", access_tags=["staff"])
    assert "staffonly" not in bob
    server.tags_file.write_text(TAGS.replace(
        "      - {name: dave, scopes: [read:metadata]}",
        "      - {name: dave, scopes: [read:metadata]}\n      - {name: bob, role: reader}"))
    deadline = time.monotonic() + 15
    while "staffonly" not in bob and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "staffonly" in bob
    # A broken edit keeps the last good definitions.
    server.tags_file.write_text("tags: [not, a, mapping]\n")
    time.sleep(6)
    assert "staffonly" in bob and "p1" in bob
    server.tags_file.write_text(TAGS)


def test_without_a_policy_tag_edits_are_ignored(tmp_path):
    """Upstream without an access policy: tag edits are dropped and the
    reply carries the unchanged tags."""
    s = Server([], tree_args=["catalog", "--temp", "--api-key", "secret",
                              "--writable-storage", str(tmp_path / "data")])
    try:
        from tiled.client import from_uri

        os.environ["TILED_CACHE_DIR"] = tempfile.mkdtemp(prefix="tiled-tokens-")
        c = from_uri(s.url, api_key="secret")
        c.write_array(np.arange(2), key="a")
        r = httpx.patch(f"{s.api}/metadata/a", headers={"Authorization": "Apikey secret"},
                        json={"content-type": "application/merge-patch+json",
                              "access_tags": ["anything"]})
        assert r.status_code == 200, r.text
        assert r.json() == {"id": "a", "access_tags": []}
        assert list(c["a"].access_tags) == []
    finally:
        s.stop()


def test_upstream_config_with_tags_in_the_catalog(tmp_path):
    """An upstream 0.2.20 access_control section unchanged
    (`access_tags_parser`: the tags live in the catalog), with the tags
    compiled into the catalog by `tiled admin compile-tags`, and compiled
    again while the server runs."""
    import subprocess

    from conftest import TILED_BIN

    db = f"sqlite:///{tmp_path}/catalog.db"
    (tmp_path / "tags.yml").write_text(TAGS)

    def tiled(*args):
        r = subprocess.run([str(TILED_BIN), *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stderr

    tiled("catalog", "init", db)
    assert "compiled" in tiled("admin", "compile-tags", str(tmp_path / "tags.yml"), "--catalog", db)
    s = policy_server(
        tmp_path,
        {"access_tags_parser": "tiled.access_control.access_tags:AccessTagsParser"},
        init=False)
    try:
        alice, bob, dave = (login(s, n, n[0]) for n in ["alice", "bob", "dave"])
        alice.write_array(np.arange(3), key="p", access_tags=["proposal"])
        np.testing.assert_array_equal(bob["p"].read(), np.arange(3))
        assert "p" not in dave
        # Recompiled with dave added to `proposal`: the running server
        # follows within seconds.
        (tmp_path / "tags.yml").write_text(TAGS.replace(
            "      - {name: erin, role: writer}",
            "      - {name: erin, role: writer}\n      - {name: dave, role: reader}"))
        tiled("admin", "compile-tags", str(tmp_path / "tags.yml"), "--catalog", db)
        deadline = time.monotonic() + 15
        while "p" not in dave and time.monotonic() < deadline:
            time.sleep(0.5)
        np.testing.assert_array_equal(dave["p"].read(), np.arange(3))
    finally:
        s.stop()
    # A tag file with a mistake is refused, naming the entry, and leaves
    # the catalog's definitions as they were.
    (tmp_path / "bad.yml").write_text("tags:\n  x:\n    users: [{name: u, role: nope}]\n")
    r = subprocess.run([str(TILED_BIN), "admin", "compile-tags", str(tmp_path / "bad.yml"),
                        "--catalog", db], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "tags.x.users[0]" in r.stderr, r.stderr


def test_top_level_access_tags_guard_the_catalog_root(tmp_path):
    """`top_level_access_tags` (upstream 0.2.20's catalog argument; the
    0.2.16 spelling `top_level_access_blob: {tags: [...]}` too): the
    root's tags decide who may create at the top."""
    from tiled.client.utils import ClientError

    (tmp_path / "tags.yml").write_text(TAGS)
    for spelling in [{"top_level_access_tags": ["proposal"]},
                     {"top_level_access_blob": {"tags": ["proposal"]}}]:
        d = tmp_path / uuid.uuid4().hex[:6]
        d.mkdir()
        s = policy_server(d, {"tag_config": f"{tmp_path}/tags.yml"}, catalog_args=spelling)
        try:
            alice, bob = login(s, "alice", "a"), login(s, "bob", "b")
            # alice holds `proposal` as a writer: she creates at the top.
            alice.write_array(np.arange(2), key="a1", access_tags=["proposal"])
            # bob reads through `proposal`, but may not create there.
            assert "a1" in bob
            with pytest.raises(ClientError) as e:
                bob.write_array(np.arange(2), key="b1")
            assert e.value.response.status_code == 403
            assert "create:node" in e.value.response.json()["detail"]
            # dave holds nothing on the root: even listing it is refused.
            tokens = httpx.post(f"{s.api}/auth/provider/toy/token",
                                data={"username": "dave", "password": "d"}).json()
            r = httpx.get(f"{s.api}/search/",
                          headers={"Authorization": f"Bearer {tokens['access_token']}"})
            assert r.status_code == 403, r.text
            assert "read:metadata" in r.json()["detail"]
        finally:
            s.stop()
