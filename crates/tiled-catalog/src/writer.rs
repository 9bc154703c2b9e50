//! The catalog as a [`TreeWriter`]: the metadata half of the write API,
//! arrays stored as Zarr and tables as Parquet segments in the writable
//! storage directory.
//!
//! Every write puts its bytes in place first and commits the catalog rows
//! that make them visible last, in one transaction; a failure (or a
//! crash) in between leaves an unreferenced file, never a node that
//! points at missing or partial data. Writes that modify stored bytes in
//! place (array blocks, extends, partition replacements) are serialised
//! per node; appends to tables need no lock (each is its own file).

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tiled_adapters::{AdapterError, MetadataRevision, NewChild, TreeWriter};
use tiled_model::{Spec, StructureFamily};

use crate::table_storage::{
    self, DIRECTORY_PARAMETER, PARQUET_MIMETYPE, SEGMENT_PARAMETER, SQL_TABLE_MIMETYPE,
};
use crate::zarr_storage::{self, WRITABLE, ZARR_MIMETYPE};
use crate::{Catalog, DataSource, NewAsset, NewDataSource, NewNode};
use tiled_storage::Storage;

/// Locks that serialise in-place writes to one node (by id, striped).
const LOCK_STRIPES: usize = 64;

/// Writes into a catalog.
pub struct CatalogWriter {
    pub catalog: Arc<Catalog>,
    /// Where new arrays and tables are stored (`--writable-storage`: a
    /// directory or an S3 bucket); without it only containers can be
    /// created.
    pub storage: Option<Storage>,
    /// Directories whose files may be registered (`--readable-storage`).
    readable: Vec<std::path::PathBuf>,
    locks: Vec<Mutex<()>>,
}

