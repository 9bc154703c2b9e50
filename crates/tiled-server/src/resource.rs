//! Building the JSON resources that describe nodes: attributes and links,
//! exactly as the upstream client expects them (spec §2).

use std::collections::HashSet;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Serialize;
use serde_json::Value;
use tiled_adapters::{Metadata, Node, NodeData};
use tiled_model::{ArrayStructure, Spec, TableStructure};

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

/// Longest `select_metadata` expression, and deepest nesting, accepted:
/// the JMESPath parser recurses without a limit, so a deeply nested
/// expression would overflow the stack and abort the process.
const MAX_SELECT_LEN: usize = 1000;
const MAX_SELECT_DEPTH: usize = 32;

fn compile_select_metadata(expr: &str) -> Result<jmespath::Expression<'static>, String> {
    if expr.len() > MAX_SELECT_LEN {
        return Err(format!("longer than {MAX_SELECT_LEN} characters"));
    }
    // Every operator that nests (brackets, parentheses, braces, negation,
    // sub-expressions, pipes and the boolean operators) counts towards
    // the depth.
    let nesting = expr
        .chars()
        .filter(|c| matches!(c, '[' | '(' | '{' | '!' | '.' | '|' | '&'))
        .count();
    if nesting > MAX_SELECT_DEPTH {
        return Err(format!("nested more than {MAX_SELECT_DEPTH} levels"));
    }
    jmespath::compile(expr).map_err(|e| e.to_string())
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
            Some(expr) => Some(compile_select_metadata(expr).map_err(|e| {
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
    pub fn links(&self, segments: &[String], node: &Node) -> Links {
        let b = &self.base;
        let p = Self::path(segments);
        let mut links = Links {
            me: format!("{b}/metadata/{p}"),
            ..Links::default()
        };
        if self.fields.keys_only() {
            return links;
        }
        match &node.data {
            NodeData::Container(_) => {
                links.search = Some(format!("{b}/search/{p}"));
                links.full = Some(format!("{b}/container/full/{p}"));
            }
            NodeData::Array(a) => {
                let ndim = a.structure().shape.len();
                let placeholders = (0..ndim)
                    .map(|i| format!("{{{i}}}"))
                    .collect::<Vec<_>>()
                    .join(",");
                links.full = Some(format!("{b}/array/full/{p}"));
                links.block = Some(format!("{b}/array/block/{p}?block={placeholders}"));
            }
            NodeData::Table(_) => {
                links.full = Some(format!("{b}/table/full/{p}"));
                links.partition = Some(format!("{b}/table/partition/{p}?partition={{index}}"));
            }
        }
        links
    }

    /// The full resource `{"id", "attributes", "links", "meta"}` of a node,
    /// ready to serialize (it borrows from the node; nothing is copied).
    ///
    /// # Errors
    /// 400 if `select_metadata` fails on this node's metadata.
    pub fn resource<'a>(
        &self,
        segments: &'a [String],
        node: &'a Node,
    ) -> Result<Resource<'a>, ApiError> {
        let f = &self.fields;
        let keys_only = f.keys_only();
        let is_container = matches!(node.data, NodeData::Container(_));
        let structure = match &node.data {
            NodeData::Container(c) if f.want("structure") || f.want("count") => {
                Some(StructureOut::Container {
                    contents: None,
                    count: c.len()?,
                })
            }
            NodeData::Array(a) if f.want("structure") => Some(StructureOut::Array(a.structure())),
            NodeData::Table(t) if f.want("structure") => Some(StructureOut::Table(t.structure())),
            _ => None,
        };
        let metadata = if f.want("metadata") && !keys_only {
            Some(match &self.select_metadata {
                None => MetadataOut::Full(&node.metadata),
                Some(expr) => {
                    let data = jmespath::Variable::from_serializable(&*node.metadata)
                        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                    let result = expr
                        .search(data)
                        .map_err(|e| ApiError::BadRequest(format!("select_metadata: {e}")))?;
                    let selected = serde_json::to_value(&*result)
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    MetadataOut::Selected { selected }
                }
            })
        } else {
            None
        };
        Ok(Resource {
            id: segments.last().map_or("", String::as_str),
            attributes: Attributes {
                ancestors: &segments[..segments.len().saturating_sub(1)],
                structure_family: (!keys_only && (is_container || f.want("structure_family")))
                    .then(|| node.family().as_str()),
                specs: (f.want("specs") && !keys_only).then_some(node.specs.as_slice()),
                metadata,
                structure,
                access_tags: &node.access_tags,
                sorting: (is_container && f.want("sorting") && !keys_only).then_some([
                    SortingOut {
                        key: "",
                        direction: 1,
                    },
                ]),
                data_sources: if self.include_data_sources && !keys_only {
                    Some(match &node.data_sources {
                        Some(lister) => lister.data_sources()?,
                        None => Value::Array(Vec::new()),
                    })
                } else {
                    None
                },
            },
            links: (!self.omit_links).then(|| self.links(segments, node)),
            meta: None,
        })
    }
}

/// A node's links; absent keys are omitted.
#[derive(Default, Serialize)]
pub struct Links {
    #[serde(rename = "self")]
    pub me: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

/// One node as the API describes it.
#[derive(Serialize)]
pub struct Resource<'a> {
    pub id: &'a str,
    pub attributes: Attributes<'a>,
    pub links: Option<Links>,
    pub meta: Option<()>,
}

/// A node's attributes. Every key is always present (null when not
/// requested), as upstream's pydantic models emit them.
#[derive(Serialize)]
pub struct Attributes<'a> {
    pub ancestors: &'a [String],
    pub structure_family: Option<&'static str>,
    pub specs: Option<&'a [Spec]>,
    pub metadata: Option<MetadataOut<'a>>,
    pub structure: Option<StructureOut<'a>>,
    /// Always a list: the client calls `list()` on it (spec, 0.2.20 A).
    pub access_tags: &'a [String],
    pub sorting: Option<[SortingOut; 1]>,
    pub data_sources: Option<Value>,
}

/// Metadata, whole or as selected by `select_metadata`.
#[derive(Serialize)]
#[serde(untagged)]
pub enum MetadataOut<'a> {
    Full(&'a Metadata),
    Selected { selected: Value },
}

/// The structure of a node, by family.
#[derive(Serialize)]
#[serde(untagged)]
pub enum StructureOut<'a> {
    Container { contents: Option<()>, count: usize },
    Array(&'a ArrayStructure),
    Table(&'a TableStructure),
}

/// One sort key of a container's default order.
#[derive(Serialize)]
pub struct SortingOut {
    pub key: &'static str,
    pub direction: i8,
}
