//! Handlers for the about document, node metadata, search and distinct.

use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Value, json};
use tiled_adapters::{DistinctRequest, Node, NodeData, SortKey};
use tiled_model::Query;
use tiled_model::query::QUERY_NAMES;

use crate::error::ApiError;
use crate::resource::RenderOptions;
use crate::respond::document;
use crate::{App, Request};

/// The response envelope `{"data", "error", "links", "meta"}`.
#[derive(serde::Serialize)]
pub struct Envelope<D> {
    pub data: D,
    pub error: Option<()>,
    pub links: Option<Value>,
    pub meta: Value,
}

/// The dialect of the Tiled API we speak (the client checks it is ≥ 0.2.4).
pub const TILED_API_DIALECT: &str = "0.2.20";

/// Upstream's cap on `page[limit]`; larger requests are clamped, not refused.
pub const MAX_PAGE_LIMIT: usize = 300;
/// Default `page[limit]`.
pub const DEFAULT_PAGE_LIMIT: usize = 100;

/// `GET /api/v1/`: what this server can do. Readable without credentials.
///
/// # Errors
/// 500 only if encoding fails.
pub fn about(app: &App, req: &Request) -> Result<Response, ApiError> {
    let base = &req.base;
    let doc = json!({
        "api_version": 0,
        "library_version": TILED_API_DIALECT,
        "formats": app.formats.about_formats(),
        "aliases": app.formats.about_aliases(),
        "queries": QUERY_NAMES,
        "authentication": match &app.config.auth.multi_user {
            Some(mu) => mu.about(base, !app.config.auth.allow_anonymous),
            None => json!({
                "required": !app.config.auth.allow_anonymous,
                "providers": [],
                "links": null,
            }),
        },
        "links": {"self": base, "documentation": format!("{base}/docs")},
        "meta": {
            "root_path": "/api",
            "server": format!("tiled-rs {}", env!("CARGO_PKG_VERSION")),
        },
    });
    document(&req.headers, &doc)
}

/// `GET /api/v1/metadata/{path}`.
///
/// # Errors
/// 400/422 for bad parameters.
pub fn metadata(req: &Request, path: &[String], node: &Node) -> Result<Response, ApiError> {
    let opts = RenderOptions::from_params(req.base.clone(), &req.params)?;
    let resource = opts.resource(path, node)?;
    let mut meta = json!({});
    if let Some(root_path) = req.params.get("root_path") {
        meta["root_path"] = json!(root_path);
    }
    document(
        &req.headers,
        &Envelope {
            data: resource,
            error: None,
            links: None,
            meta,
        },
    )
}

/// Parse `sort` (repeatable, each possibly comma-separated): `key`, `+key`
/// ascending, `-key` descending; a bare `-`/`+` is the default order.
///
/// # Errors
/// 422 for malformed items, 400 for duplicates or a default-order item that
/// is not last.
pub fn parse_sort(req: &Request) -> Result<Vec<SortKey>, ApiError> {
    let mut out: Vec<SortKey> = Vec::new();
    for item in req
        .params
        .all("sort")
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (descending, key) = match item.as_bytes()[0] {
            b'-' => (true, &item[1..]),
            b'+' => (false, &item[1..]),
            _ => (false, item),
        };
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(ApiError::Unprocessable(format!(
                "Invalid sort key {item:?}: use letters, digits, '_' and '.', with an optional leading '+' or '-'"
            )));
        }
        if out.iter().any(|s| s.key == key) {
            return Err(ApiError::BadRequest(format!(
                "Sort key {key:?} is given more than once"
            )));
        }
        if out.last().is_some_and(|s| s.key.is_empty()) {
            return Err(ApiError::BadRequest(
                "The default sort order ('-' or '+') must come last".into(),
            ));
        }
        out.push(SortKey {
            key: key.to_string(),
            descending,
        });
    }
    Ok(out)
}

fn container(node: &Node) -> Result<&dyn tiled_adapters::ContainerAdapter, ApiError> {
    match &node.data {
        NodeData::Container(c) => Ok(c.as_ref()),
        _ => Err(ApiError::NotFound(
            "This node is not a container, so it cannot be searched.".into(),
        )),
    }
}

