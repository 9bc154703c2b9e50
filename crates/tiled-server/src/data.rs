//! Data handlers: array blocks and slices, table partitions and columns.
//!
//! Order of work for every request: negotiate the format, validate every
//! parameter against the *structure*, compute the response size and refuse
//! it if too large, and only then read (on a blocking thread) and encode.

use std::sync::Arc;

use axum::http::header;
use axum::response::Response;
use tiled_adapters::{ArrayAdapter, Node, NodeData, TableAdapter, table::column_indices};
use tiled_formats::Payload;
use tiled_model::{NdSlice, StructureFamily};

use crate::error::ApiError;
use crate::respond::{budgeted_response, with_filename};
use crate::{App, Request};

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
    let permit = app.budget.reserve(size).await?;
    let adapter: Arc<dyn ArrayAdapter> = adapter.clone();
    let app2 = app.clone();
    let media_type = serializer.media_type;
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
        let serializer = app2
            .formats
            .negotiate(StructureFamily::Array, Some(media_type), None)?;
        Ok(serializer.encode(Payload::Array(data))?)
    })
    .await?;
    Ok(with_filename(
        budgeted_response(&req.headers, media_type, body, None, Some(permit)),
        req.params.get("filename"),
    ))
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
    let permit = app.budget.reserve(size).await?;
    let adapter: Arc<dyn TableAdapter> = adapter.clone();
    let app2 = app.clone();
    let media_type = serializer.media_type;
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
        let serializer = app2
            .formats
            .negotiate(StructureFamily::Table, Some(media_type), None)?;
        Ok(serializer.encode(Payload::Table { schema, batches })?)
    })
    .await?;
    Ok(with_filename(
        budgeted_response(&req.headers, media_type, body, None, Some(permit)),
        req.params.get("filename"),
    ))
}
