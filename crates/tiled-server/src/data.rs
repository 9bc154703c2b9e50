//! Data handlers: array blocks and slices, table partitions and columns.
//!
//! Order of work for every request: negotiate the format, validate every
//! parameter against the *structure*, compute the response size and refuse
//! it if too large, and only then read (on a blocking thread) and encode.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures::StreamExt;
use tiled_adapters::{ArrayAdapter, Node, NodeData, TableAdapter, table::column_indices};
use tiled_formats::{OCTET_STREAM, Payload};
use tiled_model::{DimSelection, NdSlice, ResolvedSlice, StructureFamily};

use crate::encoding;
use crate::error::ApiError;
use crate::respond::{budgeted_response, respond_with, with_filename};
use crate::{App, Request};

/// Bytes per strip when streaming an array.
const STRIP_BYTES: usize = 1 << 20;

/// An ETag derived from the request alone (path, parameters, media type),
/// so no body is hashed, streamed bodies get one too, and a 304 costs no
/// read. Sound only for trees nothing writes to, read without an access
/// policy: a writable tree's data changes under the same request (and
/// another replica may have written it), and under a policy the same
/// request shows each caller different nodes. Those responses get an ETag
/// no later request can name, so they are never answered with a 304.
fn request_etag(app: &App, req: &Request, media_type: &str) -> String {
    let policy = app
        .config
        .auth
        .multi_user
        .as_ref()
        .is_some_and(|mu| mu.policy.is_some());
    if app.writer.is_some() || policy {
        let nonce: u128 = rand::random();
        return format!("\"{nonce:032x}\"");
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    // The demo and in-memory trees are immutable while a server runs, but
    // another version may generate different values.
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(b"\0");
    h.update(req.path.as_bytes());
    for (k, v) in req.params.pairs().filter(|(k, _)| *k != "api_key") {
        h.update(b"\0");
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
    h.update(b"\0");
    h.update(media_type.as_bytes());
    format!("\"{:032x}\"", h.digest128())
}

/// `Cache-Control` for data responses. In-memory trees are immutable while
/// the server runs: cacheable for a day (by shared caches only when anyone
/// may read). A catalog's nodes can change, and the ETag is derived from
/// the request, so caches must revalidate every time.
fn cache_control(app: &App) -> HeaderValue {
    HeaderValue::from_static(
        match (app.config.tree_blocks, app.config.auth.allow_anonymous) {
            (true, _) => "no-cache",
            (false, true) => "public, max-age=86400, immutable",
            (false, false) => "private, max-age=86400, immutable",
        },
    )
}

/// Finish a data response: Tiled's own encodings (blosc2, lz4) when the
/// request lists them and they pay, ETag/304, caching headers and the
/// download filename. `typesize` is the element size blosc2 shuffles by.
async fn data_response(
    app: &Arc<App>,
    req: &Request,
    media_type: &'static str,
    body: Vec<u8>,
    etag: String,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    typesize: usize,
) -> Response {
    let chosen = encoding::choose(&req.headers, media_type, typesize);
    let etag = match chosen {
        Some(e) => format!("{}-{}\"", etag.trim_end_matches('"'), e.name()),
        None => etag,
    };
    let (body, applied) = match chosen {
        Some(e) if !crate::respond::not_modified(&req.headers, &etag) => {
            tokio::task::spawn_blocking(move || {
                // A codec panic must not lose the body: send it unencoded.
                let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    encoding::encode(e, &body)
                }));
                match encoded {
                    Ok(Some(encoded)) => (encoded, Some(e)),
                    _ => (body, None),
                }
            })
            .await
            .unwrap_or_else(|_| (Vec::new(), None))
        }
        _ => (body, None),
    };
    let mut resp = budgeted_response(&req.headers, media_type, body, Some(etag), permit);
    if let Some(e) = applied {
        encoding::mark(&mut resp, e);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, cache_control(app));
    with_filename(resp, req.params.get("filename"))
}

