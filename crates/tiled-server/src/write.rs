//! The metadata half of the write API (spec §8.1, 8.5–8.7): create
//! containers, update metadata (JSON Patch, JSON Merge Patch, or whole),
//! list and delete revisions, delete nodes. Every handler needs the API
//! key's scopes and a tree that can be written (the catalog).

use std::sync::Arc;

use axum::http::Method;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tiled_adapters::{NewChild, NodeData, TreeWriter};
use tiled_model::{Spec, StructureFamily};

use crate::error::ApiError;
use crate::resource::RenderOptions;
use crate::respond::document;
use crate::routes::{DEFAULT_PAGE_LIMIT, Envelope, MAX_PAGE_LIMIT};
use crate::{App, Request, resolve};

/// Upstream's limit on specs per node.
const MAX_SPECS: usize = 20;

/// Whether `(route, method)` is a write this module handles.
pub fn is_write(route: &str, method: &Method) -> bool {
    matches!(
        (route, method),
        (
            "metadata",
            &Method::POST | &Method::PATCH | &Method::PUT | &Method::DELETE
        ) | ("revisions", &Method::DELETE)
            | ("register", _)
            | ("array/full", &Method::PUT | &Method::PATCH)
            | ("array/block", &Method::PUT)
            | ("table/full" | "node/full", &Method::PUT)
            | ("table/partition", &Method::PUT | &Method::PATCH)
    )
}

/// The scopes upstream requires for a write (named in 401 answers; the
/// single-user API key holds them all).
pub fn required_scopes(route: &str, method: &Method) -> &'static [&'static str] {
    match (route, method) {
        ("metadata", &Method::POST) => &["write:metadata", "create:node"],
        ("register", _) => &["write:metadata", "create:node", "register"],
        ("metadata", &Method::DELETE) => &["delete:node", "delete:revision"],
        ("revisions", &Method::DELETE) => &["delete:revision"],
        ("metadata", _) => &["write:metadata"],
        _ => &["write:data"],
    }
}

/// Run the write [`is_write`] accepted (on a blocking thread).
///
/// # Errors
/// As each handler.
pub fn dispatch(
    app: &App,
    req: &Request,
    route: &str,
    path: &[String],
) -> Result<Response, ApiError> {
    match (route, &req.method) {
        ("metadata", &Method::POST) => create(app, req, path, false),
        ("register", &Method::POST) => create(app, req, path, true),
        ("metadata", &Method::PATCH) => update(app, req, path, false),
        ("metadata", &Method::PUT) => update(app, req, path, true),
        ("metadata", &Method::DELETE) => delete(app, req, path),
        ("revisions", &Method::DELETE) => delete_revision(app, req, path),
        ("array/full", &Method::PUT) => write_array(app, req, path, false),
        ("array/full", &Method::PATCH) => patch_array(app, req, path),
        ("array/block", &Method::PUT) => write_array(app, req, path, true),
        ("table/full" | "node/full", &Method::PUT) => write_table(app, req, path, None),
        ("table/partition", &Method::PUT) => write_table(app, req, path, Some(false)),
        ("table/partition", &Method::PATCH) => write_table(app, req, path, Some(true)),
        _ => Err(ApiError::MethodNotAllowed(format!(
            "Method {} is not allowed on this route.",
            req.method
        ))),
    }
}

fn writer(app: &App) -> Result<&Arc<dyn TreeWriter>, ApiError> {
    app.writer.as_ref().ok_or_else(|| {
        ApiError::MethodNotAllowed(
            "This tree is read-only: serve a catalog to write (tiled serve catalog).".into(),
        )
    })
}

fn body<T: for<'de> Deserialize<'de>>(req: &Request) -> Result<T, ApiError> {
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::Unprocessable(format!("invalid request body: {e}")))
}

