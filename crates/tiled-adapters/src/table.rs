//! Tables: the [`TableAdapter`] trait and an in-memory table of Arrow record
//! batches (one batch per partition).

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType as ArrowType, SchemaRef, TimeUnit};
use tiled_model::{BuiltinDtype, DataType, Endianness, Kind, TableStructure};

use crate::{AdapterError, ArrayAdapter, ArrayData, MemoryArray};

/// What a reader of tables must do. Partitions are the unit of parallel
/// reading; `columns` (when given) is pushed down so unselected columns are
/// never read.
pub trait TableAdapter: Send + Sync {
    /// Schema, partition count and column names, known without reading data.
    fn structure(&self) -> &TableStructure;

    /// The Arrow schema of the whole table.
    fn schema(&self) -> SchemaRef;

    /// Rows in one partition, if known without reading (used for the
    /// response-size check).
    fn partition_rows(&self, partition: usize) -> Option<usize>;

    /// Bytes one partition (restricted to `columns`) would take, if known
    /// without reading (used for the response-size check).
    fn partition_bytes(&self, partition: usize, columns: Option<&[String]>) -> Option<usize>;

    /// One partition, restricted to `columns` in the order given.
    ///
    /// # Errors
    /// [`AdapterError::BadRequest`] for a partition out of range or an
    /// unknown column.
    fn read_partition(
        &self,
        partition: usize,
        columns: Option<&[String]>,
    ) -> Result<RecordBatch, AdapterError>;

    /// Every partition in order.
    ///
    /// # Errors
    /// As [`TableAdapter::read_partition`].
    fn read(&self, columns: Option<&[String]>) -> Result<Vec<RecordBatch>, AdapterError> {
        (0..self.structure().npartitions)
            .map(|i| self.read_partition(i, columns))
            .collect()
    }

    /// One column as an array node (the client's `table["col"]`), where the
    /// column's type maps to a NumPy dtype.
    fn column_array(&self, name: &str) -> Option<Arc<dyn ArrayAdapter>>;
}

/// The bytes a read of `columns` (all when `None`) would take from a
/// partition of `total` bytes over `nfields` columns, without reading it:
/// the columns' share, rounded up (columns are not all the same width, so
/// it is an estimate for the response-size check).
pub fn columns_share(total: usize, columns: Option<&[String]>, nfields: usize) -> usize {
    let n = nfields.max(1);
    match columns {
        Some(c) => total * c.len().min(n) / n + 1,
        None => total,
    }
}

