//! Array serializers beyond octet-stream and JSON (being written).
