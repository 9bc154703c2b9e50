//! NumPy-style data types as Tiled puts them on the wire.
//!
//! A [`DataType`] is either a [`BuiltinDtype`] (`{"endianness", "kind",
//! "itemsize", "dt_units"}`) or a [`StructDtype`] (`{"itemsize", "fields"}`),
//! told apart on the wire by the presence of `fields`. Both convert to and from
//! NumPy's type strings (`"<f8"`, `">i4"`, `"|S10"`, `"<M8[ns]"`), which is how
//! people write them.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Byte order of one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endianness {
    Little,
    Big,
    /// One-byte and byte-string types, where order does not apply.
    NotApplicable,
}

impl Endianness {
    /// The byte order of the machine we run on.
    pub fn native() -> Self {
        if cfg!(target_endian = "big") {
            Endianness::Big
        } else {
            Endianness::Little
        }
    }

    fn numpy_char(self) -> char {
        match self {
            Endianness::Little => '<',
            Endianness::Big => '>',
            Endianness::NotApplicable => '|',
        }
    }
}

/// NumPy's `kind` character.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "t")]
    Bit,
    #[serde(rename = "b")]
    Bool,
    #[serde(rename = "i")]
    Int,
    #[serde(rename = "u")]
    UInt,
    #[serde(rename = "f")]
    Float,
    #[serde(rename = "c")]
    Complex,
    #[serde(rename = "m")]
    Timedelta,
    #[serde(rename = "M")]
    Datetime,
    #[serde(rename = "S")]
    Bytes,
    #[serde(rename = "U")]
    Unicode,
    #[serde(rename = "V")]
    Void,
}

impl Kind {
    fn from_char(c: char) -> Option<Kind> {
        Some(match c {
            't' => Kind::Bit,
            'b' | '?' => Kind::Bool,
            'i' => Kind::Int,
            'u' => Kind::UInt,
            'f' => Kind::Float,
            'c' => Kind::Complex,
            'm' => Kind::Timedelta,
            'M' => Kind::Datetime,
            'S' | 'a' => Kind::Bytes,
            'U' => Kind::Unicode,
            'V' => Kind::Void,
            _ => return None,
        })
    }

    fn as_char(self) -> char {
        match self {
            Kind::Bit => 't',
            Kind::Bool => 'b',
            Kind::Int => 'i',
            Kind::UInt => 'u',
            Kind::Float => 'f',
            Kind::Complex => 'c',
            Kind::Timedelta => 'm',
            Kind::Datetime => 'M',
            Kind::Bytes => 'S',
            Kind::Unicode => 'U',
            Kind::Void => 'V',
        }
    }
}

/// A scalar element type: `{"endianness", "kind", "itemsize", "dt_units"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BuiltinDtype {
    pub endianness: Endianness,
    pub kind: Kind,
    /// Bytes per element (for `U`, four per character: UCS-4).
    pub itemsize: usize,
    /// Units of datetime/timedelta types, e.g. `"[ns]"`; null otherwise.
    #[serde(default)]
    pub dt_units: Option<String>,
}

impl BuiltinDtype {
    /// A builtin type in native byte order (or `not_applicable` where order is
    /// meaningless).
    pub fn new(kind: Kind, itemsize: usize) -> Self {
        let endianness = if itemsize == 1 || matches!(kind, Kind::Bytes | Kind::Void | Kind::Bool) {
            Endianness::NotApplicable
        } else {
            Endianness::native()
        };
        BuiltinDtype {
            endianness,
            kind,
            itemsize,
            dt_units: None,
        }
    }

    /// The same type in the other byte order (unchanged where order does not apply).
    pub fn with_endianness(mut self, endianness: Endianness) -> Self {
        if self.endianness != Endianness::NotApplicable {
            self.endianness = endianness;
        }
        self
    }

    /// NumPy's type string, e.g. `"<f8"`, `"<U8"`, `"<M8[ns]"`.
    pub fn to_numpy_str(&self) -> String {
        let n = if self.kind == Kind::Unicode {
            self.itemsize / 4
        } else {
            self.itemsize
        };
        format!(
            "{}{}{}{}",
            self.endianness.numpy_char(),
            self.kind.as_char(),
            n,
            self.dt_units.as_deref().unwrap_or("")
        )
    }

    /// Whether elements are stored in the opposite order to this machine's.
    pub fn needs_byteswap(&self) -> bool {
        self.endianness != Endianness::NotApplicable && self.endianness != Endianness::native()
    }
}

/// One field of a structured type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StructField {
    pub name: String,
    pub dtype: DataType,
    /// Sub-array shape of this field, if any.
    #[serde(default)]
    pub shape: Option<Vec<usize>>,
}

/// A structured (record) type: `{"itemsize", "fields"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StructDtype {
    pub itemsize: usize,
    pub fields: Vec<StructField>,
}

/// An element type: builtin or structured.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DataType {
    Struct(StructDtype),
    Builtin(BuiltinDtype),
}

