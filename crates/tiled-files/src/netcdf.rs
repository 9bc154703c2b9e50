//! NetCDF files (classic CDF-1/2/5 and NETCDF4) as xarray-style datasets,
//! read with the pure-Rust `netcdf-reader`.
//!
//! Mirrors upstream Tiled, which opens the file with
//! `xarray.open_dataset(path, decode_times=False)` and serves it through its
//! `DatasetAdapter`: the file is a container with the `xarray_dataset` spec
//! and `{"attrs": <global attributes>}` metadata; each variable of the root
//! group is an array child with the `xarray_coord` or `xarray_data_var` spec,
//! `{"attrs": <variable attributes>}` metadata and its dimension names as
//! `dims`.
//!
//! Values are decoded as xarray's mask-and-scale does (`_FillValue` and
//! `missing_value` to NaN, `scale_factor`/`add_offset`, its float-type
//! rules; those attributes leave `attrs` as xarray moves them to
//! `encoding`). Not applied yet: `_Unsigned` and char-array to string
//! (char and string variables are not served).
//!
//! Blocks follow the file's chunking for chunked NETCDF4 variables (chunks
//! are grouped only when the grid would be very large); contiguous
//! variables, and every classic variable, are split along their leading axes
//! into blocks of at most about 16 MiB. A block, or any slice, is read with
//! one (strided) hyperslab read.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netcdf_reader::{
    DynStorage, FileStorage, NcAttrValue, NcAttribute, NcFile, NcFormat, NcMetadataMode,
    NcOpenOptions, NcSliceInfo, NcSliceInfoElem, NcType, NcVariable,
};
use serde_json::{Map, Value, json};
use tiled_adapters::{AdapterError, ArrayAdapter, ArrayData, NodeData};
use tiled_model::{ArrayStructure, DataType, DimSelection, ResolvedSlice, Spec, StructureFamily};

use crate::{Described, FileError, FileFormat, internal};

/// Largest block the contiguous split aims for.
const TARGET_BLOCK_BYTES: usize = 16 << 20;

/// A chunk grid with more blocks than this has its file chunks grouped
/// (whole chunks per block) so the structure stays small.
const MAX_BLOCKS: usize = 10_000;

/// Decoded-chunk cache of each open file (the reader's default is 64 MiB,
/// and the opener keeps many variables open).
const CHUNK_CACHE_BYTES: usize = 8 << 20;

/// NetCDF files as xarray-style datasets.
pub struct NetcdfFormat;

/// The numeric element types served; each is read with its Rust type and
/// written little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl Kind {
    fn of(t: &NcType) -> Option<Kind> {
        Some(match t {
            NcType::Byte => Kind::I8,
            NcType::UByte => Kind::U8,
            NcType::Short => Kind::I16,
            NcType::UShort => Kind::U16,
            NcType::Int => Kind::I32,
            NcType::UInt => Kind::U32,
            NcType::Int64 => Kind::I64,
            NcType::UInt64 => Kind::U64,
            NcType::Float => Kind::F32,
            NcType::Double => Kind::F64,
            _ => return None,
        })
    }

    fn numpy(self) -> &'static str {
        match self {
            Kind::I8 => "|i1",
            Kind::U8 => "|u1",
            Kind::I16 => "<i2",
            Kind::U16 => "<u2",
            Kind::I32 => "<i4",
            Kind::U32 => "<u4",
            Kind::I64 => "<i8",
            Kind::U64 => "<u8",
            Kind::F32 => "<f4",
            Kind::F64 => "<f8",
        }
    }

    fn itemsize(self) -> usize {
        match self {
            Kind::I8 | Kind::U8 => 1,
            Kind::I16 | Kind::U16 => 2,
            Kind::I32 | Kind::U32 | Kind::F32 => 4,
            Kind::I64 | Kind::U64 | Kind::F64 => 8,
        }
    }

    fn dtype(self) -> Result<DataType, String> {
        DataType::from_numpy_str(self.numpy()).map_err(|e| e.to_string())
    }
}

/// Run `f`, turning a panic inside the NetCDF reader into an error message.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    crate::catch_panic(f).unwrap_or_else(|message| Err(format!("NetCDF reader failed: {message}")))
}

