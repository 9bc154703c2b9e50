"""Multi-user authentication with the upstream client, against `tiled
serve config` with a DictionaryAuthenticator provider: password login
(OAuth2 password grant), token refresh after the access token expires,
whoami, API keys created, used and revoked through the client, scopes
enforced (a read-only key cannot write), bad credentials refused."""

import os
import textwrap
import time
import uuid

import httpx
import numpy as np
import pytest

from conftest import Server, password_login

pytestmark = pytest.mark.skipif(
    os.environ.get("TILED_COMPAT_TREE", "demo") != "demo",
    reason="tested once, with the demo run",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import subprocess

    from conftest import TILED_BIN

    d = tmp_path_factory.mktemp("multi")
    # A users file of argon2 hashes, made with `tiled admin hash-password`.
    hashed = subprocess.run([str(TILED_BIN), "admin", "hash-password"], input="carols-secret\n",
                            capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert hashed.startswith("$argon2id$")
    (d / "users").write_text(f"carol:{hashed}\n")
    config = d / "config.yml"
    config.write_text(textwrap.dedent(f"""\
        trees:
          - path: /demo
            tree: demo
          - path: /data
            tree: tiled.catalog:in_memory
            args:
              writable_storage: {d}/data
        authentication:
          providers:
            - provider: toy
              authenticator: tiled.authenticators:DictionaryAuthenticator
              args:
                users_to_passwords:
                  alice: ${{ALICE_PASSWORD}}
                  bob: bobs-secret
            - provider: files
              authenticator: users_file
              args:
                path: {d}/users
          tiled_admins:
            - provider: toy
              id: alice
          secret_keys: [{uuid.uuid4().hex}]
          access_token_max_age: 2
          refresh_token_max_age: 3600
          allow_anonymous_access: false
        database:
          uri: sqlite:///{d}/auth.db
          init_if_not_exists: true
        """))
    s = Server([], env_extra={"ALICE_PASSWORD": "alices-secret"}, tree_args=["config", str(config)])
    yield s
    s.stop()


def login(server, username, password):
    # carol logs in with the second provider (the users file).
    return password_login(server, username, password, 0 if username != "carol" else 1)


def test_about_lists_the_provider_and_sets_the_csrf_cookie(server):
    r = httpx.get(f"{server.api}/")
    auth = r.json()["authentication"]
    assert auth["required"] is True
    assert [p["provider"] for p in auth["providers"]] == ["toy", "files"]
    assert set(auth["links"]) == {"whoami", "apikey", "refresh_session", "revoke_session", "logout"}
    assert "tiled_csrf" in r.cookies


def test_password_login_whoami_and_refresh(server):
    c = login(server, "alice", "alices-secret")
    me = c.context.whoami()
    assert [i["id"] for i in me["identities"]] == ["alice"]
    assert {r["name"] for r in me["roles"]} >= {"user", "admin"}
    assert "scalars" in c["demo"]
    # The access token lives 2 s: after it expires the client refreshes
    # (on the server's 401) and carries on.
    time.sleep(3)
    assert "scalars" in c["demo"]
    arr = np.arange(6, dtype="int32")
    c["data"].write_array(arr, key=f"a{uuid.uuid4().hex[:8]}")


def test_bad_credentials_and_anonymous_are_refused(server):
    r = httpx.post(f"{server.api}/auth/provider/toy/token",
                   data={"grant_type": "password", "username": "alice", "password": "nope"})
    assert r.status_code == 401 and r.json()["detail"] == "Incorrect username or password"
    r = httpx.post(f"{server.api}/auth/provider/toy/token",
                   data={"grant_type": "password", "username": "mallory", "password": "x"})
    assert r.status_code == 401
    r = httpx.get(f"{server.api}/metadata/demo")
    assert r.status_code == 401
    r = httpx.get(f"{server.api}/metadata/demo", headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401
    r = httpx.get(f"{server.api}/metadata/demo", headers={"Authorization": "Apikey " + "ab" * 36})
    assert r.status_code == 401


def test_api_keys_created_used_and_revoked(server):
    from tiled.client import from_uri

    c = login(server, "bob", "bobs-secret")
    full = c.context.create_api_key(note="full")
    ro = c.context.create_api_key(scopes=["read:metadata", "read:data"], note="read only")
    assert len(ro["secret"]) == 72
    writer = from_uri(server.url, api_key=full["secret"])
    reader = from_uri(server.url, api_key=ro["secret"])
    key = f"b{uuid.uuid4().hex[:8]}"
    writer["data"].write_array(np.ones(3), key=key)
    np.testing.assert_array_equal(reader["data"][key].read(), np.ones(3))
    # Scopes are enforced: the read-only key cannot write.
    with pytest.raises(Exception) as info:
        reader["data"].write_array(np.ones(3), key=f"c{uuid.uuid4().hex[:8]}")
    assert "403" in str(info.value) or "permission" in str(info.value).lower()
    r = httpx.put(f"{server.api}/array/full/data/{key}", content=np.zeros(3).tobytes(),
                  headers={"Authorization": f"Apikey {ro['secret']}",
                           "Content-Type": "application/octet-stream"})
    assert r.status_code == 403 and "write:data" in r.json()["detail"], r.text
    # A key cannot have scopes its principal lacks.
    r = httpx.post(f"{server.api}/auth/apikey", json={"scopes": ["admin:apikeys"]},
                   headers={"Authorization": f"Apikey {full['secret']}"})
    assert r.status_code == 403, r.text
    # Revoked keys stop working.
    c.context.revoke_api_key(ro["first_eight"])
    r = httpx.get(f"{server.api}/metadata/demo", headers={"Authorization": f"Apikey {ro['secret']}"})
    assert r.status_code == 401
    r = httpx.get(f"{server.api}/metadata/demo", headers={"Authorization": f"Apikey {full['secret']}"})
    assert r.status_code == 200


def test_revoked_session_cannot_refresh(server):
    c = login(server, "alice", "alices-secret")
    refresh = c.context.http_client.auth.sync_get_token("refresh_token")
    r = httpx.post(f"{server.api}/auth/session/revoke", json={"refresh_token": refresh})
    assert r.status_code == 204, r.text
    r = httpx.post(f"{server.api}/auth/session/refresh", json={"refresh_token": refresh})
    assert r.status_code == 401, r.text


def test_users_file_provider(server):
    c = login(server, "carol", "carols-secret")
    assert [i["id"] for i in c.context.whoami()["identities"]] == ["carol"]
    r = httpx.post(f"{server.api}/auth/provider/files/token",
                   data={"grant_type": "password", "username": "carol", "password": "wrong"})
    assert r.status_code == 401


def test_cli_login_api_keys_and_logout(server, tmp_path):
    import subprocess

    from conftest import TILED_BIN

    env = {**os.environ, "TILED_TOKEN_DIR": str(tmp_path / "tokens")}
    env.pop("TILED_API_KEY", None)

    def tiled(*args, stdin=None):
        return subprocess.run([str(TILED_BIN), *args], input=stdin, capture_output=True,
                              text=True, timeout=60, env=env)

    r = tiled("login", server.url, "--provider", "toy", "--username", "bob", "--password-stdin",
              stdin="wrong\n")
    assert r.returncode != 0 and "Incorrect username or password" in r.stderr, r.stderr
    r = tiled("login", server.url, "--provider", "toy", "--username", "bob", "--password-stdin",
              stdin="bobs-secret\n")
    assert r.returncode == 0, r.stderr
    r = tiled("api-key", "create", server.url, "--scope", "read:metadata", "--scope", "read:data",
              "--note", "from the cli")
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip()
    assert len(secret) == 72
    h = {"Authorization": f"Apikey {secret}"}
    assert httpx.get(f"{server.api}/metadata/demo", headers=h).status_code == 200
    r = tiled("api-key", "list", server.url)
    assert r.returncode == 0 and secret[:8] in r.stdout and "from the cli" in r.stdout, r.stdout
    r = tiled("api-key", "revoke", server.url, secret[:8])
    assert r.returncode == 0, r.stderr
    assert httpx.get(f"{server.api}/metadata/demo", headers=h).status_code == 401
    r = tiled("logout", server.url)
    assert r.returncode == 0, r.stderr
    r = tiled("api-key", "list", server.url)
    assert r.returncode != 0 and "tiled login" in r.stderr
