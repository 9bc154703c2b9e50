//! Files at rest as Tiled nodes.
//!
//! Each supported format is a [`FileFormat`]: at registration it
//! *describes* a file (its structure family, structure, metadata and, for
//! files that hold several things such as HDF5, a tree of children); at read
//! time it *opens* one described node's data lazily, touching only the bytes
//! a request needs. [`walk`] turns a directory into catalog nodes with
//! upstream Tiled's file-to-node mapping, and [`FileOpener`] plugs the
//! formats into the catalog's lazy data sources.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{Map, Value};
use tiled_adapters::{AdapterError, NodeData};
use tiled_catalog::{DataSource, Opener};
pub use tiled_catalog::{file_uri, path_of_uri};
use tiled_model::{Spec, StructureFamily};

pub mod arrays;
pub mod excel;
pub mod hdf5;
pub mod netcdf;
pub mod tables;
pub mod walk;
pub mod zarr;

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

/// A backend failure about the file at `path`.
pub(crate) fn internal(path: &Path, e: impl std::fmt::Display) -> AdapterError {
    AdapterError::Internal(format!("{}: {e}", path.display()))
}

/// Run `f`, turning a panic inside a format library (young crates, damaged
/// files) into an error message instead of a crashed request.
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string())
    })
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

/// Every format this build knows.
pub fn formats() -> Vec<Arc<dyn FileFormat>> {
    vec![
        Arc::new(hdf5::Hdf5Format),
        Arc::new(zarr::ZarrFormat),
        Arc::new(netcdf::NetcdfFormat),
        Arc::new(tables::CsvFormat::new(b',')),
        Arc::new(tables::CsvFormat::new(b'\t')),
        Arc::new(tables::ParquetFormat),
        Arc::new(tables::ArrowFormat),
        Arc::new(excel::ExcelFormat),
        Arc::new(arrays::NpyFormat),
        Arc::new(arrays::TiffFormat),
        Arc::new(arrays::PngFormat),
        Arc::new(arrays::JpegFormat),
        Arc::new(arrays::SequenceFormat::tiff()),
        Arc::new(arrays::SequenceFormat::jpeg()),
        Arc::new(arrays::SequenceFormat::npy()),
    ]
}

/// The mimetype of a file by its last extension (case-insensitive), as
/// upstream Tiled maps them, plus the formats it lacks (TSV, Parquet, Arrow,
/// PNG); `overrides` (extension with its dot → mimetype) come first.
pub fn mimetype_for(path: &Path, overrides: &HashMap<String, String>) -> Option<String> {
    let ext = format!(".{}", path.extension()?.to_str()?.to_ascii_lowercase());
    if let Some(m) = overrides.get(&ext) {
        return Some(m.clone());
    }
    let m = match ext.as_str() {
        ".h5" | ".hdf5" | ".hdf" | ".nxs" => "application/x-hdf5",
        ".zarr" => "application/x-zarr",
        ".nc" | ".nc4" | ".netcdf" => "application/x-netcdf",
        ".csv" => "text/csv",
        ".tsv" | ".tab" => "text/tab-separated-values",
        ".parquet" => "application/x-parquet",
        ".arrow" | ".feather" => "application/vnd.apache.arrow.file",
        ".xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ".npy" => "application/x-npy",
        ".tif" | ".tiff" => "image/tiff",
        ".png" => "image/png",
        ".jpg" | ".jpeg" => "image/jpeg",
        _ => return None,
    };
    Some(m.to_string())
}

/// Opens file-backed data sources for the catalog: resolves the asset URIs,
/// refuses anything outside the served roots, and keeps recently opened
/// adapters (keyed by source and file modification time) so a request does
/// not re-open a file the previous one just read.
pub struct FileOpener {
    format: Arc<dyn FileFormat>,
    roots: Vec<PathBuf>,
    cache: Mutex<HashMap<String, (Option<SystemTime>, NodeData)>>,
}

/// Opened adapters kept per opener.
const OPEN_CACHE_ENTRIES: usize = 256;

impl FileOpener {
    /// An opener for `format` that serves only files under `roots`
    /// (canonical paths).
    pub fn new(format: Arc<dyn FileFormat>, roots: Vec<PathBuf>) -> Self {
        FileOpener {
            format,
            roots,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The asset paths of `source` in order, each checked to be inside a root.
    fn asset_paths(&self, source: &DataSource) -> Result<Vec<PathBuf>, AdapterError> {
        let mut out = Vec::with_capacity(source.assets.len());
        for asset in &source.assets {
            let uri = &asset.data_uri;
            let path = path_of_uri(uri)
                .ok_or_else(|| AdapterError::Internal(format!("unsupported asset URI {uri:?}")))?;
            // A file that vanished or now leads outside the roots (a swapped
            // symlink) is the data's absence, not a server fault; the path
            // is logged, never sent.
            let gone = || {
                AdapterError::NotFound(
                    "The data of this node cannot be read: its file is missing or lies \
                     outside the served directories."
                        .into(),
                )
            };
            let real = path.canonicalize().map_err(|e| {
                tracing::warn!("{}: {e}", path.display());
                gone()
            })?;
            if !self.roots.iter().any(|r| real.starts_with(r)) {
                tracing::warn!("{} is outside the served directories", path.display());
                return Err(gone());
            }
            out.push(real);
        }
        Ok(out)
    }
}

impl Opener for FileOpener {
    fn open(&self, source: &DataSource, family: StructureFamily) -> Result<NodeData, AdapterError> {
        let paths = self.asset_paths(source)?;
        let first = paths
            .first()
            .ok_or_else(|| AdapterError::Internal("a file data source without assets".into()))?;
        let modified = std::fs::metadata(first).and_then(|m| m.modified()).ok();
        let key = format!("{}|{:?}|{}", source.id, family, source.parameters);
        if let Ok(cache) = self.cache.lock()
            && let Some((m, data)) = cache.get(&key)
            && *m == modified
        {
            return Ok(data.clone());
        }
        // Sequences name their files in the parameters handed to the format.
        let mut parameters = source.parameters.clone();
        if (paths.len() > 1 || self.format.mimetype().starts_with("multipart/"))
            && let Value::Object(m) = &mut parameters
        {
            {
                m.insert(
                    "paths".into(),
                    Value::Array(
                        paths
                            .iter()
                            .map(|p| Value::String(p.to_string_lossy().into_owned()))
                            .collect(),
                    ),
                );
            }
        }
        let data = self.format.open(first, &parameters, family)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= OPEN_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, (modified, data.clone()));
        }
        Ok(data)
    }
}
