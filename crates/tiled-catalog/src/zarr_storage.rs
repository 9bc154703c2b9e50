//! Writable storage for arrays: each array node created through the write
//! API gets a Zarr v3 store (a directory whose root is the array) under the
//! server's `--writable-storage` directory, written with `zarrs`. The
//! catalog's data source points at that directory (`application/x-zarr`,
//! `{"path": "/"}`), so reads go through the ordinary Zarr opener.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tiled_adapters::{AdapterError, ArrayAdapter, ArrayData};
use tiled_model::dtype::{DataType, Endianness, Kind};
use tiled_model::slice::ResolvedSlice;
use tiled_model::structure::ArrayStructure;
use zarrs::array::{Array, ArrayBuilder, ArrayBytes, ArraySubset, FillValueMetadata};
use zarrs::filesystem::FilesystemStore;

/// The mimetype of the data sources made here.
pub const ZARR_MIMETYPE: &str = "application/x-zarr";

/// The `management` of data sources this server writes.
pub const WRITABLE: &str = "writable";

fn internal(path: &Path, e: impl std::fmt::Display) -> AdapterError {
    AdapterError::Internal(format!("{}: {e}", path.display()))
}

/// The structure a client sent, checked: it must tile its shape with
/// regular chunks (all the same length per axis except a shorter last one),
/// as Zarr's regular chunk grid stores.
///
/// # Errors
/// [`AdapterError::BadRequest`] for anything else.
pub fn validate_structure(value: &Value) -> Result<ArrayStructure, AdapterError> {
    let st: ArrayStructure = serde_json::from_value(value.clone())
        .map_err(|e| AdapterError::BadRequest(format!("invalid array structure: {e}")))?;
    let st = ArrayStructure::new(st.data_type, st.shape, st.chunks)
        .map(|s| ArrayStructure { dims: st.dims, ..s })
        .map_err(|e| AdapterError::BadRequest(format!("invalid array structure: {e}")))?;
    for (axis, chunks) in st.chunks.iter().enumerate() {
        let first = chunks.first().copied().unwrap_or(0);
        let n = chunks.len();
        let regular = chunks
            .iter()
            .enumerate()
            .all(|(i, &c)| c == first || (i + 1 == n && c < first));
        if !regular {
            return Err(AdapterError::BadRequest(format!(
                "the chunks of axis {axis} ({chunks:?}) are not regular: every chunk but a \
                 shorter last one must have the same length"
            )));
        }
    }
    zarr_data_type(&st.data_type)?;
    Ok(st)
}

/// How a Tiled data type is stored in Zarr v3: little-endian numbers and
/// booleans by their Zarr names (so other Zarr readers see them as they
/// are), everything else (big-endian numbers, datetimes, timedeltas, byte
/// and unicode strings, structured types) as raw bits of the same item
/// size, byte for byte: the catalog's structure says what they mean.
fn zarr_data_type(dtype: &DataType) -> Result<(String, Value), AdapterError> {
    let itemsize = dtype.itemsize();
    if itemsize == 0 {
        return Err(AdapterError::BadRequest(
            "zero-sized data types cannot be stored".into(),
        ));
    }
    let raw = || (format!("r{}", itemsize * 8), json!(vec![0u8; itemsize]));
    let DataType::Builtin(b) = dtype else {
        return Ok(raw());
    };
    if b.endianness == Endianness::Big && b.itemsize > 1 {
        return Ok(raw());
    }
    let (name, fill) = match (b.kind, b.itemsize) {
        (Kind::Bool, 1) => ("bool", json!(false)),
        (Kind::Int, 1) => ("int8", json!(0)),
        (Kind::Int, 2) => ("int16", json!(0)),
        (Kind::Int, 4) => ("int32", json!(0)),
        (Kind::Int, 8) => ("int64", json!(0)),
        (Kind::UInt, 1) => ("uint8", json!(0)),
        (Kind::UInt, 2) => ("uint16", json!(0)),
        (Kind::UInt, 4) => ("uint32", json!(0)),
        (Kind::UInt, 8) => ("uint64", json!(0)),
        (Kind::Float, 2) => ("float16", json!(0.0)),
        (Kind::Float, 4) => ("float32", json!(0.0)),
        (Kind::Float, 8) => ("float64", json!(0.0)),
        (Kind::Complex, 8) => ("complex64", json!([0.0, 0.0])),
        (Kind::Complex, 16) => ("complex128", json!([0.0, 0.0])),
        _ => return Ok(raw()),
    };
    Ok((name.to_string(), fill))
}

