//! Operations: `/api/v1/metrics` (Prometheus text format), `X-Request-Id`
//! and the access log, against the in-memory demo tree without a socket.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use tiled_server::metrics::{Metrics, route_label};
use tiled_server::{AuthConfig, ServerConfig, router_with_metrics};

mod common;
use common::{Reply, get, request, send};

fn app(metrics: &Arc<Metrics>, allow_anonymous: bool) -> Router {
    router_with_metrics(
        tiled_demo::demo_tree(),
        ServerConfig {
            auth: AuthConfig {
                api_key: "secret".into(),
                allow_anonymous,
                multi_user: None,
            },
            response_bytesize_limit: tiled_server::DEFAULT_RESPONSE_BYTESIZE_LIMIT,
            data_memory_budget: tiled_server::DEFAULT_DATA_MEMORY_BUDGET,
            tree_blocks: false,
            allow_origins: Vec::new(),
        },
        None,
        metrics.clone(),
    )
}

/// The samples of a text-format page: `(name, labels) -> value`.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn parse(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().expect("a number");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let labels = body
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').expect("k=v");
                        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                        (k.to_string(), v.expect("quoted").to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.insert((name, labels), value);
    }
    out
}

fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    samples.get(&(name.to_string(), labels)).copied()
}

async fn scrape(app: &Router) -> (Reply, Samples) {
    let r = get(app, "/api/v1/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let samples = parse(&r.text());
    (r, samples)
}

#[tokio::test]
async fn counts_requests_by_route_without_node_paths() {
    let metrics = Arc::new(Metrics::new());
    let a = app(&metrics, true);
    assert_eq!(get(&a, "/api/v1/").await.status, 200);
    assert_eq!(
        get(&a, "/api/v1/metadata/dtypes/int64_2d").await.status,
        200
    );
    assert_eq!(get(&a, "/api/v1/metadata/no/such/node").await.status, 404);
    assert_eq!(get(&a, "/api/v1/search/nested").await.status, 200);
    assert_eq!(get(&a, "/api/v1/no_such_route/x").await.status, 404);
    assert_eq!(get(&a, "/healthz").await.status, 200);
    let full = get(&a, "/api/v1/array/full/dtypes/int64_2d?format=npy").await;
    assert_eq!(full.status, 200);
    let block = get(&a, "/api/v1/array/block/dtypes/int64_2d?block=0,0").await;
    assert_eq!(block.status, 200);
    // The seed's URL style counts under the same route names.
    assert_eq!(get(&a, "/metadata/dtypes").await.status, 200);

    let (r, s) = scrape(&a).await;
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    for ty in [
        "# TYPE tiled_requests_total counter",
        "# TYPE tiled_request_duration_seconds histogram",
        "# TYPE tiled_response_bytes_total counter",
        "# TYPE tiled_requests_in_flight gauge",
    ] {
        assert!(text.contains(ty), "{ty} missing from\n{text}");
    }
    // Node paths never become label values.
    for path_part in ["int64_2d", "dtypes", "no_such_route", "nested", "such"] {
        assert!(!text.contains(path_part), "{path_part} in\n{text}");
    }
    let total = |route: &str, status: &str| {
        sample(
            &s,
            "tiled_requests_total",
            &[("route", route), ("method", "GET"), ("status", status)],
        )
    };
    assert_eq!(total("about", "200"), Some(1.0));
    assert_eq!(total("metadata", "200"), Some(2.0));
    assert_eq!(total("metadata", "404"), Some(1.0));
    assert_eq!(total("search", "200"), Some(1.0));
    assert_eq!(total("other", "404"), Some(1.0));
    assert_eq!(total("healthz", "200"), Some(1.0));
    assert_eq!(total("array/full", "200"), Some(1.0));
    assert_eq!(total("array/block", "200"), Some(1.0));
    // The scrape is recorded once its own body has been sent.
    assert_eq!(total("metrics", "200"), None);
    assert_eq!(sample(&s, "tiled_requests_in_flight", &[]), Some(1.0));

    let hist = |suffix: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("route", "metadata"), ("method", "GET")];
        labels.extend_from_slice(extra);
        sample(
            &s,
            &format!("tiled_request_duration_seconds{suffix}"),
            &labels,
        )
    };
    assert_eq!(hist("_count", &[]), Some(3.0));
    assert_eq!(hist("_bucket", &[("le", "+Inf")]), Some(3.0));
    assert_eq!(hist("_bucket", &[("le", "30")]), Some(3.0));
    assert!(hist("_bucket", &[("le", "0.001")]).is_some());
    assert!(hist("_sum", &[]).is_some_and(|v| (0.0..30.0).contains(&v)));

    let bytes = |route: &str| sample(&s, "tiled_response_bytes_total", &[("route", route)]);
    assert_eq!(bytes("array/full"), Some(full.body.len() as f64));
    assert_eq!(bytes("array/block"), Some(block.body.len() as f64));

    // The next scrape sees the first one.
    let (_, s) = scrape(&a).await;
    assert_eq!(
        sample(
            &s,
            "tiled_requests_total",
            &[("route", "metrics"), ("method", "GET"), ("status", "200")]
        ),
        Some(1.0)
    );
    assert!(
        sample(&s, "tiled_response_bytes_total", &[("route", "metrics")])
            .is_some_and(|b| b > 100.0)
    );
}

