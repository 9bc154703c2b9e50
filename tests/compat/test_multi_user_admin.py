"""Multi-user administration and terminal logins with the upstream client,
against `tiled serve config` with a DictionaryAuthenticator provider:

- the device-code flow for terminals, driven by the unmodified client's
  `device_code_grant` (its path for providers without `client_id`): the
  server hands out a device code and a user code, the user approves the
  code at the server's HTML form with username and password, the client's
  polling gets the tokens;
- a wrong password (or user code) at the form is refused and polling stays
  pending;
- admin routes for principals through `context.admin`: list, show, create
  a service principal, create and revoke API keys for it; a non-admin gets
  403 naming the scope, an anonymous caller 401."""

import os
import queue
import tempfile
import textwrap
import threading
import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from conftest import Server

pytestmark = pytest.mark.skipif(
    os.environ.get("TILED_COMPAT_TREE", "demo") != "demo",
    reason="tested once, with the demo run",
)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("multi-admin")
    config = d / "config.yml"
    config.write_text(textwrap.dedent(f"""\
        trees:
          - path: /demo
            tree: demo
        authentication:
          providers:
            - provider: toy
              authenticator: tiled.authenticators:DictionaryAuthenticator
              args:
                users_to_passwords:
                  alice: alices-secret
                  bob: bobs-secret
          tiled_admins:
            - provider: toy
              id: alice
          secret_keys: [{uuid.uuid4().hex}]
          access_token_max_age: 3
          refresh_token_max_age: 3600
          allow_anonymous_access: false
        database:
          uri: sqlite:///{d}/auth.db
          init_if_not_exists: true
        """))
    s = Server([], tree_args=["config", str(config)])
    yield s
    s.stop()


def new_context(server):
    from tiled.client.context import Context

    # Each login gets its own token cache (the client rereads it on 401).
    os.environ["TILED_CACHE_DIR"] = tempfile.mkdtemp(prefix="tiled-tokens-")
    context, _ = Context.from_any_uri(server.url)
    return context


def login(server, username, password):
    from tiled.client.constructors import from_context
    from tiled.client.context import password_grant

    context = new_context(server)
    (provider,) = context.server_info.authentication.providers
    tokens = password_grant(context.http_client, provider.links["auth_endpoint"],
                            provider.provider, username, password)
    context.configure_auth(tokens, remember_me=True)
    return from_context(context)


def approve(server, user_code, username, password):
    "What a user's browser posts from the device-code form."
    return httpx.post(f"{server.api}/auth/provider/toy/device_code",
                      data={"user_code": user_code, "username": username, "password": password})


def test_device_code_flow_with_the_client(server, monkeypatch):
    import webbrowser

    from tiled.client.constructors import from_context
    from tiled.client.context import device_code_grant

    # The client opens the authorization URI in a browser: catch it instead.
    opened = queue.Queue()
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.put(url) or True)
    context = new_context(server)
    (provider,) = context.server_info.authentication.providers
    # Still a password provider (from_uri prompts for a password) ...
    assert provider.mode == "internal"
    # ... that also offers the device-code flow at .../authorize.
    auth_endpoint = f"{server.api}/auth/provider/toy/authorize"
    result = {}

    def terminal():
        try:
            result["tokens"] = device_code_grant(context.http_client, auth_endpoint,
                                                 client_id=None, token_endpoint=None)
        except BaseException as e:  # noqa: BLE001 (reported below)
            result["error"] = e

    t = threading.Thread(target=terminal, daemon=True)
    t.start()
    uri = opened.get(timeout=30)
    assert uri.startswith(f"{server.api}/auth/provider/toy/device_code?code=")
    # The form the user sees, with the code filled in; no external assets.
    r = httpx.get(uri)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    (code,) = parse_qs(urlparse(uri).query)["code"]
    assert f'value="{code}"' in r.text and 'name="password"' in r.text
    assert "http" not in r.text.lower().replace("http-equiv", "")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    # The user approves (lower case, as people type it).
    r = approve(server, code.lower(), "alice", "alices-secret")
    assert r.status_code == 200 and "Success" in r.text, r.text
    t.join(timeout=60)
    assert not t.is_alive(), "device_code_grant kept polling"
    assert "error" not in result, result.get("error")
    tokens = result["tokens"]
    assert tokens["identity"] == {"id": "alice", "provider": "toy"}
    context.configure_auth(tokens, remember_me=False)
    me = context.whoami()
    assert [i["id"] for i in me["identities"]] == ["alice"]
    assert "scalars" in from_context(context)["demo"]


