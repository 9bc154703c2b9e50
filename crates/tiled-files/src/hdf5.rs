//! HDF5 files, read with the pure-Rust `rust-hdf5` crate, mapped as upstream
//! Tiled's HDF5 adapter maps them: the root group is a container whose
//! metadata are the root's attributes, every group a child container with its
//! own attributes, every dataset an array with its attributes as metadata and
//! `{"dataset": "/full/path"}` as its data source parameters.
//!
//! Describing reads only headers. Reading opens the file once per adapter and
//! reads only the hyperslab a block or selection covers; a chunked dataset's
//! blocks are its HDF5 chunks, so a block read decodes exactly one chunk.
//!
//! Elements come back exactly as the file stores them (the structure's dtype
//! declares the file's byte order), except that compound types with padding
//! are packed, since Tiled's structured dtypes have no member offsets.
//!
//! Attributes are decoded by a small header walker (`AttrReader`) built on
//! rust-hdf5's public format decoders, because rust-hdf5 0.7.9 has no typed
//! accessor for the attributes of groups.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rust_hdf5::format::btree_v1::{BTreeV1Config, BTreeV1Node};
use rust_hdf5::format::dense_attr::read_dense_attributes;
use rust_hdf5::format::dense_link::read_dense_links;
use rust_hdf5::format::global_heap::{GlobalHeapCollection, decode_vlen_reference};
use rust_hdf5::format::local_heap::{LocalHeapHeader, local_heap_get_string};
use rust_hdf5::format::messages::attr_info::AttributeInfoMessage;
use rust_hdf5::format::messages::attribute::{AttributeEntry, AttributeMessage};
use rust_hdf5::format::messages::datatype::{ByteOrder, DatatypeMessage, fixed_string_content};
use rust_hdf5::format::messages::link::{LinkMessage, LinkTarget};
use rust_hdf5::format::messages::link_info::LinkInfoMessage;
use rust_hdf5::format::messages::{
    MSG_ATTR_INFO, MSG_ATTRIBUTE, MSG_FLAG_SHARED, MSG_LINK, MSG_LINK_INFO,
    MSG_OBJ_HEADER_CONTINUATION, MSG_SYMBOL_TABLE,
};
use rust_hdf5::format::object_header::{OHDR_SIGNATURE, ObjectHeader, ObjectHeaderMessage};
use rust_hdf5::format::superblock::{
    HDF5_SIGNATURE, SuperblockV0V1, SuperblockV2V3, detect_superblock_version,
};
use rust_hdf5::format::symbol_table::SymbolTableNode;
use rust_hdf5::format::{BlockReader, FormatContext, FormatError, FormatResult, UNDEF_ADDR};
use rust_hdf5::swmr::SwmrFileReader;
use rust_hdf5::{H5Dataset, H5File, H5Group, LinkClass, StorageLayout};
use serde_json::{Map, Number, Value, json};
use tiled_adapters::{
    AdapterError, ArrayAdapter, ArrayData, NodeData, read_via_blocks, selection_box,
};
use tiled_model::{
    ArrayStructure, BuiltinDtype, DataType, Endianness, Kind, ResolvedSlice, StructDtype,
    StructField, StructureFamily,
};

use crate::{Described, FileError, FileFormat};

/// Blocks of datasets the file does not chunk are at most this large.
pub const DEFAULT_BLOCK_BYTES: usize = 16 * 1024 * 1024;

/// Groups nested deeper than this are not described (a guard against link
/// structures that never end).
const MAX_GROUP_DEPTH: usize = 64;

/// The largest metadata block the attribute walker will read at once; a
/// header field claiming more is treated as corrupt.
const MAX_META_READ: usize = 64 * 1024 * 1024;

/// HDF5 files through rust-hdf5 (pure Rust).
pub struct Hdf5Format;

impl FileFormat for Hdf5Format {
    fn mimetype(&self) -> &'static str {
        "application/x-hdf5"
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        match guarded(|| describe_file(path)) {
            Ok(result) => result,
            Err(panic) => Err(FileError::unreadable(
                path,
                format!("HDF5 reader failed: {panic}"),
            )),
        }
    }

    fn open(
        &self,
        path: &Path,
        parameters: &Value,
        family: StructureFamily,
    ) -> Result<NodeData, AdapterError> {
        if family != StructureFamily::Array {
            return Err(AdapterError::Internal(format!(
                "{}: HDF5 nodes with data are arrays, not {}",
                path.display(),
                family.as_str()
            )));
        }
        let dataset = parameters
            .get("dataset")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                AdapterError::Internal(format!(
                    "{}: HDF5 data source parameters name no dataset: {parameters}",
                    path.display()
                ))
            })?;
        Ok(NodeData::Array(Arc::new(Hdf5Array::open(path, dataset)?)))
    }
}

/// Run `f`, turning a panic inside the HDF5 reader into an error message.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    crate::catch_panic(f)
}

// ---------------------------------------------------------------------------
// Describe
// ---------------------------------------------------------------------------

/// Describe a whole file: the root group and everything reachable from it.
fn describe_file(path: &Path) -> Result<Described, FileError> {
    let file = H5File::open(path).map_err(|e| FileError::unreadable(path, e))?;
    let mut attrs = match AttrReader::open(path) {
        Ok(reader) => Some(reader),
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                "HDF5 attributes cannot be read, metadata will be empty: {e}"
            );
            None
        }
    };
    let mut walk = Walk {
        path,
        file: &file,
        attrs: attrs.as_mut(),
        ancestors: vec!["/".to_string()],
    };
    let mut root = Described::container(walk.metadata("/"));
    root.children = walk.children(&file.root_group(), "/");
    Ok(root)
}

/// State of one describe walk.
struct Walk<'a> {
    path: &'a Path,
    file: &'a H5File,
    attrs: Option<&'a mut AttrReader>,
    /// Canonical paths of the groups being described, outermost first (a link
    /// back to one of them would never end).
    ancestors: Vec<String>,
}

