//! Zarr v2 and v3 stores (directories), read with `zarrs`.
//!
//! Mirrors upstream Tiled's Zarr adapter: a group is a container whose
//! metadata are its attributes and whose children are its arrays and
//! subgroups (sorted by name); an array is an array node whose metadata are
//! its attributes and whose data source parameters name its path inside the
//! store (`{"path": "/sub/arr"}`, `"/"` when the store itself is an array).
//!
//! Blocks are the array's chunks (for sharded arrays, the inner chunks,
//! which zarrs reads without decoding the rest of the shard), clipped to the
//! shape. Elements come out of zarrs in this machine's byte order, which is
//! what the structure declares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tiled_adapters::{AdapterError, ArrayAdapter, ArrayData, NodeData};
use tiled_model::StructureFamily;
use tiled_model::dtype::{BuiltinDtype, DataType, Kind};
use tiled_model::slice::ResolvedSlice;
use tiled_model::structure::ArrayStructure;
use zarrs::array::data_type as dt;
use zarrs::array::{Array, ArrayMetadata, ArrayShardedExt, ChunkGrid};
use zarrs::filesystem::FilesystemStore;
use zarrs::metadata::GroupMetadata;
use zarrs::node::{Node, NodeMetadata};

use crate::{Described, FileError, FileFormat, internal};

/// Zarr v2 and v3 stores (directories).
pub struct ZarrFormat;

type Store = FilesystemStore;

fn open_store(path: &Path) -> Result<Arc<Store>, String> {
    if !path.is_dir() {
        return Err("a Zarr store must be a directory".into());
    }
    FilesystemStore::new(path)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The Tiled data type of a zarrs data type. Elements are decoded in native
/// byte order, so multi-byte types are declared native.
fn tiled_dtype(data_type: &zarrs::array::DataType) -> Result<DataType, String> {
    use Kind::*;
    let builtin = |kind: Kind, size: usize| Ok(DataType::Builtin(BuiltinDtype::new(kind, size)));
    let time = |kind: Kind, unit: &dt::NumpyTimeUnit, scale: u32| {
        let unit = serde_json::to_value(unit)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|u| u != "generic" && scale == 1)
            .ok_or_else(|| format!("unsupported time unit {unit:?} × {scale}"))?;
        let mut b = BuiltinDtype::new(kind, 8);
        b.dt_units = Some(format!("[{unit}]"));
        Ok(DataType::Builtin(b))
    };
    if data_type.is::<dt::BoolDataType>() {
        builtin(Bool, 1)
    } else if data_type.is::<dt::Int8DataType>() {
        builtin(Int, 1)
    } else if data_type.is::<dt::Int16DataType>() {
        builtin(Int, 2)
    } else if data_type.is::<dt::Int32DataType>() {
        builtin(Int, 4)
    } else if data_type.is::<dt::Int64DataType>() {
        builtin(Int, 8)
    } else if data_type.is::<dt::UInt8DataType>() {
        builtin(UInt, 1)
    } else if data_type.is::<dt::UInt16DataType>() {
        builtin(UInt, 2)
    } else if data_type.is::<dt::UInt32DataType>() {
        builtin(UInt, 4)
    } else if data_type.is::<dt::UInt64DataType>() {
        builtin(UInt, 8)
    } else if data_type.is::<dt::Float16DataType>() {
        builtin(Float, 2)
    } else if data_type.is::<dt::Float32DataType>() {
        builtin(Float, 4)
    } else if data_type.is::<dt::Float64DataType>() {
        builtin(Float, 8)
    } else if data_type.is::<dt::Complex64DataType>()
        || data_type.is::<dt::ComplexFloat32DataType>()
    {
        builtin(Complex, 8)
    } else if data_type.is::<dt::Complex128DataType>()
        || data_type.is::<dt::ComplexFloat64DataType>()
    {
        builtin(Complex, 16)
    } else if let Some(t) = data_type.downcast_ref::<dt::NumpyDateTime64DataType>() {
        time(Datetime, &t.unit, t.scale_factor.get())
    } else if let Some(t) = data_type.downcast_ref::<dt::NumpyTimeDelta64DataType>() {
        time(Timedelta, &t.unit, t.scale_factor.get())
    } else if data_type.is::<dt::FixedLengthUTF32DataType>() {
        match data_type.fixed_size() {
            Some(n) if n > 0 && n % 4 == 0 => builtin(Unicode, n),
            _ => Err("bad fixed-length UTF-32 size".into()),
        }
    } else if data_type.is::<dt::RawBitsDataType>() {
        match data_type.fixed_size() {
            Some(n) if n > 0 => builtin(Void, n),
            _ => Err("bad raw-bits size".into()),
        }
    } else {
        Err(format!("unsupported Zarr data type {data_type:?}"))
    }
}

