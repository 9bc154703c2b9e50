//! Tiled's data model: the wire and domain types every other crate speaks.
//!
//! - [`dtype`]: NumPy-style element types ([`DataType`]).
//! - [`structure`]: structure families and the structures of arrays, tables
//!   and containers.
//! - [`slice`]: N-d slices with Python semantics ([`NdSlice`]).
//! - [`query`]: every search query type, parsed from `filter[...]` params.
//!
//! This crate does no I/O; it only describes and validates.

pub mod dtype;
pub mod query;
pub mod slice;
pub mod structure;

pub use dtype::{BuiltinDtype, DataType, Endianness, Kind, StructDtype, StructField};
pub use query::{CompareOp, Query};
pub use slice::{DimSelection, NdSlice, ResolvedSlice, SliceItem};
pub use structure::{ArrayStructure, ContainerStructure, Spec, StructureFamily, TableStructure};

/// Everything a caller can get wrong when describing data or a selection.
/// Each variant is a caller mistake (a 4xx at the HTTP layer).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    #[error("invalid data type {0:?}")]
    InvalidDtype(String),
    #[error("invalid slice {0}")]
    InvalidSlice(String),
    #[error("invalid structure: {0}")]
    InvalidStructure(String),
    #[error("{0}")]
    InvalidQuery(String),
    /// A parameter outside its fixed set of values (an enum); upstream's
    /// validation answers these with 422.
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    BlockOutOfRange(String),
}
