"""Fixtures for the compatibility suite: run our `tiled` binary and point the
pinned upstream Python client at it.

Environment:
  TILED_BIN   path to the server binary
              (default: $HOME/.cache/tiled-rs/target/debug/tiled)
  TILED_COMPAT_TREE
              what the server serves: `demo` (default, in memory), `catalog`
              (the demo loaded into a temporary SQLite catalog, so every
              browse and search goes through SQL), or `postgres` (the same
              in the PostgreSQL database at TILED_TEST_POSTGRES_URI)
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Settings that must be in place before the tiled client is imported.
# Loopback traffic must never go through a proxy.
_no_proxy = "127.0.0.1,localhost"
for _var in ("NO_PROXY", "no_proxy"):
    _cur = os.environ.get(_var)
    os.environ[_var] = _no_proxy + ("," + _cur if _cur else "")
# A server 5xx makes the client retry (10 attempts / 45 s by default): keep
# that short so a server bug fails one test quickly instead of stalling.
os.environ.setdefault("TILED_RETRY_ATTEMPTS", "2")
os.environ.setdefault("TILED_RETRY_TIMEOUT", "5")
# Credentials from the environment would change what the tests exercise.
os.environ.pop("TILED_API_KEY", None)

import httpx  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

DEFAULT_BIN = Path.home() / ".cache" / "tiled-rs" / "target" / "debug" / "tiled"
TILED_BIN = Path(os.environ.get("TILED_BIN") or DEFAULT_BIN)
API_KEY = "secret"
STARTUP_TIMEOUT = 30.0
PER_TEST_TIMEOUT = 120


def pytest_collection_modifyitems(config, items):
    # Nothing may hang CI: give every test a generous timeout unless it has one.
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(PER_TEST_TIMEOUT))


# Files the catalog servers may register (their --readable-storage).
READABLE_DIR = tempfile.mkdtemp(prefix="tiled-compat-readable-")
atexit.register(shutil.rmtree, READABLE_DIR, ignore_errors=True)


def _tree_args(extra_args) -> list[str]:
    tree = os.environ.get("TILED_COMPAT_TREE", "demo")
    # Catalogs are private by default; the demo is public by default.
    public = [] if "--private" in extra_args else ["--public"]
    if tree == "demo":
        return ["demo"]
    if tree == "catalog":
        # TILED_TEST_WRITABLE_STORAGE (e.g. an s3:// URI of the loopback
        # S3 server scripts/test runs) replaces the temp data directory.
        storage = os.environ.get("TILED_TEST_WRITABLE_STORAGE")
        writable = ["--writable-storage", storage] if storage else []
        return ["catalog", "--temp", "--demo", *writable, "--readable-storage", READABLE_DIR, *public]
    if tree == "postgres":
        uri = os.environ.get("TILED_TEST_POSTGRES_URI")
        if not uri:
            pytest.fail("TILED_COMPAT_TREE=postgres needs TILED_TEST_POSTGRES_URI", pytrace=False)
        # Arrays written through the API need somewhere to live.
        storage = tempfile.mkdtemp(prefix="tiled-compat-storage-")
        atexit.register(shutil.rmtree, storage, ignore_errors=True)
        return ["catalog", uri, "--init", "--demo", "--writable-storage", storage,
                "--readable-storage", READABLE_DIR, *public]
    pytest.fail(f"unknown TILED_COMPAT_TREE={tree!r}", pytrace=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Server logs, removed at the end of a session that passed (kept for
# diagnosis otherwise).
LOG_FILES: list[str] = []


def remove_logs_if_passed(exitstatus) -> None:
    if exitstatus == 0:
        for name in LOG_FILES:
            try:
                os.unlink(name)
            except OSError:
                pass


def pytest_sessionfinish(session, exitstatus):
    remove_logs_if_passed(exitstatus)


class Server:
    def __init__(self, extra_args, env_extra=None, tree_args=None):
        if not TILED_BIN.exists():
            pytest.fail(
                f"tiled binary not found at {TILED_BIN}. Build it "
                "(cargo build --bins) or set TILED_BIN to its path.",
                pytrace=False,
            )
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/api/v1"
        self._log = tempfile.NamedTemporaryFile(
            prefix="tiled-compat-", suffix=".log", delete=False
        )
        LOG_FILES.append(self._log.name)
        env = dict(os.environ)
        for var in ("TILED_SINGLE_USER_API_KEY", "TILED_RESPONSE_BYTESIZE_LIMIT", "TILED_HOST", "TILED_PORT"):
            env.pop(var, None)
        env.update(env_extra or {})
        self.args = [
            str(TILED_BIN),
            "serve",
            *(tree_args if tree_args is not None else _tree_args(extra_args)),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *extra_args,
        ]
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self._wait_ready()

    def output(self) -> str:
        self._log.flush()
        try:
            return Path(self._log.name).read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def _wait_ready(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last_err = None
        with httpx.Client(trust_env=False, timeout=2.0) as http:
            while time.monotonic() < deadline:
                rc = self.proc.poll()
                if rc is not None:
                    pytest.fail(
                        f"server exited with code {rc} during startup\n"
                        f"command: {' '.join(self.args)}\noutput:\n{self.output()}",
                        pytrace=False,
                    )
                try:
                    r = http.get(f"{self.url}/healthz")
                    if r.status_code == 200 and r.json().get("status") == "ready":
                        return
                    last_err = f"/healthz answered {r.status_code}: {r.text[:200]}"
                except (httpx.HTTPError, ValueError) as err:
                    last_err = repr(err)
                time.sleep(0.1)
        self.stop()
        pytest.fail(
            f"server not ready after {STARTUP_TIMEOUT} s ({last_err})\n"
            f"command: {' '.join(self.args)}\noutput:\n{self.output()}",
            pytrace=False,
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="session")
def public_server():
    server = Server([])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def private_server():
    server = Server(["--private", "--api-key", API_KEY])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_url(public_server):
    """Base URL (scheme://host:port) of the public demo server."""
    return public_server.url


@pytest.fixture(scope="session")
def api(public_server):
    """`{base}/api/v1` of the public demo server."""
    return public_server.api


@pytest.fixture(scope="session")
def client(public_server):
    from tiled.client import from_uri

    return from_uri(public_server.url)


@pytest.fixture(scope="session")
def dask_client(public_server):
    from tiled.client import from_uri

    return from_uri(public_server.url, structure_clients="dask")


@pytest.fixture(scope="session")
def http(public_server):
    """A raw httpx client (no proxy, no retries) for wire-level checks."""
    with httpx.Client(base_url=public_server.api, trust_env=False, timeout=60.0) as c:
        yield c


@pytest.fixture(scope="session")
def private_http(private_server):
    with httpx.Client(base_url=private_server.api, trust_env=False, timeout=60.0) as c:
        yield c


def password_login(server, username, password, provider_index=0):
    """The upstream client logged in programmatically with a password
    (`password_grant` + `configure_auth`), with a token cache of its own
    (the client rereads its cache on 401)."""
    from tiled.client.constructors import from_context
    from tiled.client.context import Context, password_grant

    os.environ["TILED_CACHE_DIR"] = tempfile.mkdtemp(prefix="tiled-tokens-")
    context, _ = Context.from_any_uri(server.url)
    provider = context.server_info.authentication.providers[provider_index]
    tokens = password_grant(context.http_client, provider.links["auth_endpoint"],
                            provider.provider, username, password)
    context.configure_auth(tokens, remember_me=True)
    return from_context(context)


def run_concurrently(work, n=8):
    """Run `work(w)` for w in 0..n on n threads at once; fail with the
    exceptions any of them raised."""
    import threading

    errors = []

    def run(w):
        try:
            work(w)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