/// The grid whose cells are the blocks: the inner chunks of a sharded array
/// (each read without decoding the rest of its shard), else the chunks.
fn block_grid(array: &Array<Store>) -> ChunkGrid {
    if array.is_sharded() && array.effective_subchunk_shape().is_some() {
        array.subchunk_grid()
    } else {
        array.chunk_grid().clone()
    }
}

/// The most chunk lengths (summed over the axes) a structure may list: the
/// structure travels whole in every metadata response.
const MAX_CHUNK_ENTRIES: u64 = 1 << 22;

/// Dask-style chunks: per axis, the lengths of the grid's cells clipped to
/// the array's shape.
fn dask_chunks(grid: &ChunkGrid, shape: &[u64]) -> Result<Vec<Vec<usize>>, String> {
    let grid_shape = grid.grid_shape().to_vec();
    if grid_shape.len() != shape.len() {
        return Err("the chunk grid does not match the array's dimensions".into());
    }
    let entries = grid_shape
        .iter()
        .fold(0u64, |acc, &n| acc.saturating_add(n));
    if entries > MAX_CHUNK_ENTRIES {
        return Err(format!(
            "a chunk grid of {grid_shape:?} chunks is too fine to serve"
        ));
    }
    let mut out = Vec::with_capacity(shape.len());
    for (axis, (&cells, &n)) in grid_shape.iter().zip(shape).enumerate() {
        if cells == 0 || n == 0 {
            out.push(vec![0]);
            continue;
        }
        let mut lengths = Vec::with_capacity(usize::try_from(cells).map_err(|e| e.to_string())?);
        for i in 0..cells {
            let mut idx = vec![0u64; shape.len()];
            idx[axis] = i;
            let subset = grid
                .subset(&idx)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("chunk {idx:?} has no defined extent"))?;
            let start = subset.start()[axis];
            let end = start.saturating_add(subset.shape()[axis]).min(n);
            if end <= start {
                return Err(format!("chunk {idx:?} lies outside the array"));
            }
            lengths.push(usize::try_from(end - start).map_err(|e| e.to_string())?);
        }
        out.push(lengths);
    }
    Ok(out)
}

