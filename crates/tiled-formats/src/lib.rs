//! Serializers by (structure family, media type), and content negotiation.
//!
//! The [`Registry`] is the single source of truth for what we can emit: the
//! about document's `formats` and `aliases` are generated from it, `?format=`
//! and `Accept` are resolved against it, and a miss produces the 406 that
//! lists what is supported. Serializers see only data (an [`ArrayData`] or
//! record batches), never HTTP.

pub mod array_formats;
pub mod array_json;
pub mod container;
pub mod hdf5;
pub mod table;
pub mod table_formats;

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use tiled_adapters::ArrayData;
use tiled_model::StructureFamily;

/// What a serializer is given. Owned, so a serializer whose output is the
/// buffer itself (octet-stream) hands it on without a copy.
pub enum Payload {
    Array(ArrayData),
    Table {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    /// A JSON document (a container's exported tree).
    Document(serde_json::Value),
    /// A subtree with its data, for formats that hold a whole tree (HDF5).
    Tree(hdf5::ExportNode),
}

/// Why a body could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// No requested media type is supported for this node (HTTP 406).
    #[error(
        "None of the media types requested by the client are supported. Supported: {}. Requested: {requested}.",
        supported.join(", ")
    )]
    NotAcceptable {
        supported: Vec<String>,
        requested: String,
    },
    /// The format cannot represent this particular data (e.g. its shape).
    #[error("{0}")]
    Unsupported(String),
    /// Encoding failed: our bug.
    #[error("{0}")]
    Internal(String),
}

type EncodeFn = fn(Payload) -> Result<Vec<u8>, FormatError>;

/// One (family, media type) serializer.
pub struct Serializer {
    pub family: StructureFamily,
    pub media_type: &'static str,
    /// Short names accepted by `?format=`.
    pub aliases: &'static [&'static str],
    encode: EncodeFn,
}

impl Serializer {
    /// Encode the payload.
    ///
    /// # Errors
    /// [`FormatError::Unsupported`] if the data does not fit the format.
    pub fn encode(&self, payload: Payload) -> Result<Vec<u8>, FormatError> {
        (self.encode)(payload)
    }
}

pub const OCTET_STREAM: &str = "application/octet-stream";
pub const JSON: &str = "application/json";
pub const ARROW_FILE: &str = "application/vnd.apache.arrow.file";

/// Every serializer we have, in preference order within a family.
pub struct Registry {
    serializers: Vec<Serializer>,
}

pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";
pub const PARQUET: &str = "application/x-parquet";
pub const CSV: &str = "text/csv";
pub const TSV: &str = "text/tab-separated-values";
pub const TEXT: &str = "text/plain";
pub const HTML: &str = "text/html";
pub const MSGPACK: &str = "application/x-msgpack";
pub const NPY: &str = "application/x-npy";
pub const PNG: &str = "image/png";
pub const TIFF: &str = "image/tiff";
pub const JPEG: &str = "image/jpeg";
pub const JSON_SEQ: &str = "application/json-seq";
pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
pub const HDF5: &str = "application/x-hdf5";

/// Roughly how many times the data's size a serializer holds in memory
/// while encoding (the data, intermediate values and the body). The server
/// reserves that much of its data memory budget, so memory-hungry formats
/// run fewer at a time instead of growing the process.
pub fn working_set_factor(media_type: &str) -> usize {
    match media_type {
        OCTET_STREAM => 1,
        NPY | ARROW_FILE | ARROW_STREAM => 2,
        PNG | JPEG | TIFF | HDF5 => 3,
        CSV | TSV | TEXT | HTML | PARQUET | XLSX => 4,
        // A JSON value per element.
        _ => 10,
    }
}

/// Lift an array-data encoder to a payload encoder.
macro_rules! array_encoder {
    ($f:expr) => {
        |p: Payload| match p {
            Payload::Array(a) => $f(&a),
            _ => Err(FormatError::Internal(
                "array serializer given something else".into(),
            )),
        }
    };
}