/// Specs as the client sends them (objects or bare names), checked.
fn parse_specs(value: &Value) -> Result<Vec<Spec>, ApiError> {
    let items = value
        .as_array()
        .ok_or_else(|| ApiError::Unprocessable("specs must be a list".into()))?;
    let mut out: Vec<Spec> = Vec::with_capacity(items.len());
    for item in items {
        let spec = match item {
            Value::String(name) => Spec::new(name),
            other => serde_json::from_value(other.clone())
                .map_err(|e| ApiError::Unprocessable(format!("invalid spec {other}: {e}")))?,
        };
        if out.iter().any(|s| s.name == spec.name) {
            return Err(ApiError::Unprocessable(format!(
                "spec {:?} is given more than once",
                spec.name
            )));
        }
        out.push(spec);
    }
    if out.len() > MAX_SPECS {
        return Err(ApiError::Unprocessable(format!(
            "at most {MAX_SPECS} specs are allowed, got {}",
            out.len()
        )));
    }
    Ok(out)
}

fn metadata_object(value: Value) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::Unprocessable(format!(
            "metadata must be an object, got {other}"
        ))),
    }
}

#[derive(Deserialize)]
struct CreateBody {
    id: Option<String>,
    structure_family: String,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    specs: Option<Value>,
    #[serde(default)]
    data_sources: Vec<Value>,
    #[serde(default)]
    access_tags: Option<Vec<String>>,
}

/// `POST /api/v1/metadata/{parent}`: create a child.
///
/// # Errors
/// 404 missing parent, 409 taken key, 422 bad body, 400 unsupported family.
pub fn create(
    app: &App,
    req: &Request,
    parent: &[String],
    register: bool,
) -> Result<Response, ApiError> {
    let w = writer(app)?;
    let b: CreateBody = body(req)?;
    let family = StructureFamily::parse(&b.structure_family)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    if family == StructureFamily::Container && !b.data_sources.is_empty() && !register {
        return Err(ApiError::Unprocessable(
            "containers are created without data sources".into(),
        ));
    }
    let (structure, mimetype) = match family {
        StructureFamily::Container if !register => (None, None),
        _ => {
            let [source] = b.data_sources.as_slice() else {
                return Err(ApiError::Unprocessable(format!(
                    "a {} node is created with exactly one data source, got {}",
                    family.as_str(),
                    b.data_sources.len()
                )));
            };
            let has_assets = source
                .get("assets")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if has_assets != register {
                return Err(ApiError::BadRequest(if register {
                    "registering needs a data source with assets".into()
                } else {
                    "data sources with assets are registered with POST /api/v1/register/{path}"
                        .into()
                }));
            }
            let mimetype = match source.get("mimetype") {
                None | Some(Value::Null) => None,
                Some(Value::String(m)) => Some(m.clone()),
                Some(other) => {
                    return Err(ApiError::Unprocessable(format!(
                        "mimetype must be a string, got {other}"
                    )));
                }
            };
            match source.get("structure") {
                Some(v) if !v.is_null() => (Some(v.clone()), mimetype),
                // Registered containers (an HDF5 file's root) have none.
                _ if family == StructureFamily::Container => (None, mimetype),
                _ => {
                    return Err(ApiError::Unprocessable(
                        "the data source needs a structure".into(),
                    ));
                }
            }
        }
    };
    let key = match b.id {
        Some(k) if !k.is_empty() => k,
        _ => random_key(),
    };
    let child = NewChild {
        key: key.clone(),
        structure_family: family,
        metadata: metadata_object(b.metadata.unwrap_or_else(|| json!({})))?,
        specs: match &b.specs {
            Some(v) if !v.is_null() => parse_specs(v)?,
            _ => Vec::new(),
        },
        structure,
        mimetype,
        access_tags: crate::access::tags_for_new_node(&req.visibility, b.access_tags.as_deref())?,
    };
    // A missing parent is a 404 (as the route's other methods).
    resolve(&req.root, parent)?;
    let data_sources = if register {
        let source = b.data_sources.first().cloned().unwrap_or(Value::Null);
        w.register(parent, &child, &source)?
    } else {
        w.create(parent, &child)?
    };
    let mut path = parent.to_vec();
    path.push(key.clone());
    let node = resolve(&req.root, &path)?;
    let opts = RenderOptions::from_params(req.base.clone(), &req.params)?;
    let links = opts.links(&path, &node);
    document(
        &req.headers,
        &json!({
            "id": key,
            "links": links,
            "data_sources": data_sources,
            "access_tags": child.access_tags.clone().unwrap_or_default(),
        }),
    )
}

