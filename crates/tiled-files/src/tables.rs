//! Tables at rest: CSV/TSV (types inferred by Arrow), Parquet (row groups as
//! partitions, columns projected in the reader) and Arrow IPC files (record
//! batches as partitions).

use std::fs::File;
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use serde_json::{Value, json};
use tiled_adapters::{AdapterError, ArrayAdapter, MemoryTable, NodeData, TableAdapter};
use tiled_model::StructureFamily;
use tiled_model::structure::TableStructure;

use crate::{Described, FileError, FileFormat, internal};

fn described_table(
    path: &Path,
    schema: &Schema,
    npartitions: usize,
) -> Result<Described, FileError> {
    let st = TableStructure::from_schema(schema, npartitions)
        .map_err(|e| FileError::unreadable(path, e))?;
    Ok(Described {
        family: StructureFamily::Table,
        structure: Some(serde_json::to_value(st).map_err(|e| FileError::unreadable(path, e))?),
        metadata: Default::default(),
        specs: Vec::new(),
        parameters: Some(json!({})),
        children: Vec::new(),
    })
}

// ---------------------------------------------------------------- CSV

/// Rows sampled to infer a CSV's column types.
const CSV_INFER_ROWS: usize = 10_000;

/// Bytes of text per CSV partition.
pub const CSV_PARTITION_BYTES: u64 = 64 << 20;

/// `.csv` and `.tsv` files: column types inferred from the first rows,
/// partitioned by size at line boundaries (a partition is read by seeking
/// to its first byte; quoted fields spanning lines are not split-safe).
pub struct CsvFormat {
    pub delimiter: u8,
    /// Target bytes per partition.
    pub partition_bytes: u64,
}

impl CsvFormat {
    /// Comma- or tab-separated files with the default partition size.
    pub fn new(delimiter: u8) -> Self {
        CsvFormat {
            delimiter,
            partition_bytes: CSV_PARTITION_BYTES,
        }
    }

    fn schema(&self, path: &Path) -> Result<Schema, String> {
        let mut file = File::open(path).map_err(|e| e.to_string())?;
        let format = arrow_csv::reader::Format::default()
            .with_header(true)
            .with_delimiter(self.delimiter);
        let (schema, _) = format
            .infer_schema(&mut file, Some(CSV_INFER_ROWS))
            .map_err(|e| e.to_string())?;
        Ok(schema)
    }

    /// Where partitions start (the first just after the header line), and
    /// the file's length last.
    fn bounds(&self, path: &Path) -> Result<Vec<u64>, String> {
        use std::io::{BufRead, SeekFrom};
        let mut file = BufReader::new(File::open(path).map_err(|e| e.to_string())?);
        let len = file.get_ref().metadata().map_err(|e| e.to_string())?.len();
        let mut line = Vec::new();
        let header = file
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())? as u64;
        let mut bounds = vec![header];
        let step = self.partition_bytes.max(1);
        let mut next = header + step;
        while next < len {
            file.seek(SeekFrom::Start(next))
                .map_err(|e| e.to_string())?;
            line.clear();
            let skipped = file
                .read_until(b'\n', &mut line)
                .map_err(|e| e.to_string())? as u64;
            let start = next + skipped;
            if start >= len {
                break;
            }
            bounds.push(start);
            next = start + step;
        }
        bounds.push(len);
        Ok(bounds)
    }
}

/// A CSV file read one partition (byte range) at a time.
struct CsvTable {
    path: PathBuf,
    delimiter: u8,
    schema: SchemaRef,
    structure: TableStructure,
    bounds: Vec<u64>,
}

impl CsvTable {
    fn read_range(
        &self,
        partition: usize,
        columns: Option<&[String]>,
    ) -> Result<RecordBatch, AdapterError> {
        use std::io::{Read, SeekFrom};
        if partition + 1 >= self.bounds.len() {
            return Err(AdapterError::BadRequest(format!(
                "partition {partition} is out of range: the table has {}",
                self.structure.npartitions
            )));
        }
        let (start, end) = (self.bounds[partition], self.bounds[partition + 1]);
        let mut file = File::open(&self.path).map_err(|e| internal(&self.path, e))?;
        file.seek(SeekFrom::Start(start))
            .map_err(|e| internal(&self.path, e))?;
        let mut builder = arrow_csv::ReaderBuilder::new(self.schema.clone())
            .with_header(false)
            .with_delimiter(self.delimiter)
            .with_batch_size(65_536);
        let schema = match columns {
            Some(cols) => {
                let idx = tiled_adapters::table::column_indices(&self.schema, cols)?;
                builder = builder.with_projection(idx.clone());
                Arc::new(
                    self.schema
                        .project(&idx)
                        .map_err(|e| internal(&self.path, e))?,
                )
            }
            None => self.schema.clone(),
        };
        let reader = builder
            .build(BufReader::new(file.take(end - start)))
            .map_err(|e| internal(&self.path, e))?;
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| {
            AdapterError::Internal(format!(
                "{} (partition {partition}): {e}",
                self.path.display()
            ))
        })?;
        arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| internal(&self.path, e))
    }
}