/// Move a selection made within a block to the array's coordinates.
fn shift(sel: &ResolvedSlice, offset: &[usize]) -> ResolvedSlice {
    ResolvedSlice {
        dims: sel
            .dims
            .iter()
            .zip(offset)
            .map(|(d, &o)| match *d {
                DimSelection::Index(i) => DimSelection::Index(i + o),
                DimSelection::Range { start, step, len } => DimSelection::Range {
                    start: start + o as i64,
                    step,
                    len,
                },
            })
            .collect(),
    }
}

/// Cut a selection into consecutive pieces along its first kept dimension,
/// each about `target` bytes (at least one row).
fn split_into_strips(sel: &ResolvedSlice, itemsize: usize, target: usize) -> Vec<ResolvedSlice> {
    let Some(axis) = sel
        .dims
        .iter()
        .position(|d| matches!(d, DimSelection::Range { .. }))
    else {
        return vec![sel.clone()];
    };
    let DimSelection::Range { start, step, len } = sel.dims[axis] else {
        return vec![sel.clone()];
    };
    let row_bytes: usize = itemsize
        * sel.dims[axis + 1..]
            .iter()
            .map(DimSelection::count)
            .product::<usize>();
    let rows = (target / row_bytes.max(1)).max(1);
    (0..len)
        .step_by(rows)
        .map(|k| {
            let mut piece = sel.clone();
            piece.dims[axis] = DimSelection::Range {
                start: start + step * k as i64,
                step,
                len: rows.min(len - k),
            };
            piece
        })
        .collect()
}

fn too_large(size: usize, limit: usize, hint: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "Response would exceed {limit} bytes ({size} bytes requested), the server's \
         response_bytesize_limit. {hint}"
    ))
}

fn parse_ints(text: &str, what: &str) -> Result<Vec<usize>, ApiError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|s| {
            s.trim().parse::<usize>().map_err(|_| {
                ApiError::Unprocessable(format!(
                    "{what} must be comma-separated non-negative integers, got {text:?}"
                ))
            })
        })
        .collect()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
}

fn accept(req: &Request) -> Option<&str> {
    req.headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
}

