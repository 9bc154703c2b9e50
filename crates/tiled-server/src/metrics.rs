//! Operations: Prometheus metrics, request ids and the access log.
//!
//! One axum middleware ([`track`]) wraps every route, outside compression:
//! - it gives the request an id (the client's `X-Request-Id` when sane, else
//!   a fresh one) and echoes it on the response;
//! - it counts the request, its duration and the body bytes sent, labelled
//!   by a low-cardinality route name ([`route_label`]), never the node path;
//! - it writes one access-log event per request (target `tiled::access`),
//!   with the path but never the query string or headers, which may carry
//!   credentials.
//!
//! The numbers are recorded when the response body has been sent (or
//! dropped, when the client goes away), so durations cover streaming and
//! bytes are what went out on the wire: compressed when compression applies.
//!
//! [`Metrics::render`] serves them at `GET /api/v1/metrics` in the text
//! exposition format 0.0.4. [`Metrics::register_gauge`] lets the code that
//! builds the server (the CLI) add gauges read at scrape time, such as a
//! catalog's connection pool, without this crate knowing the catalog.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tracing::Instrument;

/// The request-id header, read from requests and set on every response.
pub const X_REQUEST_ID: &str = "x-request-id";

/// The `Content-Type` of the metrics page (text exposition format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the request-duration histogram buckets, in seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The id of a request, as put in the request's extensions for handlers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// A metric that could not be registered.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metric: {0}")]
pub struct MetricsError(String);

/// The server's metrics and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    bytes: IntCounterVec,
    in_flight: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry holding the request metrics. Servers share
    /// [`Metrics::global`]; tests make their own.
    ///
    /// # Panics
    /// Never: the names, labels and buckets are constants known valid.
    #[must_use]
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("tiled_requests_total", "HTTP requests answered."),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "tiled_request_duration_seconds",
                "Time from receiving a request to the end of its response body.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route", "method"],
        )
        .expect("valid metric");
        let bytes = IntCounterVec::new(
            Opts::new(
                "tiled_response_bytes_total",
                "Response body bytes sent, after compression.",
            ),
            &["route"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new(
            "tiled_requests_in_flight",
            "Requests received whose response has not been sent yet.",
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn Collector>,
            Box::new(duration.clone()),
            Box::new(bytes.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(c).expect("distinct metric names");
        }
        Metrics {
            registry,
            requests,
            duration,
            bytes,
            in_flight,
        }
    }

    /// The process-wide metrics, which [`crate::router`] and
    /// [`crate::router_with_writer`] serve.
    pub fn global() -> Arc<Metrics> {
        static GLOBAL: OnceLock<Arc<Metrics>> = OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(Metrics::new())).clone()
    }

    /// Add a gauge whose value `value` returns at each scrape, with constant
    /// `labels`. The same `name` may be registered several times with the
    /// same `help` and label names but different label values, e.g.
    /// `tiled_catalog_pool_connections{state="idle"}` and `{state="in_use"}`.
    /// A panicking `value` reads as NaN.
    ///
    /// # Errors
    /// An invalid name or label, a name already used by another metric with
    /// a different help or label names, or the same name and label values
    /// registered twice.
    pub fn register_gauge<F>(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: F,
    ) -> Result<(), MetricsError>
    where
        F: Fn() -> f64 + Send + Sync + 'static,
    {
        let desc = Desc::new(
            name.to_string(),
            help.to_string(),
            Vec::new(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        )
        .map_err(|e| MetricsError(e.to_string()))?;
        self.registry
            .register(Box::new(CallbackGauge {
                desc,
                value: Box::new(value),
            }))
            .map_err(|e| MetricsError(e.to_string()))
    }

    /// Every metric in the text exposition format 0.0.4.
    ///
    /// # Errors
    /// A metric the encoder rejects (only a misbehaving registered gauge).
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(|e| MetricsError(e.to_string()))?;
        String::from_utf8(out).map_err(|e| MetricsError(e.to_string()))
    }

    /// The `GET /api/v1/metrics` response.
    pub fn render(&self) -> Response {
        match self.encode() {
            Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
            Err(e) => crate::error::ApiError::Internal(e.to_string()).into_response(),
        }
    }
}

/// A gauge read from a callback at each scrape, with constant labels.
struct CallbackGauge {
    desc: Desc,
    value: Box<dyn Fn() -> f64 + Send + Sync>,
}

impl Collector for CallbackGauge {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.value)()))
            .unwrap_or(f64::NAN);
        let mut gauge = proto::Gauge::default();
        gauge.set_value(value);
        let mut metric = proto::Metric::from_gauge(gauge);
        metric.set_label(self.desc.const_label_pairs.clone());
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::GAUGE);
        family.set_metric(vec![metric]);
        vec![family]
    }
}