fn random_key() -> String {
    // Upstream's client sends a UUID4 when no key is given; do the same.
    let bytes: [u8; 16] = rand::random();
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

#[derive(Deserialize)]
struct PatchBody {
    #[serde(rename = "content-type")]
    content_type: String,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    specs: Option<Value>,
    #[serde(default)]
    access_tags: Option<Value>,
}

#[derive(Deserialize)]
struct PutBody {
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    specs: Option<Value>,
    #[serde(default)]
    access_tags: Option<Value>,
}

fn apply_patch(kind: &str, current: Value, patch: Value) -> Result<Value, ApiError> {
    match kind {
        "application/json-patch+json" => {
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::Unprocessable(format!("invalid JSON Patch: {e}")))?;
            let mut doc = current;
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| ApiError::Unprocessable(format!("JSON Patch failed: {e}")))?;
            Ok(doc)
        }
        "application/merge-patch+json" => {
            let mut doc = current;
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        other => Err(ApiError::NotAcceptable(format!(
            "Unsupported patch content-type {other:?}: use application/json-patch+json or \
             application/merge-patch+json"
        ))),
    }
}

/// `PATCH` or `PUT /api/v1/metadata/{path}`.
///
/// # Errors
/// 404 missing node, 406 unknown patch type, 422 bad body or patch.
pub fn update(
    app: &App,
    req: &Request,
    path: &[String],
    replace: bool,
) -> Result<Response, ApiError> {
    let w = writer(app)?;
    let node = resolve(&req.root, path)?;
    let current_metadata = Value::Object((*node.metadata).clone());
    let current_specs =
        serde_json::to_value(&node.specs).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Upstream applies tag patches to the sorted current list.
    let mut current_tags = node.access_tags.to_vec();
    current_tags.sort();
    let (metadata, specs, tags) = if replace {
        let b: PutBody = body(req)?;
        (b.metadata, b.specs, b.access_tags)
    } else {
        let b: PatchBody = body(req)?;
        let metadata = match b.metadata {
            Some(p) if !p.is_null() => {
                Some(apply_patch(&b.content_type, current_metadata.clone(), p)?)
            }
            _ => None,
        };
        let specs = match b.specs {
            Some(p) if !p.is_null() => {
                Some(apply_patch(&b.content_type, current_specs.clone(), p)?)
            }
            _ => None,
        };
        let tags = match b.access_tags {
            Some(p) if !p.is_null() => Some(apply_patch(
                &b.content_type,
                Value::from(current_tags.clone()),
                p,
            )?),
            _ => None,
        };
        (metadata, specs, tags)
    };
    let metadata = match metadata {
        Some(m) if !m.is_null() => metadata_object(m)?,
        _ => metadata_object(current_metadata)?,
    };
    let specs = match specs {
        Some(s) if !s.is_null() => Some(parse_specs(&s)?),
        _ => None,
    };
    let asked_tags = match tags {
        Some(t) if !t.is_null() => Some(tag_list(t)?),
        _ => None,
    };
    // Without an access policy upstream ignores tag edits and answers with
    // the unchanged tags.
    let new_tags = match &asked_tags {
        Some(asked) => {
            crate::access::tags_for_existing_node(&req.visibility, &current_tags, asked)?
                .filter(|t| *t != current_tags)
        }
        None => None,
    };
    let drop_revision = req.params.bool("drop_revision", false)?;
    w.update_metadata(
        path,
        &metadata,
        specs.as_deref(),
        new_tags.as_deref(),
        drop_revision,
    )?;
    let mut reply = json!({"id": path.last().cloned().unwrap_or_default()});
    if asked_tags.is_some() {
        reply["access_tags"] = Value::from(new_tags.unwrap_or(current_tags));
    }
    document(&req.headers, &reply)
}

