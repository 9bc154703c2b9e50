//! Tables as Arrow IPC files (what the Python client reads) and as JSON
//! (`{"column": [values...]}`, NaN/NaT as null).

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType as ArrowType, SchemaRef, TimeUnit};
use serde_json::Value;

use crate::{FormatError, Payload};

fn table(p: &Payload) -> Result<(&SchemaRef, &[RecordBatch]), FormatError> {
    match p {
        Payload::Table { schema, batches } => Ok((schema, batches)),
        _ => Err(FormatError::Internal(
            "table serializer given an array".into(),
        )),
    }
}

/// Arrow IPC file format (`ARROW1` magic and footer).
///
/// # Errors
/// [`FormatError::Internal`] if Arrow refuses the batches.
pub fn encode_arrow_file(p: Payload) -> Result<Vec<u8>, FormatError> {
    let (schema, batches) = table(&p)?;
    let internal = |e: arrow_schema::ArrowError| FormatError::Internal(e.to_string());
    // Reserve about the final size up front: growing by doubling would
    // briefly hold up to three times the body.
    let estimate: usize = batches
        .iter()
        .map(|b| b.get_array_memory_size())
        .sum::<usize>()
        + 4096;
    let mut out = Vec::with_capacity(estimate);
    {
        let mut w = arrow_ipc::writer::FileWriter::try_new(&mut out, schema).map_err(internal)?;
        for b in batches {
            w.write(b).map_err(internal)?;
        }
        w.finish().map_err(internal)?;
    }
    Ok(out)
}

/// `{"column": [...]}` with one list per column.
///
/// # Errors
/// [`FormatError::Unsupported`] for column types with no JSON form here.
pub fn encode_json(p: Payload) -> Result<Vec<u8>, FormatError> {
    let (schema, batches) = table(&p)?;
    let mut out = serde_json::Map::new();
    for (i, field) in schema.fields().iter().enumerate() {
        let mut values = Vec::new();
        for b in batches.iter() {
            column_values(b.column(i).as_ref(), &mut values)?;
        }
        out.insert(field.name().clone(), Value::Array(values));
    }
    serde_json::to_vec(&Value::Object(out)).map_err(|e| FormatError::Internal(e.to_string()))
}

pub(crate) fn column_values(col: &dyn Array, out: &mut Vec<Value>) -> Result<(), FormatError> {
    macro_rules! prim {
        ($t:ty, $conv:expr) => {{
            let a = col.as_primitive::<$t>();
            for i in 0..a.len() {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    $conv(a.value(i))
                });
            }
        }};
    }
    let float = |v: f64| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
    match col.data_type() {
        ArrowType::Int8 => prim!(Int8Type, Value::from),
        ArrowType::Int16 => prim!(Int16Type, Value::from),
        ArrowType::Int32 => prim!(Int32Type, Value::from),
        ArrowType::Int64 => prim!(Int64Type, Value::from),
        ArrowType::UInt8 => prim!(UInt8Type, Value::from),
        ArrowType::UInt16 => prim!(UInt16Type, Value::from),
        ArrowType::UInt32 => prim!(UInt32Type, Value::from),
        ArrowType::UInt64 => prim!(UInt64Type, Value::from),
        ArrowType::Float32 => prim!(Float32Type, |v: f32| float(v as f64)),
        ArrowType::Float64 => prim!(Float64Type, float),
        ArrowType::Timestamp(unit, _) => {
            let per: i64 = match unit {
                TimeUnit::Second => 1_000_000_000,
                TimeUnit::Millisecond => 1_000_000,
                TimeUnit::Microsecond => 1_000,
                TimeUnit::Nanosecond => 1,
            };
            let iso = |v: i64| {
                let total = v as i128 * per as i128;
                let secs = total.div_euclid(1_000_000_000) as i64;
                let nanos = total.rem_euclid(1_000_000_000) as u32;
                chrono::DateTime::from_timestamp(secs, nanos)
                    .map(|d| {
                        Value::String(d.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string())
                    })
                    .unwrap_or(Value::Null)
            };
            match unit {
                TimeUnit::Second => prim!(TimestampSecondType, iso),
                TimeUnit::Millisecond => prim!(TimestampMillisecondType, iso),
                TimeUnit::Microsecond => prim!(TimestampMicrosecondType, iso),
                TimeUnit::Nanosecond => prim!(TimestampNanosecondType, iso),
            }
        }
        ArrowType::Boolean => {
            let a = col.as_boolean();
            for i in 0..a.len() {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Bool(a.value(i))
                });
            }
        }
        ArrowType::Utf8 => out.extend(
            col.as_string::<i32>()
                .iter()
                .map(|s| s.map_or(Value::Null, Value::from)),
        ),
        ArrowType::LargeUtf8 => out.extend(
            col.as_string::<i64>()
                .iter()
                .map(|s| s.map_or(Value::Null, Value::from)),
        ),
        other => {
            return Err(FormatError::Unsupported(format!(
                "no JSON form for column type {other}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int64Array};
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn arrow_file_round_trips_and_json_has_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", ArrowType::Int64, false),
            Field::new("b", ArrowType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Float64Array::from(vec![0.5, f64::NAN])),
            ],
        )
        .unwrap();
        let p = || Payload::Table {
            schema: schema.clone(),
            batches: vec![batch.clone()],
        };
        let bytes = encode_arrow_file(p()).unwrap();
        assert_eq!(&bytes[..6], b"ARROW1");
        let reader =
            arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let back: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(back, vec![batch.clone()]);
        let json: Value = serde_json::from_slice(&encode_json(p()).unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({"a": [1, 2], "b": [0.5, null]}));
    }
}