/// The route label of a request path: the API route's name (`metadata`,
/// `array/block`, `table/partition`, ...), `about`, `metrics`, `healthz`,
/// `openapi` (the OpenAPI document), `docs` (Swagger UI and its files),
/// or `other`. Never the node path, so the label's values stay few.
#[must_use]
pub fn route_label(path: &str) -> &'static str {
    if path == "/healthz" {
        return "healthz";
    }
    if path == "/openapi.json" {
        return "openapi";
    }
    if path == "/docs" || path.starts_with("/docs/") {
        return "docs";
    }
    let rest = match path.strip_prefix("/api/v1") {
        Some(rest) => rest,
        // The seed's URL style: the same routes without `/api/v1`.
        None if crate::SEED_ROUTES.iter().any(|r| {
            path.strip_prefix(r)
                .is_some_and(|t| t.is_empty() || t.starts_with('/'))
        }) =>
        {
            path
        }
        None => return "other",
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return "other";
    }
    let mut segments = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy());
    let Some(first) = segments.next() else {
        return "about";
    };
    match first.as_ref() {
        "metadata" => "metadata",
        "search" => "search",
        "distinct" => "distinct",
        "revisions" => "revisions",
        "register" => "register",
        "metrics" if segments.next().is_none() => "metrics",
        "openapi.json" if segments.next().is_none() => "openapi",
        "docs" => "docs",
        family @ ("array" | "table" | "dataframe" | "container" | "node") => {
            match (family, segments.next().as_deref()) {
                ("array", Some("full")) => "array/full",
                ("array", Some("block")) => "array/block",
                ("table" | "dataframe", Some("full")) => "table/full",
                ("table" | "dataframe", Some("partition")) => "table/partition",
                ("container", Some("full")) => "container/full",
                ("node", Some("full")) => "node/full",
                _ => "other",
            }
        }
        _ => "other",
    }
}

/// The method label: the standard methods by name, anything else `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Whether a client's request id may be echoed: 1 to 128 characters of
/// `[A-Za-z0-9._-]`.
#[must_use]
pub fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A fresh request id: 16 random bytes in hex.
fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// One request on its way: recorded (metrics and access log) when dropped,
/// which is when its response body is done, or when the request is
/// abandoned before a response (counted with status 499).
struct Tracker {
    metrics: Arc<Metrics>,
    route: &'static str,
    method: &'static str,
    request_id: String,
    /// The path only: the query string may carry `api_key`.
    path: String,
    start: Instant,
    status: Option<u16>,
    bytes: u64,
}

impl Tracker {
    fn sent(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        let status = self.status.unwrap_or(499);
        let m = &self.metrics;
        let status_label = status.to_string();
        if let Ok(c) =
            m.requests
                .get_metric_with_label_values(&[self.route, self.method, &status_label])
        {
            c.inc();
        }
        if let Ok(h) = m
            .duration
            .get_metric_with_label_values(&[self.route, self.method])
        {
            h.observe(elapsed.as_secs_f64());
        }
        if let Ok(c) = m.bytes.get_metric_with_label_values(&[self.route]) {
            c.inc_by(self.bytes);
        }
        m.in_flight.dec();
        tracing::info!(
            target: "tiled::access",
            request_id = %self.request_id,
            method = %self.method,
            path = %self.path,
            route = %self.route,
            status,
            duration_ms = elapsed.as_secs_f64() * 1e3,
            bytes = self.bytes,
            "request"
        );
    }
}

/// The middleware: request id, metrics and access log (see the module
/// docs). Install it outermost, so durations include compression and bytes
/// are the compressed ones.
pub async fn track(State(metrics): State<Arc<Metrics>>, mut req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map_or_else(new_request_id, str::to_string);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    metrics.in_flight.inc();
    let mut tracker = Tracker {
        route: route_label(req.uri().path()),
        method: method_label(req.method()),
        path: req.uri().path().to_string(),
        request_id,
        metrics,
        start: Instant::now(),
        status: None,
        bytes: 0,
    };
    let span = tracing::info_span!("request", request_id = %tracker.request_id);
    let mut response = next.run(req).instrument(span).await;
    tracker.status = Some(response.status().as_u16());
    if let Ok(v) = HeaderValue::from_str(&tracker.request_id) {
        response.headers_mut().insert(X_REQUEST_ID, v);
    }
    let (parts, body) = response.into_parts();
    // The closure owns the tracker (a method call captures it whole), so
    // it is recorded when the body is done with.
    let body = body.map_frame(move |frame| {
        if let Some(data) = frame.data_ref() {
            tracker.sent(data.len());
        }
        frame
    });
    Response::from_parts(parts, Body::new(body))
}
