//! Structures: what a node's data looks like, without the data.

use std::sync::Arc;

use arrow_schema::Schema;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{DataType, ModelError};

/// The kinds of node Tiled knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructureFamily {
    Array,
    Awkward,
    Container,
    Sparse,
    Table,
    Ragged,
    Composite,
}

impl StructureFamily {
    /// Every family, in the order the about document lists them.
    pub const ALL: [StructureFamily; 7] = [
        StructureFamily::Array,
        StructureFamily::Awkward,
        StructureFamily::Container,
        StructureFamily::Sparse,
        StructureFamily::Table,
        StructureFamily::Ragged,
        StructureFamily::Composite,
    ];

    /// The wire name, e.g. `"array"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StructureFamily::Array => "array",
            StructureFamily::Awkward => "awkward",
            StructureFamily::Container => "container",
            StructureFamily::Sparse => "sparse",
            StructureFamily::Table => "table",
            StructureFamily::Ragged => "ragged",
            StructureFamily::Composite => "composite",
        }
    }

    /// Parse the wire name.
    ///
    /// # Errors
    /// [`ModelError::InvalidParameter`] for unknown names.
    pub fn parse(name: &str) -> Result<Self, ModelError> {
        StructureFamily::ALL
            .into_iter()
            .find(|f| f.as_str() == name)
            .ok_or_else(|| {
                ModelError::InvalidParameter(format!(
                    "unknown structure family {name:?}; expected one of {}",
                    StructureFamily::ALL.map(|f| f.as_str()).join(", ")
                ))
            })
    }
}

/// A named convention a node follows (`xarray_dataset`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Spec {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

impl Spec {
    /// A spec with no version.
    pub fn new(name: impl Into<String>) -> Self {
        Spec {
            name: name.into(),
            version: None,
        }
    }
}

/// Shape, chunking and element type of an N-d array.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArrayStructure {
    pub data_type: DataType,
    /// Dask-style chunk sizes: one list per dimension, summing to its length.
    pub chunks: Vec<Vec<usize>>,
    pub shape: Vec<usize>,
    /// Dimension names; the key must be present on the wire even when null.
    pub dims: Option<Vec<String>>,
    /// Always false: the client refuses resizable arrays.
    pub resizable: bool,
}

impl ArrayStructure {
    /// A structure with the given chunking.
    ///
    /// # Errors
    /// [`ModelError::InvalidStructure`] if the chunks do not tile the shape.
    pub fn new(
        data_type: DataType,
        shape: Vec<usize>,
        chunks: Vec<Vec<usize>>,
    ) -> Result<Self, ModelError> {
        if chunks.len() != shape.len() {
            return Err(ModelError::InvalidStructure(format!(
                "{} chunk lists for {} dimensions",
                chunks.len(),
                shape.len()
            )));
        }
        for (axis, (c, &n)) in chunks.iter().zip(&shape).enumerate() {
            if c.iter().sum::<usize>() != n || (n > 0 && c.contains(&0)) {
                return Err(ModelError::InvalidStructure(format!(
                    "chunks {c:?} do not tile axis {axis} of length {n}"
                )));
            }
        }
        Ok(ArrayStructure {
            data_type,
            chunks,
            shape,
            dims: None,
            resizable: false,
        })
    }

    /// Regular chunks of at most `chunk[i]` along each axis (the last one
    /// shorter where the length is not a multiple).
    pub fn regular_chunks(shape: &[usize], chunk: &[usize]) -> Vec<Vec<usize>> {
        shape
            .iter()
            .zip(chunk)
            .map(|(&n, &c)| {
                if n == 0 {
                    return vec![0];
                }
                let c = c.max(1);
                let mut v = vec![c; n / c];
                if n % c != 0 {
                    v.push(n % c);
                }
                v
            })
            .collect()
    }

    /// Set dimension names.
    pub fn with_dims(mut self, dims: Vec<String>) -> Self {
        self.dims = Some(dims);
        self
    }

    /// Number of elements.
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of blocks along each axis.
    pub fn block_grid(&self) -> Vec<usize> {
        self.chunks.iter().map(Vec::len).collect()
    }

    /// Offset (first index) and shape of one block.
    ///
    /// # Errors
    /// [`ModelError::BlockOutOfRange`] if `block` has the wrong length or an
    /// index past the grid.
    pub fn block_extent(&self, block: &[usize]) -> Result<(Vec<usize>, Vec<usize>), ModelError> {
        if block.len() != self.shape.len() {
            return Err(ModelError::BlockOutOfRange(format!(
                "block has {} indices but the array has {} dimension(s)",
                block.len(),
                self.shape.len()
            )));
        }
        let mut offset = Vec::with_capacity(block.len());
        let mut shape = Vec::with_capacity(block.len());
        for (axis, (&b, chunks)) in block.iter().zip(&self.chunks).enumerate() {
            let Some(&size) = chunks.get(b) else {
                return Err(ModelError::BlockOutOfRange(format!(
                    "block index {b} is out of range for axis {axis} with {} block(s)",
                    chunks.len()
                )));
            };
            offset.push(chunks[..b].iter().sum());
            shape.push(size);
        }
        Ok((offset, shape))
    }
}

