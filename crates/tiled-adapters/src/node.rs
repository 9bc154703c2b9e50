//! Nodes and containers: what a path resolves to, and the
//! [`ContainerAdapter`] trait that lists, searches and looks up children.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tiled_model::{Query, Spec, StructureFamily};

use crate::search::{Matcher, cmp_json, lookup_path};
use crate::{AdapterError, ArrayAdapter, TableAdapter};

/// A node's metadata: a JSON object.
pub type Metadata = serde_json::Map<String, Value>;

/// The data side of a node, by structure family.
#[derive(Clone)]
pub enum NodeData {
    Container(Arc<dyn ContainerAdapter>),
    Array(Arc<dyn ArrayAdapter>),
    Table(Arc<dyn TableAdapter>),
}

/// Lists a node's data sources in the wire's form (what
/// `include_data_sources=true` shows), looked up only when asked for.
pub trait DataSourceLister: Send + Sync {
    /// `[{"id", "structure_family", "structure", "mimetype", "parameters",
    /// "properties", "assets": [...], "management"}, ...]`.
    ///
    /// # Errors
    /// [`AdapterError::Internal`] if the backend fails.
    fn data_sources(&self) -> Result<Value, AdapterError>;
}

/// Everything known about one node: its description and a handle on its data.
#[derive(Clone)]
pub struct Node {
    pub metadata: Arc<Metadata>,
    pub specs: Vec<Spec>,
    /// Access tags, kept sorted (the client applies JSON-Patch indices to
    /// the sorted list).
    pub access_tags: Vec<String>,
    pub data: NodeData,
    /// Where the node's data lives, for backends that record it (the
    /// catalog); `None` for nodes whose data is in memory or generated.
    pub data_sources: Option<Arc<dyn DataSourceLister>>,
}

impl Node {
    /// A node with empty metadata, no specs and no tags.
    pub fn new(data: NodeData) -> Self {
        Node {
            metadata: Arc::new(Metadata::new()),
            specs: Vec::new(),
            access_tags: Vec::new(),
            data,
            data_sources: None,
        }
    }

    /// Wrap an array adapter.
    pub fn array(a: impl ArrayAdapter + 'static) -> Self {
        Node::new(NodeData::Array(Arc::new(a)))
    }

    /// Wrap a table adapter.
    pub fn table(t: impl TableAdapter + 'static) -> Self {
        Node::new(NodeData::Table(Arc::new(t)))
    }

    /// Wrap a container adapter.
    pub fn container(c: impl ContainerAdapter + 'static) -> Self {
        Node::new(NodeData::Container(Arc::new(c)))
    }

    /// Replace the metadata.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        if let Value::Object(map) = metadata {
            self.metadata = Arc::new(map);
        }
        self
    }

    /// Replace the specs.
    pub fn with_specs(mut self, specs: Vec<Spec>) -> Self {
        self.specs = specs;
        self
    }

    /// The node's structure family.
    pub fn family(&self) -> StructureFamily {
        match self.data {
            NodeData::Container(_) => StructureFamily::Container,
            NodeData::Array(_) => StructureFamily::Array,
            NodeData::Table(_) => StructureFamily::Table,
        }
    }
}

/// One sort key: a dotted metadata path (optionally prefixed `metadata.`),
/// `id` for the child key, or empty for the container's own default order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SortKey {
    pub key: String,
    pub descending: bool,
}

/// One page of search results.
pub struct SearchPage {
    /// How many children match in total.
    pub count: usize,
    /// The requested page of them, in order.
    pub entries: Vec<(String, Node)>,
    /// Where the next page starts, for backends with keyset pagination:
    /// pass it to [`ContainerAdapter::search_after`]. `None` when this is
    /// the last page or the backend pages by offset only.
    pub next_cursor: Option<u64>,
}

/// One distinct value and how often it occurs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DistinctValue {
    pub value: Value,
    pub count: Option<usize>,
}

/// What the distinct route asks for.
pub struct DistinctRequest<'a> {
    pub queries: &'a [Query],
    pub metadata_keys: &'a [String],
    pub structure_families: bool,
    pub specs: bool,
    pub counts: bool,
}

/// The distinct route's answer; unrequested sections are null.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Distinct {
    pub metadata: Option<serde_json::Map<String, Value>>,
    pub structure_families: Option<Vec<DistinctValue>>,
    pub specs: Option<Vec<DistinctValue>>,
}

/// What a container backend must do: count, look up, search and describe
/// its children. Search applies every query, sorts and pages in one call so
/// a SQL backend can push all of it into one statement.
pub trait ContainerAdapter: Send + Sync {
    /// Number of children (a backend may estimate very large counts; see
    /// its docs).
    ///
    /// # Errors
    /// [`AdapterError::Internal`] if the backend fails.
    fn len(&self) -> Result<usize, AdapterError>;

    /// Whether there are no children.
    ///
    /// # Errors
    /// As [`ContainerAdapter::len`].
    fn is_empty(&self) -> Result<bool, AdapterError> {
        Ok(self.len()? == 0)
    }

    /// The child at `key`, if any.
    ///
    /// # Errors
    /// [`AdapterError::Internal`] if the backend fails.
    fn get(&self, key: &str) -> Result<Option<Node>, AdapterError>;

    /// Children matching every query, sorted, from `offset`, at most `limit`.
    ///
    /// # Errors
    /// [`AdapterError::BadRequest`] for a query or sort this backend cannot
    /// evaluate.
    fn search(
        &self,
        queries: &[Query],
        sort: &[SortKey],
        offset: usize,
        limit: usize,
    ) -> Result<SearchPage, AdapterError>;

