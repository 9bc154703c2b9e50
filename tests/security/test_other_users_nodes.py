"""The "other user's node" column of the security matrix, on the `tagged`
server (upstream's tag-based access policy, see conftest.py): alice's
nodes, tagged `user:alice`, do not exist for bob (logged in, or with his
API key) nor for an anonymous caller. On each of the matrix's 21 routes
(reads and writes) they get exactly the answer a missing node gets --
status, headers and body, apart from the name in the path -- while the
same routes work for alice, for the admin, and for bob on the same nodes
tagged `shared` (so the 404s are not vacuous). Listings (search,
distinct, container/full, counts) do not show her nodes to him, and
nothing he tried changed them.

Every answer these tests get is recorded (conftest.py); the final
`test_zz_no_5xx_and_no_leaks_anywhere` also fails if any answer to a
caller other than alice or the admin holds alice's node names or her
private metadata value (successes included) that the caller did not send.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from test_security import (
    ARROW,
    OCTET,
    arrow_a,
    assert_json_error,
    call,
    create_body,
    register_body,
    ok_df,
)

BOB = ["bob_token", "bob_key"]  # bob logged in; bob with an API key of his
REFUSED = [*BOB, "anonymous"]  # callers alice's nodes do not exist for
OWNERS = ["alice", "carol_admin"]  # callers who see them

OWNER_ARRAY = np.arange(6, dtype="<f8").tobytes()
INTRUDER_ARRAY = np.full(6, 666.0, dtype="<f8").tobytes()


def layout(ctx):
    return ctx.secrets["layout"]


def fresh(prefix="n"):
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _owned_fresh_node(ctx, tok, revision=False):
    """A new container beside `tok`'s nodes, made by alice with that set's
    tags (the target of a delete that succeeds)."""
    L = layout(ctx)
    key = fresh("f")
    body = create_body(key, metadata=L.meta(tok, "fresh"))
    body["access_tags"] = ["shared"] if tok == L.shared_tok else None
    r = call(ctx, "POST", f"metadata/{L.pub}", "alice", json_body=body)
    assert r.status_code == 200, r.text
    path = f"{L.pub}/{key}"
    if revision:
        r = call(ctx, "PUT", f"metadata/{path}", "alice",
                 json_body={"metadata": {**L.meta(tok, "fresh"), "v": 2}, "specs": None})
        assert r.status_code == 200, r.text
    return path


# ---------------------------------------------------------------------------
# The 21 routes of test_security.py's matrix, aimed at one set of nodes
# ---------------------------------------------------------------------------
# A builder gets (ctx, tok, key, intruder) and returns (method, path,
# kwargs). `key` names a node to create (the same for the request on the
# hidden and on the missing node, so the two bodies are identical).
# `intruder` writes are recognisable (666, "bob was here"), so that the
# check after the matrix can tell none landed.


def _get(route, params=None):
    return lambda ctx, tok, key, intruder: ("GET", route(layout(ctx), tok), {"params": params or {}})


def _meta_body(ctx, tok, intruder):
    if intruder:
        return {"metadata": {"intruder": "bob was here"}, "specs": None}
    return {"metadata": {**layout(ctx).meta(tok, "arr"), "rev": 1, "put": "owner"}, "specs": None}


def _patch_body(ctx, tok, intruder):
    patch = {"intruder": "bob was here"} if intruder else {"patched": "owner"}
    return {"content-type": "application/merge-patch+json", "metadata": patch}


ROUTES = {
    "get_metadata": ("read", _get(lambda L, t: f"metadata/{L.arr(t)}")),
    "get_search": ("read", _get(lambda L, t: f"search/{L.c(t)}")),
    "get_distinct": ("read", _get(lambda L, t: f"distinct/{L.c(t)}", {"metadata": "color", "counts": "true"})),
    "get_array_full": ("read", _get(lambda L, t: f"array/full/{L.arr(t)}")),
    "get_array_block": ("read", _get(lambda L, t: f"array/block/{L.arr(t)}", {"block": "0,0"})),
    "get_table_full": ("read", _get(lambda L, t: f"table/full/{L.tbl(t)}")),
    "get_table_partition": ("read", _get(lambda L, t: f"table/partition/{L.tbl(t)}", {"partition": "0"})),
    "get_container_full": ("read", _get(lambda L, t: f"container/full/{L.c(t)}")),
    "get_revisions": ("read", _get(lambda L, t: f"revisions/{L.arr(t)}")),
    "post_metadata": ("write", lambda ctx, t, key, i: (
        "POST", f"metadata/{layout(ctx).c(t)}", {"json_body": create_body(key)})),
    "post_register": ("write", lambda ctx, t, key, i: (
        "POST", f"register/{layout(ctx).c(t)}",
        {"json_body": register_body(key, (ctx.readable / "ok.csv").as_uri(), ok_df())})),
    "put_metadata": ("write", lambda ctx, t, key, i: (
        "PUT", f"metadata/{layout(ctx).arr(t)}", {"json_body": _meta_body(ctx, t, i)})),
    "patch_metadata": ("write", lambda ctx, t, key, i: (
        "PATCH", f"metadata/{layout(ctx).arr(t)}", {"json_body": _patch_body(ctx, t, i)})),
    "put_array_full": ("write", lambda ctx, t, key, i: (
        "PUT", f"array/full/{layout(ctx).arr(t)}",
        {"content": INTRUDER_ARRAY if i else OWNER_ARRAY, "headers": OCTET})),
    "put_array_block": ("write", lambda ctx, t, key, i: (
        "PUT", f"array/block/{layout(ctx).arr(t)}",
        {"content": INTRUDER_ARRAY if i else OWNER_ARRAY, "headers": OCTET, "params": {"block": "0,0"}})),
    "patch_array_full": ("write", lambda ctx, t, key, i: (
        "PATCH", f"array/full/{layout(ctx).arr(t)}",
        {"content": (INTRUDER_ARRAY if i else OWNER_ARRAY)[:24], "headers": OCTET,
         "params": {"offset": "0,0", "shape": "1,3"}})),
    "put_table_partition": ("write", lambda ctx, t, key, i: (
        "PUT", f"table/partition/{layout(ctx).tbl(t)}",
        {"content": arrow_a((666, 666) if i else (1, 2)), "headers": ARROW, "params": {"partition": "0"}})),
    "patch_table_partition": ("write", lambda ctx, t, key, i: (
        "PATCH", f"table/partition/{layout(ctx).app(t)}",
        {"content": arrow_a((666,) if i else (11,)), "headers": ARROW, "params": {"partition": "0"}})),
    "put_table_full": ("write", lambda ctx, t, key, i: (
        "PUT", f"table/full/{layout(ctx).tbl(t)}",
        {"content": arrow_a((666, 666) if i else (1, 2)), "headers": ARROW})),
    "delete_metadata": ("write", lambda ctx, t, key, i: (
        "DELETE", f"metadata/{layout(ctx).victim(t)}", {"params": {"recursive": "false", "external_only": "true"}})),
    "delete_revisions": ("write", lambda ctx, t, key, i: (
        "DELETE", f"revisions/{layout(ctx).arr(t)}", {"params": {"number": "1"}})),
}


def latest_revision(ctx):
    """The number of the newest revision alice's array has (read by her)."""
    r = call(ctx, "GET", f"revisions/{layout(ctx).arr(layout(ctx).tok)}", "alice")
    assert r.status_code == 200, r.text[:300]
    numbers = [d["revision_number"] for d in r.json()["data"]]
    assert numbers, "alice's array has no revision left to aim at"
    return max(numbers)