#[tokio::test]
async fn counts_compressed_bytes_and_other_methods() {
    let metrics = Arc::new(Metrics::new());
    let a = app(&metrics, true);
    let gz = send(
        &a,
        request("/api/v1/array/full/nested/images/tiny_image?format=json")
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let post = send(
        &a,
        Request::post("/api/v1/metadata/dtypes")
            .header(header::HOST, "test")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert!(post.status.is_client_error(), "{}", post.status);
    let (_, s) = scrape(&a).await;
    assert_eq!(
        sample(&s, "tiled_response_bytes_total", &[("route", "array/full")]),
        Some(gz.body.len() as f64),
        "the compressed bytes are counted"
    );
    assert_eq!(
        sample(
            &s,
            "tiled_requests_total",
            &[
                ("route", "metadata"),
                ("method", "POST"),
                ("status", post.status.as_str())
            ]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn metrics_need_no_credentials() {
    let metrics = Arc::new(Metrics::new());
    let a = app(&metrics, false);
    assert_eq!(get(&a, "/api/v1/metadata/dtypes").await.status, 401);
    let (_, s) = scrape(&a).await;
    assert_eq!(
        sample(
            &s,
            "tiled_requests_total",
            &[("route", "metadata"), ("method", "GET"), ("status", "401")]
        ),
        Some(1.0)
    );
    let head = send(
        &a,
        Request::head("/api/v1/metrics")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(head.status, 200);
}

#[tokio::test]
async fn request_ids_are_echoed_when_sane_and_generated_otherwise() {
    let metrics = Arc::new(Metrics::new());
    let a = app(&metrics, true);
    let with_id = |uri: &str, id: &str| {
        request(uri)
            .header("x-request-id", id)
            .body(Body::empty())
            .expect("request")
    };
    let r = send(&a, with_id("/api/v1/metadata/dtypes", "abc-DEF_1.2")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("abc-DEF_1.2"));
    // Errors carry it too.
    let r = send(&a, with_id("/api/v1/metadata/nope", "trace-404")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-request-id"), Some("trace-404"));
    let longest = "a".repeat(128);
    let r = send(&a, with_id("/healthz", &longest)).await;
    assert_eq!(r.header("x-request-id"), Some(longest.as_str()));

    let is_generated = |id: Option<&str>| {
        id.is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let mut seen = Vec::new();
    for bad in ["", "has space", "slash/y", "quote\"", &"a".repeat(129)] {
        let r = send(&a, with_id("/api/v1/", bad)).await;
        let id = r.header("x-request-id").map(str::to_string);
        assert!(is_generated(id.as_deref()), "{bad:?} -> {id:?}");
        seen.push(id);
    }
    let r = get(&a, "/api/v1/metrics").await;
    let id = r.header("x-request-id").map(str::to_string);
    assert!(is_generated(id.as_deref()), "{id:?}");
    seen.push(id);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 6, "fresh ids differ: {seen:?}");
}

#[tokio::test]
async fn registered_gauges_are_read_at_scrape_time() {
    let metrics = Arc::new(Metrics::new());
    let idle = Arc::new(Mutex::new(3.0));
    let reading = idle.clone();
    metrics
        .register_gauge(
            "tiled_catalog_pool_connections",
            "Catalog database connections.",
            &[("state", "idle")],
            move || *reading.lock().expect("lock"),
        )
        .expect("registers");
    metrics
        .register_gauge(
            "tiled_catalog_pool_connections",
            "Catalog database connections.",
            &[("state", "in_use")],
            || 2.0,
        )
        .expect("a second label value registers");
    assert!(
        metrics
            .register_gauge(
                "tiled_catalog_pool_connections",
                "Catalog database connections.",
                &[("state", "idle")],
                || 0.0,
            )
            .is_err(),
        "the same series twice is refused"
    );
    assert!(
        metrics
            .register_gauge("bad name", "x", &[], || 0.0)
            .is_err()
    );
    metrics
        .register_gauge("tiled_test_panicking", "Reads NaN.", &[], || {
            panic!("gauge callback failed")
        })
        .expect("registers");
    let a = app(&metrics, true);
    let pool =
        |s: &Samples, state: &str| sample(s, "tiled_catalog_pool_connections", &[("state", state)]);
    let (r, s) = scrape(&a).await;
    assert_eq!(pool(&s, "idle"), Some(3.0));
    assert_eq!(pool(&s, "in_use"), Some(2.0));
    assert!(sample(&s, "tiled_test_panicking", &[]).is_some_and(f64::is_nan));
    assert_eq!(
        r.text()
            .matches("# TYPE tiled_catalog_pool_connections gauge")
            .count(),
        1
    );
    *idle.lock().expect("lock") = 5.0;
    let (_, s) = scrape(&a).await;
    assert_eq!(pool(&s, "idle"), Some(5.0));
}

#[test]
fn route_labels() {
    for (path, label) in [
        ("/api/v1", "about"),
        ("/api/v1/", "about"),
        ("/api/v1/metadata", "metadata"),
        ("/api/v1/metadata/a/b/c", "metadata"),
        ("/api/v1//metadata//a", "metadata"),
        ("/api/v1/%6Detadata/a", "metadata"),
        ("/api/v1/search/a", "search"),
        ("/api/v1/distinct/a", "distinct"),
        ("/api/v1/revisions/a", "revisions"),
        ("/api/v1/register/a", "register"),
        ("/api/v1/array/full/a", "array/full"),
        ("/api/v1/array/block/a", "array/block"),
        ("/api/v1/array/nope/a", "other"),
        ("/api/v1/array", "other"),
        ("/api/v1/table/full/a", "table/full"),
        ("/api/v1/table/partition/a", "table/partition"),
        ("/api/v1/dataframe/partition/a", "table/partition"),
        ("/api/v1/container/full/a", "container/full"),
        ("/api/v1/node/full/a", "node/full"),
        ("/api/v1/metrics", "metrics"),
        ("/api/v1/metrics/x", "other"),
        ("/api/v1/auth/whoami", "other"),
        ("/api/v1foo", "other"),
        ("/healthz", "healthz"),
        ("/openapi.json", "openapi"),
        ("/api/v1/openapi.json", "openapi"),
        ("/api/v1/openapi.json/x", "other"),
        ("/docs", "docs"),
        ("/docs/", "docs"),
        ("/docs/swagger-ui.css", "docs"),
        ("/api/v1/docs/swagger-ui.css", "docs"),
        ("/docsx", "other"),
        ("/metadata/a", "metadata"),
        ("/array/full/a", "array/full"),
        ("/dataframe/full/a", "table/full"),
        ("/metadatax", "other"),
        ("/", "other"),
        ("/favicon.ico", "other"),
    ] {
        assert_eq!(route_label(path), label, "{path}");
    }
}

/// A `tracing` subscriber keeping the access-log events as text.
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() == "tiled::access" {
            assert_eq!(*event.metadata().level(), tracing::Level::INFO);
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().expect("lock").push(fields.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn one_access_log_event_per_request_without_secrets() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let _guard = tracing::subscriber::set_default(Capture(events.clone()));
    let metrics = Arc::new(Metrics::new());
    let a = app(&metrics, false);
    // Another test's thread may register the access-log callsite while
    // only the no-op global subscriber exists, caching "never" for it:
    // recompute the interest and, if an event was still missed, retry.
    let mut captured = Vec::new();
    let mut replies = None;
    for _ in 0..10 {
        events.lock().expect("lock").clear();
        tracing::callsite::rebuild_interest_cache();
        let r = send(
            &a,
            request("/api/v1/array/full/dtypes/int64_2d?format=npy&api_key=secret")
                .header("x-request-id", "log-me")
                .header(header::AUTHORIZATION, "Apikey hunter2")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(r.status, 200);
        tracing::callsite::rebuild_interest_cache();
        let r404 = get(&a, "/api/v1/metadata/nope?api_key=secret").await;
        assert_eq!(r404.status, 404);
        captured = events.lock().expect("lock").clone();
        replies = Some((r, r404));
        if captured.len() == 2 {
            break;
        }
    }
    let (r, r404) = replies.expect("ran");
    let events = captured;
    assert_eq!(events.len(), 2, "{events:?}");
    let first = &events[0];
    for part in [
        "request_id=log-me",
        "method=GET ",
        "path=/api/v1/array/full/dtypes/int64_2d ",
        "status=200",
        "duration_ms=",
        &format!("bytes={}", r.body.len()),
    ] {
        assert!(first.contains(part), "{part} not in {first}");
    }
    let second = &events[1];
    assert!(second.contains("status=404"), "{second}");
    let id = r404.header("x-request-id").expect("an id");
    assert!(second.contains(&format!("request_id={id}")), "{second}");
    for e in &events {
        assert!(!e.contains("secret") && !e.contains("hunter2"), "{e}");
        assert!(!e.contains('?'), "no query string: {e}");
    }
}