impl TableAdapter for CsvTable {
    fn structure(&self) -> &TableStructure {
        &self.structure
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn partition_rows(&self, _partition: usize) -> Option<usize> {
        None
    }

    fn partition_bytes(&self, partition: usize, columns: Option<&[String]>) -> Option<usize> {
        let text = self.bounds.get(partition + 1)? - self.bounds.get(partition)?;
        // Parsed values take about as much room as their text (numbers
        // less, strings a little more): twice the text bounds both.
        let n = self.schema.fields().len().max(1) as u64;
        let share = columns.map_or(n, |c| (c.len() as u64).min(n));
        usize::try_from(text * 2 * share / n + 1).ok()
    }

    fn read_partition(
        &self,
        partition: usize,
        columns: Option<&[String]>,
    ) -> Result<RecordBatch, AdapterError> {
        self.read_range(partition, columns)
    }

    fn column_array(&self, name: &str) -> Option<Arc<dyn ArrayAdapter>> {
        let cols = [name.to_string()];
        let parts = (0..self.structure.npartitions)
            .map(|p| self.read_range(p, Some(&cols)))
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let schema = parts.first()?.schema();
        MemoryTable::new(schema, parts).ok()?.column_array(name)
    }
}

impl FileFormat for CsvFormat {
    fn mimetype(&self) -> &'static str {
        if self.delimiter == b'\t' {
            "text/tab-separated-values"
        } else {
            "text/csv"
        }
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        let schema = self
            .schema(path)
            .map_err(|e| FileError::unreadable(path, e))?;
        if schema.fields().is_empty() {
            return Err(FileError::unreadable(path, "no columns"));
        }
        let bounds = self
            .bounds(path)
            .map_err(|e| FileError::unreadable(path, e))?;
        let mut d = described_table(path, &schema, bounds.len() - 1)?;
        d.parameters = Some(json!({ "bounds": bounds }));
        Ok(d)
    }

    fn open(
        &self,
        path: &Path,
        parameters: &Value,
        _: StructureFamily,
    ) -> Result<NodeData, AdapterError> {
        let schema = Arc::new(self.schema(path).map_err(|e| internal(path, e))?);
        // The partitions registered; a file that changed since needs
        // registering again (`--watch` does it).
        let bounds: Vec<u64> = match parameters.get("bounds") {
            Some(b) => serde_json::from_value(b.clone()).map_err(|e| internal(path, e))?,
            None => self.bounds(path).map_err(|e| internal(path, e))?,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| internal(path, e))?
            .len();
        if bounds.len() < 2 || bounds.last() != Some(&len) {
            return Err(internal(path, "the file changed since it was registered"));
        }
        let structure = TableStructure::from_schema(&schema, bounds.len() - 1)
            .map_err(|e| internal(path, e))?;
        Ok(NodeData::Table(Arc::new(CsvTable {
            path: path.to_path_buf(),
            delimiter: self.delimiter,
            schema,
            structure,
            bounds,
        })))
    }
}

// ---------------------------------------------------------------- Parquet

/// `.parquet` files: each row group is a partition, and only the requested
/// columns' pages are read.
pub struct ParquetFormat;

struct ParquetTable {
    path: PathBuf,
    schema: SchemaRef,
    structure: TableStructure,
    rows: Vec<usize>,
    bytes: Vec<usize>,
}

impl ParquetTable {
    fn open(path: &Path) -> Result<Self, String> {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let file = File::open(path).map_err(|e| e.to_string())?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
        let schema = builder.schema().clone();
        let meta = builder.metadata();
        let groups = meta.row_groups();
        let rows = groups
            .iter()
            .map(|g| g.num_rows().max(0) as usize)
            .collect::<Vec<_>>();
        let bytes = groups
            .iter()
            .map(|g| g.total_byte_size().max(0) as usize)
            .collect::<Vec<_>>();
        // A file without row groups is one empty partition.
        let n = groups.len().max(1);
        let structure = TableStructure::from_schema(&schema, n).map_err(|e| e.to_string())?;
        Ok(ParquetTable {
            path: path.to_path_buf(),
            schema,
            structure,
            rows,
            bytes,
        })
    }

