//! What a writable tree does: the metadata half of Tiled's write API
//! (create containers, update metadata with revisions, delete), addressed
//! by path. The SQL catalog implements it; in-memory trees do not, and the
//! server answers their writes with 405.

use serde_json::{Map, Value};
use tiled_model::{Spec, StructureFamily};

use crate::AdapterError;

/// A node to create under an existing container.
#[derive(Clone, Debug)]
pub struct NewChild {
    pub key: String,
    pub structure_family: StructureFamily,
    pub metadata: Map<String, Value>,
    pub specs: Vec<Spec>,
    /// The structure of a node with data (`data_sources[0].structure` of
    /// the request); `None` for containers.
    pub structure: Option<Value>,
    /// The storage the client asked for (`data_sources[0].mimetype`), if
    /// any.
    pub mimetype: Option<String>,
    /// Access tags for the node (`None`: untagged).
    pub access_tags: Option<Vec<String>>,
}

/// An earlier state of a node's metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct MetadataRevision {
    pub revision_number: i64,
    pub metadata: Value,
    pub specs: Value,
    pub time_updated: String,
}

/// Writes by path (keys from the root).
pub trait TreeWriter: Send + Sync {
    /// Create `child` under the container at `parent`.
    ///
    /// # Errors
    /// [`AdapterError::NotFound`] for a missing parent,
    /// [`AdapterError::Conflict`] for a taken key,
    /// [`AdapterError::BadRequest`] for a bad key or a family this tree
    /// cannot store yet.
    ///
    /// Returns the new node's data sources in wire form.
    fn create(&self, parent: &[String], child: &NewChild) -> Result<Value, AdapterError>;

    /// Replace the metadata (and specs and access tags, when given) of the
    /// node at `path`, keeping the old ones as a revision unless
    /// `drop_revision`.
    ///
    /// # Errors
    /// [`AdapterError::NotFound`] for a missing node.
    fn update_metadata(
        &self,
        path: &[String],
        metadata: &Map<String, Value>,
        specs: Option<&[Spec]>,
        access_tags: Option<&[String]>,
        drop_revision: bool,
    ) -> Result<(), AdapterError>;

    /// One page of the node's revisions, oldest first, and their count.
    ///
    /// # Errors
    /// [`AdapterError::NotFound`] for a missing node.
    fn revisions(
        &self,
        path: &[String],
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<MetadataRevision>), AdapterError>;

    /// Delete revision `number` of the node at `path`.
    ///
    /// # Errors
    /// [`AdapterError::NotFound`] for a missing node or revision.
    fn delete_revision(&self, path: &[String], number: i64) -> Result<(), AdapterError>;

    /// Delete the node at `path` (and, with `recursive`, all below it).
    /// With `external_only` (upstream's default), refuse when that would
    /// delete data the server itself stores.
    ///
    /// # Errors
    /// [`AdapterError::NotFound`] for a missing node,
    /// [`AdapterError::Conflict`] for a non-empty container without
    /// `recursive` or internally-managed data with `external_only`,
    /// [`AdapterError::BadRequest`] for the root.
    fn delete(
        &self,
        path: &[String],
        recursive: bool,
        external_only: bool,
    ) -> Result<(), AdapterError>;

    /// Write C-order `bytes` into the array at `path`: the whole array
    /// (`block` None) or one block of its chunks.
    ///
    /// # Errors
    /// [`AdapterError::NotFound`] for a missing node,
    /// [`AdapterError::BadRequest`] for a node without writable storage, a
    /// bad block or a length that does not match.
    fn write_array(
        &self,
        path: &[String],
        block: Option<&[usize]>,
        bytes: &[u8],
    ) -> Result<(), AdapterError>;

    /// Write C-order `bytes` of `shape` at `offset` (padded with zeros)
    /// into the array at `path`, growing it when the region passes its
    /// end and `extend` is set. Returns the array's new structure.
    ///
    /// # Errors
    /// [`AdapterError::Conflict`] when the region does not fit and
    /// `extend` is not set; [`AdapterError::BadRequest`] as
    /// [`TreeWriter::write_array`].
    fn patch_array(
        &self,
        path: &[String],
        offset: &[usize],
        shape: &[usize],
        extend: bool,
        bytes: &[u8],
    ) -> Result<Value, AdapterError>;

