"""OpenID Connect logins (upstream's `tiled.authenticators:OIDCAuthenticator`)
against a real provider on loopback: the certified `oidc-provider` npm
package (tests/oidc/provider.mjs; scripts/test installs it and exports
TILED_TEST_OIDC_NODE_MODULES), with its development login pages (any login
name, then a consent prompt). The "browser" is an httpx client with cookies
that fills in those pages.

- the about document announces the provider in external mode;
- a browser login: our /authorize redirects to the provider, the provider
  sends the browser back to /code, which answers tokens for alice@p (an
  admin through `tiled_admins`); redirect_on_success/failure;
- the unmodified client's `from_uri` with its device-code flow: the user
  logs in at the provider, lands on our /device_code form, types the code
  the terminal printed; the client ends up logged in as alice and can read
  and write; the same with our `tiled login`;
- refusals: a wrong user code, a forged code, an id_token for another
  audience, the password grant;
- a provider that is down (or never answers) when the server starts: the
  server starts, and logins answer a JSON 502 promptly.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import httpx
import numpy as np
import pytest

from conftest import LOG_FILES, Server

pytestmark = pytest.mark.skipif(
    os.environ.get("TILED_COMPAT_TREE", "demo") != "demo",
    reason="tested once, with the demo run",
)

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_SCRIPT = ROOT / "tests" / "oidc" / "provider.mjs"
NODE_MODULES = os.environ.get("TILED_TEST_OIDC_NODE_MODULES") or str(
    Path.home() / ".cache" / "tiled-rs" / "oidc-provider" / "node_modules")
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
USER_CODE = re.compile(r"\b[0-9A-F]{4}-[0-9A-F]{4}\b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_provider_package():
    node = shutil.which("node")
    installed = (Path(NODE_MODULES) / "oidc-provider" / "package.json").is_file()
    if node and installed:
        return node
    message = (f"the OIDC test provider needs node and oidc-provider in {NODE_MODULES} "
               "(scripts/test installs it from tests/oidc/package-lock.json)")
    if os.environ.get("TILED_TEST_OIDC_NODE_MODULES"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class OidcProvider:
    """`node tests/oidc/provider.mjs PORT` with the given clients."""

    def __init__(self, port: int, clients: list[dict]):
        node = require_provider_package()
        self.url = f"http://127.0.0.1:{port}"
        self._log = tempfile.NamedTemporaryFile(prefix="tiled-oidc-provider-", suffix=".log",
                                                delete=False)
        LOG_FILES.append(self._log.name)
        env = dict(os.environ, TILED_TEST_OIDC_NODE_MODULES=NODE_MODULES,
                   OIDC_CLIENTS=json.dumps(clients))
        self.proc = subprocess.Popen([node, str(PROVIDER_SCRIPT), str(port)], env=env,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        with httpx.Client(trust_env=False, timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"the OIDC provider exited:\n{self.output()}", pytrace=False)
                try:
                    if http.get(f"{self.url}/.well-known/openid-configuration").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"the OIDC provider did not start:\n{self.output()}", pytrace=False)

    def output(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-5000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


class Forms(HTMLParser):
    """The forms of a page: action and input name → value."""

    def __init__(self):
        super().__init__()
        self.forms: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append((a.get("action") or "", {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value") or ""


def forms_of(html: str):
    parser = Forms()
    parser.feed(html)
    return parser.forms


class Browser:
    """A user's browser at the provider's development login pages."""

    def __init__(self):
        self.http = httpx.Client(trust_env=False, timeout=15, follow_redirects=False)

    def log_in(self, url: str, login: str, until: str) -> str:
        """Open `url`, sign in as `login` and consent, following redirects
        until one leads to a URL starting with `until`; give that URL."""
        for _ in range(20):
            if url.startswith(until):
                return url
            r = self.http.get(url)
            if r.is_redirect:
                url = urljoin(url, r.headers["location"])
                continue
            assert r.status_code == 200, (url, r.status_code, r.text[:2000])
            (action, fields), *_ = forms_of(r.text)
            if "login" in fields:
                fields.update(login=login, password="anything")
            r = self.http.post(urljoin(url, action), data=fields)
            assert r.is_redirect, (r.status_code, r.text[:2000])
            url = urljoin(url, r.headers["location"])
        raise AssertionError(f"still not back at {until} after 20 steps; at {url}")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Our server (started while the provider is still down), then the
    provider with its clients registered for our redirect URIs."""
    d = tmp_path_factory.mktemp("oidc")
    provider_port = free_port()
    well_known = f"http://127.0.0.1:{provider_port}/.well-known/openid-configuration"
    config = d / "config.yml"
    config.write_text(textwrap.dedent(f"""\
        trees:
          - path: /
            tree: catalog
            args:
              uri: sqlite:///{d}/catalog.db
              writable_storage: {d}/data
              init_if_not_exists: true
        authentication:
          providers:
            - provider: p
              authenticator: tiled.authenticators:OIDCAuthenticator
              args:
                audience: tiled
                client_id: tiled
                client_secret: ${{OIDC_CLIENT_SECRET}}
                well_known_uri: {well_known}
                confirmation_message: "You have logged in with the test provider as {{id}}."
            # A client whose id_tokens are for audience "other", not "tiled".
            - provider: other
              authenticator: tiled.authenticators:OIDCAuthenticator
              args:
                audience: tiled
                client_id: other
                client_secret: others-secret
                well_known_uri: {well_known}
            - provider: redir
              authenticator: tiled.authenticators:OIDCAuthenticator
              args:
                audience: tiled
                client_id: tiled
                client_secret: ${{OIDC_CLIENT_SECRET}}
                well_known_uri: {well_known}
                redirect_on_success: http://app.invalid/welcome?from=tiled
                redirect_on_failure: http://app.invalid/failed
          tiled_admins:
            - provider: p
              id: alice
          secret_keys: [{uuid.uuid4().hex}]
          allow_anonymous_access: false
        database:
          uri: sqlite:///{d}/auth.db
          init_if_not_exists: true
        """))
    secret = uuid.uuid4().hex
    server = Server([], env_extra={"OIDC_CLIENT_SECRET": secret},
                    tree_args=["config", str(config)])
    auth = f"{server.api}/auth/provider"
    provider = None
    try:
        provider = OidcProvider(provider_port, [
            {"client_id": "tiled", "client_secret": secret,
             "redirect_uris": [f"{auth}/p/code", f"{auth}/p/device_code", f"{auth}/redir/code"]},
            {"client_id": "other", "client_secret": "others-secret",
             "redirect_uris": [f"{auth}/other/code"]},
        ])
        yield server, provider
    finally:
        if provider is not None:
            provider.stop()
        server.stop()


