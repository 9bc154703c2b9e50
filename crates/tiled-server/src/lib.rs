//! The HTTP API of tiled-rs: `/api/v1/...` as the upstream Python client
//! speaks it (see `shared/spec/tiled-wire.md`).
//!
//! Module map:
//! - [`error`]: the one error type and its status-code table.
//! - [`params`]: query-string access.
//! - [`auth`]: single-user API-key authentication.
//! - [`resource`]: node resources (attributes and links).
//! - [`respond`]: JSON/msgpack documents, ETags, 304s.
//! - [`routes`]: the handlers: about, metadata, search, distinct.
//! - [`data`]: the data handlers: arrays and tables.
//! - [`metrics`]: Prometheus metrics, request ids, the access log.
//! - [`multi_user`]: the `/auth` routes of multi-user servers; [`oidc`]: those
//!   of OpenID Connect providers, and the HTTP client that reaches them.
//! - [`openapi`]: the OpenAPI document and Swagger UI (`/docs`), public
//!   routes of their own, generated from one table of every route.
//!
//! Routing is done by hand in [`dispatch`] rather than by axum's router
//! because Tiled paths must resolve with empty segments (`metadata//x`) and
//! trailing slashes exactly as upstream does, which pattern routers
//! normalise differently.

pub mod access;
pub mod auth;
pub mod data;
pub mod encoding;
pub mod error;
pub mod metrics;
pub mod multi_user;
pub mod oidc;
pub mod openapi;
pub mod params;
pub mod resource;
pub mod respond;
pub mod routes;
pub mod write;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tiled_adapters::{Node, NodeData};
use tiled_formats::Registry;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};

pub use auth::{Access, AuthConfig, Caller};
use error::ApiError;
use params::Params;

/// Upstream's default `response_bytesize_limit` (300 MB).
pub const DEFAULT_RESPONSE_BYTESIZE_LIMIT: usize = 300_000_000;

/// Everything that configures one server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub auth: AuthConfig,
    /// Largest response body we agree to build, checked from the structure
    /// before any data is read.
    pub response_bytesize_limit: usize,
    /// Bytes of data responses that may be in memory at once, across all
    /// requests; further data requests wait their turn.
    pub data_memory_budget: usize,
    /// Whether the tree's synchronous calls (lookups, searches, opening
    /// data sources) wait on I/O, as a SQL catalog's do. Requests then run
    /// with `block_in_place`, which needs the multi-threaded runtime.
    pub tree_blocks: bool,
    /// Origins allowed to call the API from browsers (CORS); empty: CORS
    /// off, as upstream's default.
    pub allow_origins: Vec<String>,
}

/// Default [`ServerConfig::data_memory_budget`]: 64 MiB, room for eight
/// 8 MiB blocks in flight, which keeps two cores busy.
pub const DEFAULT_DATA_MEMORY_BUDGET: usize = 64 << 20;

/// The unit in which the data memory budget is counted.
const BUDGET_UNIT: usize = 4096;

/// The server-wide budget for data held in memory by in-flight responses.
pub struct MemoryBudget {
    semaphore: std::sync::Arc<tokio::sync::Semaphore>,
    units: u32,
}

impl MemoryBudget {
    fn new(bytes: usize) -> Self {
        let units = (bytes / BUDGET_UNIT).clamp(
            1,
            tokio::sync::Semaphore::MAX_PERMITS.min(u32::MAX as usize),
        ) as u32;
        MemoryBudget {
            semaphore: std::sync::Arc::new(tokio::sync::Semaphore::new(units as usize)),
            units,
        }
    }

    /// Wait for room for `bytes` (a request larger than the whole budget
    /// waits for all of it).
    ///
    /// # Errors
    /// 500 if the budget was closed (never happens while serving).
    pub async fn reserve(
        &self,
        bytes: usize,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        let want = (bytes.div_ceil(BUDGET_UNIT)).clamp(1, self.units as usize) as u32;
        self.semaphore
            .clone()
            .acquire_many_owned(want)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))
    }
}