def request(ctx, route, tok, cred, key=None, intruder=True, revision=1):
    """Route `route` on set `tok` as `cred`. A successful delete consumes
    its target, so controls (`intruder=False`) delete a fresh node of
    that set instead of `victim`/`arr`; intruders aim at revision
    `revision`."""
    kind, build = ROUTES[route]
    method, path, kw = build(ctx, tok, key or fresh("k"), intruder)
    if not intruder and route == "delete_metadata":
        path = f"metadata/{_owned_fresh_node(ctx, tok)}"
    if not intruder and route == "delete_revisions":
        path = f"revisions/{_owned_fresh_node(ctx, tok, revision=True)}"
    if intruder and route == "delete_revisions":
        kw["params"] = {"number": str(revision)}
    return method, path, call(ctx, method, path, cred, params=kw.get("params"), headers=kw.get("headers"),
                              content=kw.get("content"), json_body=kw.get("json_body"))


def _shown(r):
    if "json" in r.headers.get("content-type", ""):
        return r.text[:300]
    return f"<{len(r.content)} bytes of {r.headers.get('content-type')}>"


def assert_works(ctx, route, tok, cred):
    kind = ROUTES[route][0]
    method, path, r = request(ctx, route, tok, cred, intruder=False)
    want = {200, 204} if kind == "write" else {200}
    assert r.status_code in want, f"{method} /{path} as {cred}: {r.status_code} {_shown(r)}"


