//! The catalog as a [`TreeWriter`]: the metadata half of the write API,
//! and arrays stored as Zarr in the writable storage directory.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tiled_adapters::{AdapterError, MetadataRevision, NewChild, TreeWriter};
use tiled_model::{Spec, StructureFamily};

use crate::zarr_storage::{self, WRITABLE, ZARR_MIMETYPE};
use crate::{Catalog, NewAsset, NewDataSource, NewNode, file_uri, path_of_uri};

/// Writes into a catalog.
pub struct CatalogWriter {
    pub catalog: Arc<Catalog>,
    /// Where new arrays are stored (`--writable-storage`); without it only
    /// containers can be created.
    pub storage: Option<PathBuf>,
}

impl CatalogWriter {
    /// Create an array node backed by a new Zarr store.
    fn create_array(&self, parent: &[String], child: &NewChild) -> Result<(), AdapterError> {
        let storage = self.storage.as_ref().ok_or_else(|| {
            AdapterError::BadRequest(
                "creating array nodes needs writable storage: start the server with \
                 --writable-storage DIR (or --temp)"
                    .into(),
            )
        })?;
        let structure = child.structure.as_ref().ok_or_else(|| {
            AdapterError::BadRequest("an array needs a structure in its data source".into())
        })?;
        let st = zarr_storage::validate_structure(structure)?;
        let structure =
            serde_json::to_value(&st).map_err(|e| AdapterError::Internal(e.to_string()))?;
        // A taken key or a missing parent is refused before any store is made.
        let mut path = parent.to_vec();
        path.push(child.key.clone());
        if self.catalog.node_id(&path)?.is_some() {
            return Err(AdapterError::Conflict(format!(
                "A node with the key {:?} already exists.",
                child.key
            )));
        }
        let dir = zarr_storage::create_array(storage, &child.key, &st)?;
        let created = self.catalog.create_node(
            parent,
            &NewNode {
                key: child.key.clone(),
                structure_family: StructureFamily::Array,
                structure: Some(structure),
                metadata: child.metadata.clone(),
                specs: child.specs.clone(),
                access_blob: Value::Object(Map::new()),
                data_sources: vec![NewDataSource {
                    mimetype: ZARR_MIMETYPE.into(),
                    parameters: json!({"path": "/"}),
                    properties: json!({}),
                    management: WRITABLE.into(),
                    assets: vec![NewAsset {
                        data_uri: file_uri(&dir),
                        is_directory: true,
                        parameter: Some("data_uri".into()),
                        num: None,
                    }],
                }],
            },
        );
        if let Err(e) = created {
            zarr_storage::remove_array(&dir);
            return Err(e.into());
        }
        Ok(())
    }
}

impl TreeWriter for CatalogWriter {
    fn create(&self, parent: &[String], child: &NewChild) -> Result<(), AdapterError> {
        match child.structure_family {
            StructureFamily::Container => {}
            StructureFamily::Array => return self.create_array(parent, child),
            other => {
                return Err(AdapterError::NotSupported(format!(
                    "creating {} nodes is not supported yet; containers and arrays can be created",
                    other.as_str()
                )));
            }
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
        // The stores this server wrote go with their nodes, after the
        // nodes are gone (a failed delete leaves both in place).
        let stores = self.catalog.writable_assets_under(path)?;
        self.catalog.delete_node_checked(path, recursive)?;
        if let Some(storage) = &self.storage {
            for uri in stores {
                match path_of_uri(&uri) {
                    Some(dir) if dir.starts_with(storage) => zarr_storage::remove_array(&dir),
                    _ => tracing::warn!("not removing {uri}: outside the writable storage"),
                }
            }
        }
        Ok(())
    }

    fn write_array(
        &self,
        path: &[String],
        block: Option<&[usize]>,
        bytes: &[u8],
    ) -> Result<(), AdapterError> {
        let id = self
            .catalog
            .node_id(path)?
            .ok_or_else(|| AdapterError::NotFound(format!("No such node: {}", path.join("/"))))?;
        let sources = self.catalog.data_sources(id)?;
        let no_storage = || {
            AdapterError::BadRequest(
                "This node has no writable storage: only arrays created through this server's \
                 write API can be written."
                    .into(),
            )
        };
        let source = sources
            .iter()
            .find(|s| s.mimetype == ZARR_MIMETYPE && s.management == WRITABLE)
            .ok_or_else(no_storage)?;
        let dir = source
            .assets
            .first()
            .and_then(|a| path_of_uri(&a.data_uri))
            .ok_or_else(no_storage)?;
        // Only stores inside the writable storage directory are written.
        let storage = self.storage.as_ref().ok_or_else(no_storage)?;
        let inside = match (dir.canonicalize(), storage.canonicalize()) {
            (Ok(d), Ok(s)) => d.starts_with(s),
            _ => false,
        };
        if !inside {
            return Err(no_storage());
        }
        let structure = source
            .structure
            .as_ref()
            .ok_or_else(|| AdapterError::Internal("a writable array without a structure".into()))?;
        let st = zarr_storage::validate_structure(structure)?;
        zarr_storage::write(&dir, &st, block, bytes)
    }
}