/// State shared by every request.
pub struct App {
    pub root: Node,
    /// Writes go here; `None` for read-only trees (writes answer 405).
    pub writer: Option<Arc<dyn tiled_adapters::TreeWriter>>,
    pub config: ServerConfig,
    pub formats: Registry,
    pub budget: MemoryBudget,
}

/// Build the router serving `root`.
pub fn router(root: Node, config: ServerConfig) -> Router {
    router_with_writer(root, config, None)
}

/// Build the router serving `root`, with writes going to `writer`.
pub fn router_with_writer(
    root: Node,
    config: ServerConfig,
    writer: Option<Arc<dyn tiled_adapters::TreeWriter>>,
) -> Router {
    router_with_metrics(root, config, writer, metrics::Metrics::global())
}

/// Build the router serving `root`, recording into `metrics` (served at
/// `/api/v1/metrics`).
pub fn router_with_metrics(
    root: Node,
    config: ServerConfig,
    writer: Option<Arc<dyn tiled_adapters::TreeWriter>>,
    metrics: Arc<metrics::Metrics>,
) -> Router {
    let app = Arc::new(App {
        root,
        writer,
        budget: MemoryBudget::new(config.data_memory_budget),
        config,
        formats: Registry::default(),
    });
    // Small bodies are not worth compressing (upstream's threshold);
    // images, Parquet (zstd inside) and xlsx (a zip) are compressed already.
    let cors = cors_layer(&app.config.allow_origins);
    let predicate = SizeAbove::new(1000)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE)
        .and(NotForContentType::const_new(tiled_formats::PARQUET))
        .and(NotForContentType::const_new(tiled_formats::XLSX));
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ready"})) }),
        )
        .route(
            "/api/v1/metrics",
            get({
                let metrics = metrics.clone();
                move || async move { metrics.render() }
            }),
        )
        // Public on every server (outside `dispatch`, which authenticates).
        .merge(openapi::routes())
        .fallback(dispatch)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .with_state(app)
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .zstd(true)
                .br(true)
                .deflate(true)
                .quality(CompressionLevel::Fastest)
                .compress_when(predicate),
        )
        .layer(tower::util::option_layer(cors))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
}

/// CORS for the configured origins (`*` for any), as upstream configures
/// Starlette's: credentials allowed, methods and headers as requested,
/// the request id exposed.
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::mirror_request()
    } else {
        let list: Vec<axum::http::HeaderValue> = origins
            .iter()
            .filter_map(
                |o| match axum::http::HeaderValue::from_str(o.trim_end_matches('/')) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        tracing::warn!("allow_origins: ignoring {o:?}: not a valid origin");
                        None
                    }
                },
            )
            .collect();
        AllowOrigin::list(list)
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods(AllowMethods::mirror_request())
            .allow_headers(AllowHeaders::mirror_request())
            .allow_credentials(true)
            .expose_headers([axum::http::HeaderName::from_static("x-request-id")]),
    )
}

/// Largest request body (array uploads): the client splits larger arrays
/// into blocks of at most 100 MB.
const MAX_REQUEST_BODY: usize = 256 << 20;

/// The request as the handlers see it.
pub struct Request {
    pub method: Method,
    /// The URI path as sent.
    pub path: String,
    pub headers: HeaderMap,
    pub params: Params,
    pub body: Bytes,
    /// `{scheme}://{host}/api/v1`, from `X-Forwarded-*` or `Host`.
    pub base: String,
    /// The tree as this caller may see it (the served root, filtered by
    /// the access policy when there is one).
    pub root: Node,
    /// What this caller may see (new nodes are tagged within it).
    pub visibility: access::Visibility,
}

fn base_url(headers: &HeaderMap) -> String {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or("").trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let host = get("x-forwarded-host")
        .or_else(|| get(header::HOST.as_str()))
        .unwrap_or_else(|| "localhost".into());
    let scheme = get("x-forwarded-proto").unwrap_or_else(|| "http".into());
    format!("{scheme}://{host}/api/v1")
}

