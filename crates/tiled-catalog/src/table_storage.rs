//! Writable storage for tables: each table node created through the write
//! API owns a directory under the writable storage, and each write of
//! rows is one new Parquet file in it (a *segment*), registered as an
//! asset of the node's data source (`parameter = "data_uris"`, `num` = the
//! partition). A partition is its segments in the order they were
//! committed.
//!
//! Why segments: an append writes only its own rows to a new file and
//! then commits one asset row, so concurrent appenders never touch each
//! other's bytes and a crash before the commit leaves an orphan file, not
//! a half table. Replacing a partition (`PUT`) swaps its assets in one
//! transaction and removes the old files afterwards.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::ChunkReader;
use serde_json::Value;
use tiled_adapters::table::{MemoryTable, column_indices};
use tiled_adapters::{AdapterError, ArrayAdapter, TableAdapter};
use tiled_model::structure::TableStructure;
use tiled_storage::Storage;

/// The mimetype of the data sources made here (upstream's for Parquet
/// datasets).
pub const PARQUET_MIMETYPE: &str = "application/x-parquet";

/// Upstream's appendable SQL table; accepted when creating a table and
/// stored as segments (which append just as safely).
pub const SQL_TABLE_MIMETYPE: &str = "application/x-tiled-sql-table";

/// The asset parameter of segments.
pub const SEGMENT_PARAMETER: &str = "data_uris";

/// The asset parameter of the table's directory.
pub const DIRECTORY_PARAMETER: &str = "directory";

/// Upstream's limit is far lower in practice; this bounds the catalog rows
/// and directory entries one request can make.
const MAX_PARTITIONS: usize = 10_000;

fn internal(what: &str, e: impl std::fmt::Display) -> AdapterError {
    AdapterError::Internal(format!("{what}: {e}"))
}

/// pandas' index columns, which the client's Arrow bodies carry but the
/// table's structure does not.
fn is_index_column(name: &str) -> bool {
    name.starts_with("__index_level_") && name.ends_with("__")
}

/// The structure a client sent, checked, with pandas index columns
/// removed; and its schema.
///
/// # Errors
/// [`AdapterError::BadRequest`] for an undecodable schema or a partition
/// count out of range.
pub fn validate_structure(value: &Value) -> Result<(TableStructure, SchemaRef), AdapterError> {
    let st: TableStructure = serde_json::from_value(value.clone())
        .map_err(|e| AdapterError::BadRequest(format!("invalid table structure: {e}")))?;
    if st.npartitions == 0 || st.npartitions > MAX_PARTITIONS {
        return Err(AdapterError::BadRequest(format!(
            "a table has 1 to {MAX_PARTITIONS} partitions, not {}",
            st.npartitions
        )));
    }
    let schema = st
        .schema()
        .map_err(|e| AdapterError::BadRequest(format!("invalid table schema: {e}")))?;
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !is_index_column(schema.field(i).name()))
        .collect();
    let schema = Arc::new(
        schema
            .project(&keep)
            .map_err(|e| AdapterError::BadRequest(e.to_string()))?,
    );
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = schema.fields().iter().find(|f| !seen.insert(f.name())) {
        return Err(AdapterError::BadRequest(format!(
            "column {:?} appears more than once",
            dup.name()
        )));
    }
    let structure = TableStructure::from_schema(&schema, st.npartitions)
        .map_err(|e| AdapterError::BadRequest(e.to_string()))?;
    Ok((structure, schema))
}

