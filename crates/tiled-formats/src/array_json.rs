//! Arrays as JSON: nested lists like NumPy's `tolist()`, a bare value for
//! 0-d arrays. NaN and infinities become `null`; datetimes ISO 8601 strings;
//! complex numbers `[real, imag]`; structured elements lists of their fields;
//! byte strings decoded as UTF-8 (lossy) without trailing NULs.

use serde_json::Value;
use tiled_adapters::ArrayData;
use tiled_model::{BuiltinDtype, DataType, Endianness, Kind};

use crate::FormatError;

/// Encode an array as JSON bytes.
///
/// # Errors
/// [`FormatError::Internal`] if serialization fails.
pub fn encode(a: &ArrayData) -> Result<Vec<u8>, FormatError> {
    serde_json::to_vec(&to_value(a)?).map_err(|e| FormatError::Internal(e.to_string()))
}

/// The JSON value of an array.
///
/// # Errors
/// [`FormatError::Unsupported`] for element types with no JSON form.
pub fn to_value(a: &ArrayData) -> Result<Value, FormatError> {
    let itemsize = a.dtype.itemsize();
    let mut elements = Vec::with_capacity(a.bytes.len() / itemsize.max(1));
    if itemsize > 0 {
        for cell in a.bytes.chunks_exact(itemsize) {
            elements.push(element(&a.dtype, cell)?);
        }
    }
    Ok(nest(&a.shape, &mut elements.into_iter()))
}

fn nest(shape: &[usize], items: &mut impl Iterator<Item = Value>) -> Value {
    match shape.split_first() {
        None => items.next().unwrap_or(Value::Null),
        Some((&n, rest)) => Value::Array((0..n).map(|_| nest(rest, items)).collect()),
    }
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn bytes_n<const N: usize>(cell: &[u8], big: bool) -> [u8; N] {
    let mut b = [0u8; N];
    b.copy_from_slice(&cell[..N]);
    if big != cfg!(target_endian = "big") {
        b.reverse();
    }
    b
}

pub(crate) fn element(dtype: &DataType, cell: &[u8]) -> Result<Value, FormatError> {
    match dtype {
        DataType::Struct(s) => {
            let mut offset = 0;
            let mut fields = Vec::with_capacity(s.fields.len());
            for f in &s.fields {
                let n = f.dtype.itemsize() * f.shape.as_ref().map_or(1, |s| s.iter().product());
                let part = cell.get(offset..offset + n).ok_or_else(|| {
                    FormatError::Unsupported("structured dtype fields exceed its itemsize".into())
                })?;
                fields.push(if f.shape.is_some() {
                    let shape = f.shape.clone().unwrap_or_default();
                    to_value(&ArrayData {
                        dtype: f.dtype.clone(),
                        shape,
                        bytes: part.to_vec(),
                    })?
                } else {
                    element(&f.dtype, part)?
                });
                offset += n;
            }
            Ok(Value::Array(fields))
        }
        DataType::Builtin(b) => builtin(b, cell),
    }
}

pub(crate) fn builtin(b: &BuiltinDtype, cell: &[u8]) -> Result<Value, FormatError> {
    let big = b.endianness == Endianness::Big;
    Ok(match (b.kind, b.itemsize) {
        (Kind::Bool | Kind::Bit, _) => Value::Bool(cell[0] != 0),
        (Kind::Int, 1) => (cell[0] as i8).into(),
        (Kind::Int, 2) => i16::from_ne_bytes(bytes_n(cell, big)).into(),
        (Kind::Int, 4) => i32::from_ne_bytes(bytes_n(cell, big)).into(),
        (Kind::Int, 8) => i64::from_ne_bytes(bytes_n(cell, big)).into(),
        (Kind::UInt, 1) => cell[0].into(),
        (Kind::UInt, 2) => u16::from_ne_bytes(bytes_n(cell, big)).into(),
        (Kind::UInt, 4) => u32::from_ne_bytes(bytes_n(cell, big)).into(),
        (Kind::UInt, 8) => u64::from_ne_bytes(bytes_n(cell, big)).into(),
        (Kind::Float, 2) => float(half::f16::from_ne_bytes(bytes_n(cell, big)).to_f64()),
        (Kind::Float, 4) => float(f32::from_ne_bytes(bytes_n(cell, big)) as f64),
        (Kind::Float, 8) => float(f64::from_ne_bytes(bytes_n(cell, big))),
        (Kind::Complex, 8) => Value::Array(vec![
            float(f32::from_ne_bytes(bytes_n(&cell[..4], big)) as f64),
            float(f32::from_ne_bytes(bytes_n(&cell[4..], big)) as f64),
        ]),
        (Kind::Complex, 16) => Value::Array(vec![
            float(f64::from_ne_bytes(bytes_n(&cell[..8], big))),
            float(f64::from_ne_bytes(bytes_n(&cell[8..], big))),
        ]),
        (Kind::Datetime, 8) => {
            let v = i64::from_ne_bytes(bytes_n(cell, big));
            datetime(v, b.dt_units.as_deref().unwrap_or("[ns]"))
        }
        (Kind::Timedelta, 8) => {
            let v = i64::from_ne_bytes(bytes_n(cell, big));
            if v == i64::MIN { Value::Null } else { v.into() }
        }
        (Kind::Bytes, _) => {
            let end = cell.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
            Value::String(String::from_utf8_lossy(&cell[..end]).into_owned())
        }
        (Kind::Unicode, _) => {
            let s: String = cell
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes(bytes_n(c, big)))
                .take_while(|&c| c != 0)
                .map(|c| char::from_u32(c).unwrap_or('\u{FFFD}'))
                .collect();
            Value::String(s)
        }
        (Kind::Void, _) => Value::String(cell.iter().map(|b| format!("{b:02x}")).collect()),
        (kind, size) => {
            return Err(FormatError::Unsupported(format!(
                "no JSON form for dtype kind {kind:?} of {size} bytes"
            )));
        }
    })
}

