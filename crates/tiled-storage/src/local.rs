//! The local-directory backend and its atomic Zarr store.

use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use zarrs::filesystem::FilesystemStore;
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::{
    ListableStorageTraits, MaybeBytesIterator, OffsetBytesIterator, ReadableStorageTraits,
    StorageError as ZarrStorageError, StoreKey, StoreKeys, StoreKeysPrefixes, StorePrefix,
    WritableStorageTraits,
};

use crate::{StorageError, TEMP_FILE_PREFIX};

/// A local directory root (canonical).
pub(crate) struct LocalBackend {
    root: PathBuf,
}

fn io_error(context: &str, err: &std::io::Error) -> StorageError {
    if err.kind() == ErrorKind::NotFound {
        StorageError::NotFound(context.to_string())
    } else {
        StorageError::Io(format!("{context}: {err}"))
    }
}

impl LocalBackend {
    /// Create `path` if missing and canonicalize it.
    pub(crate) fn open(path: &Path) -> Result<Self, StorageError> {
        create_dirs_durable(path).map_err(|e| {
            StorageError::Io(format!("cannot create directory {}: {e}", path.display()))
        })?;
        let root = path.canonicalize().map_err(|e| {
            StorageError::Io(format!("cannot canonicalize {}: {e}", path.display()))
        })?;
        Ok(Self { root })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub(crate) fn put(&self, rel: &str, bytes: &[u8]) -> Result<(), StorageError> {
        atomic_write(&self.path(rel), bytes).map_err(|e| StorageError::Io(format!("{rel}: {e}")))
    }

    /// Open `rel` for reading; a directory counts as missing.
    fn open_file(&self, rel: &str) -> Result<(File, u64), StorageError> {
        let file = File::open(self.path(rel)).map_err(|e| io_error(rel, &e))?;
        let meta = file.metadata().map_err(|e| io_error(rel, &e))?;
        if !meta.is_file() {
            return Err(StorageError::NotFound(format!("{rel} (not a file)")));
        }
        Ok((file, meta.len()))
    }

    pub(crate) fn get(&self, rel: &str) -> Result<Bytes, StorageError> {
        let (file, size) = self.open_file(rel)?;
        read_at(&file, 0, size).map_err(|e| io_error(rel, &e))
    }

    pub(crate) fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let (file, size) = self.open_file(rel)?;
        if range.start > size || (range.start == size && range.end > range.start) {
            return Err(StorageError::InvalidRange(format!(
                "{}..{} of {rel} ({size} bytes)",
                range.start, range.end
            )));
        }
        let end = range.end.min(size);
        read_at(&file, range.start, end - range.start).map_err(|e| io_error(rel, &e))
    }

    pub(crate) fn size(&self, rel: &str) -> Result<u64, StorageError> {
        let meta = std::fs::metadata(self.path(rel)).map_err(|e| io_error(rel, &e))?;
        if !meta.is_file() {
            return Err(StorageError::NotFound(format!("{rel} (not a file)")));
        }
        Ok(meta.len())
    }

    pub(crate) fn delete_prefix(&self, rel: &str) -> Result<(), StorageError> {
        let path = self.path(rel);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(rel, &e)),
        };
        let result = if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(rel, &e)),
        }
        if let Some(parent) = path.parent() {
            sync_dir(parent).map_err(|e| io_error(rel, &e))?;
        }
        Ok(())
    }

    pub(crate) fn zarr_store(
        &self,
        rel: &str,
    ) -> Result<zarrs::storage::ReadableWritableListableStorage, StorageError> {
        Ok(Arc::new(AtomicFilesystemStore::new(&self.path(rel))?))
    }
}

/// Read `len` bytes at `offset`, failing if the file is shorter.
fn read_at(file: &File, offset: u64, len: u64) -> std::io::Result<Bytes> {
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
}

