//! Table export formats beyond the Arrow file and JSON: Arrow stream,
//! Parquet, delimited text, JSON sequences, xlsx, HTML and msgpack.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use serde_json::Value;

use crate::array_formats::{HTML_MAX_ROWS, html_page, json_to_msgpack};
use crate::table::column_values;
use crate::{FormatError, Payload};

fn table(p: Payload) -> Result<(SchemaRef, Vec<RecordBatch>), FormatError> {
    match p {
        Payload::Table { schema, batches } => Ok((schema, batches)),
        _ => Err(FormatError::Internal(
            "table serializer given something else".into(),
        )),
    }
}

fn internal(e: impl std::fmt::Display) -> FormatError {
    FormatError::Internal(e.to_string())
}

/// Arrow IPC stream format.
///
/// # Errors
/// [`FormatError::Internal`] if Arrow refuses the batches.
pub fn encode_arrow_stream(p: Payload) -> Result<Vec<u8>, FormatError> {
    let (schema, batches) = table(p)?;
    let mut out = Vec::new();
    {
        let mut w =
            arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema).map_err(internal)?;
        for b in &batches {
            w.write(b).map_err(internal)?;
        }
        w.finish().map_err(internal)?;
    }
    Ok(out)
}

/// Parquet, zstd-compressed, one row group per batch.
///
/// # Errors
/// [`FormatError::Unsupported`] for column types Parquet cannot store.
pub fn encode_parquet(p: Payload) -> Result<Vec<u8>, FormatError> {
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    let (schema, batches) = table(p)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut out = Vec::new();
    {
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props))
            .map_err(|e| FormatError::Unsupported(e.to_string()))?;
        for b in &batches {
            w.write(b)
                .map_err(|e| FormatError::Unsupported(e.to_string()))?;
        }
        w.close().map_err(internal)?;
    }
    Ok(out)
}

fn delimited(p: Payload, delimiter: u8) -> Result<Vec<u8>, FormatError> {
    let (schema, batches) = table(p)?;
    let mut out = Vec::new();
    {
        let mut w = arrow_csv::WriterBuilder::new()
            .with_header(true)
            .with_delimiter(delimiter)
            .build(&mut out);
        if batches.is_empty() {
            // Still write the header row.
            w.write(&RecordBatch::new_empty(schema))
                .map_err(|e| FormatError::Unsupported(e.to_string()))?;
        }
        for b in &batches {
            w.write(b)
                .map_err(|e| FormatError::Unsupported(e.to_string()))?;
        }
    }
    Ok(out)
}

/// `text/csv`: a header row, RFC 4180 quoting.
///
/// # Errors
/// [`FormatError::Unsupported`] for nested column types.
pub fn encode_csv(p: Payload) -> Result<Vec<u8>, FormatError> {
    delimited(p, b',')
}

/// `text/tab-separated-values`.
///
/// # Errors
/// As [`encode_csv`].
pub fn encode_tsv(p: Payload) -> Result<Vec<u8>, FormatError> {
    delimited(p, b'\t')
}

/// Every row as a JSON object, in order, a batch at a time.
fn for_each_record(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    mut f: impl FnMut(serde_json::Map<String, Value>) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
    for b in batches {
        let mut columns = Vec::with_capacity(b.num_columns());
        for c in b.columns() {
            let mut values = Vec::with_capacity(c.len());
            column_values(c.as_ref(), &mut values)?;
            columns.push(values.into_iter());
        }
        for _ in 0..b.num_rows() {
            let mut record = serde_json::Map::with_capacity(names.len());
            for (name, col) in names.iter().zip(columns.iter_mut()) {
                record.insert((*name).clone(), col.next().unwrap_or(Value::Null));
            }
            f(record)?;
        }
    }
    Ok(())
}

/// `application/json-seq` (RFC 7464): each row a JSON object preceded by
/// the record separator 0x1E and followed by a newline.
///
/// # Errors
/// [`FormatError::Unsupported`] for column types with no JSON form.
pub fn encode_json_seq(p: Payload) -> Result<Vec<u8>, FormatError> {
    let (schema, batches) = table(p)?;
    let mut out = Vec::new();
    for_each_record(&schema, &batches, |record| {
        out.push(0x1E);
        serde_json::to_writer(&mut out, &record).map_err(internal)?;
        out.push(b'\n');
        Ok(())
    })?;
    Ok(out)
}

/// `application/x-msgpack`: `{"column": [values...]}` like JSON.
///
/// # Errors
/// As [`crate::table::encode_json`].
pub fn encode_msgpack(p: Payload) -> Result<Vec<u8>, FormatError> {
    let json = crate::table::encode_json(p)?;
    let value: Value = serde_json::from_slice(&json).map_err(internal)?;
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &json_to_msgpack(value)).map_err(internal)?;
    Ok(out)
}