def bearer(tokens):
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_about_announces_an_external_provider(env):
    from tiled.client.context import Context

    server, _ = env
    about = httpx.get(f"{server.api}/").json()["authentication"]
    assert about["required"] is True
    p = next(x for x in about["providers"] if x["provider"] == "p")
    assert p == {
        "provider": "p",
        "mode": "external",
        "links": {"auth_endpoint": f"{server.api}/auth/provider/p/authorize"},
        "confirmation_message": "You have logged in with the test provider as {id}.",
    }
    # What the client makes of it: no client_id/token_endpoint, so it will
    # use this server's device-code flow.
    context, _ = Context.from_any_uri(server.url)
    spec = next(x for x in context.server_info.authentication.providers if x.provider == "p")
    assert spec.mode == "external" and "client_id" not in spec.links


def test_browser_login(env):
    server, provider = env
    browser = Browser()
    r = browser.http.get(f"{server.api}/auth/provider/p/authorize", params={"state": "s-1"})
    assert r.status_code in (302, 307), r.text
    location = r.headers["location"]
    assert location.startswith(f"{provider.url}/auth?")
    q = parse_qs(urlparse(location).query)
    assert q == {
        "client_id": ["tiled"],
        "response_type": ["code"],
        "scope": ["offline_access openid"],
        "redirect_uri": [f"{server.api}/auth/provider/p/code"],
        "prompt": ["login"],
        "state": ["s-1"],
    }
    back = browser.log_in(location, "alice", f"{server.api}/auth/provider/p/code?")
    back_query = parse_qs(urlparse(back).query)
    assert back_query["state"] == ["s-1"] and back_query["code"]
    r = browser.http.get(back)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["identity"] == {"id": "alice", "provider": "p"}
    assert tokens["token_type"] == "bearer" and tokens["refresh_token"]
    me = httpx.get(f"{server.api}/auth/whoami", headers=bearer(tokens)).json()
    assert [(i["provider"], i["id"]) for i in me["identities"]] == [("p", "alice")]
    # alice is in tiled_admins.
    assert "admin" in [role["name"] for role in me["roles"]]
    r = httpx.get(f"{server.api}/auth/principal", headers=bearer(tokens))
    assert r.status_code == 200
    # The tokens refresh like any others.
    r = httpx.post(f"{server.api}/auth/session/refresh",
                   json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200 and r.json()["access_token"]
    # A code is good once.
    r = httpx.get(back)
    assert r.status_code == 401 and r.json() == {"detail": "Authentication failure"}
    # Another user of the same provider is another principal, not an admin.
    back = browser.log_in(browser.http.get(f"{server.api}/auth/provider/p/authorize")
                          .headers["location"], "bob", f"{server.api}/auth/provider/p/code?")
    bob = httpx.get(back).json()
    assert bob["identity"] == {"id": "bob", "provider": "p"}
    assert bob["principal"] != tokens["principal"]
    me = httpx.get(f"{server.api}/auth/whoami", headers=bearer(bob)).json()
    assert "admin" not in [role["name"] for role in me["roles"]]


def test_redirects_on_success_and_failure(env):
    server, _ = env
    browser = Browser()
    location = browser.http.get(f"{server.api}/auth/provider/redir/authorize",
                                params={"state": "s-2"}).headers["location"]
    back = browser.log_in(location, "carol", f"{server.api}/auth/provider/redir/code?")
    r = httpx.get(back)
    assert r.status_code == 302, r.text
    to = urlparse(r.headers["location"])
    assert (to.scheme, to.netloc, to.path) == ("http", "app.invalid", "/welcome")
    q = parse_qs(to.query)
    assert q["from"] == ["tiled"] and q["state"] == ["s-2"]
    assert q["identity.id"] == ["carol"] and q["identity.provider"] == ["redir"]
    assert q["access_token"] and q["refresh_token"] and q["principal"]
    me = httpx.get(f"{server.api}/auth/whoami",
                   headers={"Authorization": f"Bearer {q['access_token'][0]}"}).json()
    assert [i["id"] for i in me["identities"]] == ["carol"]
    r = httpx.get(f"{server.api}/auth/provider/redir/code", params={"code": "forged"})
    assert r.status_code == 302 and r.headers["location"] == "http://app.invalid/failed"


def test_refusals(env):
    server, _ = env
    api = server.api
    # A forged code.
    r = httpx.get(f"{api}/auth/provider/p/code", params={"code": "forged"})
    assert r.status_code == 401 and r.json() == {"detail": "Authentication failure"}
    assert r.headers["content-type"] == "application/json"
    r = httpx.get(f"{api}/auth/provider/p/code")
    assert r.status_code == 401
    # An id_token for another audience: a real login at the provider, as
    # client "other", whose id_tokens say aud=other.
    browser = Browser()
    location = browser.http.get(f"{api}/auth/provider/other/authorize").headers["location"]
    assert parse_qs(urlparse(location).query)["client_id"] == ["other"]
    back = browser.log_in(location, "alice", f"{api}/auth/provider/other/code?")
    r = httpx.get(back)
    assert r.status_code == 401 and r.json() == {"detail": "Authentication failure"}
    server._log.flush()
    assert "id_token is for another audience" in Path(server._log.name).read_text(errors="replace")
    # No password grant on an OIDC provider.
    r = httpx.post(f"{api}/auth/provider/p/token",
                   data={"grant_type": "password", "username": "alice", "password": "x"})
    assert 400 <= r.status_code < 500 and "OpenID Connect" in r.json()["detail"]
    # Unknown providers.
    assert httpx.get(f"{api}/auth/provider/nope/authorize").status_code == 404


def test_device_code_login_with_the_client(env, monkeypatch, capsys):
    import webbrowser

    import tiled.client.context as client_context
    from tiled.client import from_uri

    server, provider = env
    monkeypatch.setenv("TILED_CACHE_DIR", tempfile.mkdtemp(prefix="tiled-tokens-"))
    # The client opens the provider's login page in a browser: catch it.
    opened = queue.Queue()
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.put(url) or True)
    # Three providers: the client asks which; answer "p".
    monkeypatch.setattr(client_context, "identity_provider_input",
                        lambda providers: next(p for p in providers if p.provider == "p"))
    result = {}

    def terminal():
        try:
            result["client"] = from_uri(server.url, remember_me=False)
        except BaseException as e:  # noqa: BLE001 (reported below)
            result["error"] = e

    t = threading.Thread(target=terminal, daemon=True)
    t.start()
    uri = opened.get(timeout=60)
    q = parse_qs(urlparse(uri).query)
    assert uri.startswith(f"{provider.url}/auth?")
    assert q["client_id"] == ["tiled"] and q["scope"] == ["openid"]
    assert q["redirect_uri"] == [f"{server.api}/auth/provider/p/device_code"]
    # The user code the terminal printed.
    printed = ""
    deadline = time.monotonic() + 30
    while not USER_CODE.search(printed) and time.monotonic() < deadline:
        printed += capsys.readouterr().out
        time.sleep(0.05)
    (user_code,) = USER_CODE.findall(printed)
    assert uri in printed
    # The user logs in at the provider and is sent back to our form.
    browser = Browser()
    back = browser.log_in(uri, "alice", f"{server.api}/auth/provider/p/device_code?")
    r = browser.http.get(back)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    (action, fields), = forms_of(r.text)
    assert fields["code"] == parse_qs(urlparse(back).query)["code"][0]
    assert "user_code" in fields
    # A wrong user code first: refused, the form again, the terminal waits.
    r = browser.http.post(urljoin(back, action), data={**fields, "user_code": "0000-0000"})
    assert r.status_code == 401 and "Invalid user code" in r.text
    assert t.is_alive()
    # Then the right one (lower case, as people type it).
    r = browser.http.post(urljoin(back, action), data={**fields, "user_code": user_code.lower()})
    assert r.status_code == 200 and "Success" in r.text, r.text
    t.join(timeout=60)
    assert not t.is_alive(), "the client kept polling"
    assert "error" not in result, result.get("error")
    client = result["client"]
    printed += capsys.readouterr().out
    assert "You have logged in with the test provider as alice." in printed
    me = client.context.whoami()
    assert [(i["provider"], i["id"]) for i in me["identities"]] == [("p", "alice")]
    # Read and write as alice.
    key = f"a{uuid.uuid4().hex[:8]}"
    client.write_array(np.arange(6).reshape(2, 3), key=key, metadata={"by": "alice"})
    assert key in client
    np.testing.assert_array_equal(client[key].read(), np.arange(6).reshape(2, 3))
    assert client[key].metadata["by"] == "alice"
    # The OIDC code was spent on that login: the form cannot reuse it.
    r = httpx.post(f"{server.api}/auth/provider/p/authorize")
    start = r.json()
    r = browser.http.post(urljoin(back, action), data={**fields, "user_code": start["user_code"]})
    assert r.status_code == 401 and "Success" not in r.text
    r = httpx.post(start["verification_uri"],
                   json={"device_code": start["device_code"], "grant_type": DEVICE_GRANT})
    assert r.status_code == 400 and r.json() == {"detail": {"error": "authorization_pending"}}


