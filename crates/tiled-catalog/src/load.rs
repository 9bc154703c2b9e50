//! Copy an in-memory tree into the catalog: every node's metadata, specs
//! and structure, with a data source that points back at the live tree.
//! Used to serve the demo from a catalog (`tiled serve catalog --demo`),
//! which runs the whole compatibility suite through SQL.

use serde_json::Value;
use tiled_adapters::{AdapterError, Node, NodeData};
use tiled_model::StructureFamily;

use crate::{Catalog, CatalogError, DataSource, NewDataSource, NewNode, Opener};

/// The mimetype of data sources that point into an in-memory tree.
pub const IN_MEMORY_MIMETYPE: &str = "application/x-tiled-in-memory";

/// Copy the children of `tree` (a container) under `parent` in the
/// catalog, recursively. Returns the number of nodes created.
///
/// # Errors
/// Catalog errors; adapter errors listing the tree.
pub fn load_tree(catalog: &Catalog, parent: &[String], tree: &Node) -> Result<usize, CatalogError> {
    let NodeData::Container(c) = &tree.data else {
        return Err(CatalogError::BadRequest(
            "only a container's children can be loaded".into(),
        ));
    };
    let children = c
        .search(&[], &[], 0, usize::MAX)
        .map_err(|e| CatalogError::Internal(e.to_string()))?
        .entries;
    let mut batch = Vec::with_capacity(children.len());
    for (key, child) in &children {
        let mut path = parent.to_vec();
        path.push(key.clone());
        let (family, structure) = match &child.data {
            NodeData::Container(_) => (StructureFamily::Container, None),
            NodeData::Array(a) => (
                StructureFamily::Array,
                Some(
                    serde_json::to_value(a.structure())
                        .map_err(|e| CatalogError::Internal(e.to_string()))?,
                ),
            ),
            NodeData::Table(t) => (
                StructureFamily::Table,
                Some(
                    serde_json::to_value(t.structure())
                        .map_err(|e| CatalogError::Internal(e.to_string()))?,
                ),
            ),
        };
        let data_sources = match family {
            StructureFamily::Container => Vec::new(),
            _ => vec![NewDataSource {
                mimetype: IN_MEMORY_MIMETYPE.into(),
                parameters: serde_json::json!({ "path": path }),
                properties: serde_json::json!({}),
                management: "external".into(),
                assets: Vec::new(),
            }],
        };
        batch.push(NewNode {
            key: key.clone(),
            structure_family: family,
            structure,
            metadata: (*child.metadata).clone(),
            specs: child.specs.clone(),
            access_blob: if child.access_tags.is_empty() {
                Value::Object(serde_json::Map::new())
            } else {
                serde_json::json!({ "tags": child.access_tags })
            },
            data_sources,
        });
    }
    catalog.create_nodes(parent, &batch)?;
    let mut created = batch.len();
    for (key, child) in &children {
        if matches!(child.data, NodeData::Container(_)) {
            let mut path = parent.to_vec();
            path.push(key.clone());
            created += load_tree(catalog, &path, child)?;
        }
    }
    Ok(created)
}

/// Opens [`IN_MEMORY_MIMETYPE`] data sources by walking `tree`.
pub struct InMemoryOpener {
    pub tree: Node,
}

impl Opener for InMemoryOpener {
    fn open(&self, source: &DataSource, family: StructureFamily) -> Result<NodeData, AdapterError> {
        let path: Vec<String> = serde_json::from_value(
            source
                .parameters
                .get("path")
                .cloned()
                .unwrap_or(Value::Null),
        )
        .map_err(|e| AdapterError::Internal(format!("bad in-memory data source: {e}")))?;
        let mut node = self.tree.clone();
        for key in &path {
            node = match &node.data {
                NodeData::Container(c) => c.get(key)?.ok_or_else(|| {
                    AdapterError::Internal(format!("in-memory data source {path:?} is gone"))
                })?,
                _ => {
                    return Err(AdapterError::Internal(format!(
                        "{path:?} is not in the tree"
                    )));
                }
            };
        }
        let ok = matches!(
            (&node.data, family),
            (NodeData::Array(_), StructureFamily::Array)
                | (NodeData::Table(_), StructureFamily::Table)
        );
        if !ok {
            return Err(AdapterError::Internal(format!(
                "in-memory data source {path:?} is not a {family:?}"
            )));
        }
        Ok(node.data)
    }
}