/// fsync a directory, making renames and creations inside it durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `create_dir_all`, fsyncing the parent of every directory it creates.
fn create_dirs_durable(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs_durable(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Replace `path` atomically with `data`: write a temporary file in the same
/// directory, fsync it, rename it over `path`, fsync the directory.
/// Missing parent directories are created. On failure the temporary file is
/// removed (unless the process dies first).
fn atomic_write(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other(format!("{} has no parent", path.display())))?;
    create_dirs_durable(dir)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_FILE_PREFIX);
    {
        use std::os::unix::fs::PermissionsExt;
        // Like `fs::write`: 0o666 filtered by the umask (tempfile defaults to 0o600).
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Is this the key of a leftover temporary file of [`atomic_write`]?
fn is_temp_key(key: &StoreKey) -> bool {
    let name = key.as_str().rsplit('/').next().unwrap_or_default();
    name.starts_with(TEMP_FILE_PREFIX)
}

const LOCK_STRIPES: usize = 64;

/// A zarrs filesystem store whose writes are atomic.
///
/// Reads, listings and erasures go to zarrs' [`FilesystemStore`] (whose file
/// handle cache stays disabled, so files replaced by rename are always
/// reopened). `set` goes through [`atomic_write`]; `set_partial_many` is a
/// read-modify-write followed by an atomic replace. Writes to one key are
/// serialized within the process by striped locks.
struct AtomicFilesystemStore {
    inner: FilesystemStore,
    locks: Vec<Mutex<()>>,
}

impl AtomicFilesystemStore {
    fn new(base: &Path) -> Result<Self, StorageError> {
        let inner = FilesystemStore::new(base).map_err(|e| {
            StorageError::Io(format!("cannot open Zarr store {}: {e}", base.display()))
        })?;
        Ok(Self {
            inner,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
        })
    }

    fn lock(&self, key: &StoreKey) -> std::sync::MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        // The modulo keeps the value below LOCK_STRIPES, so the cast is lossless.
        let index = (hasher.finish() % LOCK_STRIPES as u64) as usize;
        self.locks[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, key: &StoreKey, value: &[u8]) -> Result<(), ZarrStorageError> {
        atomic_write(&self.inner.key_to_fspath(key), value)?;
        Ok(())
    }
}

impl ReadableStorageTraits for AtomicFilesystemStore {
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, ZarrStorageError> {
        self.inner.get_partial_many(key, byte_ranges)
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, ZarrStorageError> {
        self.inner.size_key(key)
    }

    fn supports_get_partial(&self) -> bool {
        self.inner.supports_get_partial()
    }
}

impl WritableStorageTraits for AtomicFilesystemStore {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), ZarrStorageError> {
        let _guard = self.lock(key);
        self.write(key, &value)
    }

    fn set_partial_many(
        &self,
        key: &StoreKey,
        offset_values: OffsetBytesIterator,
    ) -> Result<(), ZarrStorageError> {
        let _guard = self.lock(key);
        let mut buf: Vec<u8> = self
            .inner
            .get(key)?
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default();
        for (offset, value) in offset_values {
            let start = usize::try_from(offset)
                .map_err(|e| ZarrStorageError::Other(format!("offset {offset}: {e}")))?;
            let end = start + value.len();
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[start..end].copy_from_slice(&value);
        }
        self.write(key, &buf)
    }

    fn erase(&self, key: &StoreKey) -> Result<(), ZarrStorageError> {
        let _guard = self.lock(key);
        self.inner.erase(key)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), ZarrStorageError> {
        self.inner.erase_prefix(prefix)
    }

    fn supports_set_partial(&self) -> bool {
        // Partial writes would rewrite the whole value anyway; let zarrs
        // encode whole chunks/shards instead.
        false
    }
}

impl ListableStorageTraits for AtomicFilesystemStore {
    fn list(&self) -> Result<StoreKeys, ZarrStorageError> {
        let mut keys = self.inner.list()?;
        keys.retain(|k| !is_temp_key(k));
        Ok(keys)
    }

    fn list_prefix(&self, prefix: &StorePrefix) -> Result<StoreKeys, ZarrStorageError> {
        let mut keys = self.inner.list_prefix(prefix)?;
        keys.retain(|k| !is_temp_key(k));
        Ok(keys)
    }

    fn list_dir(&self, prefix: &StorePrefix) -> Result<StoreKeysPrefixes, ZarrStorageError> {
        let listing = self.inner.list_dir(prefix)?;
        let keys = listing
            .keys()
            .iter()
            .filter(|k| !is_temp_key(k))
            .cloned()
            .collect();
        Ok(StoreKeysPrefixes::new(keys, listing.prefixes().clone()))
    }

    fn size_prefix(&self, prefix: &StorePrefix) -> Result<u64, ZarrStorageError> {
        let mut size = 0;
        for key in self.list_prefix(prefix)? {
            size += self.inner.size_key(&key)?.unwrap_or(0);
        }
        Ok(size)
    }
}