    /// Children matching every query, sorted, that come after the entry a
    /// previous page's [`SearchPage::next_cursor`] named, at most `limit`.
    /// Unlike an offset, a cursor stays correct while others insert.
    ///
    /// Backends that never hand out cursors (immutable trees, where an
    /// offset is just as stable) treat it as an offset, which is the
    /// default.
    ///
    /// # Errors
    /// As [`ContainerAdapter::search`]; [`AdapterError::BadRequest`] for a
    /// cursor that no longer names an entry.
    fn search_after(
        &self,
        queries: &[Query],
        sort: &[SortKey],
        cursor: u64,
        limit: usize,
    ) -> Result<SearchPage, AdapterError> {
        let offset = usize::try_from(cursor).unwrap_or(usize::MAX);
        let mut page = self.search(queries, sort, offset, limit)?;
        let end = offset.saturating_add(page.entries.len());
        if !page.entries.is_empty() && end < page.count {
            page.next_cursor = u64::try_from(end).ok();
        }
        Ok(page)
    }

    /// Distinct metadata values, structure families and specs among the
    /// children matching the queries.
    ///
    /// # Errors
    /// As [`ContainerAdapter::search`].
    fn distinct(&self, request: &DistinctRequest<'_>) -> Result<Distinct, AdapterError>;
}

/// A container whose children are held in memory, in insertion order.
#[derive(Default)]
pub struct MemoryContainer {
    entries: Vec<(String, Node)>,
    index: HashMap<String, usize>,
}

impl MemoryContainer {
    /// Build from children in order. A repeated key keeps its first position
    /// and takes the last node given for it.
    pub fn new(children: impl IntoIterator<Item = (String, Node)>) -> Self {
        let mut c = MemoryContainer::default();
        for (key, node) in children {
            c.insert(key, node);
        }
        c
    }

    /// Add or replace a child.
    pub fn insert(&mut self, key: String, node: Node) {
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = node,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, node));
            }
        }
    }

    /// Indices of the children matching every query, in insertion order.
    fn filter(&self, queries: &[Query]) -> Vec<usize> {
        let matchers: Vec<Matcher> = queries.iter().map(Matcher::new).collect();
        (0..self.entries.len())
            .filter(|&i| {
                let (key, node) = &self.entries[i];
                matchers.iter().all(|m| m.matches(key, node))
            })
            .collect()
    }
}

impl ContainerAdapter for MemoryContainer {
    fn len(&self) -> Result<usize, AdapterError> {
        Ok(self.entries.len())
    }

    fn get(&self, key: &str) -> Result<Option<Node>, AdapterError> {
        Ok(self.index.get(key).map(|&i| self.entries[i].1.clone()))
    }

    fn search(
        &self,
        queries: &[Query],
        sort: &[SortKey],
        offset: usize,
        limit: usize,
    ) -> Result<SearchPage, AdapterError> {
        let mut hits = self.filter(queries);
        let is_default_order = sort.iter().all(|s| s.key.is_empty() && !s.descending);
        if !is_default_order {
            let compare = |a: &usize, b: &usize| -> Ordering {
                for s in sort {
                    let ord = if s.key.is_empty() {
                        a.cmp(b)
                    } else if s.key == "id" {
                        self.entries[*a].0.cmp(&self.entries[*b].0)
                    } else {
                        let path = s.key.strip_prefix("metadata.").unwrap_or(&s.key);
                        cmp_json(
                            lookup_path(&self.entries[*a].1.metadata, path),
                            lookup_path(&self.entries[*b].1.metadata, path),
                        )
                    };
                    let ord = if s.descending { ord.reverse() } else { ord };
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                a.cmp(b)
            };
            hits.sort_by(compare);
        }
        let count = hits.len();
        let entries = hits
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|i| self.entries[i].clone())
            .collect();
        Ok(SearchPage {
            count,
            entries,
            next_cursor: None,
        })
    }

    fn distinct(&self, request: &DistinctRequest<'_>) -> Result<Distinct, AdapterError> {
        let hits = self.filter(request.queries);
        let tally = |values: Vec<Value>| -> Vec<DistinctValue> {
            let mut counted: Vec<(Value, usize)> = Vec::new();
            for v in values {
                match counted.iter_mut().find(|(seen, _)| *seen == v) {
                    Some((_, n)) => *n += 1,
                    None => counted.push((v, 1)),
                }
            }
            counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| cmp_json(Some(&a.0), Some(&b.0))));
            counted
                .into_iter()
                .map(|(value, n)| DistinctValue {
                    value,
                    count: request.counts.then_some(n),
                })
                .collect()
        };
        let mut out = Distinct::default();
        if !request.metadata_keys.is_empty() {
            let mut map = serde_json::Map::new();
            for key in request.metadata_keys {
                let values = hits
                    .iter()
                    .map(|&i| {
                        lookup_path(&self.entries[i].1.metadata, key)
                            .cloned()
                            .unwrap_or(Value::Null)
                    })
                    .collect();
                let list = serde_json::to_value(tally(values))
                    .map_err(|e| AdapterError::Internal(e.to_string()))?;
                map.insert(key.clone(), list);
            }
            out.metadata = Some(map);
        }
        if request.structure_families {
            out.structure_families = Some(tally(
                hits.iter()
                    .map(|&i| Value::from(self.entries[i].1.family().as_str()))
                    .collect(),
            ));
        }
        if request.specs {
            out.specs = Some(tally(
                hits.iter()
                    .map(|&i| serde_json::to_value(&self.entries[i].1.specs).unwrap_or_default())
                    .collect(),
            ));
        }
        Ok(out)
    }
}