def test_wrong_password_at_the_form_keeps_polling_pending(server):
    r = httpx.post(f"{server.api}/auth/provider/toy/authorize")
    assert r.status_code == 200, r.text
    start = r.json()
    assert set(start) == {"authorization_uri", "verification_uri", "interval", "device_code",
                          "expires_in", "user_code"}
    assert start["verification_uri"] == f"{server.api}/auth/provider/toy/token"
    assert start["interval"] == 5 and start["expires_in"] == 900
    assert len(start["device_code"]) == 64 and len(start["user_code"]) == 9

    def poll(device_code=start["device_code"]):
        return httpx.post(start["verification_uri"],
                          json={"device_code": device_code, "grant_type": DEVICE_GRANT})

    pending = {"detail": {"error": "authorization_pending"}}
    r = poll()
    assert r.status_code == 400 and r.json() == pending, r.text
    # A wrong password is refused, and says not which of the two was wrong.
    r = approve(server, start["user_code"], "alice", "not-her-password")
    assert r.status_code == 401 and "Incorrect username or password" in r.text
    assert "not-her-password" not in r.text
    r = approve(server, start["user_code"], "mallory", "x")
    assert r.status_code == 401 and "Incorrect username or password" in r.text
    r = poll()
    assert r.status_code == 400 and r.json() == pending
    # A wrong user code is refused whatever the password.
    r = approve(server, "0000-0000", "alice", "alices-secret")
    assert r.status_code == 401 and "Invalid user code" in r.text
    # What the form echoes is escaped.
    r = httpx.get(f"{server.api}/auth/provider/toy/device_code",
                  params={"code": '"><script>alert(1)</script>'})
    assert r.status_code == 200 and "<script>" not in r.text
    # Approved: the tokens, once.
    r = approve(server, start["user_code"], "bob", "bobs-secret")
    assert r.status_code == 200, r.text
    r = poll()
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["identity"] == {"id": "bob", "provider": "toy"} and tokens["access_token"]
    r = httpx.get(f"{server.api}/auth/whoami",
                  headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert [i["id"] for i in r.json()["identities"]] == ["bob"]
    assert poll().status_code == 404
    # A used code cannot be approved again.
    r = approve(server, start["user_code"], "alice", "alices-secret")
    assert r.status_code == 401
    # Not hex; unknown provider.
    assert poll("not-hex").status_code == 401
    assert httpx.post(f"{server.api}/auth/provider/nope/authorize").status_code == 404
    # The password grant (a form) still works on the same route.
    r = httpx.post(start["verification_uri"],
                   data={"grant_type": "password", "username": "bob", "password": "bobs-secret"})
    assert r.status_code == 200 and r.json()["identity"]["id"] == "bob"


def test_admin_manages_principals_and_their_api_keys(server):
    from tiled.client import from_uri
    from tiled.client.utils import ClientError

    bob_uuid = login(server, "bob", "bobs-secret").context.whoami()["uuid"]
    c = login(server, "alice", "alices-secret")
    admin = c.context.admin
    principals = admin.list_principals()
    assert {i["id"] for p in principals for i in p["identities"]} >= {"alice", "bob"}
    assert all({"uuid", "type", "roles", "api_keys", "sessions"} <= set(p) for p in principals)
    assert len(admin.list_principals(limit=1)) == 1
    shown = admin.show_principal(bob_uuid)
    assert shown["uuid"] == bob_uuid and [i["id"] for i in shown["identities"]] == ["bob"]
    with pytest.raises(ClientError) as info:
        admin.show_principal(uuid.uuid4())
    assert info.value.response.status_code == 404

    service = admin.create_service_principal("user")
    assert service["type"] == "service" and [r["name"] for r in service["roles"]] == ["user"]
    assert service["identities"] == []
    key = admin.create_api_key(service["uuid"], note="for the service")
    assert len(key["secret"]) == 72 and key["note"] == "for the service"
    svc = from_uri(server.url, api_key=key["secret"])
    assert "scalars" in svc["demo"]
    assert svc.context.whoami()["uuid"] == service["uuid"]
    assert [k["first_eight"] for k in admin.show_principal(service["uuid"])["api_keys"]] == [
        key["first_eight"]]
    # A key cannot carry scopes its principal lacks.
    with pytest.raises(ClientError) as info:
        admin.create_api_key(service["uuid"], scopes=["read:principals"])
    assert info.value.response.status_code == 403
    admin.revoke_api_key(service["uuid"], key["first_eight"])
    r = httpx.get(f"{server.api}/metadata/demo", headers={"Authorization": f"Apikey {key['secret']}"})
    assert r.status_code == 401

    # The same routes over plain HTTP, with an admin API key.
    mine = c.context.create_api_key(note="admin")
    h = {"Authorization": f"Apikey {mine['secret']}"}
    r = httpx.get(f"{server.api}/auth/principal", params={"page[offset]": 0, "page[limit]": 2},
                  headers=h)
    assert r.status_code == 200 and len(r.json()) == 2
    r = httpx.post(f"{server.api}/auth/principal/{uuid.uuid4()}/apikey", json={}, headers=h)
    assert r.status_code == 404
    r = httpx.delete(f"{server.api}/auth/principal/{service['uuid']}/apikey",
                     params={"first_eight": "deadbeef"}, headers=h)
    assert r.status_code == 404
    r = httpx.post(f"{server.api}/auth/principal", params={"role": "nope"}, headers=h)
    assert r.status_code == 400
    r = httpx.get(f"{server.api}/auth/principal/not-a-uuid", headers=h)
    assert r.status_code == 422


def test_non_admins_are_refused(server):
    from tiled.client.utils import ClientError

    bob = login(server, "bob", "bobs-secret")
    me = bob.context.whoami()["uuid"]
    with pytest.raises(ClientError) as info:
        bob.context.admin.list_principals()
    assert info.value.response.status_code == 403
    assert "read:principals" in info.value.response.json()["detail"]
    key = bob.context.create_api_key(note="bob")
    h = {"Authorization": f"Apikey {key['secret']}"}
    routes = [
        ("GET", "principal", "read:principals"),
        ("GET", f"principal/{me}", "read:principals"),
        ("POST", "principal?role=user", "write:principals"),
        ("POST", f"principal/{me}/apikey", "admin:apikeys"),
        ("DELETE", f"principal/{me}/apikey?first_eight={key['first_eight']}", "admin:apikeys"),
    ]
    for method, path, scope in routes:
        kwargs = {"json": {}} if method == "POST" else {}
        r = httpx.request(method, f"{server.api}/auth/{path}", headers=h, **kwargs)
        assert r.status_code == 403 and scope in r.json()["detail"], (method, path, r.text)
        r = httpx.request(method, f"{server.api}/auth/{path}", **kwargs)
        assert r.status_code == 401, (method, path, r.text)
    # Bob's key survived the refused revocation.
    r = httpx.get(f"{server.api}/metadata/demo", headers=h)
    assert r.status_code == 200


def _key_of(server, username, password):
    tokens = httpx.post(f"{server.api}/auth/provider/toy/token",
                        data={"username": username, "password": password}).json()
    r = httpx.post(f"{server.api}/auth/apikey", json={"scopes": None, "note": "cli"},
                   headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert r.status_code == 200, r.text
    return r.json()["secret"]


def _tiled(*args):
    import subprocess

    from conftest import TILED_BIN

    env = {k: v for k, v in os.environ.items() if not k.startswith("TILED_")}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return subprocess.run([str(TILED_BIN), *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_tiled_admin_principal_commands(server):
    """`tiled admin list-principals|show-principal|create-service-principal`
    (upstream's commands) through the admin routes, as alice (admin); bob
    is refused with the scope named."""
    import json

    key = _key_of(server, "alice", "alices-secret")
    r = _tiled("admin", "list-principals", server.url, "--api-key", key)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    ids = {i["id"] for p in listed for i in p["identities"]}
    assert "alice" in ids
    r = _tiled("admin", "create-service-principal", server.url, "--api-key", key, "--role", "user")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert made["type"] == "service" and [x["name"] for x in made["roles"]] == ["user"]
    r = _tiled("admin", "show-principal", server.url, made["uuid"], "--api-key", key)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["uuid"] == made["uuid"]
    r = _tiled("admin", "list-principals", server.url, "--api-key",
               _key_of(server, "bob", "bobs-secret"))
    assert r.returncode != 0 and "read:principals" in r.stderr, r.stderr


def test_tiled_admin_database_and_config_commands(tmp_path):
    """`tiled admin initialize-database|upgrade-database|check-config`."""
    db = f"sqlite:///{tmp_path}/auth.db"
    for command in ["initialize-database", "upgrade-database"]:
        r = _tiled("admin", command, db)
        assert r.returncode == 0, r.stderr
        assert "schema version" in r.stderr
    good = tmp_path / "good.yml"
    good.write_text("trees: [{path: /, tree: demo}]\n")
    r = _tiled("admin", "check-config", str(good))
    assert r.returncode == 0 and "valid" in r.stderr, r.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("trees: [{path: /, tree: demo, args: {nope: 1}}]\n")
    r = _tiled("admin", "check-config", str(bad))
    assert r.returncode != 0 and "trees[0].args" in r.stderr, r.stderr
