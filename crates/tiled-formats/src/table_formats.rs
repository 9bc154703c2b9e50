//! Table serializers beyond Arrow file and JSON (being written).