/// The rows of an Arrow IPC body (file or stream format) as one batch with
/// exactly `schema`'s columns, in its order; pandas index columns are
/// dropped.
///
/// # Errors
/// [`AdapterError::BadRequest`] for a body that is not Arrow IPC or whose
/// columns or types differ from the table's.
pub fn decode_body(bytes: &[u8], schema: &SchemaRef) -> Result<RecordBatch, AdapterError> {
    let bad = |e: String| AdapterError::BadRequest(format!("invalid Arrow body: {e}"));
    let batches: Vec<RecordBatch> = if bytes.starts_with(b"ARROW1") {
        let reader = arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| bad(e.to_string()))?;
        reader
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?
    } else {
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| bad(e.to_string()))?;
        reader
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?
    };
    let sent: Vec<String> = match batches.first() {
        Some(b) => b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !is_index_column(n))
            .collect(),
        None => return Ok(RecordBatch::new_empty(schema.clone())),
    };
    let expected: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut sorted_sent = sent.clone();
    sorted_sent.sort();
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    if sorted_sent != sorted_expected {
        return Err(AdapterError::BadRequest(format!(
            "the body's columns {sent:?} are not the table's columns {expected:?}"
        )));
    }
    let mut out = Vec::with_capacity(batches.len());
    for b in &batches {
        let idx = column_indices(&b.schema(), &expected)?;
        let columns: Vec<_> = idx.iter().map(|&i| b.column(i).clone()).collect();
        for (field, column) in schema.fields().iter().zip(&columns) {
            if field.data_type() != column.data_type() {
                return Err(AdapterError::BadRequest(format!(
                    "column {:?} has type {} in the body but {} in the table",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                )));
            }
        }
        // The table's schema, made nullable where the body has nulls (the
        // client's schemas say nullable anyway).
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| {
                Arc::new(
                    f.as_ref()
                        .clone()
                        .with_nullable(f.is_nullable() || c.null_count() > 0),
                )
            })
            .collect();
        let s = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        out.push(RecordBatch::try_new(s, columns).map_err(|e| bad(e.to_string()))?);
    }
    let s = out
        .first()
        .map_or_else(|| schema.clone(), RecordBatch::schema);
    arrow_select::concat::concat_batches(&s, &out).map_err(|e| bad(e.to_string()))
}

/// A new unique name for a table's directory (prefix) in `storage`.
pub fn new_dir(storage: &Storage, key: &str) -> String {
    storage.unique_name(key, ".table")
}

/// Write `batch` as a new segment of `partition` under `dir` in `storage`
/// (atomically: a local file appears whole or not at all) and return its
/// name.
///
/// # Errors
/// I/O or encoding failures.
pub fn write_segment(
    storage: &Storage,
    dir: &str,
    partition: usize,
    batch: &RecordBatch,
) -> Result<String, AdapterError> {
    let suffix: u64 = rand::random();
    let rel = format!("{dir}/p{partition}-{suffix:016x}.parquet");
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))
        .map_err(|e| internal(&rel, e))?;
    writer.write(batch).map_err(|e| internal(&rel, e))?;
    writer.close().map_err(|e| internal(&rel, e))?;
    storage
        .put(&rel, bytes::Bytes::from(buf))
        .map_err(|e| internal(&rel, e))?;
    Ok(rel)
}

/// Where a segment's bytes are.
#[derive(Clone, Debug)]
pub enum SegmentSource {
    /// A local file (read with positioned reads: only the columns asked).
    File(PathBuf),
    /// An object in a storage (fetched whole).
    Object(Storage, String),
}

impl SegmentSource {
    fn label(&self) -> String {
        match self {
            SegmentSource::File(p) => p.display().to_string(),
            SegmentSource::Object(s, rel) => s.uri(rel),
        }
    }

    /// Run `f` on a Parquet reader builder over this segment.
    fn with_builder<T>(
        &self,
        f: impl FnOnce(ReaderBuilder) -> Result<T, AdapterError>,
    ) -> Result<T, AdapterError> {
        let label = self.label();
        match self {
            SegmentSource::File(p) => {
                let file = File::open(p).map_err(|e| internal(&label, e))?;
                f(ReaderBuilder::File(
                    ParquetRecordBatchReaderBuilder::try_new(file)
                        .map_err(|e| internal(&label, e))?,
                ))
            }
            SegmentSource::Object(s, rel) => {
                let bytes = s.get(rel).map_err(|e| internal(&label, e))?;
                f(ReaderBuilder::Bytes(
                    ParquetRecordBatchReaderBuilder::try_new(bytes)
                        .map_err(|e| internal(&label, e))?,
                ))
            }
        }
    }
}

/// A Parquet reader builder over a file or bytes.
enum ReaderBuilder {
    File(ParquetRecordBatchReaderBuilder<File>),
    Bytes(ParquetRecordBatchReaderBuilder<bytes::Bytes>),
}