impl Default for Registry {
    fn default() -> Self {
        use StructureFamily::{Array, Container, Table};
        let s = |family, media_type, aliases, encode| Serializer {
            family,
            media_type,
            aliases,
            encode,
        };
        Registry {
            serializers: vec![
                // Arrays. The first is the default (`*/*`).
                s(Array, OCTET_STREAM, &["bin", "octet-stream"], |p| match p {
                    Payload::Array(a) => Ok(a.bytes),
                    _ => Err(FormatError::Internal(
                        "array serializer given a table".into(),
                    )),
                }),
                s(Array, JSON, &["json"], array_encoder!(array_json::encode)),
                s(Array, CSV, &["csv"], array_formats::encode_csv),
                s(Array, TSV, &["tsv", "tab"], array_formats::encode_tsv),
                s(Array, TEXT, &["text", "txt"], array_formats::encode_csv),
                s(Array, NPY, &["npy"], array_formats::encode_npy),
                s(Array, PNG, &["png"], array_formats::encode_png),
                s(Array, TIFF, &["tiff", "tif"], array_formats::encode_tiff),
                s(
                    Array,
                    JPEG,
                    &["jpeg", "jpg", "jpe"],
                    array_formats::encode_jpeg,
                ),
                s(Array, HTML, &["html", "htm"], array_formats::encode_html),
                s(Array, MSGPACK, &["msgpack"], array_formats::encode_msgpack),
                // Tables.
                s(
                    Table,
                    ARROW_FILE,
                    &["arrow", "feather"],
                    table::encode_arrow_file,
                ),
                s(
                    Table,
                    ARROW_STREAM,
                    &["arrow-stream", "arrows"],
                    table_formats::encode_arrow_stream,
                ),
                s(Table, PARQUET, &["parquet"], table_formats::encode_parquet),
                s(Table, CSV, &["csv"], table_formats::encode_csv),
                s(Table, TSV, &["tsv", "tab"], table_formats::encode_tsv),
                s(Table, TEXT, &["text", "txt"], table_formats::encode_csv),
                s(Table, JSON, &["json"], table::encode_json),
                s(
                    Table,
                    JSON_SEQ,
                    &["json-seq", "jsonseq"],
                    table_formats::encode_json_seq,
                ),
                // `xslx` is the seed's spelling.
                s(Table, XLSX, &["xlsx", "xslx"], table_formats::encode_xlsx),
                s(Table, HTML, &["html", "htm"], table_formats::encode_html),
                s(Table, MSGPACK, &["msgpack"], table_formats::encode_msgpack),
                // Containers: HDF5 is upstream's default.
                s(Container, HDF5, &["h5", "hdf5", "hdf"], hdf5::encode),
                s(Container, JSON, &["json"], container::encode_json),
                s(
                    Container,
                    ARROW_FILE,
                    &["arrow", "feather"],
                    table::encode_arrow_file,
                ),
            ],
        }
    }
}

