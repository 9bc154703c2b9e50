//! Adapters: the traits a data backend implements, one per structure family,
//! and the in-memory implementations.
//!
//! - [`array`]: [`ArrayAdapter`] (`read_block`, `read(slice)`), [`ArrayData`],
//!   [`MemoryArray`], [`GeneratedArray`].
//! - [`table`]: [`TableAdapter`] (`read_partition(i, columns)`), [`MemoryTable`].
//! - [`node`]: [`Node`], [`ContainerAdapter`] (`get`, `search`, `distinct`),
//!   [`MemoryContainer`].
//! - [`search`]: query evaluation for in-memory trees.
//! - [`conformance`]: the checks every adapter's tests run.
//!
//! Adapters are synchronous: the server calls them on blocking threads, so a
//! reader may do file I/O or CPU work without stalling the async runtime.
//! They never serialize (that is `tiled-formats`) and never see HTTP.

pub mod array;
pub mod conformance;
pub mod node;
pub mod search;
pub mod table;
pub mod write;

pub use array::{
    ArrayAdapter, ArrayData, GeneratedArray, MemoryArray, read_via_blocks, selection_box,
};
pub use node::{
    ContainerAdapter, DataSourceLister, Distinct, DistinctRequest, DistinctValue, MemoryContainer,
    Metadata, Node, NodeData, SearchPage, SortKey,
};
pub use table::{MemoryTable, TableAdapter, columns_share};
pub use write::{MetadataRevision, MountedWriters, NewChild, TreeWriter};

/// Why an adapter could not answer.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The caller asked for something invalid (bad block, column, partition).
    #[error("{0}")]
    BadRequest(String),
    /// The backend cannot do this (e.g. a query type it does not support).
    #[error("{0}")]
    NotSupported(String),
    /// The node named does not exist (writes by path).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what is stored (a taken key, a non-empty
    /// container deleted without `recursive`).
    #[error("{0}")]
    Conflict(String),
    /// The backend failed; a bug or an I/O problem, not the caller's fault.
    #[error("{0}")]
    Internal(String),
}

impl From<tiled_model::ModelError> for AdapterError {
    fn from(e: tiled_model::ModelError) -> Self {
        AdapterError::BadRequest(e.to_string())
    }
}
