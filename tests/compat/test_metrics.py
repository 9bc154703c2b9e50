"""Operations: `/api/v1/metrics` read by Prometheus' own parser, and
`X-Request-Id` on every response.

The demo servers are shared by the whole session, so counters are compared
before and after this module's requests rather than read as absolutes.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

parser = pytest.importorskip("prometheus_client.parser")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _http() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=30.0)


def scrape(api: str) -> dict[tuple[str, tuple], float]:
    """Every sample of the metrics page: (name, sorted labels) -> value."""
    with _http() as http:
        r = http.get(f"{api}/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == CONTENT_TYPE
    samples = {}
    for family in parser.text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_until(api, done, timeout=5.0):
    """A request is counted once its response body has been sent: the
    client may see the response a moment before that, so poll briefly."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(api)
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def test_metric_families_and_types(api):
    with _http() as http:
        text = http.get(f"{api}/metrics").text
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    # prometheus_client names counter families without `_total`.
    assert families["tiled_requests"].type == "counter"
    assert families["tiled_response_bytes"].type == "counter"
    assert families["tiled_request_duration_seconds"].type == "histogram"
    assert families["tiled_requests_in_flight"].type == "gauge"


def test_requests_are_counted_by_route_not_path(api):
    before = scrape(api)
    with _http() as http:
        assert http.get(f"{api}/metadata/dtypes/int64_2d").status_code == 200
        assert http.get(f"{api}/metadata/no/such/node").status_code == 404
        full = http.get(
            f"{api}/array/full/dtypes/int64_2d",
            params={"format": "application/octet-stream"},
            headers={"Accept-Encoding": "identity"},
        )
        assert full.status_code == 200
        assert http.get(f"{api}/search/nested").status_code == 200

    def total(samples, route, status):
        return value(samples, "tiled_requests_total", route=route, method="GET", status=status)

    def counted(samples):
        return total(samples, "search", "200") >= total(before, "search", "200") + 1

    after = scrape_until(api, counted)
    assert total(after, "metadata", "200") >= total(before, "metadata", "200") + 1
    assert total(after, "metadata", "404") >= total(before, "metadata", "404") + 1
    assert total(after, "array/full", "200") >= total(before, "array/full", "200") + 1
    assert total(after, "search", "200") >= total(before, "search", "200") + 1

    # Duration histogram: count and +Inf bucket move together.
    def hist(samples, suffix, **extra):
        return value(
            samples, f"tiled_request_duration_seconds{suffix}", route="metadata", method="GET", **extra
        )

    assert hist(after, "_count") >= hist(before, "_count") + 2
    assert hist(after, "_count") == hist(after, "_bucket", le="+Inf")
    assert hist(after, "_bucket", le="30") <= hist(after, "_bucket", le="+Inf")

    # The body bytes of the (uncompressed) array response were counted.
    grew = value(after, "tiled_response_bytes_total", route="array/full") - value(
        before, "tiled_response_bytes_total", route="array/full"
    )
    assert grew >= len(full.content)

    # No node path ever becomes a label value.
    routes = {
        dict(labels).get("route") for (_, labels) in after if dict(labels).get("route")
    }
    assert routes <= {
        "about", "metadata", "search", "distinct", "revisions", "register",
        "array/full", "array/block", "table/full", "table/partition",
        "container/full", "node/full", "metrics", "healthz", "openapi", "docs",
        "other",
    }, routes
    assert "int64_2d" not in repr(after)
    assert value(after, "tiled_requests_in_flight") >= 1  # the scrape itself


def test_python_client_traffic_is_counted(base_url, api):
    from tiled.client import from_uri

    before = scrape(api)
    client = from_uri(base_url)
    arr = client["dtypes"]["int64_2d"].read()
    assert arr.shape[0] > 0

    def data_requests(samples):
        # The client reads small arrays whole and large ones by block.
        return sum(
            v for (name, labels), v in samples.items()
            if name == "tiled_requests_total"
            and dict(labels).get("route") in ("array/full", "array/block")
        )

    def counted(samples):
        return data_requests(samples) > data_requests(before)

    after = scrape_until(api, counted)
    assert counted(after)
    assert value(after, "tiled_requests_total", route="about", method="GET", status="200") > value(
        before, "tiled_requests_total", route="about", method="GET", status="200"
    )


def test_metrics_need_no_credentials(private_server):
    with _http() as http:
        assert http.get(f"{private_server.api}/metadata/dtypes").status_code == 401
    samples = scrape_until(
        private_server.api,
        lambda s: value(s, "tiled_requests_total", route="metadata", method="GET", status="401") >= 1,
    )
    assert value(samples, "tiled_requests_total", route="metadata", method="GET", status="401") >= 1


def test_request_ids(api):
    with _http() as http:
        r = http.get(f"{api}/metadata/dtypes", headers={"X-Request-Id": "compat-test.1_A"})
        assert r.headers["x-request-id"] == "compat-test.1_A"
        r = http.get(f"{api}/metadata/nope", headers={"X-Request-Id": "compat-404"})
        assert r.status_code == 404
        assert r.headers["x-request-id"] == "compat-404"
        ids = set()
        for headers in ({}, {"X-Request-Id": "not sane!"}, {"X-Request-Id": "x" * 129}):
            r = http.get(f"{api}/", headers=headers)
            rid = r.headers["x-request-id"]
            assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
            ids.add(rid)
        assert len(ids) == 3


def test_catalog_pool_gauges(api):
    """A catalog tree exposes its connection pool; the demo has none."""
    import os

    samples = scrape(api)
    names = {name for name, _ in samples}
    if os.environ.get("TILED_COMPAT_TREE", "demo") == "demo":
        assert "tiled_catalog_pool_connections" not in names
        return
    idle = value(samples, "tiled_catalog_pool_connections", state="idle")
    in_use = value(samples, "tiled_catalog_pool_connections", state="in_use")
    size = value(samples, "tiled_catalog_pool_max_connections")
    assert idle >= 0 and in_use >= 0 and size >= 1
    assert idle + in_use <= size