/// An opened file: the NetCDF view and, for NETCDF4, the HDF5 view of the
/// same storage (for chunk shapes, which the NetCDF view does not expose).
struct Handle {
    file: NcFile,
    h5: Option<hdf5_reader::Hdf5File>,
}

impl Handle {
    /// Open `path` with positioned reads (no memory map: a file truncated
    /// while open must give an error, not a SIGBUS).
    ///
    /// NETCDF4 metadata is first read strictly; a file whose dimension
    /// metadata netCDF-C would not have written (but that is still HDF5) is
    /// read again in the reader's lossy mode, with a warning.
    fn open(path: &Path) -> Result<Handle, String> {
        guarded(|| {
            let storage: DynStorage = Arc::new(FileStorage::open(path).map_err(|e| e.to_string())?);
            let open = |mode: NcMetadataMode| -> Result<NcFile, String> {
                let options = NcOpenOptions {
                    chunk_cache_bytes: CHUNK_CACHE_BYTES,
                    metadata_mode: mode,
                    ..NcOpenOptions::default()
                };
                let file = NcFile::from_storage_with_options(storage.clone(), options)
                    .map_err(|e| e.to_string())?;
                // The metadata is built lazily: build it now, to fail here.
                file.root_group().map_err(|e| e.to_string())?;
                Ok(file)
            };
            let file = match open(NcMetadataMode::Strict) {
                Ok(file) => file,
                Err(strict) => match open(NcMetadataMode::Lossy) {
                    Ok(file) if is_nc4(&file) => {
                        tracing::warn!(
                            "{}: {strict}; reading its NETCDF4 metadata leniently",
                            path.display()
                        );
                        file
                    }
                    _ => return Err(strict),
                },
            };
            let h5 = if is_nc4(&file) {
                match hdf5_reader::Hdf5File::from_storage(storage) {
                    Ok(h5) => Some(h5),
                    Err(e) => {
                        tracing::warn!(
                            "{}: cannot read the HDF5 layout ({e}); chunking is not followed",
                            path.display()
                        );
                        None
                    }
                }
            } else {
                None
            };
            Ok(Handle { file, h5 })
        })
    }

    /// The file's chunk shape of a variable, if it is chunked (NETCDF4).
    fn file_chunks(&self, var: &NcVariable) -> Option<Vec<usize>> {
        let h5 = self.h5.as_ref()?;
        let chunks = guarded(|| {
            let ds = h5.dataset(&var.name).map_err(|e| e.to_string())?;
            Ok(ds.chunks())
        })
        .ok()
        .flatten()?;
        let chunks: Vec<usize> = chunks.into_iter().map(|c| c as usize).collect();
        (chunks.len() == var.dimensions.len() && chunks.iter().all(|&c| c > 0)).then_some(chunks)
    }
}

fn is_nc4(file: &NcFile) -> bool {
    matches!(file.format(), NcFormat::Nc4 | NcFormat::Nc4Classic)
}

// ---------------------------------------------------------------- chunking

fn ceil_div(n: usize, c: usize) -> usize {
    n.div_ceil(c.max(1))
}

/// Blocks for a variable stored contiguously: whole trailing axes, the
/// first axis that does not fit split so a block is at most about
/// [`TARGET_BLOCK_BYTES`], single positions on the axes before it.
fn contiguous_chunks(shape: &[usize], itemsize: usize) -> Vec<Vec<usize>> {
    let mut chunk = shape.to_vec();
    for axis in 0..shape.len() {
        let inner = shape[axis + 1..]
            .iter()
            .fold(itemsize, |acc, &n| acc.saturating_mul(n));
        if inner.saturating_mul(shape[axis]) <= TARGET_BLOCK_BYTES {
            break;
        }
        if inner <= TARGET_BLOCK_BYTES {
            chunk[axis] = (TARGET_BLOCK_BYTES / inner.max(1)).max(1);
            break;
        }
        chunk[axis] = 1;
    }
    ArrayStructure::regular_chunks(shape, &chunk)
}

