//! HDF5 (placeholder; being written).

use std::path::Path;

use serde_json::Value;
use tiled_adapters::{AdapterError, NodeData};
use tiled_model::StructureFamily;

use crate::{Described, FileError, FileFormat};

/// HDF5 files through rust-hdf5 (pure Rust).
pub struct Hdf5Format;

impl FileFormat for Hdf5Format {
    fn mimetype(&self) -> &'static str {
        "application/x-hdf5"
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        Err(FileError::unreadable(path, "HDF5 is not supported yet"))
    }

    fn open(
        &self,
        path: &Path,
        _parameters: &Value,
        _family: StructureFamily,
    ) -> Result<NodeData, AdapterError> {
        Err(AdapterError::Internal(format!(
            "{}: HDF5 is not supported yet",
            path.display()
        )))
    }
}