impl CatalogWriter {
    /// A writer into `catalog`, storing new data under `storage`.
    pub fn new(catalog: Arc<Catalog>, storage: Option<Storage>) -> Self {
        CatalogWriter {
            catalog,
            storage,
            readable: Vec::new(),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Allow registering files under these (canonical) directories.
    #[must_use]
    pub fn with_readable_roots(mut self, roots: Vec<std::path::PathBuf>) -> Self {
        self.readable = roots;
        self
    }

    fn lock(&self, node_id: i64) -> MutexGuard<'_, ()> {
        let i = usize::try_from(node_id.rem_euclid(LOCK_STRIPES as i64)).unwrap_or(0);
        // A panic while holding the lock leaves nothing half-done in
        // memory (the state is on disk), so a poisoned lock is still good.
        match self.locks[i].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn storage(&self, what: &str) -> Result<&Storage, AdapterError> {
        self.storage.as_ref().ok_or_else(|| {
            AdapterError::BadRequest(format!(
                "creating {what} nodes needs writable storage: start the server with \
                 --writable-storage DIR (or --temp)"
            ))
        })
    }

    /// Refuse a taken key before any storage is made.
    fn check_free(&self, parent: &[String], key: &str) -> Result<(), AdapterError> {
        let mut path = parent.to_vec();
        path.push(key.to_string());
        if self.catalog.node_id(&path)?.is_some() {
            return Err(AdapterError::Conflict(format!(
                "A node with the key {key:?} already exists."
            )));
        }
        Ok(())
    }

    /// Commit `node`; on failure remove the storage made for it.
    fn commit_new(
        &self,
        parent: &[String],
        node: &NewNode,
        storage: &Storage,
        made: &str,
    ) -> Result<(), AdapterError> {
        if let Err(e) = self.catalog.create_node(parent, node) {
            zarr_storage::remove(storage, made);
            return Err(e.into());
        }
        Ok(())
    }

    /// Create an array node backed by a new Zarr store.
    fn create_array(&self, parent: &[String], child: &NewChild) -> Result<(), AdapterError> {
        let storage = self.storage("array")?;
        if let Some(m) = child.mimetype.as_deref()
            && m != ZARR_MIMETYPE
        {
            return Err(AdapterError::BadRequest(format!(
                "arrays are stored as {ZARR_MIMETYPE}, not {m:?}"
            )));
        }
        let structure = child.structure.as_ref().ok_or_else(|| {
            AdapterError::BadRequest("an array needs a structure in its data source".into())
        })?;
        let st = zarr_storage::validate_structure(structure)?;
        let structure =
            serde_json::to_value(&st).map_err(|e| AdapterError::Internal(e.to_string()))?;
        self.check_free(parent, &child.key)?;
        let rel = zarr_storage::create_array(storage, &child.key, &st)?;
        let node = NewNode {
            key: child.key.clone(),
            structure_family: StructureFamily::Array,
            structure: Some(structure),
            metadata: child.metadata.clone(),
            specs: child.specs.clone(),
            access_blob: access_blob(child),
            data_sources: vec![NewDataSource {
                mimetype: ZARR_MIMETYPE.into(),
                parameters: json!({"path": "/"}),
                properties: json!({}),
                management: WRITABLE.into(),
                assets: vec![NewAsset {
                    data_uri: storage.uri(&rel),
                    is_directory: true,
                    parameter: Some("data_uri".into()),
                    num: None,
                }],
            }],
        };
        self.commit_new(parent, &node, storage, &rel)
    }

    /// Create a table node backed by a directory of Parquet segments.
    fn create_table(&self, parent: &[String], child: &NewChild) -> Result<(), AdapterError> {
        let storage = self.storage("table")?;
        match child.mimetype.as_deref() {
            None | Some(PARQUET_MIMETYPE | SQL_TABLE_MIMETYPE) => {}
            Some(m) => {
                return Err(AdapterError::BadRequest(format!(
                    "tables are stored as {PARQUET_MIMETYPE} (or upstream's \
                     {SQL_TABLE_MIMETYPE}), not {m:?}"
                )));
            }
        }
        let structure = child.structure.as_ref().ok_or_else(|| {
            AdapterError::BadRequest("a table needs a structure in its data source".into())
        })?;
        let (st, _) = table_storage::validate_structure(structure)?;
        let structure =
            serde_json::to_value(&st).map_err(|e| AdapterError::Internal(e.to_string()))?;
        self.check_free(parent, &child.key)?;
        let dir = table_storage::new_dir(storage, &child.key);
        let node = NewNode {
            key: child.key.clone(),
            structure_family: StructureFamily::Table,
            structure: Some(structure),
            metadata: child.metadata.clone(),
            specs: child.specs.clone(),
            access_blob: access_blob(child),
            data_sources: vec![NewDataSource {
                mimetype: PARQUET_MIMETYPE.into(),
                parameters: json!({}),
                properties: json!({}),
                management: WRITABLE.into(),
                assets: vec![NewAsset {
                    data_uri: storage.uri(&dir),
                    is_directory: true,
                    parameter: Some(DIRECTORY_PARAMETER.into()),
                    num: None,
                }],
            }],
        };
        self.commit_new(parent, &node, storage, &dir)
    }

    /// The node at `path`, its writable data source of `mimetype`, the
    /// writable storage, and the name in it of the source's `parameter`
    /// asset (which must lie in that storage).
    fn writable_source(
        &self,
        path: &[String],
        mimetype: &str,
        parameter: &str,
    ) -> Result<(i64, DataSource, &Storage, String), AdapterError> {
        let id = self
            .catalog
            .node_id(path)?
            .ok_or_else(|| AdapterError::NotFound(format!("No such node: {}", path.join("/"))))?;
        let no_storage = || {
            AdapterError::BadRequest(
                "This node has no writable storage: only nodes created through this server's \
                 write API can be written."
                    .into(),
            )
        };
        let source = self
            .catalog
            .data_sources(id)?
            .into_iter()
            .find(|s| s.mimetype == mimetype && s.management == WRITABLE)
            .ok_or_else(no_storage)?;
        let storage = self.storage.as_ref().ok_or_else(no_storage)?;
        let rel = source
            .assets
            .iter()
            .find(|a| a.parameter.as_deref() == Some(parameter))
            .and_then(|a| storage.relative(&a.data_uri))
            .ok_or_else(no_storage)?;
        Ok((id, source, storage, rel))
    }

    /// The writable array at `path`: its node id, data source id, storage,
    /// store name and structure (one catalog lookup; the store is opened by
    /// the caller that needs it).
    fn array_source(&self, path: &[String]) -> Result<ArraySource<'_>, AdapterError> {
        let (id, source, storage, rel) = self.writable_source(path, ZARR_MIMETYPE, "data_uri")?;
        let structure = source
            .structure
            .as_ref()
            .ok_or_else(|| AdapterError::Internal("a writable array without a structure".into()))?;
        Ok(ArraySource {
            id,
            source_id: source.id,
            st: zarr_storage::validate_structure(structure)?,
            storage,
            rel,
        })
    }

    /// Serialise in-place writes to the node at `path`.
    fn lock_node(&self, path: &[String]) -> Result<MutexGuard<'_, ()>, AdapterError> {
        let id = self
            .catalog
            .node_id(path)?
            .ok_or_else(|| AdapterError::NotFound(format!("No such node: {}", path.join("/"))))?;
        Ok(self.lock(id))
    }