/// `GET /api/v1/search/{path}`: one page of children matching the filters.
///
/// # Errors
/// 404 for non-containers; 400/422 for bad parameters.
pub fn search(req: &Request, path: &[String], node: &Node) -> Result<Response, ApiError> {
    let c = container(node)?;
    let opts = RenderOptions::from_params(req.base.clone(), &req.params)?;
    let offset = req.params.usize("page[offset]")?;
    let cursor = req.params.usize("page[cursor]")?.map(|c| c as u64);
    if offset.is_some() && cursor.is_some() {
        return Err(ApiError::BadRequest(
            "Give page[offset] or page[cursor], not both".into(),
        ));
    }
    let limit = req
        .params
        .usize("page[limit]")?
        .unwrap_or(DEFAULT_PAGE_LIMIT)
        .min(MAX_PAGE_LIMIT);
    let sort = parse_sort(req)?;
    let queries = Query::parse_params(req.params.pairs())?;
    let count_only = opts.fields.count_only();
    let page_limit = if count_only { 0 } else { limit };
    let page = match cursor {
        Some(cursor) => c.search_after(&queries, &sort, cursor, page_limit)?,
        None => c.search(&queries, &sort, offset.unwrap_or(0), page_limit)?,
    };
    let offset = offset.unwrap_or(0);
    let child_paths: Vec<Vec<String>> = page
        .entries
        .iter()
        .map(|(key, _)| {
            let mut p = Vec::with_capacity(path.len() + 1);
            p.extend_from_slice(path);
            p.push(key.clone());
            p
        })
        .collect();
    let data = child_paths
        .iter()
        .zip(&page.entries)
        .map(|(p, (_, child))| opts.resource(p, child))
        .collect::<Result<Vec<_>, _>>()?;
    let p = RenderOptions::path(path);
    let link = |start: &str| format!("{}/search/{p}?{start}&page[limit]={limit}", req.base);
    let at = |o: usize| link(&format!("page[offset]={o}"));
    let count = page.count;
    // A backend that hands out cursors gets cursor links (keyset pages stay
    // correct while others insert); otherwise offsets. The client follows
    // `next` as given and re-adds filters and sort itself.
    let (self_link, next, prev) = match (cursor, page.next_cursor) {
        (Some(c), next) => (
            link(&format!("page[cursor]={c}")),
            next.map(|n| link(&format!("page[cursor]={n}"))),
            None,
        ),
        (None, Some(n)) => (
            at(offset),
            Some(link(&format!("page[cursor]={n}"))),
            (limit > 0 && offset > 0).then(|| at(offset.saturating_sub(limit))),
        ),
        (None, None) => (
            at(offset),
            (limit > 0 && offset + limit < count).then(|| at(offset + limit)),
            (limit > 0 && offset > 0).then(|| at(offset.saturating_sub(limit))),
        ),
    };
    let links = json!({
        "self": self_link,
        "first": at(0),
        "next": next,
        "prev": prev,
        "last": (limit > 0).then(|| at(count.saturating_sub(1) / limit * limit)),
    });
    let mut resp = document(
        &req.headers,
        &Envelope {
            data,
            error: None,
            links: Some(links),
            meta: json!({ "count": count }),
        },
    )?;
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("must-revalidate"),
    );
    Ok(resp)
}

/// `GET /api/v1/distinct/{path}`: distinct metadata values, families and
/// specs among matching children.
///
/// # Errors
/// 404 for non-containers; 400/422 for bad parameters.
pub fn distinct(req: &Request, node: &Node) -> Result<Response, ApiError> {
    let c = container(node)?;
    let queries = Query::parse_params(req.params.pairs())?;
    let metadata_keys: Vec<String> = req
        .params
        .all("metadata")
        .into_iter()
        .map(str::to_string)
        .collect();
    for k in &metadata_keys {
        tiled_model::query::validate_key(k)?;
    }
    let result = c.distinct(&DistinctRequest {
        queries: &queries,
        metadata_keys: &metadata_keys,
        structure_families: req.params.bool("structure_families", false)?,
        specs: req.params.bool("specs", false)?,
        counts: req.params.bool("counts", false)?,
    })?;
    let value: Value =
        serde_json::to_value(result).map_err(|e| ApiError::Internal(e.to_string()))?;
    document(&req.headers, &value)
}
