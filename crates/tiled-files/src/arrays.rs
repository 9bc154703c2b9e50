//! Image and NPY files as arrays: TIFF (one page or a multi-page stack),
//! PNG, JPEG, NPY, and numbered sequences of TIFF/JPEG/NPY files stacked
//! along a new first axis.
//!
//! Blocks follow the files' natural units: one TIFF page, one file of a
//! sequence, a run of NPY rows. A read decodes only the blocks it touches.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tiled_adapters::{AdapterError, ArrayAdapter, ArrayData, MemoryArray, NodeData};
use tiled_model::StructureFamily;
use tiled_model::dtype::DataType;
use tiled_model::slice::ResolvedSlice;
use tiled_model::structure::ArrayStructure;

use crate::{Described, FileError, FileFormat, internal};

fn dtype(s: &str) -> DataType {
    // Only called with literals this module knows are valid.
    DataType::from_numpy_str(s).unwrap_or_else(|_| unreachable!("valid dtype {s}"))
}

fn described_array(structure: &ArrayStructure, parameters: Value) -> Result<Described, String> {
    Ok(Described {
        family: StructureFamily::Array,
        structure: Some(serde_json::to_value(structure).map_err(|e| e.to_string())?),
        metadata: Default::default(),
        specs: Vec::new(),
        parameters: Some(parameters),
        children: Vec::new(),
    })
}

fn structure_of(described: &Described) -> Result<ArrayStructure, AdapterError> {
    let v = described
        .structure
        .clone()
        .ok_or_else(|| AdapterError::Internal("no structure".into()))?;
    serde_json::from_value(v).map_err(|e| AdapterError::Internal(e.to_string()))
}

// ---------------------------------------------------------------- frames

/// One 2-d (or 3-d with channels) frame decoded from a single-image file.
struct Frame {
    dtype: DataType,
    /// (height, width) or (height, width, channels).
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|x| f(*x)).collect()
}

/// The TIFF pages of a file: (count, dtype, frame shape), from the headers.
fn tiff_header(path: &Path) -> Result<(usize, DataType, Vec<usize>), String> {
    use tiff::ColorType;
    use tiff::tags::Tag;
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut d = tiff::decoder::Decoder::new(BufReader::new(file)).map_err(|e| e.to_string())?;
    let (w, h) = d.dimensions().map_err(|e| e.to_string())?;
    let (channels, bits) = match d.colortype().map_err(|e| e.to_string())? {
        ColorType::Gray(b) => (1, b),
        ColorType::GrayA(b) => (2, b),
        ColorType::RGB(b) => (3, b),
        ColorType::RGBA(b) | ColorType::CMYK(b) => (4, b),
        other => return Err(format!("unsupported TIFF colour type {other:?}")),
    };
    let format: u16 = d
        .find_tag_unsigned(Tag::SampleFormat)
        .map_err(|e| e.to_string())?
        .unwrap_or(1);
    let kind = match format {
        1 => 'u',
        2 => 'i',
        3 => 'f',
        other => return Err(format!("unsupported TIFF sample format {other}")),
    };
    if !matches!(bits, 8 | 16 | 32 | 64) || (kind == 'f' && bits == 8) {
        return Err(format!("unsupported TIFF sample size of {bits} bits"));
    }
    let dtype = DataType::from_numpy_str(&format!(
        "{}{kind}{}",
        if bits == 8 { "|" } else { "<" },
        bits / 8
    ))
    .map_err(|e| e.to_string())?;
    let mut pages = 1;
    while d.more_images() {
        d.next_image().map_err(|e| e.to_string())?;
        let same = d.dimensions().map_err(|e| e.to_string())? == (w, h);
        if !same {
            break; // A thumbnail or a differently sized page ends the stack.
        }
        pages += 1;
    }
    let mut shape = vec![h as usize, w as usize];
    if channels > 1 {
        shape.push(channels);
    }
    Ok((pages, dtype, shape))
}