/// A new directory `<storage>/<key-derived prefix>-<random><suffix>`.
pub(crate) fn unique_dir(storage: &Path, key: &str, suffix: &str) -> Result<PathBuf, AdapterError> {
    std::fs::create_dir_all(storage).map_err(|e| internal(storage, e))?;
    let prefix: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .suffix(suffix)
        .rand_bytes(8)
        .tempdir_in(storage)
        .map(tempfile::TempDir::keep)
        .map_err(|e| internal(storage, e))
}

/// Create an empty (zero-filled) Zarr v3 array for `st` in a new directory
/// under `storage`, and return that directory.
///
/// # Errors
/// [`AdapterError::BadRequest`] for an unsupported dtype; I/O failures.
pub fn create_array(
    storage: &Path,
    key: &str,
    st: &ArrayStructure,
) -> Result<PathBuf, AdapterError> {
    let (data_type, fill) = zarr_data_type(&st.data_type)?;
    let shape: Vec<u64> = st.shape.iter().map(|&n| n as u64).collect();
    let chunk_shape = chunk_shape(st);
    let dir = unique_dir(storage, key, ".zarr")?;
    let made = (|| {
        let store = Arc::new(FilesystemStore::new(&dir).map_err(|e| internal(&dir, e))?);
        let fill: FillValueMetadata =
            serde_json::from_value(fill).map_err(|e| internal(&dir, e))?;
        let mut builder = ArrayBuilder::new(shape, chunk_shape, data_type.as_str(), fill);
        if let Some(dims) = &st.dims {
            builder.dimension_names(Some(dims.iter().map(String::as_str)));
        }
        let array = builder.build(store, "/").map_err(|e| internal(&dir, e))?;
        array.store_metadata().map_err(|e| internal(&dir, e))
    })();
    match made {
        Ok(()) => Ok(dir),
        Err(e) => {
            remove_array(&dir);
            Err(e)
        }
    }
}

/// Remove a file or directory this storage made (best effort; a missing
/// one is fine).
pub fn remove_array(dir: &Path) {
    let removed = if dir.is_dir() {
        std::fs::remove_dir_all(dir)
    } else {
        std::fs::remove_file(dir)
    };
    match removed {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("could not remove {}: {e}", dir.display()),
    }
}

/// Write C-order `bytes` into the array stored at `dir`: the whole array
/// (`block` None) or one block of `st`'s chunks.
///
/// # Errors
/// [`AdapterError::BadRequest`] for a bad block or a length that does not
/// match; I/O failures.
pub fn write(
    dir: &Path,
    st: &ArrayStructure,
    block: Option<&[usize]>,
    bytes: &[u8],
) -> Result<(), AdapterError> {
    let (offset, shape) = match block {
        Some(b) => st.block_extent(b)?,
        None => (vec![0; st.shape.len()], st.shape.clone()),
    };
    let expected = shape
        .iter()
        .try_fold(st.data_type.itemsize(), |acc, &n| acc.checked_mul(n))
        .ok_or_else(|| AdapterError::BadRequest("the array is too large".into()))?;
    if bytes.len() != expected {
        return Err(AdapterError::BadRequest(format!(
            "expected {expected} bytes for shape {shape:?}, got {}",
            bytes.len()
        )));
    }
    if expected == 0 {
        return Ok(());
    }
    let store = Arc::new(FilesystemStore::new(dir).map_err(|e| internal(dir, e))?);
    let array = Array::open(store, "/").map_err(|e| internal(dir, e))?;
    if array.shape().len() != shape.len() {
        return Err(internal(
            dir,
            "the stored array does not match its structure",
        ));
    }
    let subset = ArraySubset::new_with_start_shape(
        offset.iter().map(|&o| o as u64).collect(),
        shape.iter().map(|&n| n as u64).collect(),
    )
    .map_err(|e| internal(dir, e))?;
    array
        .store_array_subset(&subset, ArrayBytes::from(bytes))
        .map_err(|e| internal(dir, e))
}

/// The regular chunk shape of `st` (its first chunk along each axis; at
/// least 1, as Zarr requires).
fn chunk_shape(st: &ArrayStructure) -> Vec<u64> {
    st.chunks
        .iter()
        .map(|c| c.first().copied().unwrap_or(1).max(1) as u64)
        .collect()
}

