//! Excel workbooks (`.xlsx`): a container with one table per sheet, as
//! upstream's `ExcelAdapter`. Column types follow the cells: a column of
//! numbers is float64 (int64 when every value is integral), of booleans
//! bool, anything else text; the first row holds the column names.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use calamine::{Data, Reader, Xlsx, open_workbook};
use serde_json::{Value, json};
use tiled_adapters::{AdapterError, MemoryTable, NodeData};
use tiled_model::StructureFamily;
use tiled_model::structure::TableStructure;

use crate::{Described, FileError, FileFormat};

/// `.xlsx` workbooks.
pub struct ExcelFormat;

fn sheet_batch(path: &Path, sheet: &str) -> Result<RecordBatch, String> {
    let mut wb: Xlsx<_> = open_workbook(path).map_err(|e: calamine::XlsxError| e.to_string())?;
    let range = wb.worksheet_range(sheet).map_err(|e| e.to_string())?;
    let mut rows = range.rows();
    let header: Vec<String> = match rows.next() {
        Some(r) => r
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                Data::Empty => format!("Unnamed: {i}"),
                other => other.to_string(),
            })
            .collect(),
        None => Vec::new(),
    };
    let body: Vec<&[Data]> = rows.collect();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, name) in header.iter().enumerate() {
        let cells: Vec<&Data> = body
            .iter()
            .map(|r| r.get(i).unwrap_or(&Data::Empty))
            .collect();
        let numbers = cells
            .iter()
            .all(|c| matches!(c, Data::Int(_) | Data::Float(_) | Data::Empty));
        let bools = cells
            .iter()
            .all(|c| matches!(c, Data::Bool(_) | Data::Empty));
        let (dtype, array): (DataType, ArrayRef) =
            if !cells.is_empty() && bools && cells.iter().any(|c| matches!(c, Data::Bool(_))) {
                let v: BooleanArray = cells
                    .iter()
                    .map(|c| match c {
                        Data::Bool(b) => Some(*b),
                        _ => None,
                    })
                    .collect();
                (DataType::Boolean, Arc::new(v))
            } else if numbers && cells.iter().any(|c| !matches!(c, Data::Empty)) {
                let as_f = |c: &Data| match c {
                    Data::Int(n) => Some(*n as f64),
                    Data::Float(f) => Some(*f),
                    _ => None,
                };
                let integral = cells.iter().all(|c| match c {
                    Data::Int(_) => true,
                    Data::Float(f) => f.fract() == 0.0 && f.abs() < 9.0e15,
                    _ => false,
                });
                if integral {
                    let v: Int64Array = cells.iter().map(|c| as_f(c).map(|f| f as i64)).collect();
                    (DataType::Int64, Arc::new(v))
                } else {
                    let v: Float64Array = cells.iter().map(|c| as_f(c)).collect();
                    (DataType::Float64, Arc::new(v))
                }
            } else {
                let v: StringArray = cells
                    .iter()
                    .map(|c| match c {
                        Data::Empty => None,
                        other => Some(other.to_string()),
                    })
                    .collect();
                (DataType::Utf8, Arc::new(v))
            };
        fields.push(Field::new(name, dtype, true));
        columns.push(array);
    }
    let schema = Arc::new(Schema::new(fields));
    if columns.is_empty() {
        return Ok(RecordBatch::new_empty(schema));
    }
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

impl FileFormat for ExcelFormat {
    fn mimetype(&self) -> &'static str {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    }

    fn describe(&self, path: &Path) -> Result<Described, FileError> {
        let wb: Xlsx<_> =
            open_workbook(path).map_err(|e: calamine::XlsxError| FileError::unreadable(path, e))?;
        let mut out = Described::container(Default::default());
        for sheet in wb.sheet_names() {
            let batch = sheet_batch(path, &sheet).map_err(|e| FileError::unreadable(path, e))?;
            let st = TableStructure::from_schema(&batch.schema(), 1)
                .map_err(|e| FileError::unreadable(path, e))?;
            out.children.push((
                sheet.clone(),
                Described {
                    family: StructureFamily::Table,
                    structure: Some(
                        serde_json::to_value(st).map_err(|e| FileError::unreadable(path, e))?,
                    ),
                    metadata: Default::default(),
                    specs: Vec::new(),
                    parameters: Some(json!({ "sheet": sheet })),
                    children: Vec::new(),
                },
            ));
        }
        Ok(out)
    }

    fn open(
        &self,
        path: &Path,
        parameters: &Value,
        _: StructureFamily,
    ) -> Result<NodeData, AdapterError> {
        let sheet = parameters
            .get("sheet")
            .and_then(Value::as_str)
            .ok_or_else(|| AdapterError::Internal("an Excel data source without a sheet".into()))?;
        let batch = sheet_batch(path, sheet)
            .map_err(|e| AdapterError::Internal(format!("{}: {e}", path.display())))?;
        Ok(NodeData::Table(Arc::new(MemoryTable::new(
            batch.schema(),
            vec![batch],
        )?)))
    }
}
