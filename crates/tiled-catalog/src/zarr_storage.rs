//! Writable storage for arrays: each array node created through the write
//! API gets a Zarr v3 store (a directory whose root is the array) under the
//! server's `--writable-storage` directory, written with `zarrs`. The
//! catalog's data source points at that directory (`application/x-zarr`,
//! `{"path": "/"}`), so reads go through the ordinary Zarr opener.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tiled_adapters::AdapterError;
use tiled_model::dtype::{DataType, Endianness, Kind};
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

/// The Zarr v3 name of a Tiled data type this storage can hold.
fn zarr_data_type(dtype: &DataType) -> Result<&'static str, AdapterError> {
    let unsupported = |what: String| {
        AdapterError::BadRequest(format!(
            "writing arrays of {what} is not supported yet; use a numeric or boolean dtype"
        ))
    };
    let DataType::Builtin(b) = dtype else {
        return Err(unsupported("structured dtypes".into()));
    };
    if b.endianness == Endianness::Big && b.itemsize > 1 {
        return Err(AdapterError::BadRequest(
            "big-endian dtypes are not supported yet; convert the array to little-endian \
             (e.g. arr.astype(arr.dtype.newbyteorder('<'))) before writing"
                .into(),
        ));
    }
    let name = match (b.kind, b.itemsize) {
        (Kind::Bool, 1) => "bool",
        (Kind::Int, 1) => "int8",
        (Kind::Int, 2) => "int16",
        (Kind::Int, 4) => "int32",
        (Kind::Int, 8) => "int64",
        (Kind::UInt, 1) => "uint8",
        (Kind::UInt, 2) => "uint16",
        (Kind::UInt, 4) => "uint32",
        (Kind::UInt, 8) => "uint64",
        (Kind::Float, 4) => "float32",
        (Kind::Float, 8) => "float64",
        (Kind::Complex, 8) => "complex64",
        (Kind::Complex, 16) => "complex128",
        (kind, size) => return Err(unsupported(format!("kind {kind:?} with {size} bytes"))),
    };
    Ok(name)
}

/// A new directory `<storage>/<key-derived prefix><random>.zarr`.
fn unique_dir(storage: &Path, key: &str) -> Result<PathBuf, AdapterError> {
    std::fs::create_dir_all(storage).map_err(|e| internal(storage, e))?;
    let prefix: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .suffix(".zarr")
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
    let data_type = zarr_data_type(&st.data_type)?;
    let shape: Vec<u64> = st.shape.iter().map(|&n| n as u64).collect();
    let chunk_shape: Vec<u64> = st
        .chunks
        .iter()
        .map(|c| c.first().copied().unwrap_or(1).max(1) as u64)
        .collect();
    let dir = unique_dir(storage, key)?;
    let made = (|| {
        let store = Arc::new(FilesystemStore::new(&dir).map_err(|e| internal(&dir, e))?);
        let fill = match data_type {
            "bool" => json!(false),
            "float32" | "float64" => json!(0.0),
            "complex64" | "complex128" => json!([0.0, 0.0]),
            _ => json!(0),
        };
        let fill: FillValueMetadata =
            serde_json::from_value(fill).map_err(|e| internal(&dir, e))?;
        let mut builder = ArrayBuilder::new(shape, chunk_shape, data_type, fill);
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

/// Remove a directory [`create_array`] made (best effort).
pub fn remove_array(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!("could not remove {}: {e}", dir.display());
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