fn footer<R: ChunkReader + 'static>(b: &ParquetRecordBatchReaderBuilder<R>) -> (usize, usize) {
    let meta = b.metadata();
    let rows = usize::try_from(meta.file_metadata().num_rows()).unwrap_or(0);
    let bytes = meta
        .row_groups()
        .iter()
        .map(|g| usize::try_from(g.total_byte_size()).unwrap_or(0))
        .sum();
    (rows, bytes)
}

fn read_columns<R: ChunkReader + 'static>(
    builder: ParquetRecordBatchReaderBuilder<R>,
    names: &[String],
    label: &str,
) -> Result<Vec<RecordBatch>, AdapterError> {
    let builder = builder.with_batch_size(1 << 20);
    let file_schema = builder.schema().clone();
    let idx = column_indices(&file_schema, names)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), idx.iter().copied());
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| internal(label, e))?;
    reader.map(|b| b.map_err(|e| internal(label, e))).collect()
}

/// One segment file, with what its footer says.
struct Segment {
    source: SegmentSource,
    rows: usize,
    bytes: usize,
}

/// A table of segment files, read with the catalog's structure.
pub struct SegmentTable {
    structure: TableStructure,
    schema: SchemaRef,
    /// Per partition, its segments in commit order.
    partitions: Vec<Vec<Segment>>,
}

impl SegmentTable {
    /// Open a table of `structure` whose partition `i` is the segments
    /// `segments[i]`, in order. Only the segments' footers are read.
    ///
    /// # Errors
    /// [`AdapterError::Internal`] for a missing or unreadable segment.
    pub fn open(
        structure: TableStructure,
        segments: Vec<Vec<SegmentSource>>,
    ) -> Result<Self, AdapterError> {
        let schema = structure
            .schema()
            .map_err(|e| AdapterError::Internal(e.to_string()))?;
        let mut partitions = Vec::with_capacity(segments.len());
        for sources in segments {
            let mut part = Vec::with_capacity(sources.len());
            for source in sources {
                let (rows, bytes) = source.with_builder(|b| {
                    Ok(match &b {
                        ReaderBuilder::File(b) => footer(b),
                        ReaderBuilder::Bytes(b) => footer(b),
                    })
                })?;
                part.push(Segment {
                    source,
                    rows,
                    bytes,
                });
            }
            partitions.push(part);
        }
        Ok(SegmentTable {
            structure,
            schema,
            partitions,
        })
    }

    fn projected_schema(&self, columns: Option<&[String]>) -> Result<SchemaRef, AdapterError> {
        match columns {
            None => Ok(self.schema.clone()),
            Some(cols) => {
                let idx = column_indices(&self.schema, cols)?;
                Ok(Arc::new(self.schema.project(&idx).map_err(|e| {
                    AdapterError::Internal(format!("projecting the schema: {e}"))
                })?))
            }
        }
    }

    fn read_segment(
        &self,
        seg: &Segment,
        columns: Option<&[String]>,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), AdapterError> {
        let names: Vec<String> = match columns {
            Some(c) => c.to_vec(),
            None => self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
        };
        let label = seg.source.label();
        let batches = seg.source.with_builder(|b| match b {
            ReaderBuilder::File(b) => read_columns(b, &names, &label),
            ReaderBuilder::Bytes(b) => read_columns(b, &names, &label),
        })?;
        // Projected columns come in file order; give them as asked, under
        // the table's schema.
        let schema = self.projected_schema(Some(&names))?;
        let fields: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        for b in batches {
            let idx = column_indices(&b.schema(), &names)?;
            let columns = idx.iter().map(|&i| b.column(i).clone()).collect();
            out.push(
                RecordBatch::try_new(schema.clone(), columns).map_err(|e| internal(&label, e))?,
            );
        }
        Ok(())
    }
}

