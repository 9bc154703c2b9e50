//! Array export formats other than the raw buffer and JSON: delimited text,
//! NPY, PNG, TIFF, JPEG, HTML and msgpack.
//!
//! Every encoder first checks that the format can represent the array (its
//! rank and dtype) and answers [`FormatError::Unsupported`] otherwise, which
//! the server maps to a 406 listing the formats that can.

use std::io::Cursor;

use tiled_adapters::ArrayData;
use tiled_model::{BuiltinDtype, DataType, Endianness, Kind};

use crate::{FormatError, Payload, array_json};

fn array(p: Payload) -> Result<ArrayData, FormatError> {
    match p {
        Payload::Array(a) => Ok(a),
        _ => Err(FormatError::Internal(
            "array serializer given something else".into(),
        )),
    }
}

fn internal(e: impl std::fmt::Display) -> FormatError {
    FormatError::Internal(e.to_string())
}

/// The elements of a numeric array in native byte order, widened where the
/// output formats have no narrower type (`float16` → `f32`, `bool` → `u8`,
/// datetimes and timedeltas → their `i64` counts).
#[derive(Debug, Clone, PartialEq)]
pub enum Numbers {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Elements of `bytes` in native order (`big`: stored big-endian).
pub(crate) fn native<const N: usize, T>(bytes: &[u8], big: bool, from: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            if big != cfg!(target_endian = "big") {
                b.reverse();
            }
            from(b)
        })
        .collect()
}

impl Numbers {
    /// Decode a numeric array; `None` for strings, complex, structs.
    pub fn decode(a: &ArrayData) -> Option<Numbers> {
        let DataType::Builtin(b) = &a.dtype else {
            return None;
        };
        let big = b.endianness == Endianness::Big;
        let bytes = &a.bytes;
        Some(match (b.kind, b.itemsize) {
            (Kind::Bool, 1) => Numbers::U8(bytes.iter().map(|&v| u8::from(v != 0)).collect()),
            (Kind::UInt, 1) => Numbers::U8(bytes.clone()),
            (Kind::Int, 1) => Numbers::I8(bytes.iter().map(|&v| v as i8).collect()),
            (Kind::UInt, 2) => Numbers::U16(native(bytes, big, u16::from_ne_bytes)),
            (Kind::Int, 2) => Numbers::I16(native(bytes, big, i16::from_ne_bytes)),
            (Kind::UInt, 4) => Numbers::U32(native(bytes, big, u32::from_ne_bytes)),
            (Kind::Int, 4) => Numbers::I32(native(bytes, big, i32::from_ne_bytes)),
            (Kind::UInt, 8) => Numbers::U64(native(bytes, big, u64::from_ne_bytes)),
            (Kind::Int | Kind::Datetime | Kind::Timedelta, 8) => {
                Numbers::I64(native(bytes, big, i64::from_ne_bytes))
            }
            (Kind::Float, 2) => Numbers::F32(
                native(bytes, big, half::f16::from_ne_bytes)
                    .into_iter()
                    .map(f32::from)
                    .collect(),
            ),
            (Kind::Float, 4) => Numbers::F32(native(bytes, big, f32::from_ne_bytes)),
            (Kind::Float, 8) => Numbers::F64(native(bytes, big, f64::from_ne_bytes)),
            _ => return None,
        })
    }

    /// Every element as `f64` (for scaling; large 64-bit integers round).
    pub fn to_f64(&self) -> Vec<f64> {
        fn conv<T: Copy>(v: &[T], f: impl Fn(T) -> f64) -> Vec<f64> {
            v.iter().map(|&x| f(x)).collect()
        }
        match self {
            Numbers::U8(v) => conv(v, f64::from),
            Numbers::I8(v) => conv(v, f64::from),
            Numbers::U16(v) => conv(v, f64::from),
            Numbers::I16(v) => conv(v, f64::from),
            Numbers::U32(v) => conv(v, f64::from),
            Numbers::I32(v) => conv(v, f64::from),
            Numbers::U64(v) => conv(v, |x| x as f64),
            Numbers::I64(v) => conv(v, |x| x as f64),
            Numbers::F32(v) => conv(v, f64::from),
            Numbers::F64(v) => v.clone(),
        }
    }
}

