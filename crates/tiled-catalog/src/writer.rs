//! The catalog as a [`TreeWriter`]: the metadata half of the write API.

use std::sync::Arc;

use serde_json::{Map, Value};
use tiled_adapters::{AdapterError, MetadataRevision, NewChild, TreeWriter};
use tiled_model::{Spec, StructureFamily};

use crate::{Catalog, NewNode};

/// Writes into a catalog.
pub struct CatalogWriter {
    pub catalog: Arc<Catalog>,
}

impl TreeWriter for CatalogWriter {
    fn create(&self, parent: &[String], child: &NewChild) -> Result<(), AdapterError> {
        if child.structure_family != StructureFamily::Container {
            return Err(AdapterError::NotSupported(format!(
                "creating {} nodes needs writable storage, which this server does not have yet; \
                 containers can be created",
                child.structure_family.as_str()
            )));
        }
        self.catalog.create_node(
            parent,
            &NewNode {
                key: child.key.clone(),
                structure_family: child.structure_family,
                structure: None,
                metadata: child.metadata.clone(),
                specs: child.specs.clone(),
                access_blob: Value::Object(Map::new()),
                data_sources: Vec::new(),
            },
        )?;
        Ok(())
    }

    fn update_metadata(
        &self,
        path: &[String],
        metadata: &Map<String, Value>,
        specs: Option<&[Spec]>,
        drop_revision: bool,
    ) -> Result<(), AdapterError> {
        let revision = self.catalog.update_metadata(path, metadata, specs, None)?;
        if drop_revision {
            self.catalog.delete_revision(path, revision)?;
        }
        Ok(())
    }

    fn revisions(
        &self,
        path: &[String],
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<MetadataRevision>), AdapterError> {
        let (count, revisions) = self.catalog.revisions(path, offset, limit)?;
        Ok((
            count,
            revisions
                .into_iter()
                .map(|r| MetadataRevision {
                    revision_number: r.revision_number,
                    metadata: r.metadata,
                    specs: r.specs,
                    time_updated: r.time_updated,
                })
                .collect(),
        ))
    }

    fn delete_revision(&self, path: &[String], number: i64) -> Result<(), AdapterError> {
        Ok(self.catalog.delete_revision(path, number)?)
    }

    fn delete(&self, path: &[String], recursive: bool) -> Result<(), AdapterError> {
        Ok(self.catalog.delete_node_checked(path, recursive)?)
    }
}