/// Blocks for a chunked variable: the file's chunks, grouped (doubling
/// along the leading axes, so a block is always whole file chunks) only
/// when the grid would have more than [`MAX_BLOCKS`] blocks.
fn file_chunks(shape: &[usize], file: &[usize], itemsize: usize) -> Vec<Vec<usize>> {
    let mut chunk: Vec<usize> = file
        .iter()
        .zip(shape)
        .map(|(&c, &n)| c.min(n.max(1)))
        .collect();
    let blocks = |c: &[usize]| {
        shape
            .iter()
            .zip(c)
            .fold(1usize, |acc, (&n, &c)| acc.saturating_mul(ceil_div(n, c)))
    };
    let bytes = |c: &[usize]| c.iter().fold(itemsize, |acc, &c| acc.saturating_mul(c));
    for axis in 0..shape.len() {
        while blocks(&chunk) > MAX_BLOCKS
            && chunk[axis] < shape[axis]
            && bytes(&chunk).saturating_mul(2) <= TARGET_BLOCK_BYTES
        {
            chunk[axis] = (chunk[axis] * 2).min(shape[axis]);
        }
    }
    ArrayStructure::regular_chunks(shape, &chunk)
}

/// The structure of a variable, or `None` (with a warning) for a type this
/// format does not serve.
fn variable_structure(
    path: &Path,
    handle: &Handle,
    var: &NcVariable,
) -> Result<Option<(ArrayStructure, Kind)>, String> {
    let Some(kind) = Kind::of(&var.dtype) else {
        tracing::warn!(
            "{}: skipping variable {:?}: its type {:?} is not served (only numeric types are)",
            path.display(),
            var.name,
            var.dtype
        );
        return Ok(None);
    };
    let shape = var
        .dimensions
        .iter()
        .map(|d| usize::try_from(d.size).map_err(|_| format!("dimension {:?} is too long", d.name)))
        .collect::<Result<Vec<_>, _>>()?;
    if shape
        .iter()
        .try_fold(kind.itemsize(), |acc, &n| acc.checked_mul(n))
        .is_none()
    {
        return Err(format!("variable {:?} is too large", var.name));
    }
    let chunks = match handle.file_chunks(var) {
        Some(c) => file_chunks(&shape, &c, kind.itemsize()),
        None => contiguous_chunks(&shape, kind.itemsize()),
    };
    let structure = ArrayStructure::new(kind.dtype()?, shape, chunks)
        .map_err(|e| e.to_string())?
        .with_dims(var.dimensions.iter().map(|d| d.name.clone()).collect());
    Ok(Some((structure, kind)))
}

// ---------------------------------------------------------------- attributes