/// The chunks of a regular grid of `chunk` per axis over `shape`.
fn regular_chunks(shape: &[usize], chunk: &[u64]) -> Vec<Vec<usize>> {
    shape
        .iter()
        .zip(chunk)
        .map(|(&n, &c)| {
            let c = usize::try_from(c).unwrap_or(usize::MAX).max(1);
            if n == 0 {
                return vec![0];
            }
            let mut out = vec![c; n / c];
            if n % c > 0 {
                out.push(n % c);
            }
            out
        })
        .collect()
}

/// Write `bytes` (C order, of `shape`) at `offset` into the array stored at
/// `dir`, growing it when the region passes its end and `extend` is set,
/// and return the array's new structure (spec §8.2, `PATCH array/full`).
///
/// # Errors
/// [`AdapterError::Conflict`] when the region passes the end without
/// `extend`; [`AdapterError::BadRequest`] for a bad offset, shape or length.
pub fn patch(
    dir: &Path,
    st: &ArrayStructure,
    offset: &[usize],
    shape: &[usize],
    extend: bool,
    bytes: &[u8],
) -> Result<ArrayStructure, AdapterError> {
    let ndim = st.shape.len();
    if offset.len() > ndim || shape.len() != ndim {
        return Err(AdapterError::BadRequest(format!(
            "the array has {ndim} dimensions: give a shape of {ndim} lengths and at most              {ndim} offsets (got shape {shape:?}, offset {offset:?})"
        )));
    }
    let mut start = offset.to_vec();
    start.resize(ndim, 0);
    let mut end = Vec::with_capacity(ndim);
    for (o, n) in start.iter().zip(shape) {
        end.push(
            o.checked_add(*n)
                .ok_or_else(|| AdapterError::BadRequest("offset + shape overflows".into()))?,
        );
    }
    let grows = end.iter().zip(&st.shape).any(|(e, n)| e > n);
    if grows && !extend {
        return Err(AdapterError::Conflict(format!(
            "The region at offset {start:?} with shape {shape:?} does not fit in the array's shape {:?}. Use ?extend=true to grow the array.",
            st.shape
        )));
    }
    let new_shape: Vec<usize> = end
        .iter()
        .zip(&st.shape)
        .map(|(e, n)| (*e).max(*n))
        .collect();
    let expected = shape
        .iter()
        .try_fold(st.data_type.itemsize(), |acc, &n| acc.checked_mul(n))
        .ok_or_else(|| AdapterError::BadRequest("the region is too large".into()))?;
    if bytes.len() != expected {
        return Err(AdapterError::BadRequest(format!(
            "expected {expected} bytes for shape {shape:?}, got {}",
            bytes.len()
        )));
    }
    let chunk = chunk_shape(st);
    let new = ArrayStructure {
        chunks: regular_chunks(&new_shape, &chunk),
        shape: new_shape.clone(),
        ..st.clone()
    };
    let store = Arc::new(FilesystemStore::new(dir).map_err(|e| internal(dir, e))?);
    let mut array = Array::open(store, "/").map_err(|e| internal(dir, e))?;
    if array.shape()
        != new_shape
            .iter()
            .map(|&n| n as u64)
            .collect::<Vec<_>>()
            .as_slice()
    {
        // Grow the stored array first: its extra area is not visible until
        // the catalog commits the new structure, after the data is written.
        array
            .set_shape(new_shape.iter().map(|&n| n as u64).collect())
            .map_err(|e| internal(dir, e))?;
        array.store_metadata().map_err(|e| internal(dir, e))?;
    }
    if expected > 0 {
        let subset = ArraySubset::new_with_start_shape(
            start.iter().map(|&o| o as u64).collect(),
            shape.iter().map(|&n| n as u64).collect(),
        )
        .map_err(|e| internal(dir, e))?;
        array
            .store_array_subset(&subset, ArrayBytes::from(bytes))
            .map_err(|e| internal(dir, e))?;
    }
    Ok(new)
}

/// An array this server wrote, read with the catalog's structure (which
/// is the truth: the store may be larger after an interrupted extend, and
/// holds raw bits for types Zarr has no name for).
pub struct WritableArray {
    array: Array<FilesystemStore>,
    structure: ArrayStructure,
    dir: PathBuf,
}

