//! NetCDF files as xarray-style datasets (placeholder; being written).

use std::path::Path;

use serde_json::Value;
use tiled_adapters::{AdapterError, NodeData};
use tiled_model::StructureFamily;

use crate::{Described, FileError, FileFormat};

/// NetCDF files as xarray-style datasets.
pub struct NetcdfFormat;

impl FileFormat for NetcdfFormat {
    fn mimetype(&self) -> &'static str {
        "application/x-netcdf"
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