fn tiff_page(path: &Path, page: usize) -> Result<Frame, AdapterError> {
    use tiff::decoder::DecodingResult as D;
    let (_, dtype, shape) = tiff_header(path).map_err(|e| internal(path, e))?;
    let file = File::open(path).map_err(|e| internal(path, e))?;
    let mut d = tiff::decoder::Decoder::new(BufReader::new(file)).map_err(|e| internal(path, e))?;
    if page > 0 {
        d.seek_to_image(page).map_err(|e| internal(path, e))?;
    }
    let bytes = match d.read_image().map_err(|e| internal(path, e))? {
        D::U8(v) => v,
        D::I8(v) => v.iter().map(|x| *x as u8).collect(),
        D::U16(v) => le_bytes(&v, u16::to_le_bytes),
        D::I16(v) => le_bytes(&v, i16::to_le_bytes),
        D::U32(v) => le_bytes(&v, u32::to_le_bytes),
        D::I32(v) => le_bytes(&v, i32::to_le_bytes),
        D::U64(v) => le_bytes(&v, u64::to_le_bytes),
        D::I64(v) => le_bytes(&v, i64::to_le_bytes),
        D::F32(v) => le_bytes(&v, f32::to_le_bytes),
        D::F64(v) => le_bytes(&v, f64::to_le_bytes),
        D::F16(v) => le_bytes(&v, |x| x.to_le_bytes()),
    };
    Ok(Frame {
        dtype,
        shape,
        bytes,
    })
}

fn png_frame(path: &Path, header_only: bool) -> Result<Frame, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    // Expand palettes and sub-byte greys to 8 bits; keep 16 bits as is.
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let (color, depth) = reader.output_color_type();
    let info = reader.info();
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = color.samples();
    let mut shape = vec![h, w];
    if channels > 1 {
        shape.push(channels);
    }
    let sixteen = depth == png::BitDepth::Sixteen;
    let dtype = dtype(if sixteen { "<u2" } else { "|u1" });
    if header_only {
        return Ok(Frame {
            dtype,
            shape,
            bytes: Vec::new(),
        });
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| "image too large".to_string())?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    buf.truncate(frame.buffer_size());
    if sixteen {
        // PNG stores 16-bit samples big-endian.
        for pair in buf.chunks_exact_mut(2) {
            pair.swap(0, 1);
        }
    }
    Ok(Frame {
        dtype,
        shape,
        bytes: buf,
    })
}

fn jpeg_frame(path: &Path, header_only: bool) -> Result<Frame, String> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut d = zune_jpeg::JpegDecoder::new(ZCursor::new(&bytes));
    d.decode_headers().map_err(|e| e.to_string())?;
    let (w, h) = d.dimensions().ok_or("no dimensions")?;
    // Grey stays grey (one channel); everything else becomes RGB.
    let grey = matches!(d.input_colorspace(), Some(ColorSpace::Luma));
    let out = if grey {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    d.set_options(zune_core::options::DecoderOptions::default().jpeg_set_out_colorspace(out));
    let channels = if grey { 1 } else { 3 };
    let mut shape = vec![h, w];
    if channels > 1 {
        shape.push(channels);
    }
    if header_only {
        return Ok(Frame {
            dtype: dtype("|u1"),
            shape,
            bytes: Vec::new(),
        });
    }
    let pixels = d.decode().map_err(|e| e.to_string())?;
    Ok(Frame {
        dtype: dtype("|u1"),
        shape,
        bytes: pixels,
    })
}

// ---------------------------------------------------------------- NPY

/// An NPY header: dtype, shape and where the data starts.
struct NpyHeader {
    dtype: DataType,
    shape: Vec<usize>,
    offset: u64,
}

fn npy_header(path: &Path) -> Result<NpyHeader, String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic).map_err(|e| e.to_string())?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err("not an NPY file".into());
    }
    let (len, start) = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            f.read_exact(&mut b).map_err(|e| e.to_string())?;
            (u16::from_le_bytes(b) as usize, 10)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            f.read_exact(&mut b).map_err(|e| e.to_string())?;
            (u32::from_le_bytes(b) as usize, 12)
        }
        v => return Err(format!("unsupported NPY version {v}")),
    };
    if len > 1 << 20 {
        return Err("NPY header too large".into());
    }
    let mut header = vec![0u8; len];
    f.read_exact(&mut header).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&header);
    let field = |name: &str| -> Option<&str> {
        let at = text.find(&format!("'{name}':"))? + name.len() + 3;
        Some(text[at..].trim_start())
    };
    let descr = field("descr").ok_or("no descr in the NPY header")?;
    if !descr.starts_with('\'') {
        return Err("structured NPY dtypes are not supported yet".into());
    }
    let descr = &descr[1..descr[1..].find('\'').ok_or("bad descr")? + 1];
    let fortran = field("fortran_order").is_some_and(|v| v.starts_with("True"));
    if fortran {
        return Err("Fortran-ordered NPY files are not supported yet".into());
    }
    let shape_text = field("shape").ok_or("no shape in the NPY header")?;
    let end = shape_text.find(')').ok_or("bad shape")?;
    let shape = shape_text[1..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dtype = DataType::from_numpy_str(descr).map_err(|e| e.to_string())?;
    let offset = (start + len) as u64;
    let expected = shape.iter().product::<usize>() as u64 * dtype.itemsize() as u64;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    if size < offset + expected {
        return Err(format!(
            "truncated: {} data bytes of {expected}",
            size.saturating_sub(offset)
        ));
    }
    Ok(NpyHeader {
        dtype,
        shape,
        offset,
    })
}