impl Walk<'_> {
    fn metadata(&mut self, object: &str) -> Map<String, Value> {
        match self.attrs.as_deref_mut() {
            Some(reader) => reader.metadata(object, self.path),
            None => Map::new(),
        }
    }

    /// The children of `group` (whose path is `group_path`), in name order.
    fn children(&mut self, group: &H5Group, group_path: &str) -> Vec<(String, Described)> {
        let names = match group.link_names() {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(
                    path = %self.path.display(),
                    group = group_path,
                    "cannot list HDF5 group: {e}"
                );
                return Vec::new();
            }
        };
        let datatypes: HashSet<String> = group
            .named_datatype_names()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let child_path = join_path(group_path, &name);
            match group.link_class(&name) {
                Ok(LinkClass::Hard | LinkClass::Soft { .. }) => {}
                Ok(LinkClass::External { file, path }) => {
                    tracing::warn!(
                        path = %self.path.display(),
                        link = child_path,
                        "skipping HDF5 external link to {file}:{path}"
                    );
                    continue;
                }
                Ok(LinkClass::UserDefined { link_type }) => {
                    tracing::warn!(
                        path = %self.path.display(),
                        link = child_path,
                        "skipping HDF5 user-defined link of type {link_type}"
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!(
                        path = %self.path.display(),
                        link = child_path,
                        "skipping HDF5 link: {e}"
                    );
                    continue;
                }
            }
            if let Ok(sub) = group.group(&name) {
                let canonical = sub.name().to_string();
                if self.ancestors.contains(&canonical) {
                    tracing::warn!(
                        path = %self.path.display(),
                        link = child_path,
                        "skipping HDF5 link to {canonical}, which contains it"
                    );
                    continue;
                }
                if self.ancestors.len() > MAX_GROUP_DEPTH {
                    tracing::warn!(
                        path = %self.path.display(),
                        link = child_path,
                        "skipping HDF5 group nested more than {MAX_GROUP_DEPTH} deep"
                    );
                    continue;
                }
                let mut node = Described::container(self.metadata(&child_path));
                self.ancestors.push(canonical);
                node.children = self.children(&sub, &child_path);
                self.ancestors.pop();
                out.push((name, node));
            } else if datatypes.contains(&name) {
                tracing::debug!(
                    path = %self.path.display(),
                    link = child_path,
                    "skipping HDF5 committed datatype"
                );
            } else {
                match self.dataset(&child_path) {
                    Ok(node) => out.push((name, node)),
                    Err(e) => tracing::warn!(
                        path = %self.path.display(),
                        dataset = child_path,
                        "skipping HDF5 dataset: {e}"
                    ),
                }
            }
        }
        out
    }

    fn dataset(&mut self, dataset_path: &str) -> Result<Described, String> {
        let ds = self.file.dataset(dataset_path).map_err(|e| e.to_string())?;
        let layout = Layout::of(&ds)?;
        let structure = serde_json::to_value(&layout.structure).map_err(|e| e.to_string())?;
        Ok(Described {
            family: StructureFamily::Array,
            structure: Some(structure),
            metadata: self.metadata(dataset_path),
            specs: Vec::new(),
            parameters: Some(json!({ "dataset": dataset_path })),
            children: Vec::new(),
        })
    }
}

fn join_path(group: &str, name: &str) -> String {
    if group == "/" {
        format!("/{name}")
    } else {
        format!("{group}/{name}")
    }
}

// ---------------------------------------------------------------------------
// Datatypes and layout
// ---------------------------------------------------------------------------

/// One copy that moves part of a stored element into its packed form:
/// `(offset in the stored element, offset in the packed element, length)`.
type Move = (usize, usize, usize);

/// How stored elements become the packed elements the structure declares,
/// when they differ (compound types with padding or reordered members).
#[derive(Clone, Debug, PartialEq)]
struct Repack {
    stored: usize,
    packed: usize,
    moves: Vec<Move>,
}

impl Repack {
    fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        let n = bytes.len() / self.stored.max(1);
        let mut out = vec![0u8; n * self.packed];
        for (src, dst) in bytes
            .chunks_exact(self.stored)
            .zip(out.chunks_exact_mut(self.packed))
        {
            for &(s, d, len) in &self.moves {
                dst[d..d + len].copy_from_slice(&src[s..s + len]);
            }
        }
        out
    }
}

fn endianness(order: ByteOrder) -> Endianness {
    match order {
        ByteOrder::LittleEndian => Endianness::Little,
        ByteOrder::BigEndian => Endianness::Big,
    }
}

fn builtin(kind: Kind, size: usize, order: Option<ByteOrder>) -> DataType {
    let mut b = BuiltinDtype::new(kind, size);
    if let Some(order) = order {
        b = b.with_endianness(endianness(order));
    }
    DataType::Builtin(b)
}

/// Whether an enum is h5py's boolean (`FALSE` = 0, `TRUE` = 1 over one byte).
fn is_bool_enum(
    base: &DatatypeMessage,
    members: &[rust_hdf5::format::messages::datatype::EnumMember],
) -> bool {
    matches!(base, DatatypeMessage::FixedPoint { size: 1, .. })
        && members.len() == 2
        && members
            .iter()
            .any(|m| m.name == "FALSE" && m.value.as_slice() == [0])
        && members
            .iter()
            .any(|m| m.name == "TRUE" && m.value.as_slice() == [1])
}