/// `GET /api/v1/array/full/{path}` and `/array/block/{path}`.
///
/// # Errors
/// 404 if not an array; 406 for an unsupported format; 422 for a bad block,
/// slice or expected shape; 400 if the response would be too large.
pub async fn array(
    app: &Arc<App>,
    req: &Request,
    node: &Node,
    by_block: bool,
) -> Result<Response, ApiError> {
    let NodeData::Array(adapter) = &node.data else {
        return Err(ApiError::NotFound("This node is not an array.".into()));
    };
    let serializer = app.formats.negotiate(
        StructureFamily::Array,
        req.params.get("format"),
        accept(req),
    )?;
    let st = adapter.structure();
    let slice = NdSlice::parse(req.params.get("slice").unwrap_or(""))?;
    let (block, region_shape) = if by_block {
        let text = req
            .params
            .get("block")
            .ok_or_else(|| ApiError::Unprocessable("The block parameter is required.".into()))?;
        let block = parse_ints(text, "block")?;
        let (_, shape) = st.block_extent(&block)?;
        (Some(block), shape)
    } else {
        (None, st.shape.clone())
    };
    let sel = slice.resolve(&region_shape)?;
    let out_shape = sel.out_shape();
    if let Some(expected) = req.params.get("expected_shape") {
        let expected = if expected == "scalar" {
            Vec::new()
        } else {
            parse_ints(expected, "expected_shape")?
        };
        if expected != out_shape {
            return Err(ApiError::Unprocessable(format!(
                "The expected_shape {expected:?} does not match the shape of the result {out_shape:?}."
            )));
        }
    }
    let size = sel.num_elements() * st.data_type.itemsize();
    let limit = app.config.response_bytesize_limit;
    if size > limit {
        return Err(too_large(
            size,
            limit,
            "Request a smaller region with ?slice=... (e.g. slice=0:1000,0:1000) or read block by block.",
        ));
    }
    let media_type = serializer.media_type;
    let itemsize = st.data_type.itemsize();
    let etag = request_etag(app, req, media_type);
    let adapter: Arc<dyn ArrayAdapter> = adapter.clone();
    if media_type == OCTET_STREAM && size > STRIP_BYTES && adapter.cheap_region_reads() {
        // Stream in strips along the result's first axis: C-order strips
        // concatenate to the whole, and only two are in memory at a time.
        let global = match &block {
            Some(b) => shift(&sel, &st.block_extent(b)?.0),
            None => sel,
        };
        let strips = split_into_strips(&global, st.data_type.itemsize(), STRIP_BYTES);
        // blosc2 (when listed) frames each strip on its own: the client
        // decodes concatenated frames.
        let blosc2 = match encoding::choose(&req.headers, media_type, itemsize) {
            Some(encoding::Encoding::Blosc2 { typesize }) => Some(typesize),
            _ => None,
        };
        let etag = match blosc2 {
            Some(_) => format!("{}-blosc2\"", etag.trim_end_matches('"')),
            None => etag,
        };
        let permit = app.budget.reserve(3 * STRIP_BYTES).await?;
        let stream = futures::stream::iter(strips)
            .then(move |strip| {
                let adapter = adapter.clone();
                async move {
                    let bytes = tokio::task::spawn_blocking(move || {
                        let data = adapter.read(&strip).map_err(std::io::Error::other)?;
                        match blosc2 {
                            Some(typesize) => encoding::blosc2_frames(&data.bytes, typesize)
                                .map_err(std::io::Error::other),
                            None => Ok(data.bytes),
                        }
                    })
                    .await
                    .map_err(std::io::Error::other)??;
                    Ok::<_, std::io::Error>(Bytes::from(bytes))
                }
            })
            .map(move |piece| {
                let _held = &permit;
                piece
            });
        let mut resp = respond_with(&req.headers, media_type, etag, || Body::from_stream(stream));
        if blosc2.is_some() && resp.status().is_success() {
            encoding::mark(&mut resp, encoding::Encoding::Blosc2 { typesize: itemsize });
        }
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, cache_control(app));
        return Ok(with_filename(resp, req.params.get("filename")));
    }
    let permit = app
        .budget
        .reserve(size.saturating_mul(tiled_formats::working_set_factor(media_type)))
        .await?;
    let app2 = app.clone();
    let body = blocking(move || {
        let data = match block {
            Some(b) => {
                let whole = adapter.read_block(&b)?;
                if slice.is_full() {
                    whole
                } else {
                    whole.select(&sel)
                }
            }
            None => adapter.read(&sel)?,
        };
        Ok(app2
            .formats
            .encode(StructureFamily::Array, media_type, Payload::Array(data))?)
    })
    .await?;
    Ok(data_response(app, req, media_type, body, etag, Some(permit), itemsize).await)
}

/// Columns requested by `column=` (or its deprecated alias `field=`), or by
/// a JSON list in a POST body.
fn requested_columns(req: &Request) -> Result<Option<Vec<String>>, ApiError> {
    let column = req.params.all("column");
    let field = req.params.all("field");
    if !column.is_empty() && !field.is_empty() {
        return Err(ApiError::BadRequest(
            "Use column= (or the deprecated field=), not both.".into(),
        ));
    }
    let mut cols: Vec<String> = column
        .into_iter()
        .chain(field)
        .map(str::to_string)
        .collect();
    if req.method == axum::http::Method::POST && !req.body.is_empty() {
        let body: Vec<String> = serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::Unprocessable(format!("The body must be a JSON list of column names: {e}"))
        })?;
        cols.extend(body);
    }
    Ok((!cols.is_empty()).then_some(cols))
}