# --- Controls: the routes work for those who may see the nodes -------------


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("cred", OWNERS)
def test_owner_and_admin_reach_alices_nodes(tagged, cred, route):
    """alice (her `user:alice` tag) and carol (admin: sees everything)
    succeed on every route, on the very nodes bob gets 404 for below."""
    assert_works(tagged, route, layout(tagged).tok, cred)


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("cred", BOB)
def test_bob_reaches_nodes_shared_with_him(tagged, cred, route):
    """The same nodes tagged `shared` (a policy tag alice and bob hold):
    every route works for bob, so his 404s below come from the tags."""
    assert_works(tagged, route, layout(tagged).shared_tok, cred)


# --- The column: alice's nodes are missing nodes for everyone else ---------


def _state(ctx):
    """Everything about alice's private nodes, read by alice."""
    import pyarrow as pa

    L, t = layout(ctx), layout(ctx).tok
    out = {}
    for name, path in [("c", L.c(t)), ("inner", f"{L.c(t)}/inner"), ("arr", L.arr(t)), ("tbl", L.tbl(t)),
                       ("app", L.app(t)), ("victim", L.victim(t))]:
        r = call(ctx, "GET", f"metadata/{path}", "alice")
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        a = r.json()["data"]["attributes"]
        out[name] = {k: a[k] for k in ("structure_family", "metadata", "specs", "structure", "access_tags")}
    r = call(ctx, "GET", f"array/full/{L.arr(t)}", "alice", headers={"Accept": "application/octet-stream"})
    assert r.status_code == 200, r.text[:300]
    out["arr data"] = np.frombuffer(r.content, "<f8").tolist()
    for name, path in [("tbl", L.tbl(t)), ("app", L.app(t))]:
        r = call(ctx, "GET", f"table/full/{path}", "alice", headers={"Accept": ARROW["Content-Type"]})
        assert r.status_code == 200, r.text[:300]
        out[f"{name} data"] = pa.ipc.open_file(pa.py_buffer(r.content)).read_all().to_pydict()
    r = call(ctx, "GET", f"revisions/{L.arr(t)}", "alice")
    assert r.status_code == 200, r.text[:300]
    out["arr revisions"] = r.json()["data"]
    for name, path in [("c children", L.c(t)), ("pub children", L.pub)]:
        r = call(ctx, "GET", f"search/{path}", "alice", params={"fields": "", "page[limit]": "300"})
        assert r.status_code == 200, r.text[:300]
        out[name] = sorted(d["id"] for d in r.json()["data"])
    return out


@pytest.fixture(scope="module")
def alice_state(tagged):
    """alice's nodes as they are after the controls above (which write to
    them) and before anyone else tries: the refused requests must leave
    them exactly so."""
    return _state(tagged)