    /// Open the node's data once (checks a registration).
    fn check_readable(&self, path: &[String], family: StructureFamily) -> Result<(), AdapterError> {
        let id = self
            .catalog
            .node_id(path)?
            .ok_or_else(|| AdapterError::NotFound(path.join("/")))?;
        self.catalog.open_data(id, family).map(|_| ())
    }

    /// The wire form of the data sources of the node at `path`.
    fn wire_sources(
        &self,
        path: &[String],
        family: StructureFamily,
    ) -> Result<Value, AdapterError> {
        let Some(id) = self.catalog.node_id(path)? else {
            return Ok(json!([]));
        };
        Ok(Value::Array(
            self.catalog
                .data_sources(id)?
                .iter()
                .map(|d| d.to_wire(family))
                .collect(),
        ))
    }
}

impl TreeWriter for CatalogWriter {
    fn create(&self, parent: &[String], child: &NewChild) -> Result<Value, AdapterError> {
        match child.structure_family {
            StructureFamily::Container => {
                self.catalog.create_node(
                    parent,
                    &NewNode {
                        key: child.key.clone(),
                        structure_family: child.structure_family,
                        structure: None,
                        metadata: child.metadata.clone(),
                        specs: child.specs.clone(),
                        access_blob: access_blob(child),
                        data_sources: Vec::new(),
                    },
                )?;
            }
            StructureFamily::Array => self.create_array(parent, child)?,
            StructureFamily::Table => self.create_table(parent, child)?,
            other => {
                return Err(AdapterError::NotSupported(format!(
                    "creating {} nodes is not supported yet; containers, arrays and tables \
                     can be created",
                    other.as_str()
                )));
            }
        }
        let mut path = parent.to_vec();
        path.push(child.key.clone());
        self.wire_sources(&path, child.structure_family)
    }

