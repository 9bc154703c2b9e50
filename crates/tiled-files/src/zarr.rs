//! Zarr v2 and v3 stores (directories) (placeholder; being written).

use std::path::Path;

use serde_json::Value;
use tiled_adapters::{AdapterError, NodeData};
use tiled_model::StructureFamily;

use crate::{Described, FileError, FileFormat};

/// Zarr v2 and v3 stores (directories).
pub struct ZarrFormat;

impl FileFormat for ZarrFormat {
    fn mimetype(&self) -> &'static str {
        "application/x-zarr"
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        Err(FileError::unreadable(path, "not supported yet"))
    }

    fn open(
        &self,
        path: &Path,
        _parameters: &Value,
        _family: StructureFamily,
    ) -> Result<NodeData, AdapterError> {
        Err(AdapterError::Internal(format!(
            "{}: not supported yet",
            path.display()
        )))
    }
}
