//! Building the JSON resources that describe nodes: attributes and links,
//! exactly as the upstream client expects them (spec §2).

use std::collections::HashSet;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Value, json};
use tiled_adapters::{Node, NodeData};

use crate::error::ApiError;
use crate::params::Params;

/// Characters escaped inside one path segment of a link.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Which attributes to fill in (`fields=` parameters).
#[derive(Clone, Debug)]
pub struct Fields(Option<HashSet<String>>);

impl Fields {
    /// Read `fields` (repeatable). Absent means every default field.
    pub fn parse(params: &Params) -> Self {
        if !params.has("fields") {
            return Fields(None);
        }
        Fields(Some(
            params
                .all("fields")
                .into_iter()
                .flat_map(|v| v.split(','))
                .map(|s| s.trim().to_string())
                .collect(),
        ))
    }

    /// Whether `name` is requested.
    pub fn want(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|s| s.contains(name))
    }

    /// `fields=` with nothing else: keys only.
    pub fn keys_only(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|s| s.iter().all(|f| f.is_empty()))
    }

    /// Only the count is wanted (`fields=count`): search answers `data: []`.
    pub fn count_only(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|s| s.len() == 1 && s.contains("count"))
    }
}

/// How resources are rendered for one request.
pub struct RenderOptions {
    /// `{scheme}://{host}/api/v1`
    pub base: String,
    pub fields: Fields,
    pub omit_links: bool,
    pub include_data_sources: bool,
    pub select_metadata: Option<jmespath::Expression<'static>>,
}

impl RenderOptions {
    /// Read the rendering parameters shared by metadata and search.
    ///
    /// # Errors
    /// 400 for a JMESPath expression that does not compile; 422 for
    /// malformed booleans or `max_depth`.
    pub fn from_params(base: String, params: &Params) -> Result<Self, ApiError> {
        let select_metadata = match params.get("select_metadata") {
            None => None,
            Some(expr) => Some(jmespath::compile(expr).map_err(|e| {
                ApiError::BadRequest(format!("Invalid select_metadata expression: {e}"))
            })?),
        };
        if params.usize("max_depth")?.is_some_and(|d| d > 5) {
            return Err(ApiError::Unprocessable(
                "max_depth must be between 0 and 5".into(),
            ));
        }
        Ok(RenderOptions {
            base,
            fields: Fields::parse(params),
            omit_links: params.bool("omit_links", false)?,
            include_data_sources: params.bool("include_data_sources", false)?,
            select_metadata,
        })
    }

    /// `/`-joined, percent-encoded path of a node.
    pub fn path(segments: &[String]) -> String {
        segments
            .iter()
            .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The links of a node.
    pub fn links(&self, segments: &[String], node: &Node) -> Value {
        let b = &self.base;
        let p = Self::path(segments);
        let me = format!("{b}/metadata/{p}");
        if self.fields.keys_only() {
            return json!({ "self": me });
        }
        match &node.data {
            NodeData::Container(_) => json!({
                "self": me,
                "search": format!("{b}/search/{p}"),
                "full": format!("{b}/container/full/{p}"),
            }),
            NodeData::Array(a) => {
                let ndim = a.structure().shape.len();
                let placeholders = (0..ndim)
                    .map(|i| format!("{{{i}}}"))
                    .collect::<Vec<_>>()
                    .join(",");
                json!({
                    "self": me,
                    "full": format!("{b}/array/full/{p}"),
                    "block": format!("{b}/array/block/{p}?block={placeholders}"),
                })
            }
            NodeData::Table(_) => json!({
                "self": me,
                "full": format!("{b}/table/full/{p}"),
                "partition": format!("{b}/table/partition/{p}?partition={{index}}"),
            }),
        }
    }

    /// The full resource `{"id", "attributes", "links", "meta"}` of a node.
    ///
    /// # Errors
    /// 400 if `select_metadata` fails on this node's metadata.
    pub fn resource(&self, segments: &[String], node: &Node) -> Result<Value, ApiError> {
        let id = segments.last().cloned().unwrap_or_default();
        let ancestors: Vec<&String> = segments
            .iter()
            .take(segments.len().saturating_sub(1))
            .collect();
        let f = &self.fields;
        let keys_only = f.keys_only();
        let is_container = matches!(node.data, NodeData::Container(_));
        let family = (!keys_only && (is_container || f.want("structure_family")))
            .then(|| node.family().as_str());
        let structure = match &node.data {
            NodeData::Container(c) if f.want("structure") || f.want("count") => {
                Some(json!({"contents": null, "count": c.len()}))
            }
            NodeData::Array(a) if f.want("structure") => Some(
                serde_json::to_value(a.structure())
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
            ),
            NodeData::Table(t) if f.want("structure") => Some(
                serde_json::to_value(t.structure())
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
            ),
            _ => None,
        };
        let metadata = if f.want("metadata") && !keys_only {
            Some(match &self.select_metadata {
                None => Value::Object((*node.metadata).clone()),
                Some(expr) => {
                    let data = jmespath::Variable::from_serializable(&*node.metadata)
                        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                    let result = expr
                        .search(data)
                        .map_err(|e| ApiError::BadRequest(format!("select_metadata: {e}")))?;
                    let selected = serde_json::to_value(&*result)
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    json!({ "selected": selected })
                }
            })
        } else {
            None
        };
        let sorting = (is_container && f.want("sorting") && !keys_only)
            .then(|| json!([{"key": "", "direction": 1}]));
        let attributes = json!({
            "ancestors": ancestors,
            "structure_family": family,
            "specs": (f.want("specs") && !keys_only).then(|| json!(node.specs)),
            "metadata": metadata,
            "structure": structure,
            // Always a list: the client calls list() on it (spec, 0.2.20 changes A).
            "access_tags": node.access_tags,
            "sorting": sorting,
            "data_sources": (self.include_data_sources && !keys_only).then(|| json!([])),
        });
        Ok(json!({
            "id": id,
            "attributes": attributes,
            "links": if self.omit_links { Value::Null } else { self.links(segments, node) },
            "meta": null,
        }))
    }
}