/// Upstream's double-submit CSRF check: an unsafe request authenticated
/// only by the `tiled_api_key` cookie must repeat the `tiled_csrf` cookie
/// in an `x-csrf` header (or `csrf` query parameter).
fn check_csrf(method: &Method, headers: &HeaderMap, params: &Params) -> Result<(), ApiError> {
    if matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return Ok(());
    }
    let cookie = |name: &str| auth::cookie(headers, name);
    let by_cookie = cookie("tiled_api_key").is_some()
        && params.get("api_key").is_none()
        && headers.get(header::AUTHORIZATION).is_none();
    if !by_cookie {
        return Ok(());
    }
    let sent = headers
        .get("x-csrf")
        .and_then(|v| v.to_str().ok())
        .or_else(|| params.get("csrf"));
    match (cookie("tiled_csrf"), sent) {
        (Some(expected), Some(got)) if !expected.is_empty() && expected == got => Ok(()),
        _ => Err(ApiError::Forbidden(
            "Cookie-authenticated requests that change data need the tiled_csrf cookie's \
             value in an x-csrf header."
                .into(),
        )),
    }
}

async fn dispatch(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // Refuse bad credentials before reading a body: an anonymous upload
    // must not make the server hold it. The caller found here is reused.
    let mut checked = None;
    if !matches!(method, Method::GET | Method::HEAD) {
        let params = Params::parse(uri.query());
        if let Err(e) = check_csrf(&method, &headers, &params) {
            return e.into_response();
        }
        let auth_route = uri.path().starts_with("/api/v1/auth/");
        if !auth_route {
            match app.config.auth.authenticate(&headers, &params) {
                Ok(a) => checked = Some(a),
                Err(e) => return e.into_response(),
            }
        }
    }
    // A body over the limit (or one that fails to arrive) is the caller's
    // problem: answer in the API's JSON error shape, not axum's text.
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(b) => b,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            let err = if too_large {
                ApiError::TooLarge(format!(
                    "The request body is larger than {MAX_REQUEST_BODY} bytes; upload arrays \
                     block by block."
                ))
            } else {
                ApiError::BadRequest(format!("Could not read the request body: {e}"))
            };
            return err.into_response();
        }
    };
    let needs_csrf = app.config.auth.multi_user.is_some() && !multi_user::has_csrf_cookie(&headers);
    let result = if app.config.tree_blocks {
        // The tree's calls wait on a database: give this worker thread up
        // to the blocking pool for the request's synchronous parts, so
        // other requests keep running meanwhile.
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(move || {
            handle.block_on(route(app, method, uri, headers, body, checked))
        })
    } else {
        route(app, method, uri, headers, body, checked).await
    };
    let mut response = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if needs_csrf {
        multi_user::set_csrf_cookie(&mut response);
    }
    response
}

/// Route prefixes also served without `/api/v1` (the seed's URL style).
pub(crate) const SEED_ROUTES: [&str; 7] = [
    "/metadata",
    "/search",
    "/distinct",
    "/array",
    "/table",
    "/dataframe",
    "/container",
];

fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