def _comparable(r, L):
    """An answer with alice's name replaced by the missing node's (they
    have the same length), without what differs between any two answers
    (date, request id, the CSRF cookie's value)."""
    headers = {k: v for k, v in r.headers.items() if k not in ("date", "x-request-id", "set-cookie")}
    cookies = sorted(c.split("=", 1)[0] for c in r.headers.get_list("set-cookie"))
    body = r.content.replace(L.tok.encode(), L.missing_tok.encode())
    return r.status_code, headers, cookies, body


def assert_like_missing(ctx, route, cred, method, path, hidden, missing):
    L = layout(ctx)
    kind = ROUTES[route][0] if route in ROUTES else route
    where = f"{method} /{path} as {cred}"
    assert hidden.status_code < 500 and missing.status_code < 500, (where, hidden.status_code, _shown(hidden))
    if cred == "anonymous" and kind == "write":
        # Anonymous callers may not write at all: the refusal comes first.
        assert hidden.status_code in (401, 404), f"{where}: {hidden.status_code} {_shown(hidden)}"
    else:
        assert hidden.status_code == 404, f"{where}: {hidden.status_code} {_shown(hidden)}"
    detail = assert_json_error(hidden)
    assert L.marker not in hidden.text, (where, hidden.text[:300])
    if hidden.status_code == 404:
        assert str(detail).startswith("No such entry"), (where, detail)
    assert _comparable(hidden, L) == _comparable(missing, L), (
        f"{where} is told apart from the same request on a missing node:\n"
        f"  alice's node: {hidden.status_code} {hidden.headers} {hidden.text[:300]}\n"
        f"  missing node: {missing.status_code} {missing.headers} {missing.text[:300]}")


# Server bugs found by this file, now fixed (kept as the tests below):
# - DELETE /revisions/{path} did not resolve {path} through the caller's
#   filtered tree, so bob could delete revisions of alice's hidden array;
# - container/full's ETag came from the request alone, so bob revalidating
#   with alice's ETag got a 304 for her body.


def _cases(creds, routes):
    return [pytest.param(c, r, id=f"{c}-{r}") for c in creds for r in routes]


@pytest.mark.parametrize("cred,route", _cases(REFUSED, ROUTES))
def test_other_users_node_is_a_missing_node(tagged, alice_state, cred, route):
    """bob (token, API key) and an anonymous caller acting on alice's
    node get what the same request gets on a node that does not exist
    (deletes of a revision aim at one her array has)."""
    L = layout(tagged)
    key = fresh("k")
    revision = latest_revision(tagged) if route == "delete_revisions" else 1
    method, path, hidden = request(tagged, route, L.tok, cred, key=key, revision=revision)
    _, _, missing = request(tagged, route, L.missing_tok, cred, key=key, revision=revision)
    assert_like_missing(tagged, route, cred, method, path, hidden, missing)


