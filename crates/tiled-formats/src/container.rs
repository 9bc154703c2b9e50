//! Containers: the JSON tree export, and the Arrow table of 1-d variables
//! the upstream client asks for when it rebuilds an `xarray.Dataset`
//! (`container/full?format=application/vnd.apache.arrow.file&field=...`).

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int8Array, Int16Array, Int32Array,
    Int64Array, RecordBatch, TimestampNanosecondArray, UInt8Array, UInt16Array, UInt32Array,
    UInt64Array,
};
use arrow_schema::{Field, Schema, SchemaRef};
use tiled_adapters::ArrayData;
use tiled_model::{DataType, Endianness, Kind};

use crate::{FormatError, Payload};

/// Encode a document payload as JSON.
///
/// # Errors
/// [`FormatError::Internal`] if given data instead of a document.
pub fn encode_json(p: Payload) -> Result<Vec<u8>, FormatError> {
    match p {
        Payload::Document(v) => {
            serde_json::to_vec(&v).map_err(|e| FormatError::Internal(e.to_string()))
        }
        _ => Err(FormatError::Internal(
            "container JSON serializer given data".into(),
        )),
    }
}

fn values<const N: usize, T>(a: &ArrayData, from: fn([u8; N]) -> T) -> Vec<T> {
    let big = matches!(&a.dtype, DataType::Builtin(b) if b.endianness == Endianness::Big);
    crate::array_formats::native(&a.bytes, big, from)
}

/// One 1-d array as an Arrow column.
///
/// # Errors
/// [`FormatError::Unsupported`] for arrays that are not 1-d or whose dtype
/// has no Arrow column type here.
pub fn array_to_column(name: &str, a: &ArrayData) -> Result<ArrayRef, FormatError> {
    if a.shape.len() != 1 {
        return Err(FormatError::Unsupported(format!(
            "field {name:?} has shape {:?}; only 1-d arrays become table columns",
            a.shape
        )));
    }
    let DataType::Builtin(b) = &a.dtype else {
        return Err(FormatError::Unsupported(format!(
            "field {name:?} has a structured dtype"
        )));
    };
    Ok(match (b.kind, b.itemsize) {
        (Kind::Bool, 1) => Arc::new(BooleanArray::from(
            a.bytes.iter().map(|&v| v != 0).collect::<Vec<_>>(),
        )),
        (Kind::Int, 1) => Arc::new(Int8Array::from(values(a, i8::from_ne_bytes))),
        (Kind::Int, 2) => Arc::new(Int16Array::from(values(a, i16::from_ne_bytes))),
        (Kind::Int, 4) => Arc::new(Int32Array::from(values(a, i32::from_ne_bytes))),
        (Kind::Int, 8) => Arc::new(Int64Array::from(values(a, i64::from_ne_bytes))),
        (Kind::UInt, 1) => Arc::new(UInt8Array::from(a.bytes.clone())),
        (Kind::UInt, 2) => Arc::new(UInt16Array::from(values(a, u16::from_ne_bytes))),
        (Kind::UInt, 4) => Arc::new(UInt32Array::from(values(a, u32::from_ne_bytes))),
        (Kind::UInt, 8) => Arc::new(UInt64Array::from(values(a, u64::from_ne_bytes))),
        (Kind::Float, 4) => Arc::new(Float32Array::from(values(a, f32::from_ne_bytes))),
        (Kind::Float, 8) => Arc::new(Float64Array::from(values(a, f64::from_ne_bytes))),
        (Kind::Datetime, 8) if b.dt_units.as_deref() == Some("[ns]") => Arc::new(
            TimestampNanosecondArray::from(values(a, i64::from_ne_bytes)),
        ),
        (kind, size) => {
            return Err(FormatError::Unsupported(format!(
                "field {name:?}: no Arrow column for dtype kind {kind:?} of {size} bytes"
            )));
        }
    })
}

