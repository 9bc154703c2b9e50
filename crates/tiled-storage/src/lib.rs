//! Writable storage for new data: a local directory or an S3-compatible bucket.
//!
//! A [`Storage`] is the root under which the server writes new data (uploaded
//! arrays, tables, Zarr stores). Objects are addressed by *relative keys*:
//! `'/'`-separated, non-empty segments, none of them `.` or `..`.
//!
//! The whole API is **synchronous**. Call it from blocking threads (for
//! example inside `tokio::task::spawn_blocking`), not from async code: the
//! S3 backend owns a small tokio runtime (2 worker threads) and blocks on it.
//! As a safety net, a call made from a task of a multi-threaded tokio runtime
//! falls back to `block_in_place`; from a current-thread runtime it panics.
//!
//! ```no_run
//! # fn main() -> Result<(), tiled_storage::StorageError> {
//! let storage = tiled_storage::Storage::parse("/tmp/tiled-data")?;
//! let name = storage.unique_name("my table", ".parquet");
//! storage.put(&name, bytes::Bytes::from_static(b"..."))?;
//! assert_eq!(storage.relative(&storage.uri(&name)), Some(name));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod local;
mod s3;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

/// The prefix of the temporary files used for atomic local writes.
///
/// Such files are created next to their destination and renamed over it; a
/// process killed mid-write can leave one behind, and Zarr listings hide them.
pub const TEMP_FILE_PREFIX: &str = ".tiled-tmp-";

/// An error from a [`Storage`] operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The storage URI could not be parsed or configured.
    #[error("bad storage URI: {0}")]
    BadUri(String),
    /// A relative key is empty, absolute, or has empty, `.` or `..` segments.
    #[error("bad storage key: {0}")]
    BadKey(String),
    /// The object does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A byte range is reversed or starts beyond the end of the object.
    #[error("invalid byte range: {0}")]
    InvalidRange(String),
    /// Any other I/O or object-store failure.
    #[error("storage I/O error: {0}")]
    Io(String),
}

/// The root where new data is written: a local directory or an S3 bucket
/// with an optional key prefix.
///
/// Cheap to clone (the state is shared). Every method is blocking; see the
/// crate documentation.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Backend>,
}

enum Backend {
    Local(local::LocalBackend),
    S3(s3::S3Backend),
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("root", &self.root_uri())
            .finish()
    }
}

impl Storage {
    /// Open a storage root.
    ///
    /// * `"/abs/dir"`, `"file:///abs/dir"` or `"file://localhost/abs/dir"`:
    ///   a local directory, created if missing and canonicalized. A path
    ///   without a scheme may also be relative to the current directory.
    /// * `"s3://bucket[/prefix][?options]"`: an S3-compatible bucket. Options
    ///   come from [`object_store::aws::AmazonS3Builder::from_env`]
    ///   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`,
    ///   `AWS_REGION`, `AWS_ALLOW_HTTP`, ...) and then from query parameters,
    ///   which override the environment, e.g.
    ///   `?endpoint=http://127.0.0.1:9000&region=us-east-1&allow_http=true`.
    ///   Any `AmazonS3ConfigKey` name is accepted as a query parameter except
    ///   credentials (access key, secret, session token) and the bucket,
    ///   which are refused so that secrets never live in a URI.
    ///
    /// # Errors
    /// [`StorageError::BadUri`] for an unsupported scheme or bad S3 options,
    /// [`StorageError::Io`] if the local directory cannot be created or the
    /// S3 runtime cannot start.
    pub fn parse(uri: &str) -> Result<Storage, StorageError> {
        let backend = if let Some(rest) = uri.strip_prefix("s3://") {
            Backend::S3(s3::S3Backend::parse(rest)?)
        } else if uri.starts_with("file:") {
            let path = file_uri_path(uri)
                .ok_or_else(|| StorageError::BadUri(format!("not an absolute file URI: {uri}")))?;
            Backend::Local(local::LocalBackend::open(&path)?)
        } else if uri.contains("://") {
            return Err(StorageError::BadUri(format!(
                "unsupported scheme (expected a path, file:// or s3://): {uri}"
            )));
        } else if uri.is_empty() {
            return Err(StorageError::BadUri("empty storage URI".to_string()));
        } else {
            Backend::Local(local::LocalBackend::open(Path::new(uri))?)
        };
        Ok(Storage {
            inner: Arc::new(backend),
        })
    }