/// A patched or given tag list: it must be a list of strings.
fn tag_list(value: Value) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::Unprocessable("access_tags patch must produce a list of strings".into());
    let Value::Array(items) = value else {
        return Err(bad());
    };
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(bad()),
        })
        .collect()
}

/// `PUT /api/v1/array/full/{path}` and `PUT /api/v1/array/block/{path}?block=i,j`:
/// raw C-order bytes of the node's dtype for the whole array or one block.
///
/// # Errors
/// 404 missing node, 422 wrong length or missing block, 400 for a node
/// without writable storage or a bad block.
pub fn write_array(
    app: &App,
    req: &Request,
    path: &[String],
    by_block: bool,
) -> Result<Response, ApiError> {
    let w = writer(app)?;
    let node = resolve(&req.root, path)?;
    let NodeData::Array(adapter) = &node.data else {
        return Err(ApiError::BadRequest("This node is not an array.".into()));
    };
    let st = adapter.structure();
    let block = if by_block {
        let text = req
            .params
            .get("block")
            .ok_or_else(|| ApiError::Unprocessable("The block parameter is required.".into()))?;
        Some(parse_block(text)?)
    } else {
        None
    };
    let shape = match &block {
        Some(b) => st.block_extent(b)?.1,
        None => st.shape.clone(),
    };
    let expected = shape
        .iter()
        .try_fold(st.data_type.itemsize(), |acc, &n| acc.checked_mul(n))
        .ok_or_else(|| ApiError::Unprocessable("the array is too large".into()))?;
    if req.body.len() != expected {
        return Err(ApiError::Unprocessable(format!(
            "Expected {expected} bytes (shape {shape:?} of {}-byte elements), got {}.",
            st.data_type.itemsize(),
            req.body.len()
        )));
    }
    if !req.params.bool("persist", true)? {
        return document(&req.headers, &Value::Null);
    }
    w.write_array(path, block.as_deref(), &req.body)?;
    document(&req.headers, &Value::Null)
}

/// `PATCH /api/v1/array/full/{path}?offset=i,..&shape=a,..&extend=bool`:
/// write a region, growing the array with `extend`; answers the new
/// structure.
///
/// # Errors
/// 409 when the region does not fit without `extend`; 422/400 as
/// [`write_array`].
pub fn patch_array(app: &App, req: &Request, path: &[String]) -> Result<Response, ApiError> {
    let w = writer(app)?;
    let node = resolve(&req.root, path)?;
    let NodeData::Array(adapter) = &node.data else {
        return Err(ApiError::BadRequest("This node is not an array.".into()));
    };
    let itemsize = adapter.structure().data_type.itemsize();
    let shape = parse_block(
        req.params
            .get("shape")
            .ok_or_else(|| ApiError::Unprocessable("The shape parameter is required.".into()))?,
    )?;
    let offset = match req.params.get("offset") {
        Some(text) => parse_block(text)?,
        None => Vec::new(),
    };
    let extend = req.params.bool("extend", false)?;
    let persist = req.params.bool("persist", true)?;
    if extend && !persist {
        return Err(ApiError::BadRequest(
            "extend=true cannot be combined with persist=false".into(),
        ));
    }
    let expected = shape
        .iter()
        .try_fold(itemsize, |acc, &n| acc.checked_mul(n))
        .ok_or_else(|| ApiError::Unprocessable("the region is too large".into()))?;
    if req.body.len() != expected {
        return Err(ApiError::Unprocessable(format!(
            "Expected {expected} bytes (shape {shape:?} of {itemsize}-byte elements), got {}.",
            req.body.len()
        )));
    }
    if !persist {
        // Nothing subscribes to live data here: a non-persisted write is
        // checked and dropped.
        return document(&req.headers, &Value::Null);
    }
    let structure = w.patch_array(path, &offset, &shape, extend, &req.body)?;
    document(&req.headers, &structure)
}