/// Several 1-d arrays of one length as a one-batch table, in the order given.
///
/// # Errors
/// [`FormatError::Unsupported`] if lengths differ or a field cannot be a
/// column.
pub fn arrays_to_table(fields: &[(String, ArrayData)]) -> Result<Payload, FormatError> {
    let mut columns = Vec::with_capacity(fields.len());
    let mut schema_fields = Vec::with_capacity(fields.len());
    for (name, a) in fields {
        let column = array_to_column(name, a)?;
        schema_fields.push(Field::new(name, column.data_type().clone(), false));
        columns.push(column);
    }
    if let Some(first) = columns.first()
        && columns.iter().any(|c| c.len() != first.len())
    {
        return Err(FormatError::Unsupported(
            "fields of different lengths cannot form one table".into(),
        ));
    }
    let schema: SchemaRef = Arc::new(Schema::new(schema_fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| FormatError::Internal(e.to_string()))?;
    Ok(Payload::Table {
        schema,
        batches: vec![batch],
    })
}

/// Arrow columns (one per batch) as one 1-d array of the matching NumPy
/// type; `None` for columns with no fixed-width NumPy form (text, nested).
///
/// # Errors
/// [`FormatError::Internal`] never in practice (lengths always agree).
pub fn column_to_array(
    columns: &[&dyn arrow_array::Array],
) -> Result<Option<ArrayData>, FormatError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::{DataType as A, TimeUnit};
    let Some(first) = columns.first() else {
        return Ok(None);
    };
    let n: usize = columns.iter().map(|c| c.len()).sum();
    macro_rules! prim {
        ($t:ty, $numpy:expr) => {{
            let mut bytes =
                Vec::with_capacity(n * std::mem::size_of::<<$t as ArrowPrimitiveType>::Native>());
            for c in columns {
                for v in c.as_primitive::<$t>().values().iter() {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
            $numpy
                .to_string()
                .replace('=', "<")
                .parse::<String>()
                .ok()
                .and_then(|s| DataType::from_numpy_str(&s).ok())
                .map(|dtype| ArrayData::new(dtype, vec![n], bytes))
        }};
    }
    let out = match first.data_type() {
        A::Int8 => prim!(Int8Type, "|i1"),
        A::Int16 => prim!(Int16Type, "<i2"),
        A::Int32 => prim!(Int32Type, "<i4"),
        A::Int64 => prim!(Int64Type, "<i8"),
        A::UInt8 => prim!(UInt8Type, "|u1"),
        A::UInt16 => prim!(UInt16Type, "<u2"),
        A::UInt32 => prim!(UInt32Type, "<u4"),
        A::UInt64 => prim!(UInt64Type, "<u8"),
        A::Float32 => prim!(Float32Type, "<f4"),
        A::Float64 => prim!(Float64Type, "<f8"),
        A::Timestamp(TimeUnit::Nanosecond, _) => prim!(TimestampNanosecondType, "<M8[ns]"),
        A::Timestamp(TimeUnit::Microsecond, _) => prim!(TimestampMicrosecondType, "<M8[us]"),
        A::Timestamp(TimeUnit::Millisecond, _) => prim!(TimestampMillisecondType, "<M8[ms]"),
        A::Timestamp(TimeUnit::Second, _) => prim!(TimestampSecondType, "<M8[s]"),
        A::Boolean => {
            let mut bytes = Vec::with_capacity(n);
            for c in columns {
                bytes.extend(c.as_boolean().iter().map(|v| u8::from(v.unwrap_or(false))));
            }
            DataType::from_numpy_str("|b1")
                .ok()
                .map(|dtype| ArrayData::new(dtype, vec![n], bytes))
        }
        _ => None,
    };
    out.transpose()
        .map_err(|e| FormatError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    #[test]
    fn one_d_arrays_become_columns() {
        let f = ArrayData::new(
            DataType::from_numpy_str(">f8").unwrap(),
            vec![2],
            [1.5f64, -2.0]
                .iter()
                .flat_map(|v| v.to_be_bytes())
                .collect(),
        )
        .unwrap();
        let i = ArrayData::new(
            DataType::from_numpy_str("<i4").unwrap(),
            vec![2],
            [7i32, 8].iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
        .unwrap();
        let Payload::Table { batches, .. } =
            arrays_to_table(&[("f".into(), f), ("i".into(), i.clone())]).unwrap()
        else {
            panic!()
        };
        let col = batches[0].column(0);
        let col = col.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(col.values(), &[1.5, -2.0]);
        let two_d = ArrayData::new(i.dtype.clone(), vec![1, 2], i.bytes.clone()).unwrap();
        assert!(matches!(
            arrays_to_table(&[("x".into(), two_d)]),
            Err(FormatError::Unsupported(_))
        ));
        let short = ArrayData::new(i.dtype.clone(), vec![1], i.bytes[..4].to_vec()).unwrap();
        assert!(arrays_to_table(&[("a".into(), i), ("b".into(), short)]).is_err());
    }
}