fn f64_json(x: f64) -> Value {
    // JSON has no NaN/inf; upstream's JSON encoder writes them as null too.
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

fn f32_json(x: f32) -> Value {
    // The shortest decimal that reads back as this f32 (0.1, not
    // 0.10000000149011612), as numpy prints a float32.
    if x.is_finite() {
        x.to_string().parse::<f64>().map_or(Value::Null, f64_json)
    } else {
        Value::Null
    }
}

/// One value for a length-1 attribute (as netCDF4-python returns it), a list
/// otherwise.
fn numbers<T: Copy>(values: &[T], f: impl Fn(T) -> Value) -> Value {
    match values {
        [one] => f(*one),
        _ => Value::Array(values.iter().map(|x| f(*x)).collect()),
    }
}

fn attr_value(value: &NcAttrValue) -> Option<Value> {
    Some(match value {
        NcAttrValue::Bytes(v) => numbers(v, |x| json!(x)),
        NcAttrValue::UBytes(v) => numbers(v, |x| json!(x)),
        NcAttrValue::Shorts(v) => numbers(v, |x| json!(x)),
        NcAttrValue::UShorts(v) => numbers(v, |x| json!(x)),
        NcAttrValue::Ints(v) => numbers(v, |x| json!(x)),
        NcAttrValue::UInts(v) => numbers(v, |x| json!(x)),
        NcAttrValue::Int64s(v) => numbers(v, |x| json!(x)),
        NcAttrValue::UInt64s(v) => numbers(v, |x| json!(x)),
        NcAttrValue::Floats(v) => numbers(v, f32_json),
        NcAttrValue::Doubles(v) => numbers(v, f64_json),
        NcAttrValue::Chars(s) => Value::String(s.trim_end_matches('\0').to_string()),
        NcAttrValue::Strings(v) => match v.as_slice() {
            [one] => Value::String(one.clone()),
            _ => Value::Array(v.iter().cloned().map(Value::String).collect()),
        },
        NcAttrValue::UserDefined { .. } => return None,
    })
}

/// Attributes as JSON, in file order; those that JSON cannot carry are
/// skipped with a warning.
fn attrs_json(path: &Path, owner: &str, attrs: &[NcAttribute]) -> Map<String, Value> {
    let mut out = Map::new();
    for a in attrs {
        match attr_value(&a.value) {
            Some(v) => {
                out.insert(a.name.clone(), v);
            }
            None => tracing::warn!(
                "{}: {owner}: skipping attribute {:?}: user-defined types are not served",
                path.display(),
                a.name
            ),
        }
    }
    out
}

/// Names of the variables xarray makes coordinates: dimension coordinates
/// (named like one of their dimensions) and those listed in a
/// `coordinates` attribute (of a variable or of the file).
fn coordinate_names(vars: &[NcVariable], global: &[NcAttribute]) -> HashSet<String> {
    let mut out: HashSet<String> = vars
        .iter()
        .filter(|v| v.dimensions.iter().any(|d| d.name == v.name))
        .map(|v| v.name.clone())
        .collect();
    let listed = vars
        .iter()
        .flat_map(|v| v.attributes.iter())
        .chain(global)
        .filter(|a| a.name == "coordinates")
        .filter_map(|a| a.value.as_string());
    let known: HashSet<&str> = vars.iter().map(|v| v.name.as_str()).collect();
    for list in listed {
        out.extend(
            list.split_whitespace()
                .filter(|n| known.contains(n))
                .map(str::to_string),
        );
    }
    out
}

fn describe(path: &Path, handle: &Handle) -> Result<Described, String> {
    let root = guarded(|| handle.file.root_group().map_err(|e| e.to_string()))?;
    if !root.groups.is_empty() {
        tracing::warn!(
            "{}: only the root group is served (as xarray.open_dataset does); skipping groups {:?}",
            path.display(),
            root.groups.iter().map(|g| &g.name).collect::<Vec<_>>()
        );
    }
    let coords = coordinate_names(&root.variables, &root.attributes);
    let mut container = Described::container(Map::from_iter([(
        "attrs".to_string(),
        Value::Object(attrs_json(path, "global attributes", &root.attributes)),
    )]));
    container.specs = vec![Spec::new("xarray_dataset")];
    for var in &root.variables {
        let (structure, kind) = match variable_structure(path, handle, var) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!("{}: skipping variable {:?}: {e}", path.display(), var.name);
                continue;
            }
        };
        let spec = if coords.contains(&var.name) {
            "xarray_coord"
        } else {
            "xarray_data_var"
        };
        let mut attrs = attrs_json(path, &format!("variable {:?}", var.name), &var.attributes);
        let mut structure = structure;
        if let Some(cf) = CfDecode::of(&var.attributes, kind) {
            structure.data_type = cf_dtype(&cf)?;
            for name in CF_ATTRS {
                attrs.remove(name);
            }
        }
        container.children.push((
            var.name.clone(),
            Described {
                family: StructureFamily::Array,
                structure: Some(serde_json::to_value(&structure).map_err(|e| e.to_string())?),
                metadata: Map::from_iter([("attrs".to_string(), Value::Object(attrs))]),
                specs: vec![Spec::new(spec)],
                parameters: Some(json!({ "variable": var.name })),
                children: Vec::new(),
            },
        ));
    }
    Ok(container)
}

// ---------------------------------------------------------------- reading

/// One numeric variable of an open file.
struct NetcdfArray {
    file: NcFile,
    path: PathBuf,
    name: String,
    kind: Kind,
    structure: ArrayStructure,
    /// xarray's mask-and-scale decoding, when the variable asks for it.
    cf: Option<CfDecode>,
    /// Classic files are read straight from byte ranges, so any region
    /// costs what it holds.
    classic: bool,
}

