//! The metadata half of the write API (spec §8.1, 8.5–8.7): create
//! containers, update metadata (JSON Patch, JSON Merge Patch, or whole),
//! list and delete revisions, delete nodes. Every handler needs the API
//! key's scopes and a tree that can be written (the catalog).

use std::sync::Arc;

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
}

/// `POST /api/v1/metadata/{parent}`: create a child.
///
/// # Errors
/// 404 missing parent, 409 taken key, 422 bad body, 400 unsupported family.
pub fn create(app: &App, req: &Request, parent: &[String]) -> Result<Response, ApiError> {
    let w = writer(app)?;
    let b: CreateBody = body(req)?;
    let family = StructureFamily::parse(&b.structure_family)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    if family == StructureFamily::Container && !b.data_sources.is_empty() {
        return Err(ApiError::Unprocessable(
            "containers are created without data sources".into(),
        ));
    }
    let structure = match family {
        StructureFamily::Container => None,
        _ => {
            let [source] = b.data_sources.as_slice() else {
                return Err(ApiError::Unprocessable(format!(
                    "a {} node is created with exactly one data source, got {}",
                    family.as_str(),
                    b.data_sources.len()
                )));
            };
            if source
                .get("assets")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            {
                return Err(ApiError::BadRequest(
                    "registering external assets is not supported yet".into(),
                ));
            }
            match source.get("structure") {
                Some(v) if !v.is_null() => Some(v.clone()),
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
    };
    // A missing parent is a 404 (as the route's other methods).
    resolve(&app.root, parent)?;
    w.create(parent, &child)?;
    let mut path = parent.to_vec();
    path.push(key.clone());
    let node = resolve(&app.root, &path)?;
    let opts = RenderOptions::from_params(req.base.clone(), &req.params)?;
    let links = opts.links(&path, &node);
    document(
        &req.headers,
        &json!({"id": key, "links": links, "data_sources": [], "access_tags": []}),
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
}

#[derive(Deserialize)]
struct PutBody {
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    specs: Option<Value>,
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
    let node = resolve(&app.root, path)?;
    let current_metadata = Value::Object((*node.metadata).clone());
    let current_specs =
        serde_json::to_value(&node.specs).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (metadata, specs) = if replace {
        let b: PutBody = body(req)?;
        (b.metadata, b.specs)
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
        (metadata, specs)
    };
    let metadata = match metadata {
        Some(m) if !m.is_null() => metadata_object(m)?,
        _ => metadata_object(current_metadata)?,
    };
    let specs = match specs {
        Some(s) if !s.is_null() => Some(parse_specs(&s)?),
        _ => None,
    };
    let drop_revision = req.params.bool("drop_revision", false)?;
    w.update_metadata(path, &metadata, specs.as_deref(), drop_revision)?;
    document(
        &req.headers,
        &json!({"id": path.last().cloned().unwrap_or_default()}),
    )
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
    let node = resolve(&app.root, path)?;
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
    w.write_array(path, block.as_deref(), &req.body)?;
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
    resolve(&app.root, path)?;
    w.delete(path, req.params.bool("recursive", false)?)?;
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
    w.delete_revision(path, number)?;
    document(&req.headers, &Value::Null)
}