/// NumPy datetime64 with `units` → ISO 8601 (naive), NaT → null.
fn datetime(v: i64, units: &str) -> Value {
    if v == i64::MIN {
        return Value::Null;
    }
    let units = units.trim_start_matches('[').trim_end_matches(']');
    let (mult, unit) = units
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| (units[..i].parse::<i64>().unwrap_or(1), &units[i..]))
        .unwrap_or((1, units));
    let nanos_per: Option<i128> = match unit {
        "ns" => Some(1),
        "us" => Some(1_000),
        "ms" => Some(1_000_000),
        "s" => Some(1_000_000_000),
        "m" => Some(60_000_000_000),
        "h" => Some(3_600_000_000_000),
        "D" => Some(86_400_000_000_000),
        "W" => Some(7 * 86_400_000_000_000),
        _ => None,
    };
    let Some(per) = nanos_per else {
        return v.into();
    };
    let total = v as i128 * mult as i128 * per;
    let secs = total.div_euclid(1_000_000_000) as i64;
    let nanos = total.rem_euclid(1_000_000_000) as u32;
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(dt) => Value::String(
            dt.naive_utc()
                .format(if nanos == 0 {
                    "%Y-%m-%dT%H:%M:%S"
                } else {
                    "%Y-%m-%dT%H:%M:%S%.f"
                })
                .to_string(),
        ),
        None => v.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn arr(numpy: &str, shape: Vec<usize>, bytes: Vec<u8>) -> ArrayData {
        ArrayData::new(DataType::from_numpy_str(numpy).unwrap(), shape, bytes).unwrap()
    }

    #[test]
    fn nested_lists_and_special_values() {
        let a = arr(
            "<f8",
            vec![2, 2],
            [1.5, f64::NAN, f64::INFINITY, -2.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        );
        assert_eq!(to_value(&a).unwrap(), json!([[1.5, null], [null, -2.0]]));
        let be = arr(
            ">i4",
            vec![2],
            [7i32, -1].iter().flat_map(|v| v.to_be_bytes()).collect(),
        );
        assert_eq!(to_value(&be).unwrap(), json!([7, -1]));
        let scalar = arr("<i8", vec![], 42i64.to_le_bytes().to_vec());
        assert_eq!(to_value(&scalar).unwrap(), json!(42));
        let t = arr(
            "<M8[ns]",
            vec![1],
            1_600_000_000_500_000_000i64.to_le_bytes().to_vec(),
        );
        assert_eq!(to_value(&t).unwrap(), json!(["2020-09-13T12:26:40.500"]));
        let mut u = Vec::new();
        for c in "hi".chars() {
            u.extend_from_slice(&(c as u32).to_le_bytes());
        }
        u.resize(12, 0);
        assert_eq!(to_value(&arr("<U3", vec![1], u)).unwrap(), json!(["hi"]));
    }
}