impl TableAdapter for SegmentTable {
    fn structure(&self) -> &TableStructure {
        &self.structure
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn partition_rows(&self, partition: usize) -> Option<usize> {
        Some(self.partitions.get(partition)?.iter().map(|s| s.rows).sum())
    }

    fn partition_bytes(&self, partition: usize, columns: Option<&[String]>) -> Option<usize> {
        let total: usize = self
            .partitions
            .get(partition)?
            .iter()
            .map(|s| s.bytes)
            .sum();
        Some(tiled_adapters::columns_share(
            total,
            columns,
            self.schema.fields().len(),
        ))
    }

    fn read_partition(
        &self,
        partition: usize,
        columns: Option<&[String]>,
    ) -> Result<RecordBatch, AdapterError> {
        let segments = self.partitions.get(partition).ok_or_else(|| {
            AdapterError::BadRequest(format!(
                "partition {partition} is out of range: the table has {}",
                self.structure.npartitions
            ))
        })?;
        let schema = self.projected_schema(columns)?;
        let mut batches = Vec::new();
        for seg in segments {
            self.read_segment(seg, columns, &mut batches)?;
        }
        let Some(first) = batches.first() else {
            return Ok(RecordBatch::new_empty(schema));
        };
        let s = first.schema();
        arrow_select::concat::concat_batches(&s, &batches)
            .map_err(|e| AdapterError::Internal(format!("joining segments: {e}")))
    }

    fn column_array(&self, name: &str) -> Option<Arc<dyn ArrayAdapter>> {
        let cols = [name.to_string()];
        let mut batches = Vec::new();
        for p in 0..self.partitions.len() {
            batches.push(self.read_partition(p, Some(&cols)).ok()?);
        }
        let schema = batches.first()?.schema();
        let table = MemoryTable::new(schema, batches).ok()?;
        table.column_array(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field};

    fn batch(xs: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("y", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(xs.to_vec())),
                Arc::new(Float64Array::from(
                    xs.iter().map(|&x| x as f64 / 2.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    xs.iter().map(|x| format!("v{x}")).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn ipc_file(b: &RecordBatch) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = arrow_ipc::writer::FileWriter::try_new(&mut out, &b.schema()).unwrap();
        w.write(b).unwrap();
        w.finish().unwrap();
        drop(w);
        out
    }

    #[test]
    fn segments_append_and_read_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = Storage::parse(tmp.path().to_str().unwrap()).unwrap();
        let b = batch(&[1, 2, 3]);
        let st = TableStructure::from_schema(&b.schema(), 2).unwrap();
        let (st, schema) = validate_structure(&serde_json::to_value(&st).unwrap()).unwrap();
        let dir = new_dir(&storage, "t");
        let body = decode_body(&ipc_file(&b), &schema).unwrap();
        let s1 = write_segment(&storage, &dir, 0, &body).unwrap();
        let s2 = write_segment(&storage, &dir, 0, &batch(&[4, 5])).unwrap();
        // One segment read as a local file, one through the storage.
        let local = storage.local_root().unwrap().join(&s1);
        let t = SegmentTable::open(
            st,
            vec![
                vec![
                    SegmentSource::File(local),
                    SegmentSource::Object(storage.clone(), s2),
                ],
                vec![],
            ],
        )
        .unwrap();
        assert_eq!(t.partition_rows(0), Some(5));
        assert_eq!(t.partition_rows(1), Some(0));
        let all = t.read_partition(0, None).unwrap();
        let xs = all.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(xs.values(), &[1, 2, 3, 4, 5]);
        let picked = t
            .read_partition(0, Some(&["s".to_string(), "x".to_string()]))
            .unwrap();
        assert_eq!(picked.schema().field(0).name(), "s");
        assert_eq!(t.read_partition(1, None).unwrap().num_rows(), 0);
        assert!(t.read_partition(2, None).is_err());
        // No temporary files are left behind.
        let names: Vec<String> = std::fs::read_dir(storage.local_root().unwrap().join(&dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.ends_with(".parquet") && !n.starts_with('.'))
        );
    }

    #[test]
    fn bodies_must_match_the_schema() {
        let b = batch(&[1]);
        let schema = b.schema();
        assert!(decode_body(b"not arrow", &schema).is_err());
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        assert!(decode_body(&ipc_file(&other), &schema).is_err());
    }
}
