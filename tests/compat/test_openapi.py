"""The OpenAPI document (`/openapi.json`, `/api/v1/openapi.json`) and the
docs page (`/docs/`, Swagger UI) of the real binary: the document is valid
OpenAPI 3.1 (checked by openapi-spec-validator), its examples work against
the server, the page loads only from the server, and both are public even on
a private server.
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import quote, urljoin, urlsplit

import httpx
import pytest

validator = pytest.importorskip("openapi_spec_validator")

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _http() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=60.0)


def fetch_document(url: str) -> dict:
    with _http() as http:
        r = http.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


@pytest.fixture(scope="module")
def document(public_server) -> dict:
    return fetch_document(f"{public_server.url}/openapi.json")


def test_the_document_is_valid_openapi_3_1(public_server, document):
    assert document["openapi"].startswith("3.1")
    # Raises with the first problem found.
    validator.validate(document)
    assert fetch_document(f"{public_server.api}/openapi.json") == document


def test_the_document_describes_the_routes_the_client_uses(document):
    paths = document["paths"]
    expected = {
        "/api/v1/": ["get"],
        "/api/v1/metadata/{path}": ["get", "post", "put", "patch", "delete"],
        "/api/v1/search/{path}": ["get"],
        "/api/v1/distinct/{path}": ["get"],
        "/api/v1/array/full/{path}": ["get", "put", "patch"],
        "/api/v1/array/block/{path}": ["get", "put"],
        "/api/v1/table/full/{path}": ["get", "post", "put"],
        "/api/v1/table/partition/{path}": ["get", "post", "put", "patch"],
        "/api/v1/container/full/{path}": ["get", "post"],
        "/api/v1/revisions/{path}": ["get", "delete"],
        "/api/v1/register/{path}": ["post"],
        "/api/v1/auth/whoami": ["get"],
        "/api/v1/auth/session/refresh": ["post"],
        "/api/v1/metrics": ["get"],
        "/healthz": ["get"],
    }
    for path, methods in expected.items():
        assert path in paths, path
        for method in methods:
            assert method in paths[path], (method, path)

    def names(path, method="get"):
        return {p["name"] for p in paths[path][method].get("parameters", [])}

    assert {"page[offset]", "page[limit]", "fields", "sort",
            "filter[fulltext][condition][text]"} <= names("/api/v1/search/{path}")
    assert {"block", "slice", "format", "expected_shape"} <= names("/api/v1/array/block/{path}")
    assert {"partition", "column", "format"} <= names("/api/v1/table/partition/{path}")
    assert {"persist", "extend", "shape", "offset"} <= names("/api/v1/array/full/{path}", "patch")
    assert "drop_revision" in names("/api/v1/metadata/{path}", "put")

    schemes = document["components"]["securitySchemes"]
    assert {(s["type"], s.get("in"), s.get("name")) for s in schemes.values()} == {
        ("apiKey", "header", "Authorization"),
        ("apiKey", "query", "api_key"),
        ("apiKey", "cookie", "tiled_api_key"),
        ("http", None, None),
    }
    assert [s["scheme"] for s in schemes.values() if s["type"] == "http"] == ["bearer"]


def _operations(document):
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def _example_url(base: str, path: str, op: dict) -> str:
    """The operation's URL with its path parameters and required query
    parameters set to their documented examples."""
    query = []
    for p in op.get("parameters", []):
        example = p.get("example")
        if isinstance(example, bool):
            example = str(example).lower()
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", str(example))
        elif p.get("required"):
            query.append(f"{quote(p['name'])}={quote(str(example))}")
    return base + path + ("?" + "&".join(query) if query else "")


def test_documented_examples_of_reads_work(public_server, document):
    """Every documented read, with the documented examples, answers 200 on
    the demo tree; so does the Python client's media type for data."""
    tried = 0
    with _http() as http:
        for path, method, op in _operations(document):
            if method != "get" or op["tags"][0] in ("auth", "write"):
                continue
            url = _example_url(public_server.url, path, op)
            r = http.get(url, follow_redirects=True)
            assert r.status_code == 200, (url, r.status_code, r.text[:300])
            tried += 1
            ok = op["responses"].get("200", {}).get("content", {})
            if "application/octet-stream" in ok or "application/vnd.apache.arrow.file" in ok:
                assert r.headers["content-type"] in ok, (url, r.headers["content-type"])
    assert tried >= 15


def test_documented_filter_examples_are_accepted(public_server, document):
    search = document["paths"]["/api/v1/search/{path}"]["get"]
    by_type: dict[str, list[tuple[str, str]]] = {}
    for p in search["parameters"]:
        if p["name"].startswith("filter["):
            query_type = p["name"][len("filter["):].split("]", 1)[0]
            by_type.setdefault(query_type, []).append((p["name"], p["example"][0]))
    with _http() as http:
        about = http.get(f"{public_server.api}/").json()
        assert set(by_type) == set(about["queries"])
        for query_type, params in by_type.items():
            r = http.get(f"{public_server.api}/search/many", params=params)
            assert r.status_code == 200, (query_type, r.text[:300])
            assert isinstance(r.json()["data"], list)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("page", ["/docs/", "/api/v1/docs/"])
def test_the_docs_page_loads_only_from_the_server(public_server, page):
    with _http() as http:
        r = http.get(public_server.url + page.rstrip("/"))
        assert r.is_redirect and r.headers["location"] == page
        r = http.get(public_server.url + page)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        parser = _Links()
        parser.feed(r.text)
        assert len(parser.urls) >= 4, parser.urls
        page_url = public_server.url + page
        for url in parser.urls:
            absolute = urljoin(page_url, url)
            # Same scheme, host and port as the page: nothing from elsewhere.
            assert urlsplit(absolute)[:2] == urlsplit(page_url)[:2], url
            asset = http.get(absolute)
            assert asset.status_code == 200, absolute
            suffix = "." + absolute.rsplit(".", 1)[-1]
            assert EXPECTED_TYPES[suffix] in asset.headers["content-type"], absolute
            assert asset.content
        init = http.get(urljoin(page_url, "swagger-initializer.js")).text
        assert '"url": "../openapi.json"' in init
        assert '"validatorUrl": "none"' in init
        assert "http://" not in init and "https://" not in init
        # What the page fetches is the document.
        spec = http.get(urljoin(page_url, "../openapi.json"))
        assert spec.status_code == 200
        assert spec.json()["openapi"].startswith("3.1")


def test_the_about_documentation_link_is_the_page(public_server):
    with _http() as http:
        about = http.get(f"{public_server.api}/").json()
        r = http.get(about["links"]["documentation"], follow_redirects=True)
    assert r.status_code == 200
    assert "swagger-initializer.js" in r.text


def test_docs_and_document_are_public_on_a_private_server(private_server, document):
    with _http() as http:
        # The control: this server wants its key.
        assert http.get(f"{private_server.api}/metadata/").status_code == 401
        for path in ("/openapi.json", "/api/v1/openapi.json"):
            assert fetch_document(private_server.url + path) == document
        for path in ("/docs/", "/api/v1/docs/", "/docs/swagger-ui.css",
                     "/docs/swagger-ui-bundle.js", "/docs/swagger-initializer.js"):
            r = http.get(private_server.url + path)
            assert r.status_code == 200, (path, r.status_code)
