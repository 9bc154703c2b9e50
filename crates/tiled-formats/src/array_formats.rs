//! Array serializers beyond octet-stream and JSON (CSV, TSV, NPY, PNG, TIFF,
//! HTML): not written yet; see the formats issue and docs/formats.md.