    /// Write the rows of an Arrow IPC `body` into the table at `path`:
    /// replacing the whole table (`partition` None, one-partition tables
    /// only) or one partition, or appending to a partition (`append`).
    ///
    /// # Errors
    /// [`AdapterError::NotFound`] for a missing node,
    /// [`AdapterError::BadRequest`] for a node without writable storage, a
    /// bad partition or a body whose columns differ from the table's.
    fn write_table(
        &self,
        path: &[String],
        partition: Option<usize>,
        append: bool,
        body: &[u8],
    ) -> Result<(), AdapterError>;

    /// Register external data: create `child` under `parent` with the data
    /// source `source` (the wire form, with assets pointing at existing
    /// files the server may read). Returns the node's data sources in wire
    /// form.
    ///
    /// # Errors
    /// [`AdapterError::Forbidden`]-like refusals as
    /// [`AdapterError::BadRequest`] for assets outside the readable
    /// storage or a mimetype without a reader; else as
    /// [`TreeWriter::create`].
    fn register(
        &self,
        parent: &[String],
        child: &NewChild,
        source: &Value,
    ) -> Result<Value, AdapterError>;
}

/// Writers mounted at paths of a composite tree (`tiled serve config`
/// with several `trees`): each call goes to the writer whose mount point
/// prefixes the path, with that prefix removed.
pub struct MountedWriters {
    mounts: Vec<(Vec<String>, std::sync::Arc<dyn TreeWriter>)>,
}

impl MountedWriters {
    /// Writers at their mount points (keys from the root).
    pub fn new(mounts: Vec<(Vec<String>, std::sync::Arc<dyn TreeWriter>)>) -> Self {
        MountedWriters { mounts }
    }

    /// The writer for `path` and the path inside it. A node at a mount
    /// point itself is not writable through the mount (it is the mounted
    /// tree's root).
    fn find<'a>(
        &self,
        path: &'a [String],
        allow_root: bool,
    ) -> Result<(&dyn TreeWriter, &'a [String]), AdapterError> {
        self.mounts
            .iter()
            .find(|(prefix, _)| {
                path.starts_with(prefix) && (allow_root || path.len() > prefix.len())
            })
            .map(|(prefix, w)| (w.as_ref(), &path[prefix.len()..]))
            .ok_or_else(|| {
                AdapterError::NotSupported(format!(
                    "/{} is in a read-only part of the tree",
                    path.join("/")
                ))
            })
    }
}

impl TreeWriter for MountedWriters {
    fn create(&self, parent: &[String], child: &NewChild) -> Result<Value, AdapterError> {
        let (w, p) = self.find(parent, true)?;
        w.create(p, child)
    }

    fn update_metadata(
        &self,
        path: &[String],
        metadata: &Map<String, Value>,
        specs: Option<&[Spec]>,
        access_tags: Option<&[String]>,
        drop_revision: bool,
    ) -> Result<(), AdapterError> {
        let (w, p) = self.find(path, false)?;
        w.update_metadata(p, metadata, specs, access_tags, drop_revision)
    }

    fn revisions(
        &self,
        path: &[String],
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<MetadataRevision>), AdapterError> {
        let (w, p) = self.find(path, false)?;
        w.revisions(p, offset, limit)
    }

    fn delete_revision(&self, path: &[String], number: i64) -> Result<(), AdapterError> {
        let (w, p) = self.find(path, false)?;
        w.delete_revision(p, number)
    }

    fn delete(
        &self,
        path: &[String],
        recursive: bool,
        external_only: bool,
    ) -> Result<(), AdapterError> {
        let (w, p) = self.find(path, false)?;
        w.delete(p, recursive, external_only)
    }

    fn write_array(
        &self,
        path: &[String],
        block: Option<&[usize]>,
        bytes: &[u8],
    ) -> Result<(), AdapterError> {
        let (w, p) = self.find(path, false)?;
        w.write_array(p, block, bytes)
    }

    fn patch_array(
        &self,
        path: &[String],
        offset: &[usize],
        shape: &[usize],
        extend: bool,
        bytes: &[u8],
    ) -> Result<Value, AdapterError> {
        let (w, p) = self.find(path, false)?;
        w.patch_array(p, offset, shape, extend, bytes)
    }

    fn write_table(
        &self,
        path: &[String],
        partition: Option<usize>,
        append: bool,
        body: &[u8],
    ) -> Result<(), AdapterError> {
        let (w, p) = self.find(path, false)?;
        w.write_table(p, partition, append, body)
    }

    fn register(
        &self,
        parent: &[String],
        child: &NewChild,
        source: &Value,
    ) -> Result<Value, AdapterError> {
        let (w, p) = self.find(parent, true)?;
        w.register(p, child, source)
    }
}