def test_tiled_login_command(env, tmp_path):
    """Our own CLI: `tiled login` with an OIDC provider prints the link and
    the code, and finishes once the code is approved in a browser."""
    from conftest import TILED_BIN

    server, provider = env
    run_env = dict(os.environ, TILED_TOKEN_DIR=str(tmp_path / "tokens"))
    run_env.pop("TILED_API_KEY", None)
    proc = subprocess.Popen([str(TILED_BIN), "login", server.url, "--provider", "p"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=run_env)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    printed, link, user_code = "", None, None
    deadline = time.monotonic() + 30
    while (link is None or user_code is None) and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        printed += line
        if line.startswith(f"{provider.url}/auth?"):
            link = line.strip()
        elif USER_CODE.fullmatch(line.strip()):
            user_code = line.strip()
    assert link and user_code, printed
    browser = Browser()
    back = browser.log_in(link, "dave", f"{server.api}/auth/provider/p/device_code?")
    (action, fields), = forms_of(browser.http.get(back).text)
    r = browser.http.post(urljoin(back, action), data={**fields, "user_code": user_code})
    assert r.status_code == 200, r.text
    assert proc.wait(timeout=60) == 0
    while not lines.empty():
        printed += lines.get()
    assert "logged in as dave (p)" in printed
    assert "You have logged in with the test provider as dave." in printed
    # The saved session works.
    out = subprocess.run([str(TILED_BIN), "api-key", "create", server.url, "--note", "cli"],
                         capture_output=True, text=True, env=run_env, timeout=60)
    assert out.returncode == 0, out.stderr
    secret = re.search(r"\b[0-9a-f]{72}\b", out.stdout + out.stderr).group(0)
    me = httpx.get(f"{server.api}/auth/whoami", headers={"Authorization": f"Apikey {secret}"})
    assert [i["id"] for i in me.json()["identities"]] == ["dave"]


def test_forged_code_at_the_device_form_keeps_polling_pending(env):
    server, _ = env
    api = server.api
    start = httpx.post(f"{api}/auth/provider/p/authorize").json()
    assert set(start) == {"authorization_uri", "verification_uri", "interval", "device_code",
                          "expires_in", "user_code"}
    assert start["verification_uri"] == f"{api}/auth/provider/p/token"
    # The form echoes the code escaped.
    r = httpx.get(f"{api}/auth/provider/p/device_code", params={"code": '"><script>x</script>'})
    assert r.status_code == 200 and "<script>" not in r.text
    r = httpx.post(f"{api}/auth/provider/p/device_code", params={"code": "forged"},
                   data={"code": "forged", "user_code": start["user_code"]})
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
    assert "identity provider failed" in r.text
    r = httpx.post(start["verification_uri"],
                   json={"device_code": start["device_code"], "grant_type": DEVICE_GRANT})
    assert r.status_code == 400 and r.json() == {"detail": {"error": "authorization_pending"}}


@pytest.mark.timeout(90)
def test_provider_down_when_the_server_starts(tmp_path):
    """A provider that refuses connections, and one that never answers: the
    server starts anyway, and logins fail with a JSON 502, promptly."""
    # Accepts connections (the kernel does) but never answers.
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(16)
    refused = free_port()
    config = tmp_path / "config.yml"
    config.write_text(textwrap.dedent(f"""\
        trees:
          - path: /
            tree: tiled.catalog:in_memory
        authentication:
          providers:
            - provider: down
              authenticator: tiled.authenticators:OIDCAuthenticator
              args:
                audience: tiled
                client_id: tiled
                client_secret: x
                well_known_uri: http://127.0.0.1:{refused}/.well-known/openid-configuration
            - provider: silent
              authenticator: tiled.authenticators:OIDCAuthenticator
              args:
                audience: tiled
                client_id: tiled
                client_secret: x
                well_known_uri: http://127.0.0.1:{black_hole.getsockname()[1]}/.well-known/openid-configuration
          secret_keys: [{uuid.uuid4().hex}]
        """))
    server = Server([], tree_args=["config", str(config)])
    try:
        about = httpx.get(f"{server.api}/").json()["authentication"]
        assert [p["provider"] for p in about["providers"]] == ["down", "silent"]
        api = f"{server.api}/auth/provider/down"
        for method, url in [("GET", f"{api}/authorize"), ("POST", f"{api}/authorize"),
                            ("GET", f"{api}/code?code=abc")]:
            t0 = time.monotonic()
            r = httpx.request(method, url, timeout=30)
            assert r.status_code == 502, (method, url, r.text)
            assert r.headers["content-type"] == "application/json"
            assert "unavailable" in r.json()["detail"]
            assert time.monotonic() - t0 < 5
        r = httpx.post(f"{api}/device_code", data={"code": "abc", "user_code": "0000-0000"})
        assert r.status_code == 401 and "Invalid user code" in r.text
        # A provider that never answers: the 10 s limit, then 502.
        t0 = time.monotonic()
        r = httpx.get(f"{server.api}/auth/provider/silent/authorize", timeout=60)
        assert r.status_code == 502 and "unavailable" in r.json()["detail"], r.text
        assert time.monotonic() - t0 < 30
        # The rest of the server is unaffected.
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()
        black_hole.close()