impl NetcdfArray {
    /// The C-order little-endian bytes of the hyperslab with these
    /// per-axis starts, counts and (positive) steps.
    fn read_hyperslab(
        &self,
        start: &[usize],
        count: &[usize],
        step: &[usize],
    ) -> Result<Vec<u8>, AdapterError> {
        let n: usize = count.iter().product();
        if n == 0 {
            return Ok(Vec::new());
        }
        let selection = NcSliceInfo {
            selections: start
                .iter()
                .zip(count)
                .zip(step)
                .map(|((&o, &c), &s)| NcSliceInfoElem::Slice {
                    start: o as u64,
                    end: (o + s * (c - 1) + 1) as u64,
                    step: s as u64,
                })
                .collect(),
        };
        let file = &self.file;
        let name = self.name.as_str();
        macro_rules! read_as {
            ($t:ty) => {{
                let a = if count.is_empty() {
                    file.read_variable::<$t>(name)
                } else {
                    file.read_variable_slice::<$t>(name, &selection)
                }
                .map_err(|e| e.to_string())?;
                if a.shape() != count {
                    return Err(format!(
                        "the reader returned shape {:?} for a hyperslab of {count:?}",
                        a.shape()
                    ));
                }
                let mut out = Vec::with_capacity(n * std::mem::size_of::<$t>());
                for x in a.iter() {
                    out.extend_from_slice(&x.to_le_bytes());
                }
                Ok(out)
            }};
        }
        guarded(|| match self.kind {
            Kind::I8 => read_as!(i8),
            Kind::U8 => read_as!(u8),
            Kind::I16 => read_as!(i16),
            Kind::U16 => read_as!(u16),
            Kind::I32 => read_as!(i32),
            Kind::U32 => read_as!(u32),
            Kind::I64 => read_as!(i64),
            Kind::U64 => read_as!(u64),
            Kind::F32 => read_as!(f32),
            Kind::F64 => read_as!(f64),
        })
        .map_err(|e| internal(&self.path, format!("{}: {e}", self.name)))
    }
}

impl NetcdfArray {
    fn decoded(&self, stored: Vec<u8>) -> Vec<u8> {
        match &self.cf {
            Some(cf) => cf.apply(self.kind, &stored),
            None => stored,
        }
    }
}

// ---------------------------------------------------------------- CF decoding

/// The attributes xarray's mask-and-scale decoding consumes; they move out
/// of `attrs` (into xarray's `encoding`) when it applies.
const CF_ATTRS: [&str; 4] = ["_FillValue", "missing_value", "scale_factor", "add_offset"];

/// What `xarray.open_dataset` (`mask_and_scale=True`, as upstream opens
/// NetCDF files) does to a numeric variable: stored values equal to
/// `_FillValue` or `missing_value` become NaN, then `value * scale_factor +
/// add_offset`, in a float type chosen by xarray's rules.
#[derive(Clone, Debug)]
struct CfDecode {
    missing: Vec<f64>,
    scale: Option<f64>,
    offset: Option<f64>,
    /// float64 output (else float32).
    wide: bool,
}

fn attr_f64s(a: &NcAttribute) -> Option<(Vec<f64>, &'static str)> {
    Some(match &a.value {
        NcAttrValue::Bytes(v) => (v.iter().map(|x| f64::from(*x)).collect(), "int"),
        NcAttrValue::UBytes(v) => (v.iter().map(|x| f64::from(*x)).collect(), "int"),
        NcAttrValue::Shorts(v) => (v.iter().map(|x| f64::from(*x)).collect(), "int"),
        NcAttrValue::UShorts(v) => (v.iter().map(|x| f64::from(*x)).collect(), "int"),
        NcAttrValue::Ints(v) => (v.iter().map(|x| f64::from(*x)).collect(), "int"),
        NcAttrValue::UInts(v) => (v.iter().map(|x| f64::from(*x)).collect(), "int"),
        NcAttrValue::Int64s(v) => (v.iter().map(|x| *x as f64).collect(), "int"),
        NcAttrValue::UInt64s(v) => (v.iter().map(|x| *x as f64).collect(), "int"),
        NcAttrValue::Floats(v) => (v.iter().map(|x| f64::from(*x)).collect(), "f4"),
        NcAttrValue::Doubles(v) => (v.clone(), "f8"),
        _ => return None,
    })
}