/// Rows per block so that a block is about this many bytes.
const TARGET_BLOCK_BYTES: usize = 16 << 20;

fn row_chunks(shape: &[usize], itemsize: usize) -> Vec<Vec<usize>> {
    let mut chunks: Vec<Vec<usize>> = shape.iter().map(|&n| vec![n]).collect();
    if let Some(&rows) = shape.first() {
        let row_bytes = shape[1..].iter().product::<usize>() * itemsize;
        let per = (TARGET_BLOCK_BYTES / row_bytes.max(1)).max(1);
        if rows > per {
            let mut c = vec![per; rows / per];
            if rows % per > 0 {
                c.push(rows % per);
            }
            chunks[0] = c;
        }
    }
    chunks
}

/// An NPY file read with positioned reads: a block is a run of rows, read
/// straight from its byte range.
struct NpyArray {
    file: File,
    path: PathBuf,
    offset: u64,
    structure: ArrayStructure,
}

impl ArrayAdapter for NpyArray {
    fn structure(&self) -> &ArrayStructure {
        &self.structure
    }

    fn read_block(&self, block: &[usize]) -> Result<ArrayData, AdapterError> {
        let s = &self.structure;
        // Blocks are runs of whole rows: only the first axis has an offset.
        let (offset, shape) = s.block_extent(block)?;
        let start_row = offset.first().copied().unwrap_or(0);
        let itemsize = s.data_type.itemsize();
        let row_bytes = s.shape.iter().skip(1).product::<usize>() * itemsize;
        let n = shape.iter().product::<usize>() * itemsize;
        let mut bytes = vec![0u8; n];
        self.file
            .read_exact_at(&mut bytes, self.offset + (start_row * row_bytes) as u64)
            .map_err(|e| internal(&self.path, e))?;
        ArrayData::new(s.data_type.clone(), shape, bytes)
    }

    fn read(&self, sel: &ResolvedSlice) -> Result<ArrayData, AdapterError> {
        tiled_adapters::read_via_blocks(self, sel)
    }
}

/// `.npy` files.
pub struct NpyFormat;

impl FileFormat for NpyFormat {
    fn mimetype(&self) -> &'static str {
        "application/x-npy"
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        let h = npy_header(path).map_err(|e| FileError::unreadable(path, e))?;
        let chunks = row_chunks(&h.shape, h.dtype.itemsize());
        let st = ArrayStructure::new(h.dtype, h.shape, chunks)
            .map_err(|e| FileError::unreadable(path, e))?;
        described_array(&st, json!({})).map_err(|e| FileError::unreadable(path, e))
    }

    fn open(&self, path: &Path, _: &Value, _: StructureFamily) -> Result<NodeData, AdapterError> {
        let h = npy_header(path).map_err(|e| internal(path, e))?;
        let structure = structure_of(&self.describe(path)?)?;
        Ok(NodeData::Array(Arc::new(NpyArray {
            file: File::open(path).map_err(|e| internal(path, e))?,
            path: path.to_path_buf(),
            offset: h.offset,
            structure,
        })))
    }
}

// ---------------------------------------------------------------- TIFF

/// A TIFF stack: block `(i, 0, 0[, 0])` is page `i`.
struct PagedArray {
    structure: ArrayStructure,
    /// Page `i` of the stack as (file, page within the file).
    pages: Vec<(PathBuf, usize)>,
    read_page: fn(&Path, usize) -> Result<Frame, AdapterError>,
    /// Whether the stack axis exists (a single page is 2-d).
    stacked: bool,
    last: Mutex<Option<(usize, Arc<ArrayData>)>>,
}

impl PagedArray {
    fn page(&self, i: usize) -> Result<Arc<ArrayData>, AdapterError> {
        if let Ok(last) = self.last.lock()
            && let Some((j, data)) = last.as_ref()
            && *j == i
        {
            return Ok(data.clone());
        }
        let (path, page) = &self.pages[i];
        let frame = (self.read_page)(path, *page)?;
        let want = if self.stacked {
            &self.structure.shape[1..]
        } else {
            &self.structure.shape[..]
        };
        if frame.shape != want || frame.dtype != self.structure.data_type {
            return Err(internal(
                path,
                format!(
                    "frame is {:?} {:?}, the stack is {want:?} {:?}",
                    frame.shape, frame.dtype, self.structure.data_type
                ),
            ));
        }
        let mut shape = frame.shape.clone();
        if self.stacked {
            shape.insert(0, 1);
        }
        let data = Arc::new(ArrayData::new(frame.dtype, shape, frame.bytes)?);
        if let Ok(mut last) = self.last.lock() {
            *last = Some((i, data.clone()));
        }
        Ok(data)
    }
}

