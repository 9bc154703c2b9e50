//! Writable storage for arrays: each array node created through the write
//! API gets a Zarr v3 store (a directory, or an S3 prefix, whose root is
//! the array) under the server's writable [`Storage`], written with
//! `zarrs`. The catalog's data source points at it (`application/x-zarr`,
//! `{"path": "/"}`, management `writable`) and reads go through
//! [`WritableArray`], with the catalog's structure as the truth.

use std::sync::Arc;

use serde_json::{Value, json};
use tiled_adapters::{AdapterError, ArrayAdapter, ArrayData};
use tiled_model::dtype::{DataType, Endianness, Kind};
use tiled_model::slice::ResolvedSlice;
use tiled_model::structure::ArrayStructure;
use tiled_storage::Storage;
use zarrs::array::{Array, ArrayBuilder, ArrayBytes, ArraySubset, FillValueMetadata};
use zarrs::storage::{ReadableWritableListableStorage, ReadableWritableListableStorageTraits};

/// A Zarr store as this module uses it (local or S3).
pub type Store = ReadableWritableListableStorage;

/// The mimetype of the data sources made here.
pub const ZARR_MIMETYPE: &str = "application/x-zarr";

/// The `management` of data sources this server writes.
pub const WRITABLE: &str = "writable";

fn internal(what: &str, e: impl std::fmt::Display) -> AdapterError {
    AdapterError::Internal(format!("{what}: {e}"))
}

/// A local Zarr store at `dir` (reading stores of a catalog served without
/// its writable storage configured).
///
/// # Errors
/// I/O failures.
pub fn local_store(dir: &std::path::Path) -> Result<Store, AdapterError> {
    let store = zarrs::filesystem::FilesystemStore::new(dir)
        .map_err(|e| internal(&dir.display().to_string(), e))?;
    Ok(Arc::new(store))
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

/// Create an empty (zero-filled) Zarr v3 array for `st` under a new
/// unique name in `storage`, and return that name.
///
/// # Errors
/// [`AdapterError::BadRequest`] for an unsupported dtype; I/O failures.
pub fn create_array(
    storage: &Storage,
    key: &str,
    st: &ArrayStructure,
) -> Result<String, AdapterError> {
    let (data_type, fill) = zarr_data_type(&st.data_type)?;
    let shape: Vec<u64> = st.shape.iter().map(|&n| n as u64).collect();
    let chunk_shape = chunk_shape(st);
    let rel = storage.unique_name(key, ".zarr");
    let made = (|| {
        let store = storage.zarr_store(&rel).map_err(|e| internal(&rel, e))?;
        let fill: FillValueMetadata =
            serde_json::from_value(fill).map_err(|e| internal(&rel, e))?;
        let mut builder = ArrayBuilder::new(shape, chunk_shape, data_type.as_str(), fill);
        if let Some(dims) = &st.dims {
            builder.dimension_names(Some(dims.iter().map(String::as_str)));
        }
        let array = builder.build(store, "/").map_err(|e| internal(&rel, e))?;
        array.store_metadata().map_err(|e| internal(&rel, e))
    })();
    match made {
        Ok(()) => Ok(rel),
        Err(e) => {
            remove(storage, &rel);
            Err(e)
        }
    }
}

/// Remove what this storage made under `rel` (best effort; a missing one
/// is fine).
pub fn remove(storage: &Storage, rel: &str) {
    if let Err(e) = storage.delete_prefix(rel) {
        tracing::warn!("could not remove {rel}: {e}");
    }
}

fn open_array(
    store: &Store,
    label: &str,
) -> Result<Array<dyn ReadableWritableListableStorageTraits>, AdapterError> {
    Array::open(store.clone(), "/").map_err(|e| internal(label, e))
}

/// Write C-order `bytes` into the array in `store`: the whole array
/// (`block` None) or one block of `st`'s chunks.
///
/// # Errors
/// [`AdapterError::BadRequest`] for a bad block or a length that does not
/// match; I/O failures.
pub fn write(
    store: &Store,
    label: &str,
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
    let array = open_array(store, label)?;
    if array.shape().len() != shape.len() {
        return Err(internal(
            label,
            "the stored array does not match its structure",
        ));
    }
    let subset = ArraySubset::new_with_start_shape(
        offset.iter().map(|&o| o as u64).collect(),
        shape.iter().map(|&n| n as u64).collect(),
    )
    .map_err(|e| internal(label, e))?;
    array
        .store_array_subset(&subset, ArrayBytes::from(bytes))
        .map_err(|e| internal(label, e))
}

/// The regular chunk shape of `st` (its first chunk along each axis; at
/// least 1, as Zarr requires).
fn chunk_shape(st: &ArrayStructure) -> Vec<u64> {
    st.chunks
        .iter()
        .map(|c| c.first().copied().unwrap_or(1).max(1) as u64)
        .collect()
}

/// Most chunks an array written here may have (its structure lists them
/// all).
const MAX_CHUNKS: usize = 1_000_000;

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

/// Write `bytes` (C order, of `shape`) at `offset` into the array in
/// `store`, growing it when the region passes its end and `extend` is set,
/// and return the array's new structure (spec §8.2, `PATCH array/full`).
///
/// # Errors
/// [`AdapterError::Conflict`] when the region passes the end without
/// `extend`; [`AdapterError::BadRequest`] for a bad offset, shape or length.
pub fn patch(
    store: &Store,
    label: &str,
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
    // The structure lists every chunk: bound their number before any of
    // it is allocated (an extend far past the end would otherwise ask for
    // billions of entries).
    let chunk_count = new_shape
        .iter()
        .zip(&chunk)
        .map(|(&n, &c)| n.div_ceil(usize::try_from(c).unwrap_or(usize::MAX).max(1)))
        .try_fold(1usize, |acc, k| acc.checked_mul(k.max(1)))
        .filter(|&k| k <= MAX_CHUNKS);
    if chunk_count.is_none() {
        return Err(AdapterError::BadRequest(format!(
            "extending to shape {new_shape:?} would make more than {MAX_CHUNKS} chunks"
        )));
    }
    let new = ArrayStructure {
        chunks: regular_chunks(&new_shape, &chunk),
        shape: new_shape.clone(),
        ..st.clone()
    };
    let mut array = open_array(store, label)?;
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
            .map_err(|e| internal(label, e))?;
        array.store_metadata().map_err(|e| internal(label, e))?;
    }
    if expected > 0 {
        let subset = ArraySubset::new_with_start_shape(
            start.iter().map(|&o| o as u64).collect(),
            shape.iter().map(|&n| n as u64).collect(),
        )
        .map_err(|e| internal(label, e))?;
        array
            .store_array_subset(&subset, ArrayBytes::from(bytes))
            .map_err(|e| internal(label, e))?;
    }
    Ok(new)
}