/// The NumPy dtype of an HDF5 element type, and the copies that pack one
/// stored element into it.
fn map_type(dt: &DatatypeMessage) -> Result<(DataType, Vec<Move>), String> {
    let unsupported = || format!("unsupported HDF5 datatype {dt}");
    let whole = |n: usize| vec![(0, 0, n)];
    Ok(match dt {
        DatatypeMessage::FixedPoint {
            size,
            byte_order,
            signed,
            ..
        } => {
            let n = *size as usize;
            if !matches!(n, 1 | 2 | 4 | 8) {
                return Err(unsupported());
            }
            let kind = if *signed { Kind::Int } else { Kind::UInt };
            (builtin(kind, n, Some(*byte_order)), whole(n))
        }
        DatatypeMessage::BitField {
            size, byte_order, ..
        } => {
            let n = *size as usize;
            if !matches!(n, 1 | 2 | 4 | 8) {
                return Err(unsupported());
            }
            (builtin(Kind::UInt, n, Some(*byte_order)), whole(n))
        }
        DatatypeMessage::FloatingPoint {
            size, byte_order, ..
        } => {
            let n = *size as usize;
            if !matches!(n, 2 | 4 | 8) {
                return Err(unsupported());
            }
            (builtin(Kind::Float, n, Some(*byte_order)), whole(n))
        }
        DatatypeMessage::Enum { base, members } => {
            if is_bool_enum(base, members) {
                (builtin(Kind::Bool, 1, None), whole(1))
            } else {
                map_type(base)?
            }
        }
        DatatypeMessage::FixedString { size, .. } if *size > 0 => {
            let n = *size as usize;
            (builtin(Kind::Bytes, n, None), whole(n))
        }
        DatatypeMessage::Opaque { size, .. } if *size > 0 => {
            let n = *size as usize;
            (builtin(Kind::Void, n, None), whole(n))
        }
        DatatypeMessage::Compound { size, members } => {
            if let Some(complex) = complex_type(*size, members) {
                return Ok(complex);
            }
            if members.is_empty() {
                return Err(unsupported());
            }
            let mut fields = Vec::with_capacity(members.len());
            let mut moves = Vec::new();
            let mut packed = 0usize;
            for m in members {
                let (dtype, shape, member_moves, stored) = map_member(&m.datatype)?;
                let offset = m.offset as usize;
                if offset + stored > *size as usize {
                    return Err(format!(
                        "compound member {:?} extends past its {}-byte element",
                        m.name, size
                    ));
                }
                let count: usize = shape.as_ref().map_or(1, |s| s.iter().product());
                for &(s, d, len) in &member_moves {
                    moves.push((offset + s, packed + d, len));
                }
                packed += dtype.itemsize() * count;
                fields.push(StructField {
                    name: m.name.clone(),
                    dtype,
                    shape,
                });
            }
            (
                DataType::Struct(StructDtype {
                    itemsize: packed,
                    fields,
                }),
                merge_moves(moves),
            )
        }
        _ => return Err(unsupported()),
    })
}

/// A compound member: its dtype, sub-array shape, moves and stored size.
#[allow(clippy::type_complexity)]
fn map_member(
    dt: &DatatypeMessage,
) -> Result<(DataType, Option<Vec<usize>>, Vec<Move>, usize), String> {
    if let DatatypeMessage::Array { dims, base } = dt {
        let (dtype, base_moves) = map_type(base)?;
        let shape: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
        let count: usize = shape.iter().product();
        let stored = base.element_size() as usize;
        let packed = dtype.itemsize();
        let mut moves = Vec::with_capacity(count * base_moves.len());
        for k in 0..count {
            for &(s, d, len) in &base_moves {
                moves.push((k * stored + s, k * packed + d, len));
            }
        }
        return Ok((dtype, Some(shape), merge_moves(moves), stored * count));
    }
    let (dtype, moves) = map_type(dt)?;
    Ok((dtype, None, moves, dt.element_size() as usize))
}

/// h5py's complex numbers: a compound of two equal floats named `r` and `i`.
fn complex_type(
    size: u32,
    members: &[rust_hdf5::format::messages::datatype::CompoundMember],
) -> Option<(DataType, Vec<Move>)> {
    let [re, im] = members else { return None };
    if re.name != "r" || im.name != "i" {
        return None;
    }
    let (
        DatatypeMessage::FloatingPoint {
            size: a,
            byte_order: order_a,
            ..
        },
        DatatypeMessage::FloatingPoint {
            size: b,
            byte_order: order_b,
            ..
        },
    ) = (&re.datatype, &im.datatype)
    else {
        return None;
    };
    if a != b || order_a != order_b || !matches!(a, 4 | 8) {
        return None;
    }
    if re.offset != 0 || im.offset != *a || size != 2 * a {
        return None;
    }
    let n = size as usize;
    Some((builtin(Kind::Complex, n, Some(*order_a)), vec![(0, 0, n)]))
}

/// Join copies that continue each other in both source and destination.
fn merge_moves(moves: Vec<Move>) -> Vec<Move> {
    let mut out: Vec<Move> = Vec::with_capacity(moves.len());
    for (s, d, len) in moves {
        if let Some(last) = out.last_mut()
            && last.0 + last.2 == s
            && last.1 + last.2 == d
        {
            last.2 += len;
            continue;
        }
        out.push((s, d, len));
    }
    out
}

/// Everything needed to serve one dataset, known from its header.
#[derive(Clone, Debug)]
struct Layout {
    structure: ArrayStructure,
    /// The dataset's own rank; the structure has more dimensions when the
    /// element type is an HDF5 array type (its dimensions trail).
    rank: usize,
    repack: Option<Repack>,
    /// Whether any region reads at the cost of its size (unfiltered
    /// contiguous or compact storage).
    cheap: bool,
}

impl Layout {
    fn of(ds: &H5Dataset) -> Result<Layout, String> {
        if ds.is_null() {
            return Err("it has a null dataspace (no elements at all)".into());
        }
        let datatype = ds.datatype().map_err(|e| e.to_string())?;
        let shape = ds.shape();
        let rank = shape.len();
        let (element, extra_dims) = match &datatype {
            DatatypeMessage::Array { dims, base } => (
                base.as_ref(),
                dims.iter().map(|&d| d as usize).collect::<Vec<_>>(),
            ),
            other => (other, Vec::new()),
        };
        let (dtype, moves) = map_type(element)?;
        let stored = element.element_size() as usize;
        let packed = dtype.itemsize();
        if packed == 0 || stored == 0 {
            return Err(format!("zero-sized element type {datatype}"));
        }
        let stored_total = stored * extra_dims.iter().product::<usize>();
        if stored_total != ds.element_size() {
            return Err(format!(
                "element type {datatype} is {stored_total} bytes but elements are stored in {}",
                ds.element_size()
            ));
        }
        let repack = (moves != [(0, 0, stored)] || packed != stored).then_some(Repack {
            stored,
            packed,
            moves,
        });

        let mut full_shape = shape.clone();
        full_shape.extend(&extra_dims);
        let item_bytes = packed * extra_dims.iter().product::<usize>();
        let chunk = match ds.chunk_dims() {
            Some(c) if c.len() == rank && c.iter().all(|&n| n > 0) => c,
            _ => auto_chunk(&shape, item_bytes, DEFAULT_BLOCK_BYTES),
        };
        let mut chunks = ArrayStructure::regular_chunks(&shape, &chunk);
        chunks.extend(extra_dims.iter().map(|&n| vec![n]));
        let structure =
            ArrayStructure::new(dtype, full_shape, chunks).map_err(|e| e.to_string())?;
        let cheap = matches!(
            ds.storage_layout(),
            Ok(StorageLayout::Contiguous | StorageLayout::Compact)
        ) && ds.filters().is_ok_and(|f| f.is_empty());
        Ok(Layout {
            structure,
            rank,
            repack,
            cheap,
        })
    }
}