impl WritableArray {
    /// Open the store at `dir` for an array of structure `st`.
    ///
    /// # Errors
    /// [`AdapterError::Internal`] if the store is missing or does not hold
    /// at least `st`'s shape.
    pub fn open(dir: &Path, st: ArrayStructure) -> Result<Self, AdapterError> {
        let store = Arc::new(FilesystemStore::new(dir).map_err(|e| internal(dir, e))?);
        let array = Array::open(store, "/").map_err(|e| internal(dir, e))?;
        let fits = array.shape().len() == st.shape.len()
            && array
                .shape()
                .iter()
                .zip(&st.shape)
                .all(|(&stored, &n)| stored >= n as u64);
        if !fits || array.data_type().fixed_size() != Some(st.data_type.itemsize()) {
            return Err(internal(
                dir,
                "the stored array does not match the catalog's structure",
            ));
        }
        Ok(WritableArray {
            array,
            structure: st,
            dir: dir.to_path_buf(),
        })
    }

    fn read_box(&self, offset: &[usize], shape: &[usize]) -> Result<Vec<u8>, AdapterError> {
        if shape.contains(&0) {
            return Ok(Vec::new());
        }
        let subset = ArraySubset::new_with_start_shape(
            offset.iter().map(|&o| o as u64).collect(),
            shape.iter().map(|&n| n as u64).collect(),
        )
        .map_err(|e| internal(&self.dir, e))?;
        let bytes: ArrayBytes<'static> = self
            .array
            .retrieve_array_subset(&subset)
            .map_err(|e| internal(&self.dir, e))?;
        let bytes = bytes.into_fixed().map_err(|e| internal(&self.dir, e))?;
        Ok(bytes.into_owned())
    }
}

impl ArrayAdapter for WritableArray {
    fn structure(&self) -> &ArrayStructure {
        &self.structure
    }

    fn read_block(&self, block: &[usize]) -> Result<ArrayData, AdapterError> {
        let (offset, shape) = self.structure.block_extent(block)?;
        let bytes = self.read_box(&offset, &shape)?;
        ArrayData::new(self.structure.data_type.clone(), shape, bytes)
    }

    fn read(&self, sel: &ResolvedSlice) -> Result<ArrayData, AdapterError> {
        match tiled_adapters::selection_box(sel) {
            Some((offset, shape)) => {
                let bytes = self.read_box(&offset, &shape)?;
                ArrayData::new(self.structure.data_type.clone(), sel.out_shape(), bytes)
            }
            None => tiled_adapters::read_via_blocks(self, sel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn structure(chunks: Value) -> Value {
        json!({
            "data_type": {"endianness": "little", "kind": "i", "itemsize": 4, "dt_units": null},
            "chunks": chunks, "shape": [4, 6], "dims": null, "resizable": false,
        })
    }

    #[test]
    fn regular_chunks_only() {
        assert!(validate_structure(&structure(json!([[2, 2], [4, 2]]))).is_ok());
        assert!(validate_structure(&structure(json!([[1, 3], [6]]))).is_err());
        assert!(validate_structure(&structure(json!([[4], [5]]))).is_err());
    }

    #[test]
    fn create_and_write_blocks() {
        let tmp = tempfile::tempdir().unwrap();
        let st = validate_structure(&structure(json!([[2, 2], [4, 2]]))).unwrap();
        let dir = create_array(tmp.path(), "a/b c", &st).unwrap();
        assert!(dir.starts_with(tmp.path()));
        let whole: Vec<u8> = (0..24i32).flat_map(i32::to_le_bytes).collect();
        write(&dir, &st, None, &whole).unwrap();
        let block: Vec<u8> = [100i32, 101, 102, 103]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        write(&dir, &st, Some(&[1, 1]), &block).unwrap();
        assert!(write(&dir, &st, Some(&[1, 1]), &block[..4]).is_err());
        assert!(write(&dir, &st, Some(&[2, 0]), &block).is_err());
        let store = Arc::new(FilesystemStore::new(&dir).unwrap());
        let array = Array::open(store, "/").unwrap();
        let all = ArraySubset::new_with_start_shape(vec![0, 0], vec![4, 6]).unwrap();
        let got: Vec<i32> = array.retrieve_array_subset(&all).unwrap();
        assert_eq!(got[16..18], [100, 101]);
        assert_eq!(got[22..24], [102, 103]);
        assert_eq!(got[..16], (0..16).collect::<Vec<_>>()[..]);
    }
}