/// Check `columns` against a schema and return their indices.
///
/// # Errors
/// [`AdapterError::BadRequest`] naming the first unknown column.
pub fn column_indices(schema: &SchemaRef, columns: &[String]) -> Result<Vec<usize>, AdapterError> {
    columns
        .iter()
        .map(|c| {
            schema.index_of(c).map_err(|_| {
                AdapterError::BadRequest(format!(
                    "No such field {c:?}. Columns are: {}",
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect()
}

/// A table held in memory, one record batch per partition.
pub struct MemoryTable {
    schema: SchemaRef,
    partitions: Vec<RecordBatch>,
    structure: TableStructure,
}

impl MemoryTable {
    /// Serve these batches (all with `schema`) as partitions.
    ///
    /// # Errors
    /// [`AdapterError::Internal`] if a batch's schema differs or the schema
    /// cannot be encoded.
    pub fn new(schema: SchemaRef, partitions: Vec<RecordBatch>) -> Result<Self, AdapterError> {
        if let Some(b) = partitions.iter().find(|b| b.schema() != schema) {
            return Err(AdapterError::Internal(format!(
                "partition schema {:?} differs from table schema",
                b.schema()
            )));
        }
        let structure = TableStructure::from_schema(&schema, partitions.len())
            .map_err(|e| AdapterError::Internal(e.to_string()))?;
        Ok(MemoryTable {
            schema,
            partitions,
            structure,
        })
    }
}

impl TableAdapter for MemoryTable {
    fn structure(&self) -> &TableStructure {
        &self.structure
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn partition_rows(&self, partition: usize) -> Option<usize> {
        self.partitions.get(partition).map(RecordBatch::num_rows)
    }

    fn partition_bytes(&self, partition: usize, columns: Option<&[String]>) -> Option<usize> {
        let batch = self.partitions.get(partition)?;
        let cols: Vec<usize> = match columns {
            Some(c) => column_indices(&self.schema, c).ok()?,
            None => (0..batch.num_columns()).collect(),
        };
        Some(
            cols.iter()
                .map(|&i| batch.column(i).get_array_memory_size())
                .sum(),
        )
    }

    fn read_partition(
        &self,
        partition: usize,
        columns: Option<&[String]>,
    ) -> Result<RecordBatch, AdapterError> {
        let batch = self.partitions.get(partition).ok_or_else(|| {
            AdapterError::BadRequest(format!(
                "Partition out of range: {partition} (the table has {} partition(s))",
                self.partitions.len()
            ))
        })?;
        match columns {
            None => Ok(batch.clone()),
            Some(cols) => {
                let idx = column_indices(&self.schema, cols)?;
                batch
                    .project(&idx)
                    .map_err(|e| AdapterError::Internal(e.to_string()))
            }
        }
    }

    fn column_array(&self, name: &str) -> Option<Arc<dyn ArrayAdapter>> {
        let i = self.schema.index_of(name).ok()?;
        let parts: Vec<ArrayRef> = self
            .partitions
            .iter()
            .map(|b| b.column(i).clone())
            .collect();
        let data = column_to_array(&parts)?;
        let chunks = vec![parts.iter().map(|p| p.len()).collect::<Vec<_>>()];
        let chunks = if data.shape[0] == 0 {
            vec![vec![0]]
        } else {
            chunks
        };
        Some(Arc::new(MemoryArray::new(data, chunks).ok()?))
    }
}

/// Convert Arrow columns (one per partition) to a 1-d NumPy-style array.
/// Returns `None` for types with no fixed-width NumPy equivalent.
fn column_to_array(parts: &[ArrayRef]) -> Option<ArrayData> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    let first = parts.first()?;
    let n: usize = parts.iter().map(|p| p.len()).sum();
    macro_rules! primitive {
        ($t:ty, $kind:expr, $size:expr) => {{
            let mut bytes = Vec::with_capacity(n * $size);
            for p in parts {
                for v in p.as_primitive::<$t>().values().iter() {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
            (
                DataType::Builtin(
                    BuiltinDtype::new($kind, $size).with_endianness(Endianness::Little),
                ),
                bytes,
            )
        }};
    }
    let (dtype, bytes) = match first.data_type() {
        ArrowType::Int8 => primitive!(Int8Type, Kind::Int, 1),
        ArrowType::Int16 => primitive!(Int16Type, Kind::Int, 2),
        ArrowType::Int32 => primitive!(Int32Type, Kind::Int, 4),
        ArrowType::Int64 => primitive!(Int64Type, Kind::Int, 8),
        ArrowType::UInt8 => primitive!(UInt8Type, Kind::UInt, 1),
        ArrowType::UInt16 => primitive!(UInt16Type, Kind::UInt, 2),
        ArrowType::UInt32 => primitive!(UInt32Type, Kind::UInt, 4),
        ArrowType::UInt64 => primitive!(UInt64Type, Kind::UInt, 8),
        ArrowType::Float32 => primitive!(Float32Type, Kind::Float, 4),
        ArrowType::Float64 => primitive!(Float64Type, Kind::Float, 8),
        ArrowType::Timestamp(TimeUnit::Nanosecond, None) => {
            let (mut dt, bytes) = primitive!(TimestampNanosecondType, Kind::Datetime, 8);
            if let DataType::Builtin(b) = &mut dt {
                b.dt_units = Some("[ns]".into());
            }
            (dt, bytes)
        }
        ArrowType::Boolean => {
            let mut bytes = Vec::with_capacity(n);
            for p in parts {
                bytes.extend(p.as_boolean().values().iter().map(u8::from));
            }
            (DataType::Builtin(BuiltinDtype::new(Kind::Bool, 1)), bytes)
        }
        ArrowType::Utf8 => {
            let width = parts
                .iter()
                .flat_map(|p| p.as_string::<i32>().iter())
                .map(|s| s.map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
                .max(1);
            let mut bytes = Vec::with_capacity(n * width * 4);
            for p in parts {
                for s in p.as_string::<i32>().iter() {
                    let s = s.unwrap_or("");
                    let mut count = 0;
                    for ch in s.chars() {
                        bytes.extend_from_slice(&(ch as u32).to_le_bytes());
                        count += 1;
                    }
                    bytes.resize(bytes.len() + (width - count) * 4, 0);
                }
            }
            (
                DataType::Builtin(
                    BuiltinDtype::new(Kind::Unicode, width * 4).with_endianness(Endianness::Little),
                ),
                bytes,
            )
        }
        _ => return None,
    };
    ArrayData::new(dtype, vec![n], bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};
    use tiled_model::ResolvedSlice;

    fn table() -> MemoryTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", ArrowType::Int64, false),
            Field::new("b", ArrowType::Float64, false),
            Field::new("s", ArrowType::Utf8, false),
        ]));
        let part = |lo: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(lo..lo + 3)),
                    Arc::new(Float64Array::from_iter_values(
                        (lo..lo + 3).map(|v| v as f64 / 2.0),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        (lo..lo + 3).map(|v| format!("s{v}")),
                    )),
                ],
            )
            .unwrap()
        };
        MemoryTable::new(schema.clone(), vec![part(0), part(3)]).unwrap()
    }

    #[test]
    fn partitions_and_projection() {
        let t = table();
        assert_eq!(t.structure().npartitions, 2);
        let b = t
            .read_partition(1, Some(&["b".into(), "a".into()]))
            .unwrap();
        assert_eq!(b.schema().field(0).name(), "b");
        assert_eq!(b.num_rows(), 3);
        assert!(matches!(
            t.read_partition(2, None),
            Err(AdapterError::BadRequest(_))
        ));
        assert!(matches!(
            t.read_partition(0, Some(&["zz".into()])),
            Err(AdapterError::BadRequest(_))
        ));
    }

    #[test]
    fn memory_table_conforms() {
        crate::conformance::check_table("memory", &table());
    }

    #[test]
    fn columns_become_arrays() {
        let t = table();
        let a = t.column_array("a").unwrap();
        assert_eq!(a.structure().shape, vec![6]);
        assert_eq!(a.structure().chunks, vec![vec![3, 3]]);
        let data = a.read(&ResolvedSlice::full(&[6])).unwrap();
        assert_eq!(&data.bytes[40..48], &5i64.to_le_bytes());
        let s = t.column_array("s").unwrap();
        let DataType::Builtin(b) = &s.structure().data_type else {
            panic!()
        };
        assert_eq!(b.to_numpy_str(), "<U2");
    }
}
