//! Containers as HDF5 files (upstream's default container export): a group
//! per container, a dataset per array (its dtype kept: byte order, strings,
//! compound types), a group of column datasets per table, and node metadata
//! as HDF5 attributes.
//!
//! Written with the pure-Rust `rust-hdf5` crate, which writes to a path, so
//! the file is built in a temporary file and then read back as the body.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use rust_hdf5::format::messages::datatype::{ByteOrder, CompoundMember, DatatypeMessage};
use rust_hdf5::{H5Dataset, H5File, H5Group};
use serde_json::{Map, Value};
use tiled_adapters::ArrayData;
use tiled_model::{DataType, Endianness, Kind};

use crate::{FormatError, Payload};

/// A subtree to export, with its data already read.
pub enum ExportNode {
    Container {
        metadata: Map<String, Value>,
        children: Vec<(String, ExportNode)>,
    },
    Array {
        metadata: Map<String, Value>,
        data: ArrayData,
    },
    Table {
        metadata: Map<String, Value>,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
}

fn internal(e: impl std::fmt::Display) -> FormatError {
    FormatError::Internal(e.to_string())
}

/// Encode a [`Payload::Tree`] as an HDF5 file.
///
/// # Errors
/// [`FormatError::Internal`] if the file cannot be written.
pub fn encode(p: Payload) -> Result<Vec<u8>, FormatError> {
    let Payload::Tree(root) = p else {
        return Err(FormatError::Internal(
            "HDF5 serializer given something other than a tree".into(),
        ));
    };
    let dir = tempfile::tempdir().map_err(internal)?;
    let path = dir.path().join("export.h5");
    {
        let file = H5File::create(&path).map_err(internal)?;
        let group = file.root_group();
        match &root {
            ExportNode::Container { metadata, children } => {
                group_attrs(&group, metadata)?;
                for (key, child) in children {
                    write_node(&group, key, child)?;
                }
            }
            // A lone array or table becomes the file's only member.
            other => write_node(&group, "data", other)?,
        }
        file.close().map_err(internal)?;
    }
    std::fs::read(&path).map_err(internal)
}

fn write_node(parent: &H5Group, key: &str, node: &ExportNode) -> Result<(), FormatError> {
    match node {
        ExportNode::Container { metadata, children } => {
            let g = parent.create_group(key).map_err(internal)?;
            group_attrs(&g, metadata)?;
            for (k, child) in children {
                write_node(&g, k, child)?;
            }
        }
        ExportNode::Array { metadata, data } => {
            let ds = write_array(parent, key, data)?;
            dataset_attrs(&ds, metadata)?;
            note_numpy_dtype(&ds, &data.dtype)?;
        }
        ExportNode::Table {
            metadata,
            schema,
            batches,
        } => {
            let g = parent.create_group(key).map_err(internal)?;
            group_attrs(&g, metadata)?;
            for (i, field) in schema.fields().iter().enumerate() {
                let columns: Vec<&dyn arrow_array::Array> =
                    batches.iter().map(|b| b.column(i).as_ref()).collect();
                let data = crate::container::column_to_array(&columns)?;
                match data {
                    Some(a) => {
                        let ds = write_array(&g, field.name(), &a)?;
                        note_numpy_dtype(&ds, &a.dtype)?;
                    }
                    None => {
                        // Text and other columns: variable-length UTF-8.
                        let mut values = Vec::new();
                        for c in &columns {
                            crate::table::column_values(*c, &mut values)?;
                        }
                        let text: Vec<String> = values
                            .into_iter()
                            .map(|v| match v {
                                Value::String(s) => s,
                                Value::Null => String::new(),
                                other => other.to_string(),
                            })
                            .collect();
                        let refs: Vec<&str> = text.iter().map(String::as_str).collect();
                        g.write_vlen_strings(field.name(), &refs)
                            .map_err(internal)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn note_numpy_dtype(ds: &H5Dataset, dtype: &DataType) -> Result<(), FormatError> {
    if let Some(original) = numpy_dtype_note(dtype) {
        ds.new_attr::<rust_hdf5::types::VarLenUnicode>()
            .shape(())
            .create("numpy_dtype")
            .and_then(|a| a.write_string(&original))
            .map_err(internal)?;
    }
    Ok(())
}

/// NumPy types HDF5 has no native form for are stored as their raw
/// representation; this attribute says what they were.
fn numpy_dtype_note(dtype: &DataType) -> Option<String> {
    match dtype {
        DataType::Builtin(b)
            if matches!(b.kind, Kind::Datetime | Kind::Timedelta | Kind::Unicode) =>
        {
            Some(b.to_numpy_str())
        }
        _ => None,
    }
}

fn order(e: Endianness) -> ByteOrder {
    match e {
        Endianness::Big => ByteOrder::BigEndian,
        _ => ByteOrder::LittleEndian,
    }
}

fn with_order(mut t: DatatypeMessage, e: Endianness) -> DatatypeMessage {
    match &mut t {
        DatatypeMessage::FixedPoint { byte_order, .. }
        | DatatypeMessage::FloatingPoint { byte_order, .. } => *byte_order = order(e),
        _ => {}
    }
    t
}

/// The HDF5 type of a NumPy dtype, as h5py would write it.
fn datatype(dtype: &DataType) -> Result<DatatypeMessage, FormatError> {
    Ok(match dtype {
        DataType::Struct(s) => {
            let mut members = Vec::with_capacity(s.fields.len());
            let mut offset = 0usize;
            for f in &s.fields {
                let mut t = datatype(&f.dtype)?;
                let mut n = f.dtype.itemsize();
                if let Some(shape) = &f.shape {
                    n *= shape.iter().product::<usize>();
                    t = DatatypeMessage::array(shape.iter().map(|&d| d as u32).collect(), t);
                }
                members.push(CompoundMember {
                    name: f.name.clone(),
                    offset: offset as u32,
                    datatype: t,
                });
                offset += n;
            }
            DatatypeMessage::compound(s.itemsize as u32, members)
        }
        DataType::Builtin(b) => {
            let e = b.endianness;
            match (b.kind, b.itemsize) {
                (Kind::Bool, 1) => DatatypeMessage::bool_type(),
                (Kind::Int | Kind::UInt | Kind::Datetime | Kind::Timedelta, n) => {
                    DatatypeMessage::FixedPoint {
                        size: n as u32,
                        byte_order: order(e),
                        signed: b.kind != Kind::UInt,
                        bit_offset: 0,
                        bit_precision: (n * 8) as u16,
                    }
                }
                (Kind::Float, 2) => with_order(DatatypeMessage::f16_type(), e),
                (Kind::Float, 4) => with_order(DatatypeMessage::f32_type(), e),
                (Kind::Float, 8) => with_order(DatatypeMessage::f64_type(), e),
                (Kind::Complex, n @ (8 | 16)) => {
                    // h5py's complex: a compound of `r` and `i`.
                    let part = if n == 8 {
                        with_order(DatatypeMessage::f32_type(), e)
                    } else {
                        with_order(DatatypeMessage::f64_type(), e)
                    };
                    DatatypeMessage::compound(
                        n as u32,
                        vec![
                            CompoundMember {
                                name: "r".into(),
                                offset: 0,
                                datatype: part.clone(),
                            },
                            CompoundMember {
                                name: "i".into(),
                                offset: (n / 2) as u32,
                                datatype: part,
                            },
                        ],
                    )
                }
                // h5py's `S` dtype: fixed-length, null-padded ASCII.
                (Kind::Bytes, n) => DatatypeMessage::FixedString {
                    size: n as u32,
                    padding: 1,
                    charset: 0,
                },
                (Kind::Void, n) => DatatypeMessage::FixedString {
                    size: n as u32,
                    padding: 1,
                    charset: 0,
                },
                (kind, n) => {
                    return Err(FormatError::Unsupported(format!(
                        "no HDF5 form for dtype kind {kind:?} of {n} bytes"
                    )));
                }
            }
        }
    })
}

fn write_array(parent: &H5Group, key: &str, a: &ArrayData) -> Result<H5Dataset, FormatError> {
    // NumPy's `U` (UCS-4) has no HDF5 type: store UTF-8 strings instead.
    if let DataType::Builtin(b) = &a.dtype
        && b.kind == Kind::Unicode
    {
        let value = crate::array_json::to_value(a)?;
        let mut flat = Vec::new();
        flatten_strings(&value, &mut flat);
        let refs: Vec<&str> = flat.iter().map(String::as_str).collect();
        return parent.write_vlen_strings(key, &refs).map_err(internal);
    }
    let t = datatype(&a.dtype)?;
    let builder = parent.new_dataset::<u8>().datatype(t);
    let ds = if a.shape.is_empty() {
        builder.scalar().create(key)
    } else {
        builder.shape(&a.shape).create(key)
    }
    .map_err(internal)?;
    if !a.bytes.is_empty() {
        ds.write_raw_bytes(&a.bytes).map_err(internal)?;
    }
    Ok(ds)
}

fn flatten_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten_strings(i, out)),
        Value::String(s) => out.push(s.clone()),
        other => out.push(other.to_string()),
    }
}

/// A metadata value in the shape HDF5 attributes can hold.
enum Attr {
    Str(String),
    Int(i64),
    Float(f64),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Strs(Vec<String>),
}

/// Scalars and homogeneous lists map to typed attributes; anything nested
/// (dicts, mixed lists, null) is kept as its JSON text.
fn attr_of(v: &Value) -> Attr {
    match v {
        Value::String(s) => Attr::Str(s.clone()),
        Value::Bool(b) => Attr::Int(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Attr::Int(i),
            None => Attr::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::Array(items) if !items.is_empty() => {
            if let Some(ints) = items.iter().map(Value::as_i64).collect::<Option<Vec<_>>>() {
                Attr::Ints(ints)
            } else if let Some(fs) = items.iter().map(Value::as_f64).collect::<Option<Vec<_>>>() {
                Attr::Floats(fs)
            } else if let Some(ss) = items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
            {
                Attr::Strs(ss)
            } else {
                Attr::Str(v.to_string())
            }
        }
        other => Attr::Str(other.to_string()),
    }
}

fn group_attrs(g: &H5Group, metadata: &Map<String, Value>) -> Result<(), FormatError> {
    for (k, v) in metadata {
        match attr_of(v) {
            Attr::Str(s) => g.set_attr_string(k, &s),
            Attr::Int(i) => g.set_attr_numeric(k, &i),
            Attr::Float(f) => g.set_attr_numeric(k, &f),
            Attr::Ints(v) => g.set_attr_array_numeric(k, &v),
            Attr::Floats(v) => g.set_attr_array_numeric(k, &v),
            Attr::Strs(v) => {
                let refs: Vec<&str> = v.iter().map(String::as_str).collect();
                g.set_attr_string_array(k, &refs)
            }
        }
        .map_err(internal)?;
    }
    Ok(())
}

fn dataset_attrs(ds: &H5Dataset, metadata: &Map<String, Value>) -> Result<(), FormatError> {
    use rust_hdf5::types::VarLenUnicode;
    for (k, v) in metadata {
        match attr_of(v) {
            Attr::Str(s) => ds
                .new_attr::<VarLenUnicode>()
                .shape(())
                .create(k)
                .and_then(|a| a.write_string(&s)),
            Attr::Int(i) => ds
                .new_attr::<i64>()
                .shape(())
                .create(k)
                .and_then(|a| a.write_numeric(&i)),
            Attr::Float(f) => ds
                .new_attr::<f64>()
                .shape(())
                .create(k)
                .and_then(|a| a.write_numeric(&f)),
            Attr::Ints(v) => ds
                .new_attr::<i64>()
                .shape([v.len()])
                .create(k)
                .and_then(|a| a.write_array(&v)),
            Attr::Floats(v) => ds
                .new_attr::<f64>()
                .shape([v.len()])
                .create(k)
                .and_then(|a| a.write_array(&v)),
            Attr::Strs(v) => {
                let refs: Vec<&str> = v.iter().map(String::as_str).collect();
                ds.new_attr::<VarLenUnicode>()
                    .shape([v.len()])
                    .create(k)
                    .and_then(|a| a.write_string_array(&refs))
            }
        }
        .map_err(internal)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_a_file_rust_hdf5_reads_back() {
        let md = |v: Value| v.as_object().cloned().unwrap_or_default();
        let a = ArrayData::new(
            DataType::from_numpy_str(">i4").unwrap(),
            vec![2, 2],
            [1i32, 2, 3, -4]
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect(),
        )
        .unwrap();
        let tree = ExportNode::Container {
            metadata: md(json!({"title": "t", "n": 3, "xs": [1.5, 2.5], "nested": {"a": 1}})),
            children: vec![(
                "sub".into(),
                ExportNode::Container {
                    metadata: Map::new(),
                    children: vec![(
                        "a".into(),
                        ExportNode::Array {
                            metadata: md(json!({"units": "m"})),
                            data: a,
                        },
                    )],
                },
            )],
        };
        let bytes = encode(Payload::Tree(tree)).unwrap();
        assert_eq!(&bytes[..8], b"\x89HDF\r\n\x1a\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.h5");
        std::fs::write(&path, &bytes).unwrap();
        let f = H5File::open(&path).unwrap();
        let ds = f.dataset("sub/a").unwrap();
        assert_eq!(ds.shape(), vec![2, 2]);
        assert_eq!(ds.read_raw::<i32>().unwrap(), vec![1, 2, 3, -4]);
        assert_eq!(f.attr_string("title").unwrap(), "t");
    }
}