/// Prefix of the base64 schema string in a [`TableStructure`].
pub const ARROW_SCHEMA_PREFIX: &str = "data:application/vnd.apache.arrow.file;base64,";

/// Schema and partitioning of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableStructure {
    /// `data:application/vnd.apache.arrow.file;base64,` + an Arrow IPC
    /// encapsulated Schema message (what `pyarrow.Schema.serialize()` makes).
    pub arrow_schema: String,
    pub npartitions: usize,
    pub columns: Vec<String>,
    pub resizable: bool,
}

impl TableStructure {
    /// Describe a table of `npartitions` partitions with this schema.
    ///
    /// # Errors
    /// [`ModelError::InvalidStructure`] if the schema cannot be encoded.
    pub fn from_schema(schema: &Schema, npartitions: usize) -> Result<Self, ModelError> {
        Ok(TableStructure {
            arrow_schema: format!(
                "{ARROW_SCHEMA_PREFIX}{}",
                base64::engine::general_purpose::STANDARD.encode(encode_schema_message(schema)?)
            ),
            npartitions,
            columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
            resizable: false,
        })
    }

    /// Decode the Arrow schema carried in `arrow_schema`.
    ///
    /// # Errors
    /// [`ModelError::InvalidStructure`] if it is not a valid schema message.
    pub fn schema(&self) -> Result<Arc<Schema>, ModelError> {
        let bad = |e: String| ModelError::InvalidStructure(format!("arrow_schema: {e}"));
        let b64 = self
            .arrow_schema
            .strip_prefix(ARROW_SCHEMA_PREFIX)
            .ok_or_else(|| bad("missing data: prefix".into()))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| bad(e.to_string()))?;
        // An IPC stream is a sequence of messages; a schema message alone,
        // followed by an end-of-stream marker, is a valid empty stream.
        let mut stream = bytes;
        stream.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(stream), None)
            .map_err(|e| bad(e.to_string()))?;
        Ok(reader.schema())
    }
}

fn encode_schema_message(schema: &Schema) -> Result<Vec<u8>, ModelError> {
    use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions, write_message};
    let options = IpcWriteOptions::default();
    let mut tracker = DictionaryTracker::new(false);
    let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
        schema,
        &mut tracker,
        &options,
    );
    let mut out = Vec::new();
    write_message(&mut out, encoded, &options)
        .map_err(|e| ModelError::InvalidStructure(e.to_string()))?;
    Ok(out)
}

/// Structure of a container: `{"contents": null, "count": N}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerStructure {
    /// Inlined children (always null here: the client pages through search).
    pub contents: Option<serde_json::Value>,
    pub count: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType as ArrowType, Field};

    #[test]
    fn schema_round_trips_through_the_message_encoding() {
        let schema = Schema::new(vec![
            Field::new("a", ArrowType::Int64, false),
            Field::new("b", ArrowType::Utf8, true),
        ]);
        let ts = TableStructure::from_schema(&schema, 3).unwrap();
        assert!(ts.arrow_schema.starts_with(ARROW_SCHEMA_PREFIX));
        assert_eq!(ts.columns, vec!["a", "b"]);
        assert_eq!(ts.schema().unwrap().as_ref(), &schema);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&ts.arrow_schema[ARROW_SCHEMA_PREFIX.len()..])
            .unwrap();
        assert_eq!(&raw[..4], &[0xFF; 4], "continuation marker like pyarrow");
    }

    #[test]
    fn block_extents() {
        let s = ArrayStructure::new(
            DataType::from_numpy_str("<f8").unwrap(),
            vec![10, 7],
            ArrayStructure::regular_chunks(&[10, 7], &[4, 7]),
        )
        .unwrap();
        assert_eq!(s.chunks, vec![vec![4, 4, 2], vec![7]]);
        assert_eq!(s.block_extent(&[2, 0]).unwrap(), (vec![8, 0], vec![2, 7]));
        assert!(s.block_extent(&[3, 0]).is_err());
        assert!(s.block_extent(&[0]).is_err());
        assert!(
            ArrayStructure::new(
                DataType::from_numpy_str("<f8").unwrap(),
                vec![3],
                vec![vec![2]]
            )
            .is_err()
        );
    }
}