impl DataType {
    /// Bytes per element.
    pub fn itemsize(&self) -> usize {
        match self {
            DataType::Builtin(b) => b.itemsize,
            DataType::Struct(s) => s.itemsize,
        }
    }

    /// Parse a NumPy type string such as `"<f8"`, `"|b1"`, `">i4"`, `"<M8[ns]"`,
    /// `"S10"`, `"<U8"`, `"float64"`.
    ///
    /// # Errors
    /// [`ModelError::InvalidDtype`] for anything NumPy would not accept as a
    /// builtin type string.
    pub fn from_numpy_str(text: &str) -> Result<DataType, ModelError> {
        let bad = || ModelError::InvalidDtype(text.to_string());
        if let Some(named) = named_dtype(text) {
            return Ok(DataType::Builtin(named));
        }
        let mut chars = text.chars().peekable();
        let order = match chars.peek() {
            Some('<') => Some(Endianness::Little),
            Some('>') => Some(Endianness::Big),
            Some('|') => Some(Endianness::NotApplicable),
            Some('=') => Some(Endianness::native()),
            _ => None,
        };
        if order.is_some() {
            chars.next();
        }
        let kind = chars.next().and_then(Kind::from_char).ok_or_else(bad)?;
        let rest: String = chars.collect();
        let (digits, units) = match rest.find('[') {
            Some(i) => (&rest[..i], Some(rest[i..].to_string())),
            None => (rest.as_str(), None),
        };
        let n: usize = if digits.is_empty() && kind == Kind::Bool {
            1
        } else {
            digits.parse().map_err(|_| bad())?
        };
        if let Some(u) = &units
            && (!matches!(kind, Kind::Datetime | Kind::Timedelta) || !u.ends_with(']'))
        {
            return Err(bad());
        }
        let valid_size = match kind {
            Kind::Bool | Kind::Bit => n == 1,
            Kind::Int | Kind::UInt => matches!(n, 1 | 2 | 4 | 8),
            Kind::Float => matches!(n, 2 | 4 | 8 | 16),
            Kind::Complex => matches!(n, 8 | 16 | 32),
            Kind::Datetime | Kind::Timedelta => n == 8,
            Kind::Bytes | Kind::Unicode | Kind::Void => true,
        };
        if !valid_size {
            return Err(bad());
        }
        let itemsize = if kind == Kind::Unicode { n * 4 } else { n };
        let mut dtype = BuiltinDtype::new(kind, itemsize);
        dtype.dt_units = units;
        if let Some(order) = order {
            dtype = dtype.with_endianness(order);
        }
        Ok(DataType::Builtin(dtype))
    }
}

fn named_dtype(name: &str) -> Option<BuiltinDtype> {
    let (kind, size) = match name {
        "bool" => (Kind::Bool, 1),
        "int8" => (Kind::Int, 1),
        "int16" => (Kind::Int, 2),
        "int32" => (Kind::Int, 4),
        "int64" => (Kind::Int, 8),
        "uint8" => (Kind::UInt, 1),
        "uint16" => (Kind::UInt, 2),
        "uint32" => (Kind::UInt, 4),
        "uint64" => (Kind::UInt, 8),
        "float16" => (Kind::Float, 2),
        "float32" => (Kind::Float, 4),
        "float64" => (Kind::Float, 8),
        "complex64" => (Kind::Complex, 8),
        "complex128" => (Kind::Complex, 16),
        _ => return None,
    };
    Some(BuiltinDtype::new(kind, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_strings_round_trip() {
        for s in [
            "<f8", ">f8", "<i4", ">i4", "|u1", "|b1", "<c16", "<M8[ns]", "<m8[s]", "|S10", "<U8",
            "<f2",
        ] {
            let dt = DataType::from_numpy_str(s).unwrap();
            let DataType::Builtin(b) = dt else { panic!() };
            assert_eq!(b.to_numpy_str(), s);
        }
        let DataType::Builtin(u) = DataType::from_numpy_str("<U8").unwrap() else {
            panic!()
        };
        assert_eq!(u.itemsize, 32);
    }

    #[test]
    fn rejects_nonsense() {
        for s in ["", "<x8", "<i3", "<f", "<i8[ns]", "O"] {
            assert!(DataType::from_numpy_str(s).is_err(), "{s}");
        }
    }

    #[test]
    fn wire_form_distinguishes_struct_by_fields() {
        let b: DataType = serde_json::from_str(
            r#"{"endianness":"little","kind":"f","itemsize":8,"dt_units":null}"#,
        )
        .unwrap();
        assert_eq!(b.itemsize(), 8);
        let s: DataType = serde_json::from_str(
            r#"{"itemsize":12,"fields":[{"name":"x","dtype":{"endianness":"little","kind":"f","itemsize":8,"dt_units":null},"shape":null},{"name":"y","dtype":{"endianness":"little","kind":"i","itemsize":4,"dt_units":null},"shape":null}]}"#,
        )
        .unwrap();
        assert!(matches!(s, DataType::Struct(_)));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["fields"][1]["dtype"]["kind"], "i");
    }
}
