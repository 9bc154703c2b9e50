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

use crate::{Described, FileError, FileFormat};

fn internal(path: &Path, e: impl std::fmt::Display) -> AdapterError {
    AdapterError::Internal(format!("{}: {e}", path.display()))
}

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

/// `.csv` and `.tsv` files: one partition, column types inferred from the
/// first rows.
pub struct CsvFormat {
    pub delimiter: u8,
}

impl CsvFormat {
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

    fn read_all(&self, path: &Path, schema: SchemaRef) -> Result<Vec<RecordBatch>, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let reader = arrow_csv::ReaderBuilder::new(schema)
            .with_header(true)
            .with_delimiter(self.delimiter)
            .with_batch_size(65_536)
            .build(BufReader::new(file))
            .map_err(|e| e.to_string())?;
        reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
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
        described_table(path, &schema, 1)
    }

    fn open(&self, path: &Path, _: &Value, _: StructureFamily) -> Result<NodeData, AdapterError> {
        let schema = Arc::new(self.schema(path).map_err(|e| internal(path, e))?);
        let batches = self
            .read_all(path, schema.clone())
            .map_err(|e| internal(path, e))?;
        let one = arrow_select::concat::concat_batches(&schema, &batches)
            .map_err(|e| internal(path, e))?;
        Ok(NodeData::Table(Arc::new(MemoryTable::new(
            schema,
            vec![one],
        )?)))
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
        let n = self.schema.fields().len().max(1);
        Some(match columns {
            Some(c) => total * c.len().min(n) / n + 1,
            None => total,
        })
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