async fn route(
    app: Arc<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    checked: Option<auth::Access>,
) -> Result<Response, ApiError> {
    let path = uri.path();
    // The seed's URL style (`/array/full/...`, `/dataframe/full/...`,
    // `/metadata/...`) is the same API without the `/api/v1` prefix.
    let rest = match path.strip_prefix("/api/v1") {
        Some(rest) => rest,
        None if SEED_ROUTES.iter().any(|r| {
            path.strip_prefix(r)
                .is_some_and(|t| t.is_empty() || t.starts_with('/'))
        }) =>
        {
            path
        }
        None => return Err(ApiError::NotFound("Not Found".into())),
    };
    if rest.is_empty() {
        return Ok(Redirect::temporary("/api/v1/").into_response());
    }
    if !rest.starts_with('/') {
        return Err(ApiError::NotFound("Not Found".into()));
    }
    // An encoded slash separates segments too, as upstream (Starlette
    // decodes the path before routing): no key holds a slash, and Swagger
    // UI sends a `{path}` of several keys that way.
    let segments: Vec<String> = rest
        .split('/')
        .map(decode_segment)
        .flat_map(|s| s.split('/').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let req = Request {
        method,
        path: path.to_string(),
        base: base_url(&headers),
        params: Params::parse(uri.query()),
        headers,
        body,
        root: app.root.clone(),
        visibility: access::Visibility::All,
    };
    let mut req = req;
    let Some(first) = segments.first() else {
        only(&req, &[Method::GET, Method::HEAD])?;
        return routes::about(&app, &req);
    };
    let (name, node_path): (String, &[String]) = match first.as_str() {
        "metadata" | "search" | "distinct" | "revisions" | "register" | "auth" => {
            (first.clone(), &segments[1..])
        }
        "array" | "table" | "dataframe" | "container" | "node" => match segments.get(1) {
            // `dataframe` is the seed's (and old upstream's) name for tables.
            Some(sub) => (
                format!(
                    "{}/{sub}",
                    if first == "dataframe" { "table" } else { first }
                ),
                &segments[2..],
            ),
            None => return Err(ApiError::NotFound("Not Found".into())),
        },
        _ => return Err(ApiError::NotFound("Not Found".into())),
    };
    let presented = req.params.get("api_key").is_some()
        || req.headers.get(header::AUTHORIZATION).is_some()
        || auth::cookie(&req.headers, "tiled_api_key").is_some();
    // Logins, refreshes and revocations carry no credentials (or expired
    // ones): their body is the credential. Other auth routes (whoami) see
    // a caller without credentials as anonymous, but refuse bad ones.
    let credential_free = name == "auth"
        && (!presented
            || matches!(
                node_path.first().map(String::as_str),
                Some("provider" | "session" | "logout")
            ));
    let mut access = if credential_free {
        match app.config.auth.authenticate(&req.headers, &req.params) {
            Ok(a) => a,
            Err(_) => auth::Access::Read,
        }
    } else {
        match checked {
            Some(a) => a,
            None => app.config.auth.authenticate(&req.headers, &req.params)?,
        }
    };
    if name == "auth" {
        let app = app.clone();
        let rest = node_path.to_vec();
        return tokio::task::spawn_blocking(move || multi_user::route(&app, &req, &rest, &access))
            .await
            .map_err(|e| ApiError::Internal(format!("auth task failed: {e}")))?;
    }
    if let Some(mu) = &app.config.auth.multi_user
        && mu.policy.is_some()
    {
        let vis = access::visibility(mu.policy.as_ref(), &access, || {
            mu.identity_for_policy(&access)
        });
        req.root = access::view(&app.root, &vis);
        // On a visible node, the request may use only the node scopes the
        // node's tags grant (the nearest tagged node on its path decides).
        if let auth::Access::User(c) = &access
            && let Some(allowed) = access::scopes_on_path(&req.root, node_path, &vis)?
        {
            let mut narrowed = (**c).clone();
            narrowed
                .scopes
                .retain(|s| !access::NODE_SCOPES.contains(&s.as_str()) || allowed.contains(s));
            access = auth::Access::User(std::sync::Arc::new(narrowed));
        }
        req.visibility = vis;
    }
    if let auth::Access::User(_) = &access
        && !access.has("read:metadata")
    {
        return Err(ApiError::Forbidden(format!(
            "Not enough permissions. Requires scopes ['read:metadata']. Request had scopes {}",
            access.scope_list()
        )));
    }
    let data_route = matches!(
        name.as_str(),
        "array/full"
            | "array/block"
            | "table/full"
            | "table/partition"
            | "node/full"
            | "container/full"
    );
    if data_route
        && matches!(req.method, Method::GET | Method::HEAD | Method::POST)
        && !access.has("read:data")
    {
        return Err(ApiError::Forbidden(format!(
            "Not enough permissions. Requires scopes ['read:data']. Request had scopes {}",
            access.scope_list()
        )));
    }
    // POST elsewhere is a read (column selection in the body).
    let reading = matches!(req.method, Method::GET | Method::HEAD)
        || (req.method == Method::POST && name != "metadata" && name != "register");
    let writing = !reading;
    if writing {
        let needed = write::required_scopes(&name, &req.method);
        if !needed.iter().all(|s| access.has(s)) {
            let quoted: Vec<String> = needed.iter().map(|s| format!("'{s}'")).collect();
            let detail = format!(
                "Not enough permissions. Requires scopes [{}]. Request had scopes {}",
                quoted.join(", "),
                access.scope_list()
            );
            // Anonymous callers may authenticate; a principal lacking
            // the scope is refused.
            return Err(match access {
                auth::Access::User(_) => ApiError::Forbidden(detail),
                _ => ApiError::Unauthorized {
                    detail,
                    challenge: true,
                },
            });
        }
    }
    if write::is_write(&name, &req.method) {
        // Writes touch the database and the disk: run them off the async
        // workers.
        let app = app.clone();
        let node_path = node_path.to_vec();
        return tokio::task::spawn_blocking(move || write::dispatch(&app, &req, &name, &node_path))
            .await
            .map_err(|e| ApiError::Internal(format!("write task failed: {e}")))?;
    }
    match (name.as_str(), &req.method) {
        ("revisions", m) if m == Method::GET || m == Method::HEAD => {
            resolve(&req.root, node_path)?;
            return write::revisions(&app, &req, node_path);
        }
        ("revisions", _) => {
            return Err(ApiError::MethodNotAllowed(format!(
                "Method {} is not allowed on this route.",
                req.method
            )));
        }
        _ => {}
    }
    let node = resolve(&req.root, node_path)?;
    let get_only = [Method::GET, Method::HEAD];
    let get_or_post = [Method::GET, Method::HEAD, Method::POST];
    match name.as_str() {
        "metadata" => {
            only(&req, &get_only)?;
            routes::metadata(&req, node_path, &node)
        }
        "search" => {
            only(&req, &get_only)?;
            routes::search(&req, node_path, &node)
        }
        "distinct" => {
            only(&req, &get_only)?;
            routes::distinct(&req, &node)
        }
        "array/full" | "array/block" => {
            only(&req, &get_only)?;
            data::array(&app, &req, &node, name == "array/block").await
        }
        "table/partition" | "table/full" | "node/full" => {
            only(&req, &get_or_post)?;
            data::table(&app, &req, &node, name == "table/partition").await
        }
        "container/full" => {
            only(&req, &get_or_post)?;
            data::container(&app, &req, &node).await
        }
        _ => Err(ApiError::NotFound("Not Found".into())),
    }
}

fn only(req: &Request, methods: &[Method]) -> Result<(), ApiError> {
    if methods.contains(&req.method) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed(format!(
            "Method {} is not allowed on this route.",
            req.method
        )))
    }
}

/// Walk from the root along `path`. A table's columns resolve as array
/// children (the client's `table["col"]`).
///
/// # Errors
/// 404 `No such entry: [...]` when a segment is missing.
pub fn resolve(root: &Node, path: &[String]) -> Result<Node, ApiError> {
    let missing = || ApiError::NotFound(format!("No such entry: {path:?}"));
    let mut node = root.clone();
    for (i, key) in path.iter().enumerate() {
        node = match &node.data {
            NodeData::Container(c) => c.get(key)?.ok_or_else(missing)?,
            NodeData::Table(t) if i + 1 == path.len() => {
                Node::new(NodeData::Array(t.column_array(key).ok_or_else(missing)?))
            }
            _ => return Err(missing()),
        };
    }
    Ok(node)
}

/// Serve `router` on `listener` until Ctrl-C (or SIGTERM), finishing
/// in-flight requests.
///
/// # Errors
/// I/O errors from the listener.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