    /// The canonical local directory, or `None` for S3.
    pub fn local_root(&self) -> Option<&Path> {
        match &*self.inner {
            Backend::Local(local) => Some(local.root()),
            Backend::S3(_) => None,
        }
    }

    /// The URI of the root: `"file:///abs/dir"` or `"s3://bucket/prefix"`
    /// (never a query string nor credentials).
    pub fn root_uri(&self) -> String {
        match &*self.inner {
            Backend::Local(local) => file_uri(local.root()),
            Backend::S3(s3) => s3.root_uri(),
        }
    }

    /// The URI of the relative key `rel` under the root (not validated; see
    /// [`Storage::relative`] for the inverse).
    pub fn uri(&self, rel: &str) -> String {
        match &*self.inner {
            Backend::Local(local) => file_uri(&local.root().join(rel)),
            Backend::S3(s3) => format!("{}/{rel}", s3.root_uri()),
        }
    }

    /// The relative key of `uri`, the inverse of [`Storage::uri`].
    ///
    /// `None` if `uri` is not strictly under this root, or if the relative
    /// part has empty, `.` or `..` segments. Local URIs may be written
    /// `file:///…` or `file://localhost/…` and are percent-decoded.
    pub fn relative(&self, uri: &str) -> Option<String> {
        let rest = match &*self.inner {
            Backend::Local(local) => {
                let path = file_uri_path(uri)?;
                let path = path.to_str()?;
                let root = local.root().to_str()?;
                let root_slash = if root.ends_with('/') {
                    root.to_string()
                } else {
                    format!("{root}/")
                };
                path.strip_prefix(&root_slash)?.to_string()
            }
            Backend::S3(s3) => {
                let root_slash = format!("{}/", s3.root_uri());
                uri.strip_prefix(&root_slash)?.to_string()
            }
        };
        validate_rel(&rest).ok()?;
        Some(rest)
    }

    /// A fresh unique relative name,
    /// `"<sanitized prefix>-<16 random hex digits><suffix>"`.
    ///
    /// The prefix keeps only `[A-Za-z0-9_-]`, at most 40 characters; if
    /// nothing is left the name starts with the hex digits. `suffix` is used
    /// as given. Example: `unique_name("my key", ".zarr")` →
    /// `"mykey-0123456789abcdef.zarr"`.
    pub fn unique_name(&self, prefix: &str, suffix: &str) -> String {
        let clean: String = prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .take(40)
            .collect();
        let random: u64 = rand::random();
        if clean.is_empty() {
            format!("{random:016x}{suffix}")
        } else {
            format!("{clean}-{random:016x}{suffix}")
        }
    }

    /// Write the whole object `rel` atomically, replacing any previous one.
    ///
    /// Local: a temporary file in the destination directory is written,
    /// fsynced and renamed over `rel`, then the directory is fsynced; missing
    /// parent directories are created. S3: a single PUT.
    ///
    /// # Errors
    /// [`StorageError::BadKey`] for an invalid `rel`, [`StorageError::Io`]
    /// on failure.
    pub fn put(&self, rel: &str, bytes: Bytes) -> Result<(), StorageError> {
        validate_rel(rel)?;
        match &*self.inner {
            Backend::Local(local) => local.put(rel, &bytes),
            Backend::S3(s3) => s3.put(rel, bytes),
        }
    }

    /// Read the whole object `rel`.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] if it does not exist (a local directory is
    /// not an object either), [`StorageError::BadKey`], [`StorageError::Io`].
    pub fn get(&self, rel: &str) -> Result<Bytes, StorageError> {
        validate_rel(rel)?;
        match &*self.inner {
            Backend::Local(local) => local.get(rel),
            Backend::S3(s3) => s3.get(rel),
        }
    }