fn array_structure(array: &Array<Store>) -> Result<ArrayStructure, String> {
    let dtype = tiled_dtype(array.data_type())?;
    if array.data_type().fixed_size() != Some(dtype.itemsize()) {
        return Err("the data type's size does not match its elements".into());
    }
    let shape = array
        .shape()
        .iter()
        .map(|&n| usize::try_from(n).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let chunks = dask_chunks(&block_grid(array), array.shape())?;
    let mut st = ArrayStructure::new(dtype, shape, chunks).map_err(|e| e.to_string())?;
    if let Some(names) = array.dimension_names()
        && names.len() == st.shape.len()
        && let Some(names) = names.iter().cloned().collect::<Option<Vec<String>>>()
    {
        st.dims = Some(names);
    }
    Ok(st)
}

fn described_array(array: &Array<Store>, node_path: &str) -> Result<Described, String> {
    let structure = array_structure(array)?;
    Ok(Described {
        family: StructureFamily::Array,
        structure: Some(serde_json::to_value(&structure).map_err(|e| e.to_string())?),
        metadata: array.attributes().clone(),
        specs: Vec::new(),
        parameters: Some(json!({ "path": node_path })),
        children: Vec::new(),
    })
}

fn group_attributes(metadata: &GroupMetadata) -> Map<String, Value> {
    match metadata {
        GroupMetadata::V3(m) => m.attributes.clone(),
        GroupMetadata::V2(m) => m.attributes.clone(),
    }
}

fn array_of(
    store: &Arc<Store>,
    path: &str,
    metadata: &ArrayMetadata,
) -> Result<Array<Store>, String> {
    Array::new_with_metadata(store.clone(), path, metadata.clone()).map_err(|e| e.to_string())
}

fn describe_node(store: &Arc<Store>, node: &Node) -> Result<Described, String> {
    let path = node.path().as_str();
    match node.metadata() {
        NodeMetadata::Array(m) => described_array(&array_of(store, path, m)?, path),
        NodeMetadata::Group(m) => {
            let mut d = Described::container(group_attributes(m));
            let mut children: Vec<&Node> = node.children().iter().collect();
            children.sort_by_key(|c| c.name().as_str().to_string());
            for child in children {
                let name = child.name().as_str().to_string();
                match describe_node(store, child) {
                    Ok(c) => d.children.push((name, c)),
                    Err(e) => {
                        tracing::warn!("skipping {} in a Zarr store: {e}", child.path().as_str())
                    }
                }
            }
            Ok(d)
        }
    }
}

/// One Zarr array, read chunk by chunk.
struct ZarrArray {
    array: Array<Store>,
    structure: ArrayStructure,
    /// The store directory and the array's path in it, for messages.
    path: PathBuf,
}

impl ZarrArray {
    /// The C-order bytes of the box at `offset` with `shape`.
    fn read_box(&self, offset: &[usize], shape: &[usize]) -> Result<Vec<u8>, AdapterError> {
        tiled_catalog::zarr_storage::read_box(&self.array, offset, shape)
            .map_err(|e| internal(&self.path, e))
    }
}

impl ArrayAdapter for ZarrArray {
    fn structure(&self) -> &ArrayStructure {
        &self.structure
    }

    fn read_block(&self, block: &[usize]) -> Result<ArrayData, AdapterError> {
        let (offset, shape) = self.structure.block_extent(block)?;
        let bytes = self.read_box(&offset, &shape)?;
        ArrayData::new(self.structure.data_type.clone(), shape, bytes)
    }

    /// Boxes are read as one subset (zarrs decodes only the chunks they
    /// touch); strided selections go through the blocks.
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

fn node_path(parameters: &Value) -> Result<String, AdapterError> {
    match parameters.get("path") {
        None | Some(Value::Null) => Ok("/".into()),
        Some(Value::String(p)) if p.is_empty() => Ok("/".into()),
        Some(Value::String(p)) if p.starts_with('/') => Ok(p.clone()),
        Some(Value::String(p)) => Ok(format!("/{p}")),
        Some(other) => Err(AdapterError::Internal(format!(
            "a Zarr path must be a string, not {other}"
        ))),
    }
}

impl FileFormat for ZarrFormat {
    fn mimetype(&self) -> &'static str {
        "application/x-zarr"
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        let store = open_store(path).map_err(|e| FileError::unreadable(path, e))?;
        let node = Node::open(&store, "/").map_err(|e| FileError::unreadable(path, e))?;
        describe_node(&store, &node).map_err(|e| FileError::unreadable(path, e))
    }

    fn open(
        &self,
        path: &Path,
        parameters: &Value,
        family: StructureFamily,
    ) -> Result<NodeData, AdapterError> {
        if family != StructureFamily::Array {
            return Err(internal(
                path,
                format!("a Zarr node of family {family:?} has no data of its own"),
            ));
        }
        let node_path = node_path(parameters)?;
        let store = open_store(path).map_err(|e| internal(path, e))?;
        let shown = path.join(node_path.trim_start_matches('/'));
        let array = Array::open(store, &node_path).map_err(|e| internal(&shown, e))?;
        let structure = array_structure(&array).map_err(|e| internal(&shown, e))?;
        Ok(NodeData::Array(Arc::new(ZarrArray {
            array,
            structure,
            path: shown,
        })))
    }
}