/// `GET|POST /api/v1/table/partition/{path}` and `/table/full/{path}`.
///
/// # Errors
/// 404 if not a table; 406 for an unsupported format; 400 for a bad
/// partition or column, or a response that would be too large.
pub async fn table(
    app: &Arc<App>,
    req: &Request,
    node: &Node,
    by_partition: bool,
) -> Result<Response, ApiError> {
    let NodeData::Table(adapter) = &node.data else {
        return Err(ApiError::NotFound("This node is not a table.".into()));
    };
    let serializer = app.formats.negotiate(
        StructureFamily::Table,
        req.params.get("format"),
        accept(req),
    )?;
    let columns = requested_columns(req)?;
    let schema = adapter.schema();
    if let Some(cols) = &columns {
        column_indices(&schema, cols)?;
    }
    let npartitions = adapter.structure().npartitions;
    let partitions: Vec<usize> = if by_partition {
        let p = req
            .params
            .get("partition")
            .ok_or_else(|| ApiError::BadRequest("The partition parameter is required.".into()))?;
        let p: usize = p.trim().parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "partition must be a non-negative integer, got {p:?}"
            ))
        })?;
        if p >= npartitions {
            return Err(ApiError::BadRequest(format!(
                "Partition out of range: {p} (the table has {npartitions} partition(s))"
            )));
        }
        vec![p]
    } else {
        (0..npartitions).collect()
    };
    let size: usize = partitions
        .iter()
        .map(|&p| adapter.partition_bytes(p, columns.as_deref()).unwrap_or(0))
        .sum();
    let limit = app.config.response_bytesize_limit;
    if size > limit {
        return Err(too_large(
            size,
            limit,
            "Request fewer columns with ?column=... or one partition at a time.",
        ));
    }
    let media_type = serializer.media_type;
    let permit = app
        .budget
        .reserve(size.saturating_mul(tiled_formats::working_set_factor(media_type)))
        .await?;
    let adapter: Arc<dyn TableAdapter> = adapter.clone();
    let app2 = app.clone();
    let body = blocking(move || {
        let batches = partitions
            .iter()
            .map(|&p| adapter.read_partition(p, columns.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        let schema = match &columns {
            Some(cols) => {
                let idx = column_indices(&schema, cols)?;
                std::sync::Arc::new(
                    schema
                        .project(&idx)
                        .map_err(|e| ApiError::Internal(e.to_string()))?,
                )
            }
            None => schema,
        };
        Ok(app2.formats.encode(
            StructureFamily::Table,
            media_type,
            Payload::Table { schema, batches },
        )?)
    })
    .await?;
    let etag = request_etag(app, req, media_type);
    Ok(data_response(app, req, media_type, body, etag, Some(permit), 8).await)
}

/// Most nodes a container JSON export visits; beyond it, export children
/// one by one.
const MAX_EXPORT_NODES: usize = 20_000;
/// Arrays up to this many elements are inlined in a container JSON export.
const MAX_INLINE_ELEMENTS: usize = 1_000;

/// Child names requested by `field=` (repeatable) or a JSON list in a POST
/// body.
fn requested_fields(req: &Request) -> Result<Vec<String>, ApiError> {
    let mut fields: Vec<String> = req
        .params
        .all("field")
        .into_iter()
        .map(str::to_string)
        .collect();
    if req.method == axum::http::Method::POST && !req.body.is_empty() {
        let body: Vec<String> = serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::Unprocessable(format!("The body must be a JSON list of field names: {e}"))
        })?;
        fields.extend(body);
    }
    Ok(fields)
}

