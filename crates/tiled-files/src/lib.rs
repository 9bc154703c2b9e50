//! Files at rest as Tiled nodes.
//!
//! Each supported format is a [`FileFormat`]: at registration it
//! *describes* a file (its structure family, structure, metadata and, for
//! files that hold several things such as HDF5, a tree of children); at read
//! time it *opens* one described node's data lazily, touching only the bytes
//! a request needs. [`walk`] turns a directory into catalog nodes with
//! upstream Tiled's file-to-node mapping, and [`FileOpener`] plugs the
//! formats into the catalog's lazy data sources.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use tiled_adapters::{AdapterError, NodeData};
use tiled_model::{Spec, StructureFamily};

pub mod hdf5;

/// Why a file could not be described or opened.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file is not what its name says, or is damaged.
    #[error("{path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl FileError {
    /// An unreadable-file error for `path`.
    pub fn unreadable(path: &Path, message: impl std::fmt::Display) -> Self {
        FileError::Unreadable {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

impl From<FileError> for AdapterError {
    fn from(e: FileError) -> Self {
        AdapterError::Internal(e.to_string())
    }
}

/// One node described from a file at registration time.
#[derive(Clone, Debug)]
pub struct Described {
    pub family: StructureFamily,
    /// The structure as the wire has it (`ArrayStructure`/`TableStructure`
    /// serialized); `None` for containers.
    pub structure: Option<Value>,
    pub metadata: Map<String, Value>,
    pub specs: Vec<Spec>,
    /// The parameters of this node's data source, handed back to
    /// [`FileFormat::open`] (e.g. `{"dataset": "/entry/data"}`); `None` for a
    /// container whose children are described here and which has no data of
    /// its own.
    pub parameters: Option<Value>,
    /// Children, in the file's order (containers only).
    pub children: Vec<(String, Described)>,
}

impl Described {
    /// An empty container with this metadata.
    pub fn container(metadata: Map<String, Value>) -> Self {
        Described {
            family: StructureFamily::Container,
            structure: None,
            metadata,
            specs: Vec::new(),
            parameters: None,
            children: Vec::new(),
        }
    }
}

/// A file format Tiled can serve.
pub trait FileFormat: Send + Sync {
    /// The mimetype recorded in the data sources of this format's nodes.
    fn mimetype(&self) -> &'static str;

    /// Describe the file (or directory, for directory formats) at `path`.
    /// Cheap: reads headers and metadata, never the bulk data.
    ///
    /// # Errors
    /// [`FileError`] if the file cannot be read as this format.
    fn describe(&self, path: &Path) -> Result<Described, FileError>;

    /// Open the data of one node [`FileFormat::describe`] produced, given its
    /// data source parameters.
    ///
    /// # Errors
    /// [`AdapterError::Internal`] if the file changed or cannot be read.
    fn open(
        &self,
        path: &Path,
        parameters: &Value,
        family: StructureFamily,
    ) -> Result<NodeData, AdapterError>;
}

/// Every format this build knows, by mimetype.
pub fn formats() -> Vec<Arc<dyn FileFormat>> {
    vec![Arc::new(hdf5::Hdf5Format)]
}