/// Call `f` with every element of a numeric array as `f64`, straight from
/// its bytes (no intermediate copy of the array). `false` for non-numeric
/// dtypes.
fn each_f64(a: &ArrayData, mut f: impl FnMut(f64)) -> bool {
    let DataType::Builtin(b) = &a.dtype else {
        return false;
    };
    let swap = (b.endianness == Endianness::Big) != cfg!(target_endian = "big");
    macro_rules! go {
        ($t:ty, $n:expr, $conv:expr) => {{
            for c in a.bytes.chunks_exact($n) {
                let mut x = [0u8; $n];
                x.copy_from_slice(c);
                if swap {
                    x.reverse();
                }
                f($conv(<$t>::from_ne_bytes(x)));
            }
        }};
    }
    match (b.kind, b.itemsize) {
        (Kind::Bool | Kind::UInt, 1) => a.bytes.iter().for_each(|&v| f(f64::from(v))),
        (Kind::Int, 1) => a.bytes.iter().for_each(|&v| f(f64::from(v as i8))),
        (Kind::UInt, 2) => go!(u16, 2, f64::from),
        (Kind::Int, 2) => go!(i16, 2, f64::from),
        (Kind::UInt, 4) => go!(u32, 4, f64::from),
        (Kind::Int, 4) => go!(i32, 4, f64::from),
        (Kind::UInt, 8) => go!(u64, 8, |v| v as f64),
        (Kind::Int | Kind::Datetime | Kind::Timedelta, 8) => go!(i64, 8, |v| v as f64),
        (Kind::Float, 2) => go!(half::f16, 2, |v: half::f16| v.to_f64()),
        (Kind::Float, 4) => go!(f32, 4, f64::from),
        (Kind::Float, 8) => go!(f64, 8, |v| v),
        _ => return false,
    }
    true
}

/// Min–max scaling of a numeric array to 8 bits, in two passes over its
/// bytes: the only allocation is the output.
fn scale_array_to_u8(a: &ArrayData, what: &str) -> Result<Vec<u8>, FormatError> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let numeric = each_f64(a, |v| {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    });
    if !numeric {
        return Err(FormatError::Unsupported(format!(
            "{what} needs a numeric array, not {:?}",
            a.dtype
        )));
    }
    let span = hi - lo;
    let mut out = Vec::with_capacity(a.bytes.len() / a.dtype.itemsize().max(1));
    each_f64(a, |v| {
        out.push(
            if !v.is_finite() || span.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                0
            } else {
                ((v - lo) / span * 255.0).round().clamp(0.0, 255.0) as u8
            },
        )
    });
    Ok(out)
}

/// Linear min–max scaling to `0..=255`, ignoring non-finite values (which
/// become 0). A constant array maps to 0.
pub fn scale_to_u8(values: &[f64]) -> Vec<u8> {
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = hi - lo;
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() || span.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                0
            } else {
                ((v - lo) / span * 255.0).round().clamp(0.0, 255.0) as u8
            }
        })
        .collect()
}

// ------------------------------------------------------------------ text

fn float_text(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        // Debug is the shortest text that round-trips, with an exponent for
        // very large and very small magnitudes (Display would print 300
        // digits for 1e300).
        format!("{v:?}")
    }
}