    fn read_groups(
        &self,
        groups: Vec<usize>,
        columns: Option<&[String]>,
    ) -> Result<Vec<RecordBatch>, AdapterError> {
        use parquet::arrow::ProjectionMask;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let file = File::open(&self.path).map_err(|e| internal(&self.path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| internal(&self.path, e))?;
        let mut builder = builder.with_row_groups(groups).with_batch_size(1 << 20);
        let mut order = None;
        if let Some(cols) = columns {
            let idx = tiled_adapters::table::column_indices(&self.schema, cols)?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), idx.iter().copied());
            builder = builder.with_projection(mask);
            order = Some(cols.to_vec());
        }
        let reader = builder.build().map_err(|e| internal(&self.path, e))?;
        let mut out = Vec::new();
        for b in reader {
            let b = b.map_err(|e| internal(&self.path, e))?;
            // The reader yields projected columns in file order; give them
            // in the order asked.
            let b = match &order {
                Some(cols) => {
                    let idx = tiled_adapters::table::column_indices(&b.schema(), cols)?;
                    b.project(&idx).map_err(|e| internal(&self.path, e))?
                }
                None => b,
            };
            out.push(b);
        }
        Ok(out)
    }

    fn projected_schema(&self, columns: Option<&[String]>) -> Result<SchemaRef, AdapterError> {
        match columns {
            None => Ok(self.schema.clone()),
            Some(cols) => {
                let idx = tiled_adapters::table::column_indices(&self.schema, cols)?;
                Ok(Arc::new(
                    self.schema
                        .project(&idx)
                        .map_err(|e| internal(&self.path, e))?,
                ))
            }
        }
    }
}

impl TableAdapter for ParquetTable {
    fn structure(&self) -> &TableStructure {
        &self.structure
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn partition_rows(&self, partition: usize) -> Option<usize> {
        self.rows
            .get(partition)
            .copied()
            .or((partition == 0).then_some(0))
    }

    fn partition_bytes(&self, partition: usize, columns: Option<&[String]>) -> Option<usize> {
        let total = self
            .bytes
            .get(partition)
            .copied()
            .or((partition == 0).then_some(0))?;
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
        if partition >= self.structure.npartitions {
            return Err(AdapterError::BadRequest(format!(
                "partition {partition} is out of range: the table has {}",
                self.structure.npartitions
            )));
        }
        let schema = self.projected_schema(columns)?;
        if self.rows.is_empty() {
            return Ok(RecordBatch::new_empty(schema));
        }
        let batches = self.read_groups(vec![partition], columns)?;
        arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| internal(&self.path, e))
    }

    fn column_array(&self, name: &str) -> Option<Arc<dyn ArrayAdapter>> {
        let cols = [name.to_string()];
        let groups = (0..self.rows.len()).collect();
        let batches = self.read_groups(groups, Some(&cols)).ok()?;
        // The batches' own schema (the file's may carry extra metadata).
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => self.projected_schema(Some(&cols)).ok()?,
        };
        let table = MemoryTable::new(schema, batches).ok()?;
        table.column_array(name)
    }
}

impl FileFormat for ParquetFormat {
    fn mimetype(&self) -> &'static str {
        "application/x-parquet"
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        let t = ParquetTable::open(path).map_err(|e| FileError::unreadable(path, e))?;
        described_table(path, &t.schema, t.structure.npartitions)
    }

    fn open(&self, path: &Path, _: &Value, _: StructureFamily) -> Result<NodeData, AdapterError> {
        Ok(NodeData::Table(Arc::new(
            ParquetTable::open(path).map_err(|e| internal(path, e))?,
        )))
    }
}

// ---------------------------------------------------------------- Arrow IPC

/// Arrow IPC files (`.arrow`, `.feather` v2): each record batch is a
/// partition.
pub struct ArrowFormat;

fn arrow_reader(path: &Path) -> Result<arrow_ipc::reader::FileReader<BufReader<File>>, String> {
    let mut file = BufReader::new(File::open(path).map_err(|e| e.to_string())?);
    file.rewind().map_err(|e| e.to_string())?;
    arrow_ipc::reader::FileReader::try_new(file, None).map_err(|e| e.to_string())
}

impl FileFormat for ArrowFormat {
    fn mimetype(&self) -> &'static str {
        "application/vnd.apache.arrow.file"
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        let r = arrow_reader(path).map_err(|e| FileError::unreadable(path, e))?;
        let n = r.num_batches().max(1);
        described_table(path, &r.schema(), n)
    }

    fn open(&self, path: &Path, _: &Value, _: StructureFamily) -> Result<NodeData, AdapterError> {
        let r = arrow_reader(path).map_err(|e| internal(path, e))?;
        let schema = r.schema();
        let mut batches = r
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| internal(path, e))?;
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema.clone()));
        }
        Ok(NodeData::Table(Arc::new(MemoryTable::new(
            schema, batches,
        )?)))
    }
}