    fn register(
        &self,
        parent: &[String],
        child: &NewChild,
        source: &Value,
    ) -> Result<Value, AdapterError> {
        let bad = |m: String| AdapterError::BadRequest(m);
        let mimetype = source
            .get("mimetype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("registering needs the data source's mimetype".into()))?
            .to_string();
        if !self.catalog.can_open(&mimetype) {
            return Err(bad(format!(
                "no reader for {mimetype:?} here: serve the catalog with --readable-storage \
                 covering the files, and use a format this server reads"
            )));
        }
        let need_structure = || {
            child
                .structure
                .as_ref()
                .ok_or_else(|| bad("the data source needs a structure".into()))
        };
        match child.structure_family {
            StructureFamily::Array => {
                serde_json::from_value::<tiled_model::structure::ArrayStructure>(
                    need_structure()?.clone(),
                )
                .map_err(|e| bad(format!("invalid array structure: {e}")))?;
            }
            StructureFamily::Table => {
                table_storage::validate_structure(need_structure()?)?;
            }
            StructureFamily::Container => {}
            other => {
                return Err(bad(format!(
                    "registering {} nodes is not supported",
                    other.as_str()
                )));
            }
        }
        let assets = source
            .get("assets")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("registering needs assets".into()))?;
        let mut new_assets = Vec::with_capacity(assets.len());
        for a in assets {
            let uri = a
                .get("data_uri")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("every asset needs a data_uri".into()))?;
            // Only files under the readable storage, after resolving links.
            let inside = crate::path_of_uri(uri)
                .and_then(|p| p.canonicalize().ok())
                .is_some_and(|p| self.readable.iter().any(|r| p.starts_with(r)));
            if !inside {
                return Err(bad(format!(
                    "{uri} is not a readable file under this server's readable storage \
                     (--readable-storage)"
                )));
            }
            new_assets.push(NewAsset {
                data_uri: uri.to_string(),
                is_directory: a
                    .get("is_directory")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                parameter: a
                    .get("parameter")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                num: a.get("num").and_then(Value::as_i64),
            });
        }
        let node = NewNode {
            key: child.key.clone(),
            structure_family: child.structure_family,
            structure: child.structure.clone(),
            metadata: child.metadata.clone(),
            specs: child.specs.clone(),
            access_blob: access_blob(child),
            data_sources: vec![NewDataSource {
                mimetype,
                parameters: source
                    .get("parameters")
                    .cloned()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({})),
                properties: source
                    .get("properties")
                    .cloned()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({})),
                management: "external".into(),
                assets: new_assets,
            }],
        };
        self.catalog.create_node(parent, &node)?;
        let mut path = parent.to_vec();
        path.push(child.key.clone());
        // Open it once: a registration the server cannot read is undone.
        if let Err(e) = self.check_readable(&path, child.structure_family) {
            let _ = self.catalog.delete_node(&path);
            return Err(bad(format!("the registered data cannot be read: {e}")));
        }
        self.wire_sources(&path, child.structure_family)
    }

    fn update_metadata(
        &self,
        path: &[String],
        metadata: &Map<String, Value>,
        specs: Option<&[Spec]>,
        access_tags: Option<&[String]>,
        drop_revision: bool,
    ) -> Result<(), AdapterError> {
        let blob = access_tags.map(|tags| json!({ "tags": tags }));
        let revision = self
            .catalog
            .update_metadata(path, metadata, specs, blob.as_ref())?;
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

    fn delete(
        &self,
        path: &[String],
        recursive: bool,
        external_only: bool,
    ) -> Result<(), AdapterError> {
        // The files this server wrote go with their nodes, after the
        // nodes are gone (a failed delete leaves both in place).
        let stores = self.catalog.writable_assets_under(path)?;
        self.catalog
            .delete_node_checked(path, recursive, external_only)?;
        if let Some(storage) = &self.storage {
            for uri in stores {
                match storage.relative(&uri) {
                    Some(rel) => zarr_storage::remove(storage, &rel),
                    None => tracing::warn!("not removing {uri}: outside the writable storage"),
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
        // Read the structure under the lock: an extend may have committed a
        // new one meanwhile.
        let _guard = self.lock_node(path)?;
        let a = self.array_source(path)?;
        if block.is_some() {
            // One block is one chunk, which the store replaces atomically.
            return zarr_storage::write(&a.store()?, &a.rel, &a.st, block, bytes);
        }
        // A whole array is written copy-on-write: a new store, swapped in
        // by one catalog transaction, so a crash leaves the old or the new
        // array and never a mix of chunks.
        let key = path.last().map_or("array", String::as_str);
        let new_rel = zarr_storage::create_array(a.storage, key, &a.st)?;
        let written = a
            .storage
            .zarr_store(&new_rel)
            .map_err(|e| AdapterError::Internal(format!("{new_rel}: {e}")))
            .and_then(|new_store| zarr_storage::write(&new_store, &new_rel, &a.st, None, bytes));
        if let Err(e) = written {
            zarr_storage::remove(a.storage, &new_rel);
            return Err(e);
        }
        let asset = NewAsset {
            data_uri: a.storage.uri(&new_rel),
            is_directory: true,
            parameter: Some("data_uri".into()),
            num: None,
        };
        let committed = self
            .catalog
            .replace_assets(a.source_id, "data_uri", None, &asset);
        settle(a.storage, committed, &new_rel)
    }

    fn patch_array(
        &self,
        path: &[String],
        offset: &[usize],
        shape: &[usize],
        extend: bool,
        bytes: &[u8],
    ) -> Result<Value, AdapterError> {
        let _guard = self.lock_node(path)?;
        let a = self.array_source(path)?;
        let new = zarr_storage::patch(&a.store()?, &a.rel, &a.st, offset, shape, extend, bytes)?;
        let value =
            serde_json::to_value(&new).map_err(|e| AdapterError::Internal(e.to_string()))?;
        if new.shape != a.st.shape {
            self.catalog.set_structure(a.id, &value)?;
        }
        Ok(value)
    }

    fn write_table(
        &self,
        path: &[String],
        partition: Option<usize>,
        append: bool,
        body: &[u8],
    ) -> Result<(), AdapterError> {
        let (id, source, storage, dir) =
            self.writable_source(path, PARQUET_MIMETYPE, DIRECTORY_PARAMETER)?;
        let structure = source
            .structure
            .as_ref()
            .ok_or_else(|| AdapterError::Internal("a writable table without a structure".into()))?;
        let (st, schema) = table_storage::validate_structure(structure)?;
        let partition = match partition {
            Some(p) if p < st.npartitions => p,
            Some(p) => {
                return Err(AdapterError::BadRequest(format!(
                    "partition {p} is out of range: the table has {}",
                    st.npartitions
                )));
            }
            None if st.npartitions == 1 => 0,
            None => {
                return Err(AdapterError::BadRequest(format!(
                    "this table has {} partitions: write them one by one \
                     (PUT /table/partition/...?partition=N)",
                    st.npartitions
                )));
            }
        };
        let batch = table_storage::decode_body(body, &schema)?;
        let file = table_storage::write_segment(storage, &dir, partition, &batch)?;
        let asset = NewAsset {
            data_uri: storage.uri(&file),
            is_directory: false,
            parameter: Some(SEGMENT_PARAMETER.into()),
            num: Some(partition as i64),
        };
        let committed = if append {
            self.catalog
                .add_asset(source.id, &asset)
                .map(|()| Vec::new())
        } else {
            let _guard = self.lock(id);
            self.catalog.replace_assets(
                source.id,
                SEGMENT_PARAMETER,
                Some(partition as i64),
                &asset,
            )
        };
        settle(storage, committed, &file)
    }
}

/// A writable array as the catalog records it.
struct ArraySource<'a> {
    id: i64,
    source_id: i64,
    st: tiled_model::structure::ArrayStructure,
    storage: &'a Storage,
    rel: String,
}

impl ArraySource<'_> {
    fn store(&self) -> Result<zarr_storage::Store, AdapterError> {
        self.storage
            .zarr_store(&self.rel)
            .map_err(|e| AdapterError::Internal(format!("{}: {e}", self.rel)))
    }
}

/// The access blob of a new node: its tags, if it has any.
fn access_blob(child: &NewChild) -> Value {
    match &child.access_tags {
        Some(tags) => json!({ "tags": tags }),
        None => Value::Object(Map::new()),
    }
}

/// After the catalog transaction that publishes `written`: on success
/// remove what it replaced; on failure remove `written` (never published).
fn settle(
    storage: &Storage,
    committed: Result<Vec<String>, crate::CatalogError>,
    written: &str,
) -> Result<(), AdapterError> {
    match committed {
        Ok(replaced) => {
            for uri in replaced {
                if let Some(old) = storage.relative(&uri) {
                    zarr_storage::remove(storage, &old);
                }
            }
            Ok(())
        }
        Err(e) => {
            zarr_storage::remove(storage, written);
            Err(e.into())
        }
    }
}