/// xlsx: one sheet, a header row, then the rows. Numbers are written as
/// numbers (Excel holds them as f64), everything else as text.
///
/// # Errors
/// [`FormatError::Unsupported`] beyond Excel's 1,048,576 rows or 16,384
/// columns.
pub fn encode_xlsx(p: Payload) -> Result<Vec<u8>, FormatError> {
    use rust_xlsxwriter::{Format, Workbook};
    let (schema, batches) = table(p)?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows + 1 > 1_048_576 || schema.fields().len() > 16_384 {
        return Err(FormatError::Unsupported(format!(
            "xlsx holds at most 1,048,575 rows and 16,384 columns; this table has {rows} rows \
             and {} columns; select fewer or use parquet or csv",
            schema.fields().len()
        )));
    }
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let bold = Format::new().set_bold();
    let xl = |e: rust_xlsxwriter::XlsxError| internal(e);
    for (j, f) in schema.fields().iter().enumerate() {
        sheet
            .write_string_with_format(0, j as u16, f.name(), &bold)
            .map_err(xl)?;
    }
    let mut r: u32 = 1;
    for_each_record(&schema, &batches, |record| {
        for (j, v) in record.into_iter().map(|(_, v)| v).enumerate() {
            let c = j as u16;
            match v {
                Value::Null => {}
                Value::Bool(b) => {
                    sheet.write_boolean(r, c, b).map_err(xl)?;
                }
                Value::Number(n) => {
                    sheet
                        .write_number(r, c, n.as_f64().unwrap_or(f64::NAN))
                        .map_err(xl)?;
                }
                Value::String(s) => {
                    sheet.write_string(r, c, s).map_err(xl)?;
                }
                other => {
                    sheet.write_string(r, c, other.to_string()).map_err(xl)?;
                }
            }
        }
        r += 1;
        Ok(())
    })?;
    book.save_to_buffer().map_err(xl)
}

/// `text/html`: the first [`HTML_MAX_ROWS`] rows with a header.
///
/// # Errors
/// As [`encode_json_seq`].
pub fn encode_html(p: Payload) -> Result<Vec<u8>, FormatError> {
    let (schema, batches) = table(p)?;
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let header: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = Vec::new();
    let shown: Vec<RecordBatch> = {
        // Only convert the rows that will be shown.
        let mut left = HTML_MAX_ROWS;
        let mut out = Vec::new();
        for b in &batches {
            if left == 0 {
                break;
            }
            let n = b.num_rows().min(left);
            out.push(b.slice(0, n));
            left -= n;
        }
        out
    };
    for_each_record(&schema, &shown, |record| {
        rows.push(
            record
                .into_iter()
                .map(|(_, v)| match v {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .collect(),
        );
        Ok(())
    })?;
    let note = if total > HTML_MAX_ROWS {
        format!("Showing {HTML_MAX_ROWS} of {total} rows.")
    } else {
        String::new()
    };
    Ok(html_page("table", Some(&header), &rows, &note))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    fn payload() -> Payload {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Float64, false),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Float64Array::from(vec![0.1, 2.5])),
                Arc::new(StringArray::from(vec![Some("x,y"), None])),
            ],
        )
        .unwrap();
        Payload::Table {
            schema,
            batches: vec![batch],
        }
    }

    #[test]
    fn csv_has_header_and_quotes() {
        let text = String::from_utf8(encode_csv(payload()).unwrap()).unwrap();
        assert_eq!(text, "a,b,s\n1,0.1,\"x,y\"\n2,2.5,\n");
    }

    #[test]
    fn json_seq_is_rfc7464() {
        let out = encode_json_seq(payload()).unwrap();
        let records: Vec<&[u8]> = out.split(|&b| b == 0x1E).skip(1).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0], b"{\"a\":1,\"b\":0.1,\"s\":\"x,y\"}\n");
        assert_eq!(records[1], b"{\"a\":2,\"b\":2.5,\"s\":null}\n");
    }

    #[test]
    fn parquet_and_stream_round_trip() {
        let Payload::Table { batches, .. } = payload() else {
            unreachable!()
        };
        let pq = encode_parquet(payload()).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(pq),
        )
        .unwrap()
        .build()
        .unwrap();
        let back: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(back, batches);
        let stream = encode_arrow_stream(payload()).unwrap();
        let reader =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(stream), None).unwrap();
        let back: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(back, batches);
    }

    #[test]
    fn xlsx_is_a_zip_and_html_escapes() {
        let x = encode_xlsx(payload()).unwrap();
        assert_eq!(&x[..2], b"PK");
        let html = String::from_utf8(encode_html(payload()).unwrap()).unwrap();
        assert!(html.contains("<th>a</th>") && html.contains("<td>x,y</td>"));
    }
}