impl ArrayAdapter for PagedArray {
    fn structure(&self) -> &ArrayStructure {
        &self.structure
    }

    fn read_block(&self, block: &[usize]) -> Result<ArrayData, AdapterError> {
        self.structure.block_extent(block)?;
        let i = if self.stacked { block[0] } else { 0 };
        Ok((*self.page(i)?).clone())
    }

    fn read(&self, sel: &ResolvedSlice) -> Result<ArrayData, AdapterError> {
        tiled_adapters::read_via_blocks(self, sel)
    }
}

fn stack_structure(
    dtype: DataType,
    pages: usize,
    frame: &[usize],
    stacked: bool,
) -> Result<ArrayStructure, String> {
    let mut shape = frame.to_vec();
    let mut chunks: Vec<Vec<usize>> = frame.iter().map(|&n| vec![n]).collect();
    if stacked {
        shape.insert(0, pages);
        chunks.insert(0, vec![1; pages]);
        if pages == 0 {
            chunks[0] = vec![0];
        }
    }
    ArrayStructure::new(dtype, shape, chunks).map_err(|e| e.to_string())
}

fn tiff_read_page(path: &Path, page: usize) -> Result<Frame, AdapterError> {
    tiff_page(path, page)
}

/// `.tif`/`.tiff` files: one page as a 2-d (or RGB 3-d) array, several
/// same-sized pages as a stack.
pub struct TiffFormat;

impl FileFormat for TiffFormat {
    fn mimetype(&self) -> &'static str {
        "image/tiff"
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        let (pages, dtype, frame) =
            tiff_header(path).map_err(|e| FileError::unreadable(path, e))?;
        let st = stack_structure(dtype, pages, &frame, pages > 1)
            .map_err(|e| FileError::unreadable(path, e))?;
        described_array(&st, json!({})).map_err(|e| FileError::unreadable(path, e))
    }

    fn open(&self, path: &Path, _: &Value, _: StructureFamily) -> Result<NodeData, AdapterError> {
        let structure = structure_of(&self.describe(path)?)?;
        let stacked = structure.shape.len() > 2
            && structure.chunks[0].iter().all(|c| *c == 1)
            && tiff_header(path).map_err(|e| internal(path, e))?.0 > 1;
        let n = if stacked { structure.shape[0] } else { 1 };
        Ok(NodeData::Array(Arc::new(PagedArray {
            structure,
            pages: (0..n).map(|i| (path.to_path_buf(), i)).collect(),
            read_page: tiff_read_page,
            stacked,
            last: Mutex::new(None),
        })))
    }
}

/// A whole single-image file decoded into memory (PNG, JPEG).
fn single_image(
    path: &Path,
    decode: fn(&Path, bool) -> Result<Frame, String>,
) -> Result<NodeData, AdapterError> {
    let frame = decode(path, false).map_err(|e| internal(path, e))?;
    let chunks = frame.shape.iter().map(|&n| vec![n]).collect();
    let data = ArrayData::new(frame.dtype, frame.shape, frame.bytes)?;
    Ok(NodeData::Array(Arc::new(MemoryArray::new(data, chunks)?)))
}

fn describe_image(
    path: &Path,
    decode: fn(&Path, bool) -> Result<Frame, String>,
) -> Result<Described, FileError> {
    let frame = decode(path, true).map_err(|e| FileError::unreadable(path, e))?;
    let st = stack_structure(frame.dtype, 1, &frame.shape, false)
        .map_err(|e| FileError::unreadable(path, e))?;
    described_array(&st, json!({})).map_err(|e| FileError::unreadable(path, e))
}

/// `.png` files (8- and 16-bit, grey or colour; palettes expanded).
pub struct PngFormat;

impl FileFormat for PngFormat {
    fn mimetype(&self) -> &'static str {
        "image/png"
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        describe_image(path, png_frame)
    }

    fn open(&self, path: &Path, _: &Value, _: StructureFamily) -> Result<NodeData, AdapterError> {
        single_image(path, png_frame)
    }
}

/// `.jpg`/`.jpeg` files (grey or RGB, 8-bit).
pub struct JpegFormat;