# Paths below and beside the matrix's: a hidden container's child (its
# tags or its parent's hide it), a table's column, other formats, HEAD.
EXTRA = {
    "child_metadata": ("read", "GET", lambda L, t: f"metadata/{L.c(t)}/inner", {}),
    "child_search": ("read", "GET", lambda L, t: f"search/{L.c(t)}/inner", {}),
    "child_distinct": ("read", "GET", lambda L, t: f"distinct/{L.c(t)}/inner", {"params": {"metadata": "color"}}),
    "child_container_full": ("read", "GET", lambda L, t: f"container/full/{L.c(t)}/inner", {}),
    "column_metadata": ("read", "GET", lambda L, t: f"metadata/{L.tbl(t)}/a", {}),
    "column_array": ("read", "GET", lambda L, t: f"array/full/{L.tbl(t)}/a", {}),
    "node_full": ("read", "GET", lambda L, t: f"node/full/{L.tbl(t)}", {}),
    "appendable_full_csv": ("read", "GET", lambda L, t: f"table/full/{L.app(t)}",
                            {"params": {"format": "text/csv"}}),
    "array_json": ("read", "GET", lambda L, t: f"array/full/{L.arr(t)}",
                   {"params": {"format": "application/json"}}),
    "container_full_json": ("read", "GET", lambda L, t: f"container/full/{L.c(t)}",
                            {"params": {"format": "application/json"}}),
    "search_filtered": ("read", "GET", lambda L, t: f"search/{L.c(t)}",
                        {"params": {"filter[fulltext][condition][text]": "inner", "fields": ""}}),
    "head_metadata": ("read", "HEAD", lambda L, t: f"metadata/{L.arr(t)}", {}),
    "post_into_child": ("write", "POST", lambda L, t: f"metadata/{L.c(t)}/inner",
                        {"json_body": create_body("intruder")}),
    "put_child_metadata": ("write", "PUT", lambda L, t: f"metadata/{L.c(t)}/inner",
                           {"json_body": {"metadata": {"intruder": "bob was here"}, "specs": None}}),
    "put_container_metadata": ("write", "PUT", lambda L, t: f"metadata/{L.c(t)}",
                               {"json_body": {"metadata": {"intruder": "bob was here"}, "specs": None,
                                              "access_tags": ["user:bob"]}}),
    "delete_child": ("write", "DELETE", lambda L, t: f"metadata/{L.c(t)}/inner",
                     {"params": {"recursive": "false", "external_only": "true"}}),
    "delete_container_recursive": ("write", "DELETE", lambda L, t: f"metadata/{L.c(t)}",
                                   {"params": {"recursive": "true", "external_only": "false"}}),
    "delete_table": ("write", "DELETE", lambda L, t: f"metadata/{L.app(t)}",
                     {"params": {"recursive": "false", "external_only": "false"}}),
    "delete_absent_revision": ("write", "DELETE", lambda L, t: f"revisions/{L.arr(t)}",
                               {"params": {"number": "999999"}}),
}


@pytest.mark.parametrize("cred,extra", _cases(REFUSED, EXTRA))
def test_other_users_node_is_a_missing_node_elsewhere(tagged, alice_state, cred, extra):
    L = layout(tagged)
    kind, method, path_of, kw = EXTRA[extra]
    answers = []
    for tok in (L.tok, L.missing_tok):
        path = path_of(L, tok)
        answers.append(call(tagged, method, path, cred, params=kw.get("params"), json_body=kw.get("json_body")))
    hidden, missing = answers
    if method == "HEAD":
        assert hidden.status_code == missing.status_code == 404, (hidden.status_code, missing.status_code)
        assert _comparable(hidden, L) == _comparable(missing, L)
        return
    assert_like_missing(tagged, kind, cred, method, path_of(L, L.tok), hidden, missing)


@pytest.mark.parametrize("extra", [k for k, v in EXTRA.items() if v[0] == "read"])
def test_extra_reads_work_for_alice(tagged, extra):
    """The control for the reads above."""
    L = layout(tagged)
    kind, method, path_of, kw = EXTRA[extra]
    r = call(tagged, method, path_of(L, L.tok), "alice", params=kw.get("params"))
    assert r.status_code == 200, (extra, r.status_code, _shown(r))


# --- Listings do not show alice's nodes -------------------------------------

FILTERS = {
    "none": {},
    "lookup": {"filter[lookup][condition][key]": "{tok}arr"},
    "keys_filter": {"filter[keys_filter][condition][keys]": '["{tok}arr", "{tok}c"]'},
    "fulltext": {"filter[fulltext][condition][text]": "{marker}"},
    "eq": {"filter[eq][condition][key]": "secret", "filter[eq][condition][value]": '"{marker}"'},
    "regex": {"filter[regex][condition][key]": "color", "filter[regex][condition][pattern]": "^{tok}"},
    "like": {"filter[like][condition][key]": "color", "filter[like][condition][pattern]": "{tok}%"},
    "key_present": {"filter[key_present][condition][key]": "secret",
                    "filter[key_present][condition][exists]": "true"},
    "structure_family": {"filter[structure_family][condition][value]": '"array"'},
}


