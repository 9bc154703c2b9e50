"""Tag-based access control with the upstream client: two users see
different children, search results and counts; a node you cannot see is a
404 on every route, exactly like a missing one; new nodes are tagged with
their creator's tag unless given tags the creator holds."""

import os
import tempfile
import textwrap
import uuid

import httpx
import numpy as np
import pytest

from conftest import Server, password_login as login

pytestmark = pytest.mark.skipif(
    os.environ.get("TILED_COMPAT_TREE", "demo") != "demo",
    reason="tested once, with the demo run",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("acl")
    config = d / "config.yml"
    config.write_text(textwrap.dedent(f"""\
        trees:
          - path: /
            tree: tiled.catalog:in_memory
            args:
              writable_storage: {d}/data
        authentication:
          providers:
            - provider: toy
              authenticator: tiled.authenticators:DictionaryAuthenticator
              args:
                users_to_passwords: {{alice: a, bob: b, carol: c}}
          tiled_admins: [{{provider: toy, id: carol}}]
          secret_keys: [{uuid.uuid4().hex}]
          allow_anonymous_access: true
        database:
          uri: sqlite:///{d}/auth.db
        access_control:
          access_policy: tiled.access_control.access_policies:TagBasedAccessPolicy
          args:
            provider: toy
            tags:
              beamline1: [alice]
              shared: [alice, bob]
            public_tags: [public]
        """))
    s = Server([], tree_args=["config", str(config)])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tree(server):
    """carol (admin) makes /b1 (beamline1), /sh (shared), /pub (public),
    each holding an array; alice makes /mine without tags."""
    carol = login(server, "carol", "c")
    for key, tags in [("b1", ["beamline1"]), ("sh", ["shared"]), ("pub", ["public"])]:
        c = carol.create_container(key, metadata={"kind": "run", "tag": tags[0]}, access_tags=tags)
        # As upstream: a node created without tags gets its creator's tag
        # (even an admin's), so the array names the run's tag too.
        c.write_array(np.arange(4), key="data", metadata={"kind": "data"}, access_tags=tags)
        c.write_array(np.arange(2), key="carols", metadata={"kind": "data"})
        c.write_table({"x": [1, 2, 3]}, key="table", access_tags=tags)
    alice = login(server, "alice", "a")
    alice.create_container("mine", metadata={"kind": "run", "tag": "own"})
    return {"carol": carol, "alice": alice, "bob": login(server, "bob", "b")}


def test_each_user_sees_their_tags(server, tree):
    from tiled.client import from_uri
    from tiled.queries import Eq

    assert set(tree["carol"]) == {"b1", "sh", "pub", "mine"}
    assert set(tree["alice"]) == {"b1", "sh", "pub", "mine"}  # beamline1, shared, public, her own
    assert set(tree["bob"]) == {"sh", "pub"}
    # A fresh token cache: no login to reuse.
    os.environ["TILED_CACHE_DIR"] = tempfile.mkdtemp(prefix="tiled-tokens-")
    anonymous = from_uri(server.url)
    assert set(anonymous) == {"pub"}
    # Counts and search results agree with what is visible.
    assert len(tree["bob"]) == 2
    assert len(tree["bob"].search(Eq("kind", "run"))) == 2
    assert sorted(tree["bob"].search(Eq("kind", "run"))) == ["pub", "sh"]
    assert len(tree["alice"].search(Eq("kind", "run"))) == 4
    assert len(anonymous.search(Eq("kind", "run"))) == 1
    # bob reads the shared array inside a shared run, but not the one carol
    # made there without tags (it carries her own tag).
    np.testing.assert_array_equal(tree["bob"]["sh"]["data"].read(), np.arange(4))
    assert set(tree["bob"]["sh"]) == {"data", "table"}
    assert set(tree["carol"]["sh"]) == {"data", "carols", "table"}
    assert tree["bob"]["sh"]["table"].read()["x"].tolist() == [1, 2, 3]


def test_hidden_nodes_are_404_on_every_route(server, tree):
    bob = tree["bob"].context.http_client
    api = server.api
    for url in [f"{api}/metadata/b1", f"{api}/metadata/b1/data", f"{api}/search/b1",
                f"{api}/array/full/b1/data", f"{api}/array/block/b1/data?block=0",
                f"{api}/container/full/b1", f"{api}/distinct/b1", f"{api}/metadata/mine",
                f"{api}/table/full/b1/table", f"{api}/table/partition/b1/table?partition=0",
                f"{api}/revisions/b1/data"]:
        r = bob.get(url)
        missing = bob.get(url.replace("b1", "nope").replace("mine", "nope"))
        assert r.status_code == 404 == missing.status_code, (url, r.text)
    # Writes into or onto hidden nodes are 404 too.
    r = bob.post(f"{api}/metadata/b1", json={"id": "x", "structure_family": "container",
                                             "metadata": {}, "specs": [], "data_sources": []})
    assert r.status_code == 404, r.text
    r = bob.put(f"{api}/array/full/b1/data", content=np.zeros(4, "int64").tobytes(),
                headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 404, r.text
    r = bob.patch(f"{api}/metadata/b1", json={"content-type": "application/merge-patch+json",
                                              "metadata": {"x": 1}})
    assert r.status_code == 404, r.text
    r = bob.delete(f"{api}/metadata/b1", params={"recursive": True, "external_only": False})
    assert r.status_code == 404, r.text
    # The upstream client's own calls see a missing node.
    with pytest.raises(KeyError):
        tree["bob"]["b1"]
    with pytest.raises(KeyError):
        tree["bob"]["sh"]["carols"]
    assert "b1" in tree["alice"]


def test_new_nodes_are_tagged(server, tree):
    # alice's untagged node carries her own tag: bob cannot see it.
    assert tree["alice"]["mine"].access_tags == ["user:alice"]
    assert "mine" not in tree["bob"]
    # Tags the creator does not hold are refused.
    with pytest.raises(Exception) as info:
        tree["bob"].create_container(f"x{uuid.uuid4().hex[:6]}", access_tags=["beamline1"])
    assert "403" in str(info.value) or "access tags" in str(info.value)
    # Tags the creator holds are kept.
    key = f"s{uuid.uuid4().hex[:6]}"
    tree["bob"].create_container(key, access_tags=["shared"])
    assert key in tree["alice"]