impl FileFormat for JpegFormat {
    fn mimetype(&self) -> &'static str {
        "image/jpeg"
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        describe_image(path, jpeg_frame)
    }

    fn open(&self, path: &Path, _: &Value, _: StructureFamily) -> Result<NodeData, AdapterError> {
        single_image(path, jpeg_frame)
    }
}

// ---------------------------------------------------------------- sequences

/// Numbered files stacked along a new first axis, one file per block.
pub struct SequenceFormat {
    mimetype: &'static str,
    kind: SequenceKind,
}

#[derive(Clone, Copy)]
enum SequenceKind {
    Tiff,
    Jpeg,
    Npy,
}

impl SequenceFormat {
    /// TIFF sequences (`multipart/related;type=image/tiff`).
    pub fn tiff() -> Self {
        SequenceFormat {
            mimetype: "multipart/related;type=image/tiff",
            kind: SequenceKind::Tiff,
        }
    }

    /// JPEG sequences.
    pub fn jpeg() -> Self {
        SequenceFormat {
            mimetype: "multipart/related;type=image/jpeg",
            kind: SequenceKind::Jpeg,
        }
    }

    /// NPY sequences.
    pub fn npy() -> Self {
        SequenceFormat {
            mimetype: "multipart/related;type=application/x-npy",
            kind: SequenceKind::Npy,
        }
    }

    fn frame_header(&self, path: &Path) -> Result<(DataType, Vec<usize>), String> {
        match self.kind {
            SequenceKind::Tiff => {
                let (_, dtype, shape) = tiff_header(path)?;
                Ok((dtype, shape))
            }
            SequenceKind::Jpeg => jpeg_frame(path, true).map(|f| (f.dtype, f.shape)),
            SequenceKind::Npy => npy_header(path).map(|h| (h.dtype, h.shape)),
        }
    }
}

fn npy_read_page(path: &Path, _: usize) -> Result<Frame, AdapterError> {
    let h = npy_header(path).map_err(|e| internal(path, e))?;
    let n = h.shape.iter().product::<usize>() * h.dtype.itemsize();
    let file = File::open(path).map_err(|e| internal(path, e))?;
    let mut bytes = vec![0u8; n];
    file.read_exact_at(&mut bytes, h.offset)
        .map_err(|e| internal(path, e))?;
    Ok(Frame {
        dtype: h.dtype,
        shape: h.shape,
        bytes,
    })
}

fn jpeg_read_page(path: &Path, _: usize) -> Result<Frame, AdapterError> {
    jpeg_frame(path, false).map_err(|e| internal(path, e))
}

/// Describe a numbered sequence from its first file's header.
///
/// # Errors
/// [`FileError`] if the first file cannot be read or the format is not a
/// sequence format.
pub fn describe_sequence(
    format: &dyn FileFormat,
    paths: &[PathBuf],
) -> Result<Described, FileError> {
    let first = paths
        .first()
        .ok_or_else(|| FileError::unreadable(Path::new("."), "an empty sequence"))?;
    let seq = match format.mimetype() {
        "multipart/related;type=image/tiff" => SequenceFormat::tiff(),
        "multipart/related;type=image/jpeg" => SequenceFormat::jpeg(),
        "multipart/related;type=application/x-npy" => SequenceFormat::npy(),
        other => {
            return Err(FileError::unreadable(
                first,
                format!("{other} is not a sequence type"),
            ));
        }
    };
    let (dtype, frame) = seq
        .frame_header(first)
        .map_err(|e| FileError::unreadable(first, e))?;
    let st = stack_structure(dtype, paths.len(), &frame, true)
        .map_err(|e| FileError::unreadable(first, e))?;
    described_array(&st, json!({})).map_err(|e| FileError::unreadable(first, e))
}

impl FileFormat for SequenceFormat {
    fn mimetype(&self) -> &'static str {
        self.mimetype
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        describe_sequence(self, &[path.to_path_buf()])
    }

    fn open(
        &self,
        path: &Path,
        parameters: &Value,
        _: StructureFamily,
    ) -> Result<NodeData, AdapterError> {
        let paths: Vec<PathBuf> = match parameters.get("paths") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(PathBuf::from)
                .collect(),
            _ => vec![path.to_path_buf()],
        };
        let structure = structure_of(&describe_sequence(self, &paths)?)?;
        let read_page = match self.kind {
            SequenceKind::Tiff => tiff_read_page,
            SequenceKind::Jpeg => jpeg_read_page,
            SequenceKind::Npy => npy_read_page,
        };
        Ok(NodeData::Array(Arc::new(PagedArray {
            structure,
            pages: paths.into_iter().map(|p| (p, 0)).collect(),
            read_page,
            stacked: true,
            last: Mutex::new(None),
        })))
    }
}