/// `PUT /api/v1/table/full/{path}` (whole one-partition table), `PUT
/// /api/v1/table/partition/{path}?partition=N` (replace) and `PATCH` of
/// the same (append): Arrow IPC bodies.
///
/// # Errors
/// 404 missing node; 400 for a node without writable storage, a bad
/// partition or a body that does not match the table.
pub fn write_table(
    app: &App,
    req: &Request,
    path: &[String],
    append: Option<bool>,
) -> Result<Response, ApiError> {
    let w = writer(app)?;
    let node = resolve(&req.root, path)?;
    if !matches!(node.data, NodeData::Table(_)) {
        return Err(ApiError::BadRequest("This node is not a table.".into()));
    }
    if let Some(ct) = req.headers.get(axum::http::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let arrow = ct.starts_with("application/vnd.apache.arrow")
            || ct.starts_with("application/octet-stream");
        if !arrow {
            return Err(ApiError::BadRequest(format!(
                "Table bodies are Arrow IPC (application/vnd.apache.arrow.file), not {ct:?}."
            )));
        }
    }
    let partition = match append {
        None => None,
        Some(_) => Some(req.params.usize("partition")?.ok_or_else(|| {
            ApiError::Unprocessable("The partition parameter is required.".into())
        })?),
    };
    if !req.params.bool("persist", true)? {
        return document(&req.headers, &Value::Null);
    }
    w.write_table(path, partition, append.unwrap_or(false), &req.body)?;
    document(&req.headers, &Value::Null)
}

fn parse_block(text: &str) -> Result<Vec<usize>, ApiError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .map_err(|_| ApiError::Unprocessable(format!("invalid block {text:?}")))
        })
        .collect()
}

/// `DELETE /api/v1/metadata/{path}?recursive=...`.
///
/// # Errors
/// 404 missing node, 409 non-empty without `recursive`, 400 for the root.
pub fn delete(app: &App, req: &Request, path: &[String]) -> Result<Response, ApiError> {
    let w = writer(app)?;
    resolve(&req.root, path)?;
    w.delete(
        path,
        req.params.bool("recursive", false)?,
        req.params.bool("external_only", true)?,
    )?;
    document(&req.headers, &Value::Null)
}

/// `GET /api/v1/revisions/{path}`: one page of revisions.
///
/// # Errors
/// 404 missing node.
pub fn revisions(app: &App, req: &Request, path: &[String]) -> Result<Response, ApiError> {
    let w = writer(app)?;
    let offset = req.params.usize("page[offset]")?.unwrap_or(0);
    let limit = req
        .params
        .usize("page[limit]")?
        .unwrap_or(DEFAULT_PAGE_LIMIT)
        .min(MAX_PAGE_LIMIT);
    let (count, items) = w.revisions(path, offset, limit)?;
    let p = RenderOptions::path(path);
    let link = |o: usize| {
        format!(
            "{}/revisions/{p}?page[offset]={o}&page[limit]={limit}",
            req.base
        )
    };
    let data: Vec<Value> = items
        .into_iter()
        .map(|r| {
            json!({
                "revision_number": r.revision_number,
                "attributes": {
                    "metadata": r.metadata,
                    "specs": r.specs,
                    "time_updated": r.time_updated,
                },
            })
        })
        .collect();
    document(
        &req.headers,
        &Envelope {
            data,
            error: None,
            links: Some(json!({
                "self": link(offset),
                "first": link(0),
                "next": (limit > 0 && offset + limit < count).then(|| link(offset + limit)),
            })),
            meta: json!({ "count": count }),
        },
    )
}

/// `DELETE /api/v1/revisions/{path}?number=N`.
///
/// # Errors
/// 404 missing node or revision; 422 without `number`.
pub fn delete_revision(app: &App, req: &Request, path: &[String]) -> Result<Response, ApiError> {
    let w = writer(app)?;
    let number = req
        .params
        .usize("number")?
        .ok_or_else(|| ApiError::Unprocessable("give the revision's number".into()))?;
    let number =
        i64::try_from(number).map_err(|_| ApiError::Unprocessable("number is too large".into()))?;
    // A node the caller cannot see does not exist for them.
    resolve(&req.root, path)?;
    w.delete_revision(path, number)?;
    document(&req.headers, &Value::Null)
}