impl Registry {
    /// Media types for one family, in preference order.
    pub fn formats(&self, family: StructureFamily) -> Vec<&'static str> {
        self.serializers
            .iter()
            .filter(|s| s.family == family)
            .map(|s| s.media_type)
            .collect()
    }

    /// Encode `payload` with the serializer for `media_type`. When that
    /// format cannot hold this data, the 406 says why and lists the
    /// family's other formats.
    ///
    /// # Errors
    /// [`FormatError::NotAcceptable`] / [`FormatError::Unsupported`].
    pub fn encode(
        &self,
        family: StructureFamily,
        media_type: &str,
        payload: Payload,
    ) -> Result<Vec<u8>, FormatError> {
        let serializer = self.negotiate(family, Some(media_type), None)?;
        serializer.encode(payload).map_err(|e| match e {
            FormatError::Unsupported(why) => FormatError::Unsupported(format!(
                "{why}. Formats for this node's family: {}.",
                self.formats(family).join(", ")
            )),
            other => other,
        })
    }

    /// The about document's `formats`: every family, even those with none.
    pub fn about_formats(&self) -> BTreeMap<&'static str, Vec<&'static str>> {
        let mut out: BTreeMap<&'static str, Vec<&'static str>> = StructureFamily::ALL
            .iter()
            .map(|f| (f.as_str(), self.formats(*f)))
            .collect();
        out.insert("xarray_dataset", Vec::new());
        out
    }

    /// The about document's `aliases`: family → media type → aliases.
    pub fn about_aliases(
        &self,
    ) -> BTreeMap<&'static str, BTreeMap<&'static str, Vec<&'static str>>> {
        let mut out: BTreeMap<&'static str, BTreeMap<&'static str, Vec<&'static str>>> =
            StructureFamily::ALL
                .iter()
                .map(|f| (f.as_str(), BTreeMap::new()))
                .collect();
        for s in &self.serializers {
            out.entry(s.family.as_str())
                .or_default()
                .insert(s.media_type, s.aliases.to_vec());
        }
        out
    }

    /// Pick the serializer for a node: `?format=` (media types or aliases,
    /// comma-separated) wins over `Accept`; `Accept` is ordered by q-value;
    /// `*/*` and a missing header mean the family's default; `type/*` takes
    /// the first of that type.
    ///
    /// # Errors
    /// [`FormatError::NotAcceptable`] listing the supported media types.
    pub fn negotiate(
        &self,
        family: StructureFamily,
        format: Option<&str>,
        accept: Option<&str>,
    ) -> Result<&Serializer, FormatError> {
        let candidates: Vec<&Serializer> = self
            .serializers
            .iter()
            .filter(|s| s.family == family)
            .collect();
        let not_acceptable = |requested: &str| FormatError::NotAcceptable {
            supported: candidates
                .iter()
                .map(|s| s.media_type.to_string())
                .collect(),
            requested: requested.to_string(),
        };
        if let Some(format) = format.filter(|f| !f.trim().is_empty()) {
            for want in format.split(',').map(str::trim) {
                let want_type = want.split(';').next().unwrap_or("").trim();
                if let Some(s) = candidates
                    .iter()
                    .find(|s| s.media_type == want_type || s.aliases.contains(&want_type))
                {
                    return Ok(s);
                }
            }
            return Err(not_acceptable(format));
        }
        let accept = accept
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .unwrap_or("*/*");
        let mut ranges: Vec<(f32, usize, &str)> = accept
            .split(',')
            .enumerate()
            .filter_map(|(i, part)| {
                let mut pieces = part.split(';');
                let media = pieces.next()?.trim();
                let q = pieces
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .filter_map(|q| q.trim().parse::<f32>().ok())
                    .next()
                    .unwrap_or(1.0);
                (q > 0.0 && !media.is_empty()).then_some((q, i, media))
            })
            .collect();
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, media) in &ranges {
            let found = if *media == "*/*" || *media == "*" {
                candidates.first()
            } else if let Some(prefix) = media.strip_suffix("/*") {
                candidates
                    .iter()
                    .find(|s| s.media_type.split('/').next() == Some(prefix))
            } else {
                candidates.iter().find(|s| s.media_type == *media)
            };
            if let Some(s) = found {
                return Ok(s);
            }
        }
        Err(not_acceptable(accept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        let r = Registry::default();
        let a = StructureFamily::Array;
        assert_eq!(r.negotiate(a, None, None).unwrap().media_type, OCTET_STREAM);
        assert_eq!(
            r.negotiate(a, Some("json"), Some(OCTET_STREAM))
                .unwrap()
                .media_type,
            JSON
        );
        assert_eq!(
            r.negotiate(
                a,
                None,
                Some("image/gif;q=0.9, application/json;q=0.5, text/html;q=0.4, */*;q=0.1")
            )
            .unwrap()
            .media_type,
            JSON
        );
        assert_eq!(
            r.negotiate(StructureFamily::Table, None, Some("*/*"))
                .unwrap()
                .media_type,
            ARROW_FILE
        );
        let err = r
            .negotiate(a, Some("application/x-nope"), None)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("application/octet-stream"),
            "{err}"
        );
        assert!(r.negotiate(a, None, Some("image/gif")).is_err());
        assert_eq!(
            r.negotiate(a, None, Some("image/*")).unwrap().media_type,
            PNG
        );
        assert_eq!(
            r.negotiate(StructureFamily::Table, Some("xslx"), None)
                .unwrap()
                .media_type,
            XLSX
        );
        assert!(r.about_formats().contains_key("sparse"));
    }
}