/// An array this server wrote, read with the catalog's structure (which
/// is the truth: the store may be larger after an interrupted extend, and
/// holds raw bits for types Zarr has no name for).
pub struct WritableArray {
    array: Array<dyn ReadableWritableListableStorageTraits>,
    structure: ArrayStructure,
    label: String,
}

impl WritableArray {
    /// Open `store` (named `label` in messages) for an array of structure
    /// `st`.
    ///
    /// # Errors
    /// [`AdapterError::Internal`] if the store is missing or does not hold
    /// at least `st`'s shape.
    pub fn open(store: &Store, label: &str, st: ArrayStructure) -> Result<Self, AdapterError> {
        let array = open_array(store, label)?;
        let fits = array.shape().len() == st.shape.len()
            && array
                .shape()
                .iter()
                .zip(&st.shape)
                .all(|(&stored, &n)| stored >= n as u64);
        if !fits || array.data_type().fixed_size() != Some(st.data_type.itemsize()) {
            return Err(internal(
                label,
                "the stored array does not match the catalog's structure",
            ));
        }
        Ok(WritableArray {
            array,
            structure: st,
            label: label.to_string(),
        })
    }

    fn read_box(&self, offset: &[usize], shape: &[usize]) -> Result<Vec<u8>, AdapterError> {
        read_box(&self.array, offset, shape).map_err(|e| internal(&self.label, e))
    }
}

/// The C-order bytes of the box at `offset` with `shape` of a fixed-size
/// array (zarrs decodes only the chunks the box touches). Shared by the
/// catalog's writable arrays and `tiled-files`' Zarr stores.
///
/// # Errors
/// zarrs' message: a box outside the array, an unreadable or undecodable
/// chunk, a variable-size data type.
pub fn read_box<S: ?Sized + zarrs::storage::ReadableStorageTraits + 'static>(
    array: &Array<S>,
    offset: &[usize],
    shape: &[usize],
) -> Result<Vec<u8>, String> {
    if shape.contains(&0) {
        return Ok(Vec::new());
    }
    let subset = ArraySubset::new_with_start_shape(
        offset.iter().map(|&o| o as u64).collect(),
        shape.iter().map(|&n| n as u64).collect(),
    )
    .map_err(|e| e.to_string())?;
    let bytes: ArrayBytes<'static> = array
        .retrieve_array_subset(&subset)
        .map_err(|e| e.to_string())?;
    Ok(bytes.into_fixed().map_err(|e| e.to_string())?.into_owned())
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
        let storage = Storage::parse(tmp.path().to_str().unwrap()).unwrap();
        let st = validate_structure(&structure(json!([[2, 2], [4, 2]]))).unwrap();
        let rel = create_array(&storage, "a/b c", &st).unwrap();
        let store = storage.zarr_store(&rel).unwrap();
        let whole: Vec<u8> = (0..24i32).flat_map(i32::to_le_bytes).collect();
        write(&store, &rel, &st, None, &whole).unwrap();
        let block: Vec<u8> = [100i32, 101, 102, 103]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        write(&store, &rel, &st, Some(&[1, 1]), &block).unwrap();
        assert!(write(&store, &rel, &st, Some(&[1, 1]), &block[..4]).is_err());
        assert!(write(&store, &rel, &st, Some(&[2, 0]), &block).is_err());
        let array = Array::open(store.clone(), "/").unwrap();
        let all = ArraySubset::new_with_start_shape(vec![0, 0], vec![4, 6]).unwrap();
        let got: Vec<i32> = array.retrieve_array_subset(&all).unwrap();
        assert_eq!(got[16..18], [100, 101]);
        assert_eq!(got[22..24], [102, 103]);
        assert_eq!(got[..16], (0..16).collect::<Vec<_>>()[..]);
        // Grow by one row; without extend the same patch is a conflict.
        let row: Vec<u8> = (0..6i32).flat_map(|v| (v * 10).to_le_bytes()).collect();
        assert!(matches!(
            patch(&store, &rel, &st, &[4], &[1, 6], false, &row),
            Err(AdapterError::Conflict(_))
        ));
        let grown = patch(&store, &rel, &st, &[4], &[1, 6], true, &row).unwrap();
        assert_eq!(grown.shape, vec![5, 6]);
        assert_eq!(grown.chunks, vec![vec![2, 2, 1], vec![4, 2]]);
        let a = WritableArray::open(&store, &rel, grown).unwrap();
        let last = a.read_block(&[2, 0]).unwrap();
        assert_eq!(last.shape, vec![1, 4]);
        remove(&storage, &rel);
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