/// `GET|POST /api/v1/container/full/{path}`: the container as a JSON tree
/// of metadata and small data, or (the xarray client's request) its 1-d
/// children named by `field=` as the columns of one Arrow table.
///
/// # Errors
/// 404 if not a container; 406 for an unsupported format; 400 for unknown
/// fields, fields that cannot be columns, or an export that is too large.
pub async fn container(app: &Arc<App>, req: &Request, node: &Node) -> Result<Response, ApiError> {
    let NodeData::Container(c) = &node.data else {
        return Err(ApiError::NotFound("This node is not a container.".into()));
    };
    let serializer = app.formats.negotiate(
        StructureFamily::Container,
        req.params.get("format"),
        accept(req),
    )?;
    let media_type = serializer.media_type;
    let fields = requested_fields(req)?;
    let limit = app.config.response_bytesize_limit;
    let (payload, permit) = if media_type == tiled_formats::ARROW_FILE {
        let names = if fields.is_empty() {
            c.search(&[], &[], 0, usize::MAX)?
                .entries
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        } else {
            fields
        };
        let mut arrays: Vec<(String, Arc<dyn ArrayAdapter>)> = Vec::with_capacity(names.len());
        let mut size = 0usize;
        for name in names {
            let child = c
                .get(&name)?
                .ok_or_else(|| ApiError::BadRequest(format!("No such field {name:?}")))?;
            let NodeData::Array(a) = child.data else {
                return Err(ApiError::BadRequest(format!(
                    "Field {name:?} is not an array"
                )));
            };
            size += a.structure().num_elements() * a.structure().data_type.itemsize();
            arrays.push((name, a));
        }
        if size > limit {
            return Err(too_large(
                size,
                limit,
                "Request fewer fields with ?field=...",
            ));
        }
        let permit = app
            .budget
            .reserve(size.saturating_mul(tiled_formats::working_set_factor(media_type)))
            .await?;
        let payload = blocking(move || {
            let data = arrays
                .into_iter()
                .map(|(name, a)| {
                    let full = tiled_model::ResolvedSlice::full(&a.structure().shape);
                    Ok((name, a.read(&full)?))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            Ok(tiled_formats::container::arrays_to_table(&data)?)
        })
        .await?;
        (payload, Some(permit))
    } else if media_type == tiled_formats::HDF5 {
        // Size every array and table from its structure before reading any.
        let only = (!fields.is_empty()).then_some(fields);
        let mut visited = 0;
        let size = export_size(node, only.as_deref(), &mut visited)?;
        if size > limit {
            return Err(too_large(
                size,
                limit,
                "Export fewer children with ?field=..., or export them one by one.",
            ));
        }
        let permit = app
            .budget
            .reserve(size.saturating_mul(tiled_formats::working_set_factor(tiled_formats::HDF5)))
            .await?;
        let node = node.clone();
        let tree = blocking(move || read_tree(&node, only.as_deref())).await?;
        (tiled_formats::Payload::Tree(tree), Some(permit))
    } else {
        let node = node.clone();
        let value = blocking(move || {
            let mut visited = 0;
            export_tree(
                &node,
                if fields.is_empty() {
                    None
                } else {
                    Some(&fields)
                },
                &mut visited,
            )
        })
        .await?;
        (tiled_formats::Payload::Document(value), None)
    };
    let app2 = app.clone();
    let body = blocking(move || {
        Ok(app2
            .formats
            .encode(StructureFamily::Container, media_type, payload)?)
    })
    .await?;
    let etag = request_etag(app, req, media_type);
    Ok(data_response(app, req, media_type, body, etag, permit, 8).await)
}

/// The bytes a full export of `node` would read, from structures alone;
/// errors past [`MAX_EXPORT_NODES`] nodes.
fn export_size(
    node: &Node,
    only: Option<&[String]>,
    visited: &mut usize,
) -> Result<usize, ApiError> {
    *visited += 1;
    if *visited > MAX_EXPORT_NODES {
        return Err(ApiError::BadRequest(format!(
            "This container has more than {MAX_EXPORT_NODES} nodes below it; export its children one by one."
        )));
    }
    Ok(match &node.data {
        NodeData::Container(c) => {
            let mut total = 0usize;
            for (key, child) in c.search(&[], &[], 0, usize::MAX)?.entries {
                if only.is_some_and(|o| !o.contains(&key)) {
                    continue;
                }
                total = total.saturating_add(export_size(&child, None, visited)?);
            }
            if let Some(o) = only
                && let Some(missing) = o.iter().find(|k| c.get(k).ok().flatten().is_none())
            {
                return Err(ApiError::BadRequest(format!("No such field {missing:?}")));
            }
            total
        }
        NodeData::Array(a) => a
            .structure()
            .num_elements()
            .saturating_mul(a.structure().data_type.itemsize()),
        NodeData::Table(t) => (0..t.structure().npartitions)
            .map(|p| t.partition_bytes(p, None).unwrap_or(0))
            .fold(0usize, usize::saturating_add),
        #[allow(unreachable_patterns)]
        _ => 0,
    })
}

/// Read `node` and everything below it into an export tree.
fn read_tree(
    node: &Node,
    only: Option<&[String]>,
) -> Result<tiled_formats::hdf5::ExportNode, ApiError> {
    use tiled_formats::hdf5::ExportNode;
    let metadata = (*node.metadata).clone();
    Ok(match &node.data {
        NodeData::Container(c) => {
            let mut children = Vec::new();
            for (key, child) in c.search(&[], &[], 0, usize::MAX)?.entries {
                if only.is_some_and(|o| !o.contains(&key)) {
                    continue;
                }
                children.push((key, read_tree(&child, None)?));
            }
            ExportNode::Container { metadata, children }
        }
        NodeData::Array(a) => ExportNode::Array {
            metadata,
            data: a.read(&tiled_model::ResolvedSlice::full(&a.structure().shape))?,
        },
        NodeData::Table(t) => ExportNode::Table {
            metadata,
            schema: t.schema(),
            batches: t.read(None)?,
        },
        #[allow(unreachable_patterns)]
        _ => ExportNode::Container {
            metadata,
            children: Vec::new(),
        },
    })
}

/// `{"contents": {...}, "metadata": {...}}` for containers; arrays and
/// tables carry their metadata and, when small, their data.
fn export_tree(
    node: &Node,
    only: Option<&[String]>,
    visited: &mut usize,
) -> Result<serde_json::Value, ApiError> {
    *visited += 1;
    if *visited > MAX_EXPORT_NODES {
        return Err(ApiError::BadRequest(format!(
            "This container has more than {MAX_EXPORT_NODES} nodes below it; export its children one by one."
        )));
    }
    let metadata = serde_json::Value::Object((*node.metadata).clone());
    Ok(match &node.data {
        NodeData::Container(c) => {
            let mut contents = serde_json::Map::new();
            for (key, child) in c.search(&[], &[], 0, usize::MAX)?.entries {
                if only.is_some_and(|o| !o.contains(&key)) {
                    continue;
                }
                contents.insert(key, export_tree(&child, None, visited)?);
            }
            serde_json::json!({"contents": contents, "metadata": metadata})
        }
        NodeData::Array(a) => {
            let st = a.structure();
            let data = if st.num_elements() <= MAX_INLINE_ELEMENTS {
                let full = a.read(&tiled_model::ResolvedSlice::full(&st.shape))?;
                tiled_formats::array_json::to_value(&full).unwrap_or(serde_json::Value::Null)
            } else {
                serde_json::Value::Null
            };
            serde_json::json!({"metadata": metadata, "data": data})
        }
        NodeData::Table(_) => serde_json::json!({"metadata": metadata, "data": null}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiled_adapters::NodeData;

    fn demo_array(path: &[&str]) -> Arc<dyn ArrayAdapter> {
        let node = crate::resolve(
            &tiled_demo::demo_tree(),
            &path.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        match node.data {
            NodeData::Array(a) => a,
            _ => panic!("not an array"),
        }
    }

    #[test]
    fn strips_concatenate_to_the_whole_selection() {
        let a = demo_array(&["nested", "cubes", "tiny_hypercube"]);
        let shape = a.structure().shape.clone();
        for text in [
            "",
            "1,::-1,2:5",
            "::-2,3,::3",
            "-1:0:-1,0:5,1",
            "2,2,2,2,2",
            "1:1",
        ] {
            let sel = NdSlice::parse(text).unwrap().resolve(&shape).unwrap();
            let whole = a.read(&sel).unwrap();
            for target in [1, 64, 1000, 1 << 20] {
                let mut joined = Vec::new();
                for strip in split_into_strips(&sel, 8, target) {
                    joined.extend(a.read(&strip).unwrap().bytes);
                }
                assert_eq!(joined, whole.bytes, "{text} in strips of {target} bytes");
            }
        }
    }

    #[test]
    fn shifted_block_selection_reads_the_block_region() {
        let a = demo_array(&["dtypes", "int64_2d"]);
        let (offset, shape) = a.structure().block_extent(&[1, 2]).unwrap();
        let sel = NdSlice::parse("::-1,1:5").unwrap().resolve(&shape).unwrap();
        let from_block = a.read_block(&[1, 2]).unwrap().select(&sel);
        let global = a.read(&shift(&sel, &offset)).unwrap();
        assert_eq!(from_block, global);
    }
}