fn quote(text: String, sep: char) -> String {
    if text.contains([sep, '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// One element as text: floats round-trip exactly (`nan`, `inf`), strings
/// bare (quoted only when they contain the separator or a quote).
fn cell_text(b: &BuiltinDtype, cell: &[u8], sep: char) -> Result<String, FormatError> {
    let big = b.endianness == Endianness::Big;
    Ok(match (b.kind, b.itemsize) {
        (Kind::Float, 2) => float_text(f64::from(f32::from(
            native(cell, big, half::f16::from_ne_bytes)[0],
        ))),
        (Kind::Float, 4) => {
            // Print the f32's own shortest form, not its f64 widening.
            let v = native(cell, big, f32::from_ne_bytes)[0];
            if v.is_finite() {
                format!("{v:?}")
            } else {
                float_text(f64::from(v))
            }
        }
        (Kind::Float, 8) => float_text(native(cell, big, f64::from_ne_bytes)[0]),
        (Kind::Complex, 8 | 16) => {
            let half = b.itemsize / 2;
            // Each part in its own precision's shortest form.
            let part = |c: &[u8]| -> (String, bool) {
                if half == 4 {
                    let v = native(c, big, f32::from_ne_bytes)[0];
                    let text = if v.is_finite() {
                        format!("{:?}", v.abs())
                    } else {
                        float_text(f64::from(v.abs()))
                    };
                    (text, v.is_sign_negative())
                } else {
                    let v = native(c, big, f64::from_ne_bytes)[0];
                    (float_text(v.abs()), v.is_sign_negative())
                }
            };
            let ((re, re_neg), (im, im_neg)) = (part(&cell[..half]), part(&cell[half..]));
            let re_sign = if re_neg { "-" } else { "" };
            let im_sign = if im_neg { '-' } else { '+' };
            format!("({re_sign}{re}{im_sign}{im}j)")
        }
        (Kind::Bool, _) => if cell[0] != 0 { "True" } else { "False" }.into(),
        (Kind::Datetime, _) => match array_json::builtin(b, cell)? {
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => "NaT".into(),
            other => other.to_string(),
        },
        (Kind::Timedelta, _) => match array_json::builtin(b, cell)? {
            serde_json::Value::Null => "NaT".into(),
            other => other.to_string(),
        },
        _ => match array_json::builtin(b, cell)? {
            serde_json::Value::String(s) => quote(s, sep),
            other => other.to_string(),
        },
    })
}

/// CSV-like text: one line per row (a 1-d array is one value per line, a
/// 0-d array one value), no header, `sep` between values.
///
/// # Errors
/// [`FormatError::Unsupported`] for more than 2 dimensions or structured
/// dtypes.
pub fn encode_delimited(a: &ArrayData, sep: char) -> Result<Vec<u8>, FormatError> {
    let DataType::Builtin(b) = &a.dtype else {
        return Err(FormatError::Unsupported(
            "structured arrays have no delimited-text form; use npy or json".into(),
        ));
    };
    let row_len = match a.shape.len() {
        0 | 1 => 1,
        2 => a.shape[1],
        n => {
            return Err(FormatError::Unsupported(format!(
                "delimited text holds at most 2 dimensions; this array has {n}; slice it first"
            )));
        }
    };
    let mut out = String::with_capacity(a.bytes.len() * 2);
    if b.itemsize == 0 || row_len == 0 {
        // Rows of zero columns: one empty line each.
        let rows = a.shape.first().copied().unwrap_or(1);
        return Ok("\n"
            .repeat(if row_len == 0 { rows } else { 0 })
            .into_bytes());
    }
    for row in a.bytes.chunks(b.itemsize * row_len) {
        for (j, cell) in row.chunks_exact(b.itemsize).enumerate() {
            if j > 0 {
                out.push(sep);
            }
            out.push_str(&cell_text(b, cell, sep)?);
        }
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// `text/csv`.
///
/// # Errors
/// See [`encode_delimited`].
pub fn encode_csv(p: Payload) -> Result<Vec<u8>, FormatError> {
    encode_delimited(&array(p)?, ',')
}

/// `text/tab-separated-values`.
///
/// # Errors
/// See [`encode_delimited`].
pub fn encode_tsv(p: Payload) -> Result<Vec<u8>, FormatError> {
    encode_delimited(&array(p)?, '\t')
}

// ------------------------------------------------------------------ NPY

/// The NumPy `descr` of a dtype as a Python literal.
fn npy_descr(dtype: &DataType) -> String {
    match dtype {
        DataType::Builtin(b) => format!("'{}'", b.to_numpy_str()),
        DataType::Struct(s) => {
            let packed: usize = s
                .fields
                .iter()
                .map(|f| f.dtype.itemsize() * f.shape.as_ref().map_or(1, |s| s.iter().product()))
                .sum();
            let name = |n: &str| format!("'{}'", n.replace('\\', "\\\\").replace('\'', "\\'"));
            let shape_of = |f: &tiled_model::StructField| f.shape.as_ref().map(|s| python_tuple(s));
            if packed == s.itemsize {
                let fields: Vec<String> = s
                    .fields
                    .iter()
                    .map(|f| match shape_of(f) {
                        Some(shape) => {
                            format!("({}, {}, {shape})", name(&f.name), npy_descr(&f.dtype))
                        }
                        None => format!("({}, {})", name(&f.name), npy_descr(&f.dtype)),
                    })
                    .collect();
                format!("[{}]", fields.join(", "))
            } else {
                // Trailing padding: only the dict form can say the itemsize.
                let mut offset = 0;
                let (mut names, mut formats, mut offsets) = (vec![], vec![], vec![]);
                for f in &s.fields {
                    names.push(name(&f.name));
                    formats.push(match shape_of(f) {
                        Some(shape) => format!("({}, {shape})", npy_descr(&f.dtype)),
                        None => npy_descr(&f.dtype),
                    });
                    offsets.push(offset.to_string());
                    offset += f.dtype.itemsize()
                        * f.shape.as_ref().map_or(1, |s| s.iter().product::<usize>());
                }
                format!(
                    "{{'names': [{}], 'formats': [{}], 'offsets': [{}], 'itemsize': {}}}",
                    names.join(", "),
                    formats.join(", "),
                    offsets.join(", "),
                    s.itemsize
                )
            }
        }
    }
}

fn python_tuple(shape: &[usize]) -> String {
    match shape {
        [] => "()".into(),
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// NPY format version 1.0 (2.0 when the header exceeds 64 KiB), the bytes
/// verbatim after the header: `numpy.load` reads any dtype we serve.
///
/// # Errors
/// Never for valid payloads.
pub fn encode_npy(p: Payload) -> Result<Vec<u8>, FormatError> {
    let a = array(p)?;
    let header = format!(
        "{{'descr': {}, 'fortran_order': False, 'shape': {}, }}",
        npy_descr(&a.dtype),
        python_tuple(&a.shape)
    );
    // magic (6) + version (2) + length (2 or 4) + header + '\n', padded to 64.
    let v1 = header.len() + 1 + 10 <= u16::MAX as usize;
    let prefix = if v1 { 10 } else { 12 };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    let header_len = total - prefix;
    let mut out = Vec::with_capacity(total + a.bytes.len());
    out.extend_from_slice(b"\x93NUMPY");
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out.extend_from_slice(&a.bytes);
    Ok(out)
}

// ------------------------------------------------------------------ images

/// The pixel layout of an image-like array: height, width, channels (1, 3
/// or 4).
fn image_layout(a: &ArrayData, what: &str) -> Result<(usize, usize, usize), FormatError> {
    match a.shape.as_slice() {
        [h, w] => Ok((*h, *w, 1)),
        [h, w, c @ (3 | 4)] => Ok((*h, *w, *c)),
        other => Err(FormatError::Unsupported(format!(
            "{what} needs a 2-d array, or 3-d with a last axis of 3 (RGB) or 4 (RGBA); \
             this array has shape {other:?}"
        ))),
    }
}

fn numbers(a: &ArrayData, what: &str) -> Result<Numbers, FormatError> {
    Numbers::decode(a).ok_or_else(|| {
        FormatError::Unsupported(format!("{what} needs a numeric array, not {:?}", a.dtype))
    })
}

/// `image/png`: uint8 and uint16 as they are (grey, RGB or RGBA); any other
/// numeric type scaled min–max to 8 bits.
///
/// # Errors
/// [`FormatError::Unsupported`] for other ranks or non-numeric dtypes, or
/// an empty image.
pub fn encode_png(p: Payload) -> Result<Vec<u8>, FormatError> {
    let a = array(p)?;
    let (h, w, c) = image_layout(&a, "PNG")?;
    if h == 0 || w == 0 {
        return Err(FormatError::Unsupported(
            "PNG cannot hold an empty image".into(),
        ));
    }
    let uint = |n: usize| matches!(&a.dtype, DataType::Builtin(b) if b.kind == Kind::UInt && b.itemsize == n);
    let (depth, data) = if uint(1) {
        (png::BitDepth::Eight, a.bytes)
    } else if uint(2) {
        match numbers(&a, "PNG")? {
            Numbers::U16(v) => (
                png::BitDepth::Sixteen,
                v.iter().flat_map(|x| x.to_be_bytes()).collect(),
            ),
            _ => {
                return Err(FormatError::Internal(
                    "uint16 decoded as another type".into(),
                ));
            }
        }
    } else {
        (png::BitDepth::Eight, scale_array_to_u8(&a, "PNG")?)
    };
    let color = match c {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        _ => png::ColorType::Rgba,
    };
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
        enc.set_color(color);
        enc.set_depth(depth);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc.write_header().map_err(internal)?;
        writer.write_image_data(&data).map_err(internal)?;
        writer.finish().map_err(internal)?;
    }
    Ok(out)
}

/// `image/jpeg`: an 8-bit preview (grey or RGB), scaled like PNG.
///
/// # Errors
/// As [`encode_png`]; also images over 65535 pixels on a side.
pub fn encode_jpeg(p: Payload) -> Result<Vec<u8>, FormatError> {
    let a = array(p)?;
    let (h, w, c) = image_layout(&a, "JPEG")?;
    if h == 0 || w == 0 || h > 65535 || w > 65535 {
        return Err(FormatError::Unsupported(format!(
            "JPEG needs 1 to 65535 pixels on each side; this image is {h}×{w}"
        )));
    }
    let data = if matches!(&a.dtype, DataType::Builtin(b) if b.kind == Kind::UInt && b.itemsize == 1)
    {
        a.bytes
    } else {
        scale_array_to_u8(&a, "JPEG")?
    };
    let (data, color) = match c {
        1 => (data, jpeg_encoder::ColorType::Luma),
        3 => (data, jpeg_encoder::ColorType::Rgb),
        // JPEG has no alpha: drop it.
        _ => (
            data.chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
            jpeg_encoder::ColorType::Rgb,
        ),
    };
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&data, w as u16, h as u16, color)
        .map_err(internal)?;
    Ok(out)
}

/// `image/tiff`: the native dtype kept; a 2-d array is one page, an N-d
/// array a stack of 2-d pages over its leading axes (a 1-d array one row).
///
/// # Errors
/// [`FormatError::Unsupported`] for 0-d arrays and non-numeric dtypes.
pub fn encode_tiff(p: Payload) -> Result<Vec<u8>, FormatError> {
    use tiff::encoder::{TiffEncoder, colortype};
    let a = array(p)?;
    let (pages, h, w) = match a.shape.as_slice() {
        [] => {
            return Err(FormatError::Unsupported(
                "TIFF needs at least one dimension".into(),
            ));
        }
        [n] => (1, 1, *n),
        [rest @ .., h, w] => (rest.iter().product::<usize>(), *h, *w),
    };
    if h == 0 || w == 0 || pages == 0 {
        return Err(FormatError::Unsupported(
            "TIFF cannot hold an empty image".into(),
        ));
    }
    let (Ok(w32), Ok(h32)) = (u32::try_from(w), u32::try_from(h)) else {
        return Err(FormatError::Unsupported("image too large for TIFF".into()));
    };
    let n = numbers(&a, "TIFF")?;
    let page = h * w;
    let mut cursor = Cursor::new(Vec::with_capacity(a.bytes.len() + 1024));
    // BigTIFF only when the classic 4 GiB offsets could overflow.
    let big = a.bytes.len() > (u32::MAX as usize) / 2;
    macro_rules! write_pages {
        ($enc:expr, $ct:ty, $v:expr) => {{
            let mut enc = $enc;
            for chunk in $v.chunks(page) {
                enc.write_image::<$ct>(w32, h32, chunk).map_err(internal)?;
            }
        }};
    }
    macro_rules! dispatch {
        ($enc:expr) => {
            match &n {
                Numbers::U8(v) => write_pages!($enc, colortype::Gray8, v),
                Numbers::I8(v) => write_pages!($enc, colortype::GrayI8, v),
                Numbers::U16(v) => write_pages!($enc, colortype::Gray16, v),
                Numbers::I16(v) => write_pages!($enc, colortype::GrayI16, v),
                Numbers::U32(v) => write_pages!($enc, colortype::Gray32, v),
                Numbers::I32(v) => write_pages!($enc, colortype::GrayI32, v),
                Numbers::U64(v) => write_pages!($enc, colortype::Gray64, v),
                Numbers::I64(v) => write_pages!($enc, colortype::GrayI64, v),
                Numbers::F32(v) => write_pages!($enc, colortype::Gray32Float, v),
                Numbers::F64(v) => write_pages!($enc, colortype::Gray64Float, v),
            }
        };
    }
    if big {
        dispatch!(TiffEncoder::new_big(&mut cursor).map_err(internal)?);
    } else {
        dispatch!(TiffEncoder::new(&mut cursor).map_err(internal)?);
    }
    Ok(cursor.into_inner())
}

// ------------------------------------------------------------------ HTML

/// Rows and columns shown by the HTML preview.
pub const HTML_MAX_ROWS: usize = 1000;
pub const HTML_MAX_COLUMNS: usize = 100;

/// Escape text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Wrap table rows in a minimal standalone page.
pub fn html_page(
    title: &str,
    header: Option<&[String]>,
    rows: &[Vec<String>],
    note: &str,
) -> Vec<u8> {
    let mut out = String::from("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    out.push_str(&html_escape(title));
    out.push_str("</title></head><body>\n<table border=\"1\">\n");
    if let Some(header) = header {
        out.push_str("<thead><tr>");
        for h in header {
            out.push_str("<th>");
            out.push_str(&html_escape(h));
            out.push_str("</th>");
        }
        out.push_str("</tr></thead>\n");
    }
    out.push_str("<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str("<td>");
            out.push_str(&html_escape(cell));
            out.push_str("</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
    if !note.is_empty() {
        out.push_str("<p>");
        out.push_str(&html_escape(note));
        out.push_str("</p>\n");
    }
    out.push_str("</body></html>\n");
    out.into_bytes()
}

/// `text/html`: a table of at most [`HTML_MAX_ROWS`] × [`HTML_MAX_COLUMNS`]
/// cells, with a note saying what was left out.
///
/// # Errors
/// [`FormatError::Unsupported`] for more than 2 dimensions.
pub fn encode_html(p: Payload) -> Result<Vec<u8>, FormatError> {
    let a = array(p)?;
    let (rows, cols) = match a.shape.as_slice() {
        [] => (1, 1),
        [n] => (*n, 1),
        [r, c] => (*r, *c),
        other => {
            return Err(FormatError::Unsupported(format!(
                "the HTML preview shows at most 2 dimensions; this array has shape {other:?}"
            )));
        }
    };
    let itemsize = a.dtype.itemsize();
    let text = |cell: &[u8]| -> Result<String, FormatError> {
        Ok(match &a.dtype {
            DataType::Builtin(b) => cell_text(b, cell, ',')?,
            DataType::Struct(_) => array_json::element(&a.dtype, cell)?.to_string(),
        })
    };
    let mut table = Vec::new();
    for r in 0..rows.min(HTML_MAX_ROWS) {
        let mut row = Vec::new();
        for c in 0..cols.min(HTML_MAX_COLUMNS) {
            let at = (r * cols + c) * itemsize;
            row.push(text(&a.bytes[at..at + itemsize])?);
        }
        table.push(row);
    }
    let note = if rows > HTML_MAX_ROWS || cols > HTML_MAX_COLUMNS {
        format!(
            "Showing {} of {rows} rows and {} of {cols} columns.",
            rows.min(HTML_MAX_ROWS),
            cols.min(HTML_MAX_COLUMNS)
        )
    } else {
        String::new()
    };
    Ok(html_page("array", None, &table, &note))
}

// ------------------------------------------------------------------ msgpack

/// `application/x-msgpack`: the same nested lists as JSON, but floats stay
/// floats (NaN and infinities included).
///
/// # Errors
/// As [`array_json::to_value`].
pub fn encode_msgpack(p: Payload) -> Result<Vec<u8>, FormatError> {
    let a = array(p)?;
    let value = match Numbers::decode(&a) {
        Some(Numbers::F32(v)) => nest_msgpack(&a.shape, &mut v.into_iter().map(rmpv::Value::F32)),
        Some(Numbers::F64(v)) if matches!(&a.dtype, DataType::Builtin(b) if b.kind == Kind::Float) => {
            nest_msgpack(&a.shape, &mut v.into_iter().map(rmpv::Value::F64))
        }
        _ => json_to_msgpack(array_json::to_value(&a)?),
    };
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value).map_err(internal)?;
    Ok(out)
}

fn nest_msgpack(shape: &[usize], items: &mut impl Iterator<Item = rmpv::Value>) -> rmpv::Value {
    match shape.split_first() {
        None => items.next().unwrap_or(rmpv::Value::Nil),
        Some((&n, rest)) => rmpv::Value::Array((0..n).map(|_| nest_msgpack(rest, items)).collect()),
    }
}

/// A JSON value as msgpack, integers kept as integers.
pub fn json_to_msgpack(v: serde_json::Value) -> rmpv::Value {
    use serde_json::Value as J;
    match v {
        J::Null => rmpv::Value::Nil,
        J::Bool(b) => rmpv::Value::Boolean(b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                rmpv::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                rmpv::Value::from(u)
            } else {
                rmpv::Value::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => rmpv::Value::from(s),
        J::Array(a) => rmpv::Value::Array(a.into_iter().map(json_to_msgpack).collect()),
        J::Object(o) => rmpv::Value::Map(
            o.into_iter()
                .map(|(k, v)| (rmpv::Value::from(k), json_to_msgpack(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(numpy: &str, shape: Vec<usize>, bytes: Vec<u8>) -> ArrayData {
        ArrayData::new(DataType::from_numpy_str(numpy).unwrap(), shape, bytes).unwrap()
    }

    fn f64s(v: &[f64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn csv_rows_and_special_floats() {
        let a = arr("<f8", vec![2, 2], f64s(&[0.1, f64::NAN, -2.5, 1e300]));
        let text = String::from_utf8(encode_delimited(&a, ',').unwrap()).unwrap();
        assert_eq!(text, "0.1,nan\n-2.5,1e300\n");
        let cube = arr("<f8", vec![1, 1, 1], f64s(&[1.0]));
        assert!(matches!(
            encode_delimited(&cube, ','),
            Err(FormatError::Unsupported(_))
        ));
        let be = arr(
            ">i4",
            vec![3],
            [1i32, -2, 3].iter().flat_map(|v| v.to_be_bytes()).collect(),
        );
        assert_eq!(encode_delimited(&be, '\t').unwrap(), b"1\n-2\n3\n");
    }

    #[test]
    fn npy_header_is_aligned_and_describes_the_array() {
        let a = arr("<i2", vec![2, 3], vec![0; 12]);
        let out = encode_npy(Payload::Array(a)).unwrap();
        assert_eq!(&out[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([out[8], out[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&out[10..10 + header_len]).unwrap();
        assert!(
            header.starts_with("{'descr': '<i2', 'fortran_order': False, 'shape': (2, 3), }"),
            "{header}"
        );
        assert!(header.ends_with('\n'));
        assert_eq!(out.len(), 10 + header_len + 12);
    }

    #[test]
    fn scaling_from_bytes_matches_scaling_values() {
        let v = [3.0, -1.0, f64::NAN, 7.5, 0.25];
        let a = arr(
            ">f8",
            vec![5],
            v.iter().flat_map(|x| x.to_be_bytes()).collect(),
        );
        assert_eq!(scale_array_to_u8(&a, "PNG").unwrap(), scale_to_u8(&v));
        let i = arr(
            "<i2",
            vec![3],
            [-5i16, 0, 5].iter().flat_map(|x| x.to_le_bytes()).collect(),
        );
        assert_eq!(scale_array_to_u8(&i, "PNG").unwrap(), vec![0, 128, 255]);
    }

    #[test]
    fn scaling_maps_min_to_0_and_max_to_255() {
        assert_eq!(
            scale_to_u8(&[2.0, 4.0, 3.0, f64::NAN]),
            vec![0, 255, 128, 0]
        );
        assert_eq!(scale_to_u8(&[5.0, 5.0]), vec![0, 0]);
    }

    #[test]
    fn png_decodes_to_the_same_pixels() {
        let a = arr("|u1", vec![2, 3], vec![0, 1, 2, 3, 4, 255]);
        let bytes = encode_png(Payload::Array(a)).unwrap();
        let mut reader = png::Decoder::new(Cursor::new(bytes)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(&buf[..6], &[0, 1, 2, 3, 4, 255]);
        let line = arr("<f8", vec![4], f64s(&[1.0; 4]));
        assert!(encode_png(Payload::Array(line)).is_err());
    }

    #[test]
    fn tiff_keeps_dtype_and_stacks_pages() {
        let a = arr("<f8", vec![2, 2, 3], f64s(&[0.5; 12]));
        let bytes = encode_tiff(Payload::Array(a)).unwrap();
        let mut dec = tiff::decoder::Decoder::new(Cursor::new(bytes)).unwrap();
        let mut pages = 1;
        assert_eq!(dec.dimensions().unwrap(), (3, 2));
        match dec.read_image().unwrap() {
            tiff::decoder::DecodingResult::F64(v) => assert_eq!(v, vec![0.5; 6]),
            other => panic!("{other:?}"),
        }
        while dec.more_images() {
            dec.next_image().unwrap();
            pages += 1;
        }
        assert_eq!(pages, 2);
    }
}