impl CfDecode {
    fn of(attrs: &[NcAttribute], kind: Kind) -> Option<CfDecode> {
        let get = |name: &str| attrs.iter().find(|a| a.name == name).and_then(attr_f64s);
        let mut missing = Vec::new();
        for name in ["_FillValue", "missing_value"] {
            if let Some((v, _)) = get(name) {
                missing.extend(v);
            }
        }
        let scale = get("scale_factor");
        let offset = get("add_offset");
        if missing.is_empty() && scale.is_none() && offset.is_none() {
            return None;
        }
        let float = matches!(kind, Kind::F32 | Kind::F64);
        // Masking: floats keep their type; integers of 1-2 bytes become
        // float32, wider ones float64 (xarray's `maybe_promote`).
        let mut wide = match kind {
            Kind::F32 => false,
            Kind::F64 => true,
            _ => kind.itemsize() > 2,
        };
        if !missing.is_empty() && !float && scale.is_none() && offset.is_none() {
            return Some(CfDecode {
                missing,
                scale: None,
                offset: None,
                wide,
            });
        }
        // Scaling (xarray's `_choose_float_dtype`, on the stored type).
        match (&scale, &offset) {
            (Some((_, st)), Some((_, ot))) if st == ot && *st != "int" => {
                wide = *st == "f8" || (kind.itemsize() == 4 && !float);
            }
            (_, Some(_)) => wide = true,
            (Some((_, st)), None) => wide = *st != "f4",
            (None, None) => {}
        }
        Some(CfDecode {
            missing,
            scale: scale.and_then(|(v, _)| v.first().copied()),
            offset: offset.and_then(|(v, _)| v.first().copied()),
            wide,
        })
    }

    fn apply(&self, kind: Kind, stored: &[u8]) -> Vec<u8> {
        let n = stored.len() / kind.itemsize();
        let mut out = Vec::with_capacity(n * if self.wide { 8 } else { 4 });
        for chunk in stored.chunks_exact(kind.itemsize()) {
            let v = stored_value(kind, chunk);
            let missing = self
                .missing
                .iter()
                .any(|m| *m == v || (m.is_nan() && v.is_nan()));
            let x = if missing {
                f64::NAN
            } else {
                v * self.scale.unwrap_or(1.0) + self.offset.unwrap_or(0.0)
            };
            if self.wide {
                out.extend_from_slice(&x.to_le_bytes());
            } else {
                out.extend_from_slice(&(x as f32).to_le_bytes());
            }
        }
        out
    }
}

/// One stored little-endian element as f64.
fn stored_value(kind: Kind, b: &[u8]) -> f64 {
    let a = |n: usize| -> [u8; 8] {
        let mut x = [0u8; 8];
        x[..n].copy_from_slice(&b[..n]);
        x
    };
    match kind {
        Kind::I8 => f64::from(b[0] as i8),
        Kind::U8 => f64::from(b[0]),
        Kind::I16 => f64::from(i16::from_le_bytes([b[0], b[1]])),
        Kind::U16 => f64::from(u16::from_le_bytes([b[0], b[1]])),
        Kind::I32 => f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Kind::U32 => f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Kind::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        Kind::I64 => i64::from_le_bytes(a(8)) as f64,
        Kind::U64 => u64::from_le_bytes(a(8)) as f64,
        Kind::F64 => f64::from_le_bytes(a(8)),
    }
}

fn cf_dtype(cf: &CfDecode) -> Result<DataType, String> {
    DataType::from_numpy_str(if cf.wide { "<f8" } else { "<f4" }).map_err(|e| e.to_string())
}

impl ArrayAdapter for NetcdfArray {
    fn structure(&self) -> &ArrayStructure {
        &self.structure
    }

    fn read_block(&self, block: &[usize]) -> Result<ArrayData, AdapterError> {
        let (offset, shape) = self
            .structure
            .block_extent(block)
            .map_err(|e| AdapterError::BadRequest(e.to_string()))?;
        let bytes = self.read_hyperslab(&offset, &shape, &vec![1; shape.len()])?;
        let bytes = self.decoded(bytes);
        ArrayData::new(self.structure.data_type.clone(), shape, bytes)
    }

