//! The S3 backend: object_store's `AmazonS3` driven by a private tokio runtime.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use zarrs::storage::storage_adapter::async_to_sync::{
    AsyncToSyncBlockOn, AsyncToSyncStorageAdapter,
};
use zarrs_object_store::AsyncObjectStore;

use crate::StorageError;

/// A small multi-threaded tokio runtime owned by a storage.
///
/// Dropping it never blocks (`shutdown_background`), so the last clone of a
/// [`crate::Storage`] may be dropped anywhere, including in async code.
pub(crate) struct RuntimeHolder {
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl RuntimeHolder {
    fn new() -> Result<Self, StorageError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tiled-storage-s3")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Io(format!("cannot start the S3 runtime: {e}")))?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Run `future` to completion on this runtime, blocking the calling
    /// thread.
    ///
    /// Meant for threads outside any async context. As a safety net, a call
    /// from a task of a multi-threaded tokio runtime goes through
    /// `block_in_place` (blocking that worker); a call from a current-thread
    /// runtime panics, as tokio forbids blocking there.
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            Ok(current)
                if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(|| self.handle.block_on(future))
            }
            _ => self.handle.block_on(future),
        }
    }
}

impl Drop for RuntimeHolder {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// zarrs' block-on hook, keeping the runtime alive as long as the store.
struct TokioBlockOn(Arc<RuntimeHolder>);

impl AsyncToSyncBlockOn for TokioBlockOn {
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }
}

/// A bucket, a key prefix (no leading/trailing `/`, maybe empty) and a client.
pub(crate) struct S3Backend {
    bucket: String,
    prefix: String,
    store: Arc<AmazonS3>,
    runtime: Arc<RuntimeHolder>,
}

fn bad_uri(msg: impl Into<String>) -> StorageError {
    StorageError::BadUri(msg.into())
}

impl S3Backend {
    /// Parse `bucket[/prefix][?query]` (the part after `s3://`).
    pub(crate) fn parse(rest: &str) -> Result<Self, StorageError> {
        let (location, query) = match rest.split_once('?') {
            Some((location, query)) => (location, Some(query)),
            None => (rest, None),
        };
        let (bucket, prefix) = match location.split_once('/') {
            Some((bucket, prefix)) => (bucket, prefix.trim_matches('/')),
            None => (location, ""),
        };
        if bucket.is_empty() {
            return Err(bad_uri(format!("no bucket in s3://{rest}")));
        }
        if !prefix.is_empty() {
            crate::validate_rel(prefix)
                .map_err(|e| bad_uri(format!("bad prefix in s3://{location}: {e}")))?;
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let key: AmazonS3ConfigKey = name
                .parse()
                .map_err(|e| bad_uri(format!("unknown S3 option {name:?}: {e}")))?;
            match key {
                AmazonS3ConfigKey::AccessKeyId
                | AmazonS3ConfigKey::SecretAccessKey
                | AmazonS3ConfigKey::Token => {
                    return Err(bad_uri(format!(
                        "S3 credentials ({name}) must come from the environment, not the URI"
                    )));
                }
                AmazonS3ConfigKey::Bucket => {
                    return Err(bad_uri("the bucket goes in the URI host, not a query"));
                }
                key => builder = builder.with_config(key, value),
            }
        }
        let store = builder
            .build()
            .map_err(|e| bad_uri(format!("cannot configure S3 for s3://{location}: {e}")))?;
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            store: Arc::new(store),
            runtime: Arc::new(RuntimeHolder::new()?),
        })
    }

    pub(crate) fn root_uri(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The object path of the relative key `rel`.
    fn path(&self, rel: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn error(rel: &str, err: object_store::Error) -> StorageError {
        match err {
            object_store::Error::NotFound { .. } => StorageError::NotFound(rel.to_string()),
            err => StorageError::Io(format!("{rel}: {err}")),
        }
    }

    pub(crate) fn put(&self, rel: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = self.path(rel);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map_err(|e| Self::error(rel, e))?;
        Ok(())
    }

    pub(crate) fn get(&self, rel: &str) -> Result<Bytes, StorageError> {
        let path = self.path(rel);
        self.runtime
            .block_on(async {
                let result = self.store.get(&path).await?;
                result.bytes().await
            })
            .map_err(|e| Self::error(rel, e))
    }

    pub(crate) fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let invalid = |size: u64| {
            StorageError::InvalidRange(format!(
                "{}..{} of {rel} ({size} bytes)",
                range.start, range.end
            ))
        };
        if range.start == range.end {
            // object_store refuses empty ranges; only check the object.
            let size = self.size(rel)?;
            return if range.start <= size {
                Ok(Bytes::new())
            } else {
                Err(invalid(size))
            };
        }
        let path = self.path(rel);
        match self
            .runtime
            .block_on(self.store.get_range(&path, range.clone()))
        {
            Ok(bytes) => Ok(bytes),
            Err(object_store::Error::NotFound { .. }) => {
                Err(StorageError::NotFound(rel.to_string()))
            }
            Err(err) => {
                // A range starting at or past the end is refused by S3 (416)
                // or by object_store; report it as such.
                let size = self.size(rel)?;
                if range.start >= size {
                    Err(invalid(size))
                } else {
                    Err(Self::error(rel, err))
                }
            }
        }
    }

    pub(crate) fn size(&self, rel: &str) -> Result<u64, StorageError> {
        let path = self.path(rel);
        let meta = self
            .runtime
            .block_on(self.store.head(&path))
            .map_err(|e| Self::error(rel, e))?;
        Ok(meta.size)
    }

    pub(crate) fn delete_prefix(&self, rel: &str) -> Result<(), StorageError> {
        let path = self.path(rel);
        self.runtime
            .block_on(async {
                match self.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(err) => return Err(err),
                }
                // `list(Some(p))` yields the objects under `p/` (whole
                // segments), never siblings such as `p2/...`.
                let locations = self
                    .store
                    .list(Some(&path))
                    .map_ok(|meta| meta.location)
                    .boxed();
                self.store
                    .delete_stream(locations)
                    .try_for_each(|_| async { Ok(()) })
                    .await
            })
            .map_err(|e| Self::error(rel, e))
    }

    pub(crate) fn zarr_store(&self, rel: &str) -> zarrs::storage::ReadableWritableListableStorage {
        let prefixed = PrefixStore::new(self.store.clone(), self.path(rel));
        let store = Arc::new(AsyncObjectStore::new(prefixed));
        Arc::new(AsyncToSyncStorageAdapter::new(
            store,
            TokioBlockOn(self.runtime.clone()),
        ))
    }
}