    /// Read the bytes `range` of the object `rel`.
    ///
    /// The end is clamped to the object size; an empty range gives empty
    /// bytes (if `range.start <= size`).
    ///
    /// # Errors
    /// [`StorageError::InvalidRange`] if `range.start > range.end` or the
    /// range starts beyond the end of the object, [`StorageError::NotFound`],
    /// [`StorageError::BadKey`], [`StorageError::Io`].
    pub fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        validate_rel(rel)?;
        if range.start > range.end {
            return Err(StorageError::InvalidRange(format!(
                "{}..{} of {rel}",
                range.start, range.end
            )));
        }
        match &*self.inner {
            Backend::Local(local) => local.get_range(rel, range),
            Backend::S3(s3) => s3.get_range(rel, range),
        }
    }

    /// The size in bytes of the object `rel`.
    ///
    /// # Errors
    /// [`StorageError::NotFound`], [`StorageError::BadKey`], [`StorageError::Io`].
    pub fn size(&self, rel: &str) -> Result<u64, StorageError> {
        validate_rel(rel)?;
        match &*self.inner {
            Backend::Local(local) => local.size(rel),
            Backend::S3(s3) => s3.size(rel),
        }
    }

    /// Remove `rel` and everything under it: a local file or directory tree,
    /// or on S3 the object `rel` and all objects with the prefix `rel + "/"`.
    /// Nothing to remove is not an error.
    ///
    /// # Errors
    /// [`StorageError::BadKey`] (the root itself cannot be removed),
    /// [`StorageError::Io`].
    pub fn delete_prefix(&self, rel: &str) -> Result<(), StorageError> {
        validate_rel(rel)?;
        match &*self.inner {
            Backend::Local(local) => local.delete_prefix(rel),
            Backend::S3(s3) => s3.delete_prefix(rel),
        }
    }

    /// A synchronous, readable, writable and listable zarrs storage whose
    /// root is `rel` under this storage, for
    /// `zarrs::array::Array::open(store, "/")` or
    /// `zarrs::array::ArrayBuilder::build(store, "/")`.
    ///
    /// Local: every `set` is atomic (temporary file, fsync, rename, directory
    /// fsync), so a killed process leaves either the old or the new chunk;
    /// listings hide leftover temporary files. S3: object_store through
    /// zarrs' async-to-sync adapter, blocking on this storage's runtime (see
    /// the crate documentation about async contexts).
    ///
    /// # Errors
    /// [`StorageError::BadKey`], or [`StorageError::Io`] if the store cannot
    /// be created.
    pub fn zarr_store(
        &self,
        rel: &str,
    ) -> Result<zarrs::storage::ReadableWritableListableStorage, StorageError> {
        validate_rel(rel)?;
        match &*self.inner {
            Backend::Local(local) => local.zarr_store(rel),
            Backend::S3(s3) => Ok(s3.zarr_store(rel)),
        }
    }
}

/// Check that `rel` is a relative key: non-empty `'/'`-separated segments,
/// none empty, `.` or `..`, and no NUL byte.
fn validate_rel(rel: &str) -> Result<(), StorageError> {
    if rel.is_empty() {
        return Err(StorageError::BadKey("empty key".to_string()));
    }
    if rel.contains('\0') {
        return Err(StorageError::BadKey(format!("NUL byte in key {rel:?}")));
    }
    if rel
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(StorageError::BadKey(format!(
            "key {rel:?} must be relative, without empty, '.' or '..' segments"
        )));
    }
    Ok(())
}

/// `file:///abs/path`, percent-encoding the characters a URI cannot carry
/// (`%`, space, `#`, `?` and control characters; the same idea as the
/// catalog's `file://localhost` URIs).
fn file_uri(path: &Path) -> String {
    let mut out = String::from("file://");
    for c in path.to_string_lossy().chars() {
        if matches!(c, '%' | ' ' | '#' | '?') || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The absolute path of a `file:///…` or `file://localhost/…` URI,
/// percent-decoded; `None` if it is not one.
fn file_uri_path(uri: &str) -> Option<PathBuf> {
    let rest = uri
        .strip_prefix("file://localhost")
        .or_else(|| uri.strip_prefix("file://"))?;
    if !rest.starts_with('/') || rest.contains('?') || rest.contains('#') {
        return None;
    }
    let decoded = percent_decode(rest)?;
    Some(PathBuf::from(decoded))
}

/// Strict percent-decoding to UTF-8; `None` for a malformed escape.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uri_round_trip() {
        let p = Path::new("/tmp/a b/é#1?%/x");
        let uri = file_uri(p);
        assert_eq!(uri, "file:///tmp/a%20b/é%231%3F%25/x");
        assert_eq!(file_uri_path(&uri).as_deref(), Some(p));
        assert_eq!(
            file_uri_path("file://localhost/tmp/x").as_deref(),
            Some(Path::new("/tmp/x"))
        );
        assert_eq!(file_uri_path("file://host/tmp/x"), None);
        assert_eq!(file_uri_path("file:///tmp/%2"), None);
    }

    #[test]
    fn keys() {
        assert!(validate_rel("a/b.zarr/c").is_ok());
        for bad in ["", "/a", "a/", "a//b", "./a", "a/../b", "..", "a\0b"] {
            assert!(validate_rel(bad).is_err(), "{bad:?}");
        }
    }
}