/// Chunk sizes for an unchunked dataset: whole along every axis but the
/// outermost ones split so a block holds at most `limit` bytes.
fn auto_chunk(shape: &[usize], item_bytes: usize, limit: usize) -> Vec<usize> {
    let mut chunk = shape.to_vec();
    for axis in 0..shape.len() {
        let inner: usize = shape[axis + 1..]
            .iter()
            .product::<usize>()
            .saturating_mul(item_bytes.max(1));
        if inner <= limit {
            chunk[axis] = (limit / inner.max(1)).clamp(1, shape[axis].max(1));
            break;
        }
        chunk[axis] = 1;
    }
    chunk
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// One HDF5 dataset as an array; the file stays open for the adapter's life.
pub struct Hdf5Array {
    path: PathBuf,
    dataset: String,
    layout: Layout,
    reader: Mutex<SwmrFileReader>,
}

impl Hdf5Array {
    /// Open the dataset at `dataset` (an absolute path inside the file).
    ///
    /// # Errors
    /// [`AdapterError::Internal`] if the file cannot be read, has no such
    /// dataset, or the dataset's type cannot be served.
    pub fn open(path: &Path, dataset: &str) -> Result<Self, AdapterError> {
        let fail =
            |e: String| AdapterError::Internal(format!("{}: {dataset}: {e}", path.display()));
        let layout = guarded(|| {
            let file = H5File::open(path).map_err(|e| e.to_string())?;
            let ds = file.dataset(dataset).map_err(|e| e.to_string())?;
            Layout::of(&ds)
        })
        .map_err(|p| format!("HDF5 reader failed: {p}"))
        .and_then(|r| r)
        .map_err(fail)?;
        let reader = guarded(|| SwmrFileReader::open(path).map_err(|e| e.to_string()))
            .map_err(|p| format!("HDF5 reader failed: {p}"))
            .and_then(|r| r)
            .map_err(fail)?;
        Ok(Hdf5Array {
            path: path.to_path_buf(),
            dataset: dataset.to_string(),
            layout,
            reader: Mutex::new(reader),
        })
    }

    /// The C-order bytes of the box at `offset` with `shape` (in the
    /// structure's dimensions; trailing array-type dimensions must be whole).
    fn read_box(&self, offset: &[usize], shape: &[usize]) -> Result<Vec<u8>, AdapterError> {
        let itemsize = self.layout.structure.data_type.itemsize();
        let n: usize = shape.iter().product();
        if n == 0 {
            return Ok(Vec::new());
        }
        let rank = self.layout.rank;
        let starts: Vec<u64> = offset[..rank].iter().map(|&o| o as u64).collect();
        let counts: Vec<u64> = shape[..rank].iter().map(|&c| c as u64).collect();
        let raw = {
            let mut reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
            guarded(|| {
                if rank == 0 {
                    reader.read_dataset_raw(&self.dataset)
                } else {
                    reader.read_slice_raw(&self.dataset, &starts, &counts)
                }
            })
        };
        let raw = raw
            .map_err(|p| self.error(format!("HDF5 reader failed: {p}")))?
            .map_err(|e| self.error(e.to_string()))?;
        let bytes = match &self.layout.repack {
            Some(repack) => {
                if raw.len() % repack.stored != 0 {
                    return Err(self.error(format!(
                        "read {} bytes, not a whole number of {}-byte elements",
                        raw.len(),
                        repack.stored
                    )));
                }
                repack.apply(&raw)
            }
            None => raw,
        };
        if bytes.len() != n * itemsize {
            return Err(self.error(format!(
                "read {} bytes for {n} elements of {itemsize} bytes",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    fn error(&self, message: String) -> AdapterError {
        AdapterError::Internal(format!(
            "{}: {}: {message}",
            self.path.display(),
            self.dataset
        ))
    }
}

impl ArrayAdapter for Hdf5Array {
    fn structure(&self) -> &ArrayStructure {
        &self.layout.structure
    }

    fn read_block(&self, block: &[usize]) -> Result<ArrayData, AdapterError> {
        let (offset, shape) = self.layout.structure.block_extent(block)?;
        let bytes = self.read_box(&offset, &shape)?;
        ArrayData::new(self.layout.structure.data_type.clone(), shape, bytes)
    }

    /// Boxes (indices and step-1 ranges) are one hyperslab read; strided
    /// selections are gathered from the blocks they touch.
    fn read(&self, sel: &ResolvedSlice) -> Result<ArrayData, AdapterError> {
        if self.layout.rank == self.layout.structure.shape.len()
            && let Some((offset, shape)) = selection_box(sel)
        {
            let bytes = self.read_box(&offset, &shape)?;
            return ArrayData::new(
                self.layout.structure.data_type.clone(),
                sel.out_shape(),
                bytes,
            );
        }
        read_via_blocks(self, sel)
    }

    fn cheap_region_reads(&self) -> bool {
        self.layout.cheap
    }
}

// ---------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------

/// Reads objects' attributes straight from their headers.
///
/// rust-hdf5 0.7.9 exposes typed attributes for datasets only, so this walks
/// the file's links itself with rust-hdf5's public format decoders: symbol
/// tables (v0/v1 files, what h5py writes by default), compact and dense link
/// storage, compact and dense attribute storage, and the global heap for
/// variable-length strings.
pub(crate) struct AttrReader {
    file: std::fs::File,
    /// Where the superblock is (the userblock size); addresses count from here.
    base: u64,
    len: u64,
    ctx: FormatContext,
    btree: BTreeV1Config,
    root: u64,
    /// Each group's links by name, by the group's header address.
    links: HashMap<u64, Arc<HashMap<String, LinkTarget>>>,
    heaps: HashMap<u64, Arc<GlobalHeapCollection>>,
}

impl BlockReader for AttrReader {
    fn read_block(&mut self, offset: u64, len: usize) -> FormatResult<Vec<u8>> {
        self.read_at_most(offset, len)
    }
}

fn io_error(e: std::io::Error) -> FormatError {
    FormatError::InvalidData(format!("I/O error: {e}"))
}

impl AttrReader {
    /// Open `path` and read its superblock.
    ///
    /// # Errors
    /// A message if the file is not HDF5 or its superblock cannot be decoded.
    pub(crate) fn open(path: &Path) -> Result<AttrReader, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut reader = AttrReader {
            file,
            base: 0,
            len,
            ctx: FormatContext {
                sizeof_addr: 8,
                sizeof_size: 8,
            },
            btree: BTreeV1Config::default(),
            root: 0,
            links: HashMap::new(),
            heaps: HashMap::new(),
        };
        reader.base = reader.locate_signature()?;
        let sb = reader.read_at_most(0, 1024).map_err(|e| e.to_string())?;
        match detect_superblock_version(&sb).map_err(|e| e.to_string())? {
            0 | 1 => {
                let sb = SuperblockV0V1::decode(&sb).map_err(|e| e.to_string())?;
                reader.ctx = FormatContext {
                    sizeof_addr: sb.sizeof_offsets,
                    sizeof_size: sb.sizeof_lengths,
                };
                reader.btree = BTreeV1Config {
                    sym_leaf_k: sb.sym_leaf_k,
                    snode_internal_k: sb.btree_internal_k,
                    chunk_internal_k: sb
                        .indexed_storage_k
                        .unwrap_or(BTreeV1Config::default().chunk_internal_k),
                };
                reader.root = sb.root_symbol_table_entry.obj_header_addr;
            }
            2 | 3 => {
                let sb = SuperblockV2V3::decode(&sb).map_err(|e| e.to_string())?;
                reader.ctx = FormatContext {
                    sizeof_addr: sb.sizeof_offsets,
                    sizeof_size: sb.sizeof_lengths,
                };
                reader.root = sb.root_group_object_header_address;
            }
            v => return Err(format!("unsupported superblock version {v}")),
        }
        if !matches!(reader.ctx.sizeof_addr, 2 | 4 | 8)
            || !matches!(reader.ctx.sizeof_size, 2 | 4 | 8)
        {
            return Err(format!(
                "unsupported address/length sizes {}/{}",
                reader.ctx.sizeof_addr, reader.ctx.sizeof_size
            ));
        }
        Ok(reader)
    }

    /// Probe 0, 512, 1024, ... for the HDF5 signature.
    fn locate_signature(&mut self) -> Result<u64, String> {
        let mut addr = 0u64;
        loop {
            if addr + HDF5_SIGNATURE.len() as u64 <= self.len {
                let bytes = self
                    .read_absolute(addr, HDF5_SIGNATURE.len())
                    .map_err(|e| e.to_string())?;
                if bytes == HDF5_SIGNATURE {
                    return Ok(addr);
                }
            }
            addr = if addr == 0 { 512 } else { addr * 2 };
            if addr >= self.len {
                return Err("not an HDF5 file (no signature)".into());
            }
        }
    }

    fn read_absolute(&mut self, pos: u64, len: usize) -> FormatResult<Vec<u8>> {
        if len > MAX_META_READ {
            return Err(FormatError::InvalidData(format!(
                "refusing to read a {len}-byte metadata block"
            )));
        }
        let available = self.len.saturating_sub(pos);
        let len = len.min(usize::try_from(available).unwrap_or(usize::MAX));
        let mut buf = vec![0u8; len];
        self.file.seek(SeekFrom::Start(pos)).map_err(io_error)?;
        self.file.read_exact(&mut buf).map_err(io_error)?;
        Ok(buf)
    }

    /// Up to `len` bytes at file address `addr` (fewer only at end of file).
    fn read_at_most(&mut self, addr: u64, len: usize) -> FormatResult<Vec<u8>> {
        if addr == UNDEF_ADDR {
            return Err(FormatError::InvalidData("undefined address".into()));
        }
        let pos = addr
            .checked_add(self.base)
            .ok_or_else(|| FormatError::InvalidData(format!("address {addr:#x} overflows")))?;
        self.read_absolute(pos, len)
    }

    /// Exactly `len` bytes at `addr`.
    fn read_exact_at(&mut self, addr: u64, len: usize) -> FormatResult<Vec<u8>> {
        let buf = self.read_at_most(addr, len)?;
        if buf.len() < len {
            return Err(FormatError::BufferTooShort {
                needed: len,
                available: buf.len(),
            });
        }
        Ok(buf)
    }

    /// The object header at `addr`, continuation blocks included.
    fn header(&mut self, addr: u64) -> FormatResult<ObjectHeader> {
        let mut buf = self.read_at_most(addr, 512)?;
        if let Err(FormatError::BufferTooShort { needed, .. }) = ObjectHeader::decode_any(&buf)
            && needed > buf.len()
        {
            buf = self.read_at_most(addr, needed)?;
        }
        let (mut header, _) = ObjectHeader::decode_any(&buf)?;
        let v2 = buf.len() >= 4 && buf[..4] == OHDR_SIGNATURE;
        let track_order = v2 && header.flags & 0x04 != 0;
        let sa = self.ctx.sizeof_addr as usize;
        let ss = self.ctx.sizeof_size as usize;
        let continuations = |msgs: &[ObjectHeaderMessage], out: &mut Vec<(u64, u64)>| {
            for m in msgs {
                if m.msg_type == MSG_OBJ_HEADER_CONTINUATION && m.data.len() >= sa + ss {
                    out.push((read_uint(&m.data[..sa]), read_uint(&m.data[sa..sa + ss])));
                }
            }
        };
        let mut pending = Vec::new();
        continuations(&header.messages, &mut pending);
        let mut seen = HashSet::new();
        while let Some((at, len)) = pending.pop() {
            if at == UNDEF_ADDR || len == 0 || !seen.insert(at) || seen.len() > 1024 {
                continue;
            }
            let len = usize::try_from(len)
                .map_err(|_| FormatError::InvalidData("continuation too long".into()))?;
            let block = self.read_exact_at(at, len)?;
            let mut messages = Vec::new();
            parse_continuation(&block, v2, track_order, &mut messages)?;
            continuations(&messages, &mut pending);
            header.messages.extend(messages);
        }
        Ok(header)
    }

    /// The links of the group whose header is at `addr`.
    fn links(&mut self, addr: u64) -> FormatResult<Arc<HashMap<String, LinkTarget>>> {
        if let Some(links) = self.links.get(&addr) {
            return Ok(links.clone());
        }
        let header = self.header(addr)?;
        let ctx = self.ctx;
        let mut out = Vec::new();
        for m in &header.messages {
            match m.msg_type {
                MSG_LINK => {
                    let (link, _) = LinkMessage::decode(&m.data, &ctx)?;
                    out.push((link.name, link.target));
                }
                MSG_LINK_INFO => {
                    let (info, _) = LinkInfoMessage::decode(&m.data, &ctx)?;
                    if info.is_dense() {
                        for link in read_dense_links(&info, &ctx, self)? {
                            out.push((link.name, link.target));
                        }
                    }
                }
                MSG_SYMBOL_TABLE => {
                    let sa = ctx.sizeof_addr as usize;
                    if m.data.len() < 2 * sa {
                        return Err(FormatError::InvalidData(
                            "short symbol table message".into(),
                        ));
                    }
                    let btree = read_uint(&m.data[..sa]);
                    let heap = read_uint(&m.data[sa..2 * sa]);
                    self.symbol_table(btree, heap, &mut out)?;
                }
                _ => {}
            }
        }
        let out = Arc::new(out.into_iter().collect::<HashMap<_, _>>());
        self.links.insert(addr, out.clone());
        Ok(out)
    }

    /// The entries of a v1 symbol table (a B-tree of symbol nodes whose
    /// names live in a local heap).
    fn symbol_table(
        &mut self,
        btree: u64,
        heap: u64,
        out: &mut Vec<(String, LinkTarget)>,
    ) -> FormatResult<()> {
        let sa = self.ctx.sizeof_addr as usize;
        let ss = self.ctx.sizeof_size as usize;
        let heap_header = self.read_at_most(heap, 8 + 2 * ss + sa)?;
        let heap_header = LocalHeapHeader::decode(&heap_header, sa, ss)?;
        let heap_size = usize::try_from(heap_header.data_size)
            .map_err(|_| FormatError::InvalidData("local heap too large".into()))?;
        let names = self.read_exact_at(heap_header.data_addr, heap_size)?;
        let mut stack = vec![(btree, 0usize)];
        let mut seen = HashSet::new();
        while let Some((node_addr, depth)) = stack.pop() {
            if node_addr == UNDEF_ADDR || !seen.insert(node_addr) || depth > 64 {
                continue;
            }
            let size = self.btree.snode_btree_node_size(sa, ss);
            let buf = self.read_at_most(node_addr, size)?;
            let node = BTreeV1Node::decode(&buf, sa, ss, self.btree.snode_max_entries())?;
            if node.node_type != 0 {
                return Err(FormatError::InvalidData(
                    "group B-tree node is not a group node".into(),
                ));
            }
            if node.level > 0 {
                for &child in node.children.iter().rev() {
                    stack.push((child, depth + 1));
                }
                continue;
            }
            for &snod in &node.children {
                let size = self.btree.symbol_table_node_size(sa, ss);
                let buf = self.read_at_most(snod, size)?;
                let snod =
                    SymbolTableNode::decode(&buf, sa, ss, self.btree.sym_leaf_max_entries())?;
                for entry in snod.entries {
                    let name = local_heap_get_string(&names, entry.name_offset)?;
                    let target = match entry.cache {
                        rust_hdf5::format::superblock::SymbolTableCache::SoftLink {
                            value_offset,
                        } => LinkTarget::Soft {
                            target: local_heap_get_string(&names, u64::from(value_offset))?,
                        },
                        _ => LinkTarget::Hard {
                            address: entry.obj_header_addr,
                        },
                    };
                    out.push((name, target));
                }
            }
        }
        Ok(())
    }

    /// The header address of the object at the absolute path `path`,
    /// following soft links inside the file.
    fn resolve(&mut self, path: &str) -> Result<u64, String> {
        let mut hops = 0usize;
        self.resolve_from(path, &mut hops)
    }

    fn resolve_from(&mut self, path: &str, hops: &mut usize) -> Result<u64, String> {
        let mut addr = self.root;
        // The path of the group `addr` is, for resolving relative soft links.
        let mut here: Vec<String> = Vec::new();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            let links = self.links(addr).map_err(|e| e.to_string())?;
            let target = links
                .get(part)
                .cloned()
                .ok_or_else(|| format!("no link {part:?} in /{}", here.join("/")))?;
            addr = match target {
                LinkTarget::Hard { address } => address,
                LinkTarget::Soft { target } => {
                    *hops += 1;
                    if *hops > 64 {
                        return Err("too many soft links".into());
                    }
                    let absolute = if target.starts_with('/') {
                        target
                    } else {
                        format!("/{}/{target}", here.join("/"))
                    };
                    self.resolve_from(&absolute, hops)?
                }
                LinkTarget::External { file, path } => {
                    return Err(format!("{part:?} is an external link to {file}:{path}"));
                }
                LinkTarget::UserDefined { link_type, .. } => {
                    return Err(format!("{part:?} is a user-defined link ({link_type})"));
                }
            };
            here.push(part.to_string());
        }
        Ok(addr)
    }

    /// The attribute messages of the object at `addr` (an `Err` entry for
    /// each one that cannot be decoded, with its name where known).
    fn attributes(&mut self, addr: u64) -> FormatResult<Vec<Result<AttributeMessage, String>>> {
        let header = self.header(addr)?;
        let ctx = self.ctx;
        let mut out = Vec::new();
        let take = |entry: AttributeEntry, out: &mut Vec<Result<AttributeMessage, String>>| {
            out.push(match entry.decoded() {
                Ok(a) => Ok(a.clone()),
                Err(reason) => Err(format!("{:?}: {reason}", entry.name())),
            });
        };
        for m in &header.messages {
            match m.msg_type {
                MSG_ATTRIBUTE if m.flags & MSG_FLAG_SHARED != 0 => {
                    out.push(Err("an attribute stored as a shared message".into()));
                }
                MSG_ATTRIBUTE => match AttributeEntry::parse(&m.data, &ctx) {
                    Ok(entry) => take(entry, &mut out),
                    Err(e) => out.push(Err(e.to_string())),
                },
                MSG_ATTR_INFO => {
                    let (info, _) = AttributeInfoMessage::decode(&m.data, &ctx)?;
                    if info.is_dense() {
                        for entry in read_dense_attributes(&info, &ctx, self)? {
                            take(entry, &mut out);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The object at `path`'s attributes as Tiled metadata, in name order;
    /// attributes that cannot be converted are skipped with a warning.
    pub(crate) fn metadata(&mut self, object: &str, file: &Path) -> Map<String, Value> {
        let mut out = Map::new();
        let attrs = self
            .resolve(object)
            .and_then(|addr| self.attributes(addr).map_err(|e| e.to_string()));
        let mut attrs = match attrs {
            Ok(attrs) => attrs,
            Err(e) => {
                tracing::warn!(
                    path = %file.display(),
                    object,
                    "cannot read HDF5 attributes: {e}"
                );
                return out;
            }
        };
        attrs.sort_by(|a, b| match (a, b) {
            (Ok(a), Ok(b)) => a.name.cmp(&b.name),
            (Ok(_), Err(_)) => std::cmp::Ordering::Less,
            (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
            (Err(_), Err(_)) => std::cmp::Ordering::Equal,
        });
        for attr in attrs {
            match attr.and_then(|a| {
                let value = self
                    .attr_value(&a)
                    .map_err(|e| format!("{:?}: {e}", a.name))?;
                Ok((a.name, value))
            }) {
                Ok((name, value)) => {
                    out.insert(name, value);
                }
                Err(e) => tracing::warn!(
                    path = %file.display(),
                    object,
                    "skipping HDF5 attribute {e}"
                ),
            }
        }
        out
    }

    /// One attribute's value as JSON: scalars for scalar dataspaces, nested
    /// lists for N-d ones.
    fn attr_value(&mut self, a: &AttributeMessage) -> Result<Value, String> {
        if a.dataspace.is_null() {
            return Err("it has a null dataspace".into());
        }
        let es = a.datatype.element_size_ctx(&self.ctx) as usize;
        let n = a
            .dataspace
            .element_count()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("its element count overflows")?;
        let total = n.checked_mul(es).ok_or("its size overflows")?;
        if es == 0 || a.data.len() < total {
            return Err(format!(
                "it holds {} bytes, {n} elements of {es} bytes need {total}",
                a.data.len()
            ));
        }
        let values = a.data[..total]
            .chunks_exact(es)
            .map(|elem| self.element_value(&a.datatype, elem))
            .collect::<Result<Vec<_>, _>>()?;
        let dims: Vec<usize> = a.dataspace.dims.iter().map(|&d| d as usize).collect();
        Ok(if dims.is_empty() {
            values.into_iter().next().unwrap_or(Value::Null)
        } else {
            nest(&dims, &mut values.into_iter())
        })
    }

    fn element_value(&mut self, dt: &DatatypeMessage, elem: &[u8]) -> Result<Value, String> {
        let unsupported = || format!("unsupported datatype {dt}");
        Ok(match dt {
            DatatypeMessage::FixedPoint {
                byte_order, signed, ..
            } => int_value(elem, *byte_order, *signed).ok_or_else(unsupported)?,
            DatatypeMessage::BitField { byte_order, .. } => {
                int_value(elem, *byte_order, false).ok_or_else(unsupported)?
            }
            DatatypeMessage::FloatingPoint { byte_order, .. } => {
                let x = float_value(elem, *byte_order).ok_or_else(unsupported)?;
                Number::from_f64(x).map_or(Value::Null, Value::Number)
            }
            DatatypeMessage::Enum { base, members } => {
                if is_bool_enum(base, members) {
                    Value::Bool(elem.first().is_some_and(|&b| b != 0))
                } else {
                    self.element_value(base, elem)?
                }
            }
            DatatypeMessage::FixedString { padding, .. } => {
                let content = fixed_string_content(elem, *padding)
                    .ok_or_else(|| format!("reserved string padding {padding}"))?;
                Value::String(String::from_utf8_lossy(content).into_owned())
            }
            DatatypeMessage::VarLenString { .. } => Value::String(self.vlen_string(elem)?),
            DatatypeMessage::Array { dims, base } => {
                let es = base.element_size_ctx(&self.ctx) as usize;
                if es == 0 {
                    return Err(unsupported());
                }
                let values = elem
                    .chunks_exact(es)
                    .map(|e| self.element_value(base, e))
                    .collect::<Result<Vec<_>, _>>()?;
                let dims: Vec<usize> = dims.iter().map(|&d| d as usize).collect();
                nest(&dims, &mut values.into_iter())
            }
            _ => return Err(unsupported()),
        })
    }

    /// A variable-length string, from the global heap.
    fn vlen_string(&mut self, elem: &[u8]) -> Result<String, String> {
        let (len, collection, index) =
            decode_vlen_reference(elem, &self.ctx).map_err(|e| e.to_string())?;
        if len == 0 || collection == 0 || collection == UNDEF_ADDR {
            return Ok(String::new());
        }
        let heap = match self.heaps.get(&collection) {
            Some(heap) => heap.clone(),
            None => {
                let head = self
                    .read_at_most(collection, 64)
                    .map_err(|e| e.to_string())?;
                let size = GlobalHeapCollection::decode_size(&head, &self.ctx)
                    .map_err(|e| e.to_string())?;
                let buf = self
                    .read_exact_at(collection, size)
                    .map_err(|e| e.to_string())?;
                let (heap, _) =
                    GlobalHeapCollection::decode(&buf, &self.ctx).map_err(|e| e.to_string())?;
                let heap = Arc::new(heap);
                self.heaps.insert(collection, heap.clone());
                heap
            }
        };
        let index = u16::try_from(index).map_err(|_| format!("bad heap index {index}"))?;
        let bytes = heap
            .get_object(index)
            .ok_or_else(|| format!("global heap object {index} is missing"))?;
        let end = bytes.len().min(len as usize);
        let bytes = &bytes[..end];
        // A null terminator, where present, is not part of the value.
        let bytes = bytes.split(|&b| b == 0).next().unwrap_or(bytes);
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// Parse one continuation block of an object header.
fn parse_continuation(
    block: &[u8],
    v2: bool,
    track_order: bool,
    out: &mut Vec<ObjectHeaderMessage>,
) -> FormatResult<()> {
    if v2 {
        if block.len() < 8 || block[..4] != *b"OCHK" {
            return Err(FormatError::InvalidSignature);
        }
        let end = block.len() - 4;
        let head = if track_order { 6 } else { 4 };
        let mut pos = 4;
        while pos + head <= end {
            let msg_type = block[pos];
            let size = u16::from_le_bytes([block[pos + 1], block[pos + 2]]) as usize;
            let flags = block[pos + 3];
            pos += head;
            if pos + size > end {
                break;
            }
            if msg_type != 0 {
                out.push(ObjectHeaderMessage {
                    msg_type,
                    flags,
                    creation_index: 0,
                    data: block[pos..pos + size].to_vec(),
                });
            }
            pos += size;
        }
    } else {
        let mut pos = 0;
        while pos + 8 <= block.len() {
            let msg_type = u16::from_le_bytes([block[pos], block[pos + 1]]);
            let size = u16::from_le_bytes([block[pos + 2], block[pos + 3]]) as usize;
            let flags = block[pos + 4];
            pos += 8;
            if pos + size > block.len() {
                break;
            }
            if msg_type != 0 {
                out.push(ObjectHeaderMessage {
                    msg_type: u8::try_from(msg_type).unwrap_or(u8::MAX),
                    flags,
                    creation_index: 0,
                    data: block[pos..pos + size].to_vec(),
                });
            }
            pos += size;
            pos = (pos + 7) & !7;
        }
    }
    Ok(())
}

/// A little-endian unsigned integer of 1 to 8 bytes.
fn read_uint(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

fn int_value(elem: &[u8], order: ByteOrder, signed: bool) -> Option<Value> {
    let n = elem.len();
    if !matches!(n, 1 | 2 | 4 | 8) {
        return None;
    }
    let mut le = elem.to_vec();
    if order == ByteOrder::BigEndian {
        le.reverse();
    }
    let raw = read_uint(&le);
    Some(if signed {
        let shift = 64 - 8 * n as u32;
        let v = ((raw << shift) as i64) >> shift;
        Value::from(v)
    } else {
        Value::from(raw)
    })
}

fn float_value(elem: &[u8], order: ByteOrder) -> Option<f64> {
    let mut le = elem.to_vec();
    if order == ByteOrder::BigEndian {
        le.reverse();
    }
    Some(match le.len() {
        2 => f16_to_f64(u16::from_le_bytes([le[0], le[1]])),
        4 => f64::from(f32::from_le_bytes(le.try_into().ok()?)),
        8 => f64::from_le_bytes(le.try_into().ok()?),
        _ => return None,
    })
}

/// IEEE half precision to double (exact).
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((h >> 10) & 0x1f);
    let mantissa = f64::from(h & 0x3ff);
    match exponent {
        0 => sign * mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Nest a flat C-order sequence into lists of shape `dims`.
fn nest(dims: &[usize], values: &mut impl Iterator<Item = Value>) -> Value {
    match dims.split_first() {
        None => values.next().unwrap_or(Value::Null),
        Some((&n, rest)) => Value::Array((0..n).map(|_| nest(rest, values)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_chunks_split_the_outer_axes() {
        assert_eq!(auto_chunk(&[100, 10], 8, 800), vec![10, 10]);
        assert_eq!(auto_chunk(&[100, 10], 8, 1 << 20), vec![100, 10]);
        assert_eq!(auto_chunk(&[4, 100, 10], 8, 800), vec![1, 10, 10]);
        assert_eq!(auto_chunk(&[4, 100, 10], 8, 7), vec![1, 1, 1]);
        assert_eq!(auto_chunk(&[], 8, 7), Vec::<usize>::new());
        assert_eq!(auto_chunk(&[0, 5], 8, 800), vec![1, 5]);
    }

    #[test]
    fn half_floats() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x3555), 0.333_251_953_125);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert!(f16_to_f64(0x7e00).is_nan());
        assert_eq!(f16_to_f64(0x7c00), f64::INFINITY);
    }

    #[test]
    fn padded_compounds_are_packed() {
        use rust_hdf5::format::messages::datatype::CompoundMember;
        let dt = DatatypeMessage::compound(
            16,
            vec![
                CompoundMember {
                    name: "a".into(),
                    offset: 0,
                    datatype: DatatypeMessage::u8_type(),
                },
                CompoundMember {
                    name: "b".into(),
                    offset: 8,
                    datatype: DatatypeMessage::f64_type(),
                },
            ],
        );
        let (dtype, moves) = map_type(&dt).unwrap();
        assert_eq!(dtype.itemsize(), 9);
        assert_eq!(moves, vec![(0, 0, 1), (8, 1, 8)]);
        let packed = Repack {
            stored: 16,
            packed: 9,
            moves,
        }
        .apply(&[[7u8; 1].as_slice(), &[0; 7], &2.5f64.to_le_bytes()].concat());
        assert_eq!(packed[0], 7);
        assert_eq!(&packed[1..], &2.5f64.to_le_bytes());
    }
}