def _fill(params, L):
    return {k: v.replace("{tok}", L.tok).replace("{marker}", L.marker) for k, v in params.items()}


def _ids(ctx, cred, path, params):
    r = call(ctx, "GET", f"search/{path}", cred, params={**params, "fields": "", "page[limit]": "300"})
    assert r.status_code == 200, (cred, path, params, r.status_code, r.text[:300])
    body = r.json()
    ids = [d["id"] for d in body["data"]]
    assert body["meta"]["count"] == len(ids), (cred, params, body["meta"], ids)
    return ids


@pytest.mark.parametrize("filt", list(FILTERS))
@pytest.mark.parametrize("cred", [*REFUSED, *OWNERS])
def test_search_of_the_parent_hides_alices_nodes(tagged, cred, filt):
    """Search results and counts on the `public` parent, with filters aimed
    at alice's nodes (their keys, her private metadata value): she and the
    admin find them, nobody else does; bob still finds the shared ones."""
    L = layout(tagged)
    ids = _ids(tagged, cred, L.pub, _fill(FILTERS[filt], L))
    mine = [i for i in ids if i.startswith(L.tok)]
    if cred in OWNERS:
        if filt not in ("structure_family",):
            assert mine, (cred, filt, ids)  # the filter does find alice's nodes
    else:
        assert not mine, (cred, filt, ids)
    if filt == "none":
        shared = {f"{L.shared_tok}{s}" for s in ("c", "arr", "tbl", "app", "victim")}
        if cred == "anonymous":
            assert not [i for i in ids if i.startswith(L.shared_tok)], ids
        else:
            assert shared <= set(ids), (cred, ids)
        # The parent's own count agrees with the listing.
        r = call(tagged, "GET", f"metadata/{L.pub}", cred)
        assert r.status_code == 200, r.text[:300]
        assert r.json()["data"]["attributes"]["structure"]["count"] == len(ids), (cred, r.text[:300])


@pytest.mark.parametrize("cred", [*REFUSED, *OWNERS])
def test_distinct_and_container_full_of_the_parent_hide_alices_nodes(tagged, cred):
    L = layout(tagged)
    r = call(tagged, "GET", f"distinct/{L.pub}", cred, params={
        "metadata": ["color", "secret"], "structure_families": "true", "specs": "true", "counts": "true"})
    assert r.status_code == 200, r.text[:300]
    d = r.json()
    colors = [x["value"] for x in d["metadata"]["color"]]
    secrets = [x["value"] for x in d["metadata"]["secret"]]
    family_total = sum(x["count"] for x in d["structure_families"])
    visible = _ids(tagged, cred, L.pub, {})
    assert family_total == len(visible), (cred, d, visible)
    shown = L.tok in r.text or L.marker in r.text
    assert shown == (cred in OWNERS), (cred, colors, secrets)
    if cred in OWNERS:
        assert f"{L.tok}-arr" in colors and [x for x in secrets if x is not None] == [L.marker], d
    for fmt in ("application/json", "application/x-hdf5"):
        r = call(tagged, "GET", f"container/full/{L.pub}", cred, params={"format": fmt})
        assert r.status_code == 200, (fmt, r.status_code, _shown(r))
        leaked = L.tok.encode() in r.content or L.marker.encode() in r.content
        assert leaked == (cred in OWNERS), (cred, fmt)
        if cred in BOB:
            assert L.shared_tok.encode() in r.content, fmt  # his shared nodes are there
    r = call(tagged, "GET", f"container/full/{L.pub}", cred, params={"format": "application/json"})
    keys = set(r.json()["contents"])
    assert keys == set(visible), (cred, keys, visible)


# --- Creating beside, or tagging for, alice --------------------------------


