//! Table serializers beyond Arrow file and JSON (Arrow stream, Parquet, CSV,
//! TSV, JSON-seq, xlsx, HTML): not written yet; see the formats issue.