    /// Any selection is one strided hyperslab read; axes selected with a
    /// negative step are read forwards and reversed in memory.
    fn read(&self, sel: &ResolvedSlice) -> Result<ArrayData, AdapterError> {
        let st = &self.structure;
        let in_bounds = sel.dims.len() == st.shape.len()
            && sel.dims.iter().zip(&st.shape).all(|(d, &n)| match *d {
                DimSelection::Index(i) => i < n,
                DimSelection::Range { len: 0, .. } => true,
                DimSelection::Range { .. } => d.source(0) < n && d.source(d.count() - 1) < n,
            });
        if !in_bounds {
            return Err(AdapterError::BadRequest(format!(
                "selection {sel:?} does not fit shape {:?}",
                st.shape
            )));
        }
        let dtype = st.data_type.clone();
        if sel.num_elements() == 0 {
            return ArrayData::new(dtype, sel.out_shape(), Vec::new());
        }
        let ndim = sel.dims.len();
        let (mut start, mut count, mut step) = (
            Vec::with_capacity(ndim),
            Vec::with_capacity(ndim),
            Vec::with_capacity(ndim),
        );
        // How to take the selection from the forward hyperslab.
        let mut fix = Vec::with_capacity(ndim);
        let mut reversed = false;
        for d in &sel.dims {
            match *d {
                DimSelection::Index(i) => {
                    start.push(i);
                    count.push(1);
                    step.push(1);
                    fix.push(DimSelection::Index(0));
                }
                DimSelection::Range { step: s, len, .. } => {
                    let (first, last) = (d.source(0), d.source(len - 1));
                    start.push(first.min(last));
                    count.push(len);
                    step.push(if len == 1 {
                        1
                    } else {
                        s.unsigned_abs() as usize
                    });
                    if s < 0 && len > 1 {
                        reversed = true;
                        fix.push(DimSelection::Range {
                            start: len as i64 - 1,
                            step: -1,
                            len,
                        });
                    } else {
                        fix.push(DimSelection::full(len));
                    }
                }
            }
        }
        let bytes = self.read_hyperslab(&start, &count, &step)?;
        let bytes = self.decoded(bytes);
        if reversed {
            let forward = ArrayData::new(dtype, count, bytes)?;
            Ok(forward.select(&ResolvedSlice { dims: fix }))
        } else {
            ArrayData::new(dtype, sel.out_shape(), bytes)
        }
    }

    fn cheap_region_reads(&self) -> bool {
        self.classic
    }
}

impl FileFormat for NetcdfFormat {
    fn mimetype(&self) -> &'static str {
        "application/x-netcdf"
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        let handle = Handle::open(path).map_err(|e| FileError::unreadable(path, e))?;
        describe(path, &handle).map_err(|e| FileError::unreadable(path, e))
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
                format!("NetCDF nodes with data are arrays, not {}", family.as_str()),
            ));
        }
        let name = parameters
            .get("variable")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                internal(
                    path,
                    format!("NetCDF data source parameters name no variable: {parameters}"),
                )
            })?;
        let handle = Handle::open(path).map_err(|e| internal(path, e))?;
        let var = guarded(|| handle.file.variable(name).map_err(|e| e.to_string()))
            .map_err(|e| internal(path, e))?
            .clone();
        let (structure, kind) = variable_structure(path, &handle, &var)
            .map_err(|e| internal(path, e))?
            .ok_or_else(|| internal(path, format!("variable {name:?} has no servable type")))?;
        let classic = !is_nc4(&handle.file);
        let cf = CfDecode::of(&var.attributes, kind);
        let mut structure = structure;
        if let Some(cf) = &cf {
            structure.data_type = cf_dtype(cf).map_err(|e| internal(path, e))?;
        }
        Ok(NodeData::Array(Arc::new(NetcdfArray {
            file: handle.file,
            path: path.to_path_buf(),
            name: name.to_string(),
            kind,
            structure,
            cf,
            classic,
        })))
    }
}