@pytest.mark.parametrize("cred", BOB)
def test_a_key_taken_by_a_hidden_node_conflicts_without_revealing_it(tagged, cred):
    """Keys are unique within a container, so creating a node under a key
    alice's hidden node holds is a conflict (409, as upstream, whose
    catalog raises `Collision`): the key's existence is the one thing this
    tells bob. The answer shows nothing else (no metadata, tags, owner)
    and her node is left alone."""
    L = layout(tagged)
    for route, body in (("metadata", create_body(f"{L.tok}arr", metadata={"x": 1})),
                        ("register", register_body(f"{L.tok}tbl", (tagged.readable / "ok.csv").as_uri(),
                                                   ok_df()))):
        r = call(tagged, "POST", f"{route}/{L.pub}", cred, json_body=body)
        assert r.status_code == 409, (route, r.status_code, r.text[:300])
        assert_json_error(r)
        assert L.marker not in r.text and "alice" not in r.text, r.text[:300]
    # A free key is created (the control), tagged for bob.
    key = fresh("bob")
    r = call(tagged, "POST", f"metadata/{L.pub}", cred, json_body=create_body(key))
    assert r.status_code == 200, r.text[:300]
    assert r.json()["access_tags"] == ["user:bob"], r.text[:300]
    assert call(tagged, "GET", f"metadata/{L.pub}/{key}", "alice").status_code == 404


@pytest.mark.parametrize("cred", BOB)
def test_bob_cannot_tag_nodes_with_alices_tag(tagged, cred):
    L = layout(tagged)
    key = fresh("tagged")
    body = create_body(key)
    body["access_tags"] = ["user:alice"]
    r = call(tagged, "POST", f"metadata/{L.pub}", cred, json_body=body)
    assert r.status_code == 403, r.text[:300]
    assert_json_error(r)
    for who in ("alice", cred):
        assert call(tagged, "GET", f"metadata/{L.pub}/{key}", who).status_code == 404


# --- Caching ----------------------------------------------------------------


def test_container_full_etag_depends_on_what_the_caller_sees(tagged):
    L = layout(tagged)
    params = {"format": "application/json"}
    mine = call(tagged, "GET", f"container/full/{L.pub}", "alice", params=params)
    his = call(tagged, "GET", f"container/full/{L.pub}", "bob_token", params=params)
    assert mine.status_code == his.status_code == 200
    assert mine.content != his.content
    r = call(tagged, "GET", f"container/full/{L.pub}", "bob_token", params=params,
             headers={"If-None-Match": mine.headers["etag"]})
    assert r.status_code == 200, f"bob revalidating with alice's ETag: {r.status_code}"
    assert mine.headers["etag"] != his.headers["etag"]


# --- After the matrix ------------------------------------------------------


def test_refused_requests_left_alices_nodes_unchanged(tagged, alice_state):
    """bob's and the anonymous caller's refused writes, creates,
    registrations and deletes on alice's nodes changed nothing (values,
    metadata, tags, children, presence; revisions below)."""
    now = _state(tagged)
    revisions = now.pop("arr revisions"), alice_state["arr revisions"]
    assert now == {k: v for k, v in alice_state.items() if k != "arr revisions"}
    assert revisions[0], "alice's array lost all its revisions"
    L = layout(tagged)
    assert alice_state["arr data"] == np.arange(6, dtype="<f8").tolist()  # the owner's writes landed
    assert "intruder" not in json.dumps(alice_state)
    assert len(alice_state["arr revisions"]) >= 1
    assert {f"{L.tok}{s}" for s in ("c", "arr", "tbl", "app", "victim")} <= set(alice_state["pub children"])


def test_refused_requests_left_alices_revisions_unchanged(tagged, alice_state):
    """Last use of `tagged`: alice's array has every revision it had
    before bob and the anonymous caller tried."""
    assert _state(tagged)["arr revisions"] == alice_state["arr revisions"]
