"""Fixtures for the security suite: servers started from `$TILED_BIN`
(through the compat suite's `Server` helper), a recorder of every HTTP
exchange the suite makes (for the final "no 5xx, nothing leaked" check),
and a raw HTTP helper for requests httpx would normalise.

Environment: TILED_BIN (default $HOME/.cache/tiled-rs/target/debug/tiled).
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import importlib.util
import json
import os
import re
import select
import socket
import sys
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

# The compat conftest sets NO_PROXY, short client retries and drops
# TILED_API_KEY when imported; load it under its own name so that it does
# not collide with this conftest module.
_COMPAT_CONFTEST = Path(__file__).resolve().parent.parent / "compat" / "conftest.py"
_spec = importlib.util.spec_from_file_location("tiled_compat_conftest", _COMPAT_CONFTEST)
compat = importlib.util.module_from_spec(_spec)
sys.modules["tiled_compat_conftest"] = compat
_spec.loader.exec_module(compat)

import httpx  # noqa: E402
import pytest  # noqa: E402

TILED_BIN = compat.TILED_BIN
PER_TEST_TIMEOUT = 60
# Every server runs with its address space limited, so that an input that
# makes it allocate without bound aborts that server ("memory allocation
# of N bytes failed") instead of pushing the machine into the OOM killer.
MEMORY_LIMIT = 6 << 30


def Server(*args, **kw):  # noqa: N802 - stands in for the compat class
    import resource
    import subprocess

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    original = subprocess.Popen

    def popen(*a, **k):
        k.setdefault("preexec_fn", limit)
        return original(*a, **k)

    subprocess.Popen = popen
    try:
        return compat.Server(*args, **kw)
    finally:
        subprocess.Popen = original


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(PER_TEST_TIMEOUT))
    # `test_zz_*` checks every exchange of the run: it runs last, whatever
    # the order the files were collected in.
    items.sort(key=lambda item: item.name.startswith("test_zz_"))


# ---------------------------------------------------------------------------
# Recording every exchange
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Record:
    test: str
    method: str
    url: str
    status: int
    content_type: str
    body: str  # error bodies only (status >= 400), else ""
    sent: str  # URL + request body as text: what the caller itself supplied
    # PRIVATE strings this answer showed a caller who may not see them
    # (checked on every answer, successes included).
    private: tuple = ()


RECORDS: list[Record] = []
CURRENT = {"test": None}
# Strings that must never appear in an error body (unless the caller sent
# them in the URL or body itself): keys, passwords, tokens, signing keys.
SECRETS: set[str] = set()
# Server-side directories (temp catalogs, storage) that must not leak.
SERVER_DIRS: set[str] = set()
# (name, log file) of every server started, scanned for panics at the end.
SERVER_LOGS: list[tuple[str, str]] = []
# (API base URL, the credentials allowed to see them, strings): names and
# values of one user's nodes. Any answer of that server -- success or
# error -- to any other credential (anonymous included) that holds one of
# the strings which the caller did not send itself is a leak.
PRIVATE: list[tuple[str, frozenset, frozenset]] = []

_MAX_SENT = 4 * 1024 * 1024


def _private_shown(url: str, auth: str, body: bytes, sent: str) -> tuple:
    found = []
    for base, allowed, strings in PRIVATE:
        if url.startswith(base) and auth not in allowed:
            text = body.decode("utf-8", "replace")
            found += [s for s in strings if s in text and s not in sent]
    return tuple(found)


def record(method, url, status, content_type, body: bytes, sent: str, auth: str = ""):
    """`auth`: the credential the request carried (Authorization header
    or `api_key` parameter; "" for none)."""
    RECORDS.append(Record(
        test=CURRENT["test"] or "<fixture>",
        method=method,
        url=str(url)[:500],
        status=status,
        content_type=content_type or "",
        body=body.decode("utf-8", "replace") if status >= 400 else "",
        sent=sent,
        private=_private_shown(str(url), auth, body, sent),
    ))


def _on_response(response: httpx.Response):
    response.read()
    req = response.request
    try:
        content = req.content[:_MAX_SENT]
    except Exception:  # a streamed body
        content = b""
    record(req.method, req.url, response.status_code, response.headers.get("content-type"),
           response.content, str(req.url) + "\n" + content.decode("utf-8", "replace"),
           auth=req.headers.get("authorization") or req.url.params.get("api_key") or "")


def http_client(base_url: str, **kw) -> httpx.Client:
    return httpx.Client(base_url=base_url, trust_env=False, timeout=60.0,
                        event_hooks={"response": [_on_response]}, **kw)


@pytest.fixture(autouse=True)
def _current_test(request):
    CURRENT["test"] = request.node.nodeid
    yield
    CURRENT["test"] = None


PANIC_PATTERNS = [
    re.compile(r"panicked", re.I),
    re.compile(r"backtrace", re.I),
    re.compile(r"RUST_"),
    re.compile(r"\.rs:\d+"),
    re.compile(r"thread '[^']*'"),
    re.compile(r"/\.cargo/"),
    # Database internals.
    re.compile(r"SQLITE_|rusqlite|sqlx|syntax error|no such (table|column)", re.I),
]
PATH_PATTERNS = ["/tmp/", "/root/", "/home/", "/var/", str(Path.home())]


def leaks_in(rec: Record) -> list[str]:
    """What an error body shows that it should not."""
    if rec.status < 400:
        return []
    found = []
    for s in SECRETS:
        if s and s in rec.body and s not in rec.sent:
            found.append(f"secret {s[:12]}...")
    for d in SERVER_DIRS | set(PATH_PATTERNS):
        if d and d in rec.body and d not in rec.sent:
            found.append(f"path {d!r}")
    for p in PANIC_PATTERNS:
        m = p.search(rec.body)
        if m and m.group(0) not in rec.sent:
            found.append(f"panic/backtrace marker {m.group(0)!r}")
    return found


# ---------------------------------------------------------------------------
# Raw HTTP (paths exactly as written; bodies streamed with early responses)
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class RawResponse:
    status: int
    headers: dict
    body: bytes

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


def raw_request(url_base: str, method: str, target: str, headers=None, body: bytes | None = None):
    """One request with `target` sent verbatim (no dot-segment removal, no
    re-encoding) through http.client. Returns a RawResponse."""
    u = urlparse(url_base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        hdrs = dict(headers or {})
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read() if method != "HEAD" else b""
        out = RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()
    record(method, url_base + target, out.status, out.headers.get("content-type"), out.body,
           target + "\n" + (body or b"")[:_MAX_SENT].decode("utf-8", "replace"),
           auth=dict(headers or {}).get("Authorization", ""))
    return out


def _read_http_response(sock: socket.socket, deadline: float) -> RawResponse:
    buf = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        raise AssertionError(f"no HTTP response (got {buf[:200]!r})")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, data = b"", rest
        while data:
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            body += data[:size]
            data = data[size + 2:]
        rest = body
    return RawResponse(status, headers, rest)


def stream_upload(url_base: str, method: str, target: str, headers: dict, total: int,
                  chunked: bool = False, chunk_size: int = 1 << 20, timeout: float = 60.0):
    """Send a `total`-byte body in 1 MiB pieces (never holding it in memory),
    stopping as soon as the server answers; returns (RawResponse, bytes sent)."""
    u = urlparse(url_base)
    sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
    deadline = time.monotonic() + timeout
    sent = 0
    try:
        hdrs = {"Host": f"{u.hostname}:{u.port}", "Connection": "close", **headers}
        if chunked:
            hdrs["Transfer-Encoding"] = "chunked"
        else:
            hdrs["Content-Length"] = str(total)
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        sock.sendall(head.encode("latin-1"))
        piece = b"\0" * chunk_size
        try:
            while sent < total and time.monotonic() < deadline:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break  # the server answered early
                n = min(chunk_size, total - sent)
                data = piece[:n]
                if chunked:
                    data = f"{n:x}\r\n".encode() + data + b"\r\n"
                sock.sendall(data)
                sent += n
            if chunked and sent >= total:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: its answer should be waiting
        resp = _read_http_response(sock, deadline)
    finally:
        sock.close()
    record(method, url_base + target, resp.status, resp.headers.get("content-type"), resp.body,
           target, auth=headers.get("Authorization", ""))
    return resp, sent


# ---------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------


def _secret(prefix):
    s = f"{prefix}{uuid.uuid4().hex}"
    SECRETS.add(s)
    return s


def _log_text(server) -> str:
    server._log.flush()
    return Path(server._log.name).read_text(errors="replace")


@dataclasses.dataclass
class Ctx:
    """Everything a test needs to know about one server."""
    name: str
    server: object
    dir: Path
    storage: Path
    readable: Path
    outside: Path  # a directory beside `readable`, holding secret.csv
    demo: str  # path prefix of the demo tree ("" or "demo/")
    w: str  # the writable test container's path
    valid: dict  # headers of a credential that may do everything
    creds: dict  # name -> headers/params/cookies description
    secrets: dict

    @property
    def api(self):
        return self.server.api

    @property
    def url(self):
        return self.server.url

    def log(self) -> str:
        return _log_text(self.server)


def _make_dirs(d: Path):
    storage = d / "storage"
    readable = d / "readable"
    outside = d / "outside"
    evil = d / "readable-evil"  # shares `readable` as a string prefix
    for p in (storage, readable, outside, evil):
        p.mkdir()
    secret_csv = "a\nroot:SECRET-OUTSIDE\n"
    (outside / "secret.csv").write_text(secret_csv)
    (evil / "secret.csv").write_text(secret_csv)
    (readable / "ok.csv").write_text("a\n1\n2\n")
    (readable / "link.csv").symlink_to(outside / "secret.csv")
    (readable / "linkdir").symlink_to(outside, target_is_directory=True)
    (readable / "etc-passwd.csv").symlink_to("/etc/passwd")
    return storage, readable, outside


def _prepare_writable(client_factory, w_parent_path, w_key):
    """Create the nodes the write routes target (with a valid credential)."""
    import numpy as np
    import pyarrow as pa

    root = client_factory()
    parent = root[w_parent_path] if w_parent_path else root
    sec = parent.create_container(w_key)
    sec.write_array(np.zeros((2, 3)), key="arr")
    sec.write_table({"a": [1, 2]}, key="tbl")
    sec.create_appendable_table(pa.schema([("a", pa.int64())]), key="app")
    sec.create_container("victim")
    sec.create_container("keep")
    # One revision, so that DELETE /revisions/.../arr?number=1 has a target.
    sec["arr"].update_metadata({"rev": 1})
    return sec


def make_single(d: Path, public: bool = False) -> Ctx:
    """Start a single-user catalog in `d` (private unless `public`): the
    demo at the root, writable and readable storage, one API key, and the
    write targets."""
    from tiled.client import from_uri

    SERVER_DIRS.add(str(d))
    storage, readable, outside = _make_dirs(d)
    key = _secret("sk")
    server = Server(["--api-key", key], tree_args=[
        "catalog", "--temp", "--demo", "--writable-storage", str(storage),
        "--readable-storage", str(readable), *(["--public"] if public else [])])
    valid = {"headers": {"Authorization": f"Apikey {key}"}}
    w = f"sec{uuid.uuid4().hex[:6]}"
    _prepare_writable(lambda: from_uri(server.url, api_key=key), "", w)
    creds = {
        "anonymous": {},
        "wrong_api_key": {"headers": {"Authorization": "Apikey wrongkey123"}},
        "wrong_api_key_query": {"params": {"api_key": "wrongkey123"}},
        "wrong_api_key_cookie": {"headers": {"Cookie": "tiled_api_key=wrongkey123"}},
        "malformed_scheme": {"headers": {"Authorization": "Basic " + base64.b64encode(f"u:{key}".encode()).decode()}},
        "garbage_bearer": {"headers": {"Authorization": "Bearer not.a.jwt"}},
        "valid": valid,
    }
    SERVER_LOGS.append((f"single-user server in {d.name}", server._log.name))
    return Ctx("public" if public else "single", server, d, storage, readable, outside, "", w, valid, creds, {"api_key": key})


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    ctx = make_single(tmp_path_factory.mktemp("sec-single"))
    yield ctx
    ctx.server.stop()


@pytest.fixture(scope="module")
def public(tmp_path_factory):
    """Like `single`, but `--public`: anyone may read without a key."""
    ctx = make_single(tmp_path_factory.mktemp("sec-public"), public=True)
    yield ctx
    ctx.server.stop()


def _alive(server) -> bool:
    if server.proc.poll() is not None:
        return False
    try:
        with httpx.Client(trust_env=False, timeout=10.0) as h:
            return h.get(f"{server.url}/healthz").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def _hostile_holder(tmp_path_factory):
    holder = {"ctx": None, "factory": tmp_path_factory}
    yield holder
    if holder["ctx"] is not None:
        holder["ctx"].server.stop()


@pytest.fixture
def hostile(_hostile_holder):
    """A single-user server like `single`, for inputs that might bring it
    down: if one does, the test that did it gets an error naming the crash
    (with the end of the server's log), and the next test gets a new
    server, so one crash never fails unrelated tests."""
    holder = _hostile_holder
    ctx = holder["ctx"]
    if ctx is None or not _alive(ctx.server):
        if ctx is not None:
            ctx.server.stop()
        ctx = holder["ctx"] = make_single(holder["factory"].mktemp("sec-hostile"))
    start = len(ctx.log())
    yield ctx
    new = ctx.log()[start:]
    if "panicked at" in new:
        at = new.find("panicked at")
        pytest.fail(f"the server panicked during this test:\n{new[max(0, at - 200):at + 600]}", pytrace=False)
    if not _alive(ctx.server):
        rc = ctx.server.proc.poll()
        log = ctx.log()
        at = max(log.rfind("panicked at"), log.rfind("overflowed"), log.rfind("memory allocation of"))
        tail = log[max(0, at - 200):at + 1500] if at >= 0 else log[-1500:]
        pytest.fail(f"the server died or stopped answering during this test (exit code {rc}):\n{tail}",
                    pytrace=False)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt_parts(token):
    h, p, s = token.split(".")
    pad = lambda x: x + "=" * (-len(x) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(h))), json.loads(base64.urlsafe_b64decode(pad(p)))


def _forge(payload: dict, alg: str, key: bytes | None):
    import hashlib
    import hmac

    header = _b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64url(json.dumps(payload).encode())
    if key is None:
        return f"{header}.{body}."
    sig = hmac.new(key, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(sig)}"


def password_login(api, username, password, provider="toy"):
    with http_client(api) as h:
        return h.post(f"/auth/provider/{provider}/token",
                      data={"grant_type": "password", "username": username, "password": password})


def client_login(server, username, password):
    """The upstream client, logged in with the password grant."""
    import tempfile

    from tiled.client.constructors import from_context
    from tiled.client.context import Context, password_grant

    os.environ["TILED_CACHE_DIR"] = tempfile.mkdtemp(prefix="tiled-sec-tokens-")
    context, _ = Context.from_any_uri(server.url)
    provider = context.server_info.authentication.providers[0]
    tokens = password_grant(context.http_client, provider.links["auth_endpoint"],
                            provider.provider, username, password)
    context.configure_auth(tokens, remember_me=False)
    for t in (tokens["access_token"], tokens["refresh_token"]):
        SECRETS.add(t)
    return from_context(context)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """A multi-user server from a config: DictionaryAuthenticator users,
    2 s access tokens, the demo at /demo and a writable catalog at /data."""
    from tiled.client import from_uri

    d = tmp_path_factory.mktemp("sec-multi")
    SERVER_DIRS.add(str(d))
    storage, readable, outside = _make_dirs(d)
    pw = {u: _secret(f"pw-{u}-") for u in ("alice", "bob", "victim")}
    jwt_key = _secret("jwtkey")
    config = d / "config.yml"
    config.write_text(textwrap.dedent(f"""\
        trees:
          - path: /demo
            tree: demo
          - path: /data
            tree: catalog
            args:
              uri: sqlite:///{d}/catalog.db
              init_if_not_exists: true
              writable_storage: {storage}
              readable_storage: [{readable}]
        authentication:
          providers:
            - provider: toy
              authenticator: tiled.authenticators:DictionaryAuthenticator
              args:
                users_to_passwords:
                  alice: {pw['alice']}
                  bob: {pw['bob']}
                  victim: {pw['victim']}
          secret_keys: [{jwt_key}]
          access_token_max_age: 2
          refresh_token_max_age: 3600
          allow_anonymous_access: false
        database:
          uri: sqlite:///{d}/auth.db
          init_if_not_exists: true
        """))
    server = Server([], tree_args=["config", str(config)])
    SERVER_LOGS.append(("multi-user server", server._log.name))
    # Alice's tokens first: the access token is used after it expired.
    r = password_login(server.api, "alice", pw["alice"])
    assert r.status_code == 200, r.text
    alice = r.json()
    SECRETS.update({alice["access_token"], alice["refresh_token"]})
    # Bob's API keys, made and revoked through the client.
    bob = client_login(server, "bob", pw["bob"])
    full = bob.context.create_api_key(note="full")
    ro = bob.context.create_api_key(scopes=["read:metadata", "read:data"], note="read only")
    meta_only = bob.context.create_api_key(scopes=["read:metadata"], note="metadata only")
    short = bob.context.create_api_key(expires_in=1, note="expires in 1 s")
    short_expires = time.time() + 1
    revoked = bob.context.create_api_key(note="to revoke")
    bob.context.revoke_api_key(revoked["first_eight"])
    for k in (full, ro, revoked, meta_only, short):
        SECRETS.add(k["secret"])
    valid = {"headers": {"Authorization": f"Apikey {full['secret']}"}}
    w = f"sec{uuid.uuid4().hex[:6]}"
    _prepare_writable(lambda: from_uri(server.url, api_key=full["secret"]), "data", w)

    _, claims = _jwt_parts(alice["access_token"])
    forged_claims = {**claims, "exp": int(time.time()) + 3600}
    creds = {
        "anonymous": {},
        "wrong_api_key": {"headers": {"Authorization": "Apikey " + "ab" * 36}},
        "wrong_api_key_nonhex": {"headers": {"Authorization": "Apikey wrongkey123"}},
        "wrong_api_key_query": {"params": {"api_key": "cd" * 36}},
        "wrong_api_key_cookie": {"headers": {"Cookie": "tiled_api_key=" + "ef" * 36}},
        "malformed_scheme": {"headers": {"Authorization": "Basic " + base64.b64encode(b"bob:x").decode()}},
        "expired_bearer": {"headers": {"Authorization": f"Bearer {alice['access_token']}"},
                           "expires": claims["exp"]},
        "garbage_bearer": {"headers": {"Authorization": "Bearer not.a.jwt"}},
        "refresh_token_as_bearer": {"headers": {"Authorization": f"Bearer {alice['refresh_token']}"}},
        "alg_none_bearer": {"headers": {"Authorization": f"Bearer {_forge(forged_claims, 'none', None)}"}},
        "forged_signature_bearer": {"headers": {
            "Authorization": f"Bearer {_forge(forged_claims, 'HS256', b'not-the-server-key')}"}},
        "revoked_api_key": {"headers": {"Authorization": f"Apikey {revoked['secret']}"}},
        "readonly_api_key": {"headers": {"Authorization": f"Apikey {ro['secret']}"}},
        "metadata_only_api_key": {"headers": {"Authorization": f"Apikey {meta_only['secret']}"}},
        "expired_api_key": {"headers": {"Authorization": f"Apikey {short['secret']}"},
                            "expires": short_expires},
        "valid": valid,
    }
    ctx = Ctx("multi", server, d, storage, readable, outside, "demo/", f"data/{w}", valid, creds,
              {"passwords": pw, "jwt_key": jwt_key, "alice_tokens": alice, "full": full,
               "readonly": ro, "revoked": revoked})
    yield ctx
    server.stop()


@dataclasses.dataclass
class TagLayout:
    """Where the `tagged` server's nodes are. `tok` is alice's private
    set; `shared_tok` the same layout tagged `shared` (alice and bob);
    `missing_tok` names nodes that do not exist. The three have the same
    length, so that an answer about one reads like an answer about the
    other with only the name changed."""
    pub: str  # a container tagged `public`, holding the three sets
    tok: str
    shared_tok: str
    missing_tok: str
    marker: str  # a metadata value only alice's private nodes hold

    def meta(self, tok, what):
        """The metadata the fixture gives node `what` of set `tok`."""
        m = {"color": f"{tok}-{what}"}
        if tok == self.tok:
            m["secret"] = self.marker
        return m

    def c(self, tok):  # a container (holding `inner`)
        return f"{self.pub}/{tok}c"

    def arr(self, tok):  # a (2, 3) float64 array with one revision
        return f"{self.pub}/{tok}arr"

    def tbl(self, tok):  # a table {"a": [1, 2]}
        return f"{self.pub}/{tok}tbl"

    def app(self, tok):  # an appendable table, one partition holding [10]
        return f"{self.pub}/{tok}app"

    def victim(self, tok):  # a container the delete routes aim at
        return f"{self.pub}/{tok}victim"


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """A multi-user server with upstream's tag-based access policy
    (`shared: [alice, bob]`, public tag `public`), carol an admin,
    anonymous reads allowed, one SQLite catalog at the root. alice makes,
    through the API, a `public` container holding her private nodes
    (default tag `user:alice`) and the same nodes tagged `shared`."""
    import numpy as np
    import pyarrow as pa

    d = tmp_path_factory.mktemp("sec-tagged")
    SERVER_DIRS.add(str(d))
    storage, readable, outside = _make_dirs(d)
    pw = {u: _secret(f"pw-{u}-") for u in ("alice", "bob", "carol")}
    jwt_key = _secret("jwtkey")
    config = d / "config.yml"
    config.write_text(textwrap.dedent(f"""\
        trees:
          - path: /
            tree: catalog
            args:
              uri: sqlite:///{d}/catalog.db
              init_if_not_exists: true
              writable_storage: {storage}
              readable_storage: [{readable}]
        authentication:
          providers:
            - provider: toy
              authenticator: tiled.authenticators:DictionaryAuthenticator
              args:
                users_to_passwords:
                  alice: {pw['alice']}
                  bob: {pw['bob']}
                  carol: {pw['carol']}
          tiled_admins: [{{provider: toy, id: carol}}]
          secret_keys: [{jwt_key}]
          access_token_max_age: 3600
          refresh_token_max_age: 3600
          allow_anonymous_access: true
        database:
          uri: sqlite:///{d}/auth.db
          init_if_not_exists: true
        access_control:
          access_policy: tiled.access_control.access_policies:TagBasedAccessPolicy
          args:
            provider: toy
            tags:
              shared: [alice, bob]
            public_tags: [public]
        """))
    server = Server([], tree_args=["config", str(config)])
    SERVER_LOGS.append(("tag-policy server", server._log.name))

    tokens = {}
    for user in ("alice", "bob", "carol"):
        r = password_login(server.api, user, pw[user])
        assert r.status_code == 200, r.text
        tokens[user] = r.json()
        SECRETS.update({tokens[user]["access_token"], tokens[user]["refresh_token"]})
    with http_client(server.api) as h:
        r = h.post("/auth/apikey", json={"scopes": None, "note": "bob's key"},
                   headers={"Authorization": f"Bearer {tokens['bob']['access_token']}"})
    assert r.status_code == 200, r.text
    bob_key = r.json()["secret"]
    SECRETS.add(bob_key)

    h = uuid.uuid4().hex[:8]
    layout = TagLayout(pub=f"pub{h}", tok=f"al{h}", shared_tok=f"sh{h}", missing_tok=f"zz{h}",
                       marker=f"alice-private-{uuid.uuid4().hex[:12]}")
    # Only an admin applies `public` (upstream's rule); `shared` lets alice
    # (and bob) create in it.
    carol = client_login(server, "carol", pw["carol"])
    carol.create_container(layout.pub, metadata={"color": "public-blue"},
                           access_tags=["public", "shared"])
    alice = client_login(server, "alice", pw["alice"])
    pub = alice[layout.pub]
    for tok, tags in ((layout.tok, None), (layout.shared_tok, ["shared"])):
        m = lambda what: layout.meta(tok, what)  # noqa: E731
        c = pub.create_container(f"{tok}c", metadata=m("c"), access_tags=tags)
        c.create_container("inner", metadata=m("inner"), access_tags=tags)
        arr = pub.write_array(np.zeros((2, 3)), key=f"{tok}arr", metadata=m("arr"), access_tags=tags)
        arr.update_metadata({**m("arr"), "rev": 1})  # revision 1
        pub.write_table({"a": [1, 2]}, key=f"{tok}tbl", metadata=m("tbl"), access_tags=tags)
        app = pub.create_appendable_table(pa.schema([("a", pa.int64())]), key=f"{tok}app",
                                          metadata=m("app"), access_tags=tags)
        app.append_partition(0, pa.table({"a": pa.array([10], pa.int64())}))
        pub.create_container(f"{tok}victim", metadata=m("victim"), access_tags=tags)
    for tok, want in ((layout.tok, ["user:alice"]), (layout.shared_tok, ["shared"])):
        assert pub[f"{tok}arr"].access_tags == want, pub[f"{tok}arr"].access_tags
    assert pub.access_tags == ["public", "shared"]

    def bearer(user):
        return {"headers": {"Authorization": f"Bearer {tokens[user]['access_token']}"}}

    # alice's private names and values: only she and the admin may be shown them.
    PRIVATE.append((server.api, frozenset({bearer("alice")["headers"]["Authorization"],
                                          bearer("carol")["headers"]["Authorization"]}),
                    frozenset({layout.tok, layout.marker})))
    creds = {
        "anonymous": {},
        "alice": bearer("alice"),
        "carol_admin": bearer("carol"),
        "bob_token": bearer("bob"),
        "bob_key": {"headers": {"Authorization": f"Apikey {bob_key}"}},
    }
    ctx = Ctx("tagged", server, d, storage, readable, outside, "", layout.pub, creds["alice"], creds,
              {"passwords": pw, "jwt_key": jwt_key, "tokens": tokens, "bob_key": bob_key,
               "layout": layout})
    yield ctx
    server.stop()


def wait_expired(cred: dict):
    """Sleep until an access token's `exp` has passed (by a second)."""
    exp = cred.get("expires")
    if exp is not None:
        delay = exp + 1.1 - time.time()
        if delay > 0:
            time.sleep(delay)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """`serve directory` over a directory holding two CSV files and
    symbolic links (a file and a directory) that lead outside it."""
    d = tmp_path_factory.mktemp("sec-files")
    SERVER_DIRS.add(str(d))
    outside = d / "outside"
    served = d / "served"
    outside.mkdir()
    served.mkdir()
    (outside / "secret.csv").write_text("a\nroot:SECRET-OUTSIDE\n")
    (served / "a.csv").write_text("a\n1\n2\n")
    (served / "b.csv").write_text("a\nharmless\n")
    (served / "link.csv").symlink_to(outside / "secret.csv")
    (served / "linkdir").symlink_to(outside, target_is_directory=True)
    key = _secret("fk")
    server = Server(["--api-key", key], tree_args=["directory", str(served)])
    SERVER_LOGS.append(("directory server", server._log.name))
    valid = {"headers": {"Authorization": f"Apikey {key}"}}
    ctx = Ctx("files", server, d, served, served, outside, "", "", valid,
              {"valid": valid, "anonymous": {}}, {"api_key": key})
    # Registration runs in the background: wait for both files.
    deadline = time.monotonic() + 20
    with http_client(server.api) as http:
        while time.monotonic() < deadline:
            r = http.get("/search/", params={"fields": ""}, headers=valid["headers"])
            if r.status_code == 200 and {"a", "b"} <= {x["id"] for x in r.json()["data"]}:
                break
            time.sleep(0.1)
    yield ctx
    server.stop()



def pytest_sessionfinish(session, exitstatus):
    # The compat helper's server logs: removed when everything passed.
    compat.remove_logs_if_passed(exitstatus)
