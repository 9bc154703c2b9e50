"""Upstream's `tiled.authenticators:PAMAuthenticator` against real PAM: a
throwaway system user (random name, random password) is created with
useradd/chpasswd, `tiled serve config` runs with a PAM provider for the
`login` service (upstream's default), and the upstream client logs in as
that user. Needs root (to create the user, and for pam_unix to read
/etc/shadow); skipped otherwise. The user is deleted at the end, whatever
happens."""

import os
import secrets
import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import Server

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("TILED_COMPAT_TREE", "demo") != "demo",
        reason="tested once, with the demo run",
    ),
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0,
        reason="needs root: creates a system user and lets pam_unix read /etc/shadow",
    ),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("useradd", "chpasswd", "userdel")),
        reason="needs useradd, chpasswd and userdel",
    ),
    pytest.mark.skipif(
        not Path("/etc/pam.d/login").exists(),
        reason="no PAM service `login` (/etc/pam.d/login)",
    ),
]

# pam_unix (and the login service's pam_faildelay) wait a few seconds after
# a wrong password.
pytestmark.append(pytest.mark.timeout(180))


@pytest.fixture(scope="module")
def pam_user():
    name = f"tiledpam{secrets.token_hex(4)}"
    password = f"Pw-{secrets.token_urlsafe(12)}"
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name],
                   check=True, capture_output=True, timeout=60)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True,
                       check=True, capture_output=True, timeout=60)
        yield name, password
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=60)
        assert subprocess.run(["id", name], capture_output=True).returncode != 0


@pytest.fixture(scope="module")
def server(pam_user, tmp_path_factory):
    d = tmp_path_factory.mktemp("pam")
    config = d / "config.yml"
    config.write_text(textwrap.dedent(f"""\
        trees:
          - path: /
            tree: demo
        authentication:
          providers:
            - provider: pam
              authenticator: tiled.authenticators:PAMAuthenticator
              args: {{service: login}}
          secret_keys: [{uuid.uuid4().hex}]
          allow_anonymous_access: false
        """))
    s = Server([], tree_args=["config", str(config)])
    yield s
    s.stop()


def test_password_login_and_whoami(server, pam_user):
    import tempfile

    from tiled.client.constructors import from_context
    from tiled.client.context import Context, password_grant

    name, password = pam_user
    os.environ["TILED_CACHE_DIR"] = tempfile.mkdtemp(prefix="tiled-tokens-")
    context, _ = Context.from_any_uri(server.url)
    [provider] = context.server_info.authentication.providers
    assert provider.provider == "pam"
    tokens = password_grant(context.http_client, provider.links["auth_endpoint"],
                            provider.provider, name, password)
    context.configure_auth(tokens, remember_me=False)
    client = from_context(context)
    me = client.context.whoami()
    assert [{"id": i["id"], "provider": i["provider"]} for i in me["identities"]] == [
        {"id": name, "provider": "pam"}
    ]
    assert "scalars" in client


def token(server, username, password):
    return httpx.post(f"{server.api}/auth/provider/pam/token", timeout=60,
                      data={"grant_type": "password", "username": username, "password": password})


def test_wrong_password_is_refused(server, pam_user):
    name, password = pam_user
    r = token(server, name, password + "x")
    assert r.status_code == 401, r.text
    assert r.json()["detail"] == "Incorrect username or password"
    r = token(server, name, "")
    assert r.status_code == 401, r.text


def test_unknown_user_is_refused(server, pam_user):
    _, password = pam_user
    r = token(server, f"tiledpamnobody{secrets.token_hex(4)}", password)
    assert r.status_code == 401, r.text
    assert r.json()["detail"] == "Incorrect username or password"
    # A NUL byte cannot reach PAM: no match, and the server carries on.
    r = token(server, "root\x00", password)
    assert r.status_code == 401, r.text
    assert httpx.get(f"{server.url}/healthz").status_code == 200
