"""Single-user API key: `tiled serve demo --private --api-key secret`."""

import httpx
import numpy as np
import pytest
from tiled.client import from_uri

from conftest import API_KEY
from demo_values import CONTAINERS, ARRAYS


def test_client_without_key_refused(private_server):
    # The about document says authentication is required and there are no
    # providers: the client refuses before reading anything.
    with pytest.raises((RuntimeError, httpx.HTTPStatusError)):
        from_uri(private_server.url)


def test_client_with_wrong_key_refused(private_server):
    with pytest.raises(httpx.HTTPStatusError) as info:
        from_uri(private_server.url, api_key="wrong")
    assert info.value.response.status_code == 401


def test_client_with_api_key_kwarg(private_server):
    c = from_uri(private_server.url, api_key=API_KEY)
    assert list(c) == CONTAINERS[""]
    np.testing.assert_array_equal(c["dtypes/int16"].read(), ARRAYS["dtypes/int16"].full())
    assert c["scalars/answer"].read().item() == 42


def test_client_with_api_key_in_url(private_server):
    c = from_uri(f"{private_server.url}/api/v1?api_key={API_KEY}")
    np.testing.assert_array_equal(
        c["nested/images/tiny_image"].read(), ARRAYS["nested/images/tiny_image"].full()
    )


def test_client_with_api_key_env(private_server, monkeypatch):
    monkeypatch.setenv("TILED_API_KEY", API_KEY)
    c = from_uri(private_server.url)
    assert len(c["many"]) == 1000


def test_private_table_read(private_server):
    c = from_uri(private_server.url, api_key=API_KEY)
    df = c["tables/short_table"].read()
    assert df["i"].tolist() == list(range(10))


def test_about_readable_without_key(private_http):
    r = private_http.get("/")
    assert r.status_code == 200
    body = r.json()
    assert body["authentication"]["required"] is True
    assert body["api_version"] == 0


def test_healthz_without_key(private_server):
    r = httpx.get(f"{private_server.url}/healthz", trust_env=False)
    assert r.status_code == 200
    assert r.json() == {"status": "ready"}


@pytest.mark.parametrize(
    "path",
    [
        "/metadata/",
        "/metadata/dtypes/int8",
        "/search/many",
        "/array/full/dtypes/int8",
        "/array/block/dtypes/int8?block=0",
        "/table/partition/tables/short_table?partition=0",
        "/distinct/many?metadata=color",
    ],
)
def test_no_key_401(private_http, path):
    r = private_http.get(path)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    assert isinstance(r.json()["detail"], str)


def test_wrong_key_401(private_http):
    r = private_http.get("/metadata/", headers={"Authorization": "Apikey wrong"})
    assert r.status_code == 401
    assert "detail" in r.json()
    r = private_http.get("/metadata/", params={"api_key": "wrong"})
    assert r.status_code == 401


def test_key_in_header(private_http):
    r = private_http.get("/metadata/", headers={"Authorization": f"Apikey {API_KEY}"})
    assert r.status_code == 200
    assert r.json()["data"]["attributes"]["metadata"] == {"description": "tiled-rs demo tree"}


def test_key_scheme_case_insensitive(private_http):
    r = private_http.get("/metadata/", headers={"Authorization": f"apikey {API_KEY}"})
    assert r.status_code == 200


def test_key_in_query(private_http):
    r = private_http.get("/array/full/dtypes/int8", params={"api_key": API_KEY})
    assert r.status_code == 200
    got = np.frombuffer(r.content, dtype="<i1")
    np.testing.assert_array_equal(got, ARRAYS["dtypes/int8"].full())


def test_public_server_allows_anonymous(http):
    r = http.get("/metadata/dtypes/int8")
    assert r.status_code == 200
    about = http.get("/").json()
    assert about["authentication"]["required"] is False


def test_env_var_api_key(tmp_path):
    """TILED_SINGLE_USER_API_KEY sets the key of a --private server."""
    from conftest import Server

    server = Server(["--private"], env_extra={"TILED_SINGLE_USER_API_KEY": "fromenv"})
    try:
        with httpx.Client(base_url=server.api, trust_env=False) as h:
            assert h.get("/metadata/").status_code == 401
            assert h.get("/metadata/", headers={"Authorization": "Apikey fromenv"}).status_code == 200
    finally:
        server.stop()


def test_keys_the_client_cannot_send_back_are_refused_at_start():
    """The client reads its key back with `^Apikey (\\w+)$`; a key with other
    characters would silently leave it unauthenticated."""
    import subprocess

    from conftest import TILED_BIN

    r = subprocess.run([str(TILED_BIN), "serve", "demo", "--api-key", "not-a-word", "--port", "1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "letters, digits and _" in r.stderr, r.stderr
