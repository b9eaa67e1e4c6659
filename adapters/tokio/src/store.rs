//! Where the session lives between runs: the [`Store`] trait and
//! [`MemoryStore`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use futures_core::Stream;

/// A key-value store of byte records (docs/protocol.md §6.1), used by the driver
/// for the two records the core owns (`pw-{pid}-auth-v1`,
/// `pw-{pid}-anon-rt-v1`) and to read the global `pw-visitor-id`.
///
/// Operations are awaited one at a time by the client's driver, never
/// concurrently with each other or with any other input of the core, so an
/// implementation needs no ordering logic of its own; it must only make each
/// `set`/`remove` durable (or fail) before its future resolves, because the
/// core reports success to callers only after that.
pub trait Store: Send + Sync + 'static {
    /// The record under `key`, `None` when absent.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Writes (replaces) the record under `key`.
    fn set(&self, key: &str, value: &[u8]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the record under `key`; removing an absent record succeeds.
    fn remove(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Changes made by someone else (another process, an operator), if the
    /// store can see them. Called once, when the client is built. Echoes of
    /// the client's own writes are tolerated by the core but should be
    /// avoided.
    fn watch(&self) -> Option<StoreWatch> {
        None
    }
}

/// The stream returned by [`Store::watch`].
pub type StoreWatch = Pin<Box<dyn Stream<Item = StoreChange> + Send>>;

/// An mpsc receiver as a [`Stream`].
pub(crate) struct ReceiverStream<T>(pub(crate) tokio::sync::mpsc::UnboundedReceiver<T>);

impl<T> Stream for ReceiverStream<T> {
    type Item = T;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// A record changed outside this client.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreChange {
    /// The storage key.
    pub key: String,
    /// The new bytes, `None` when the record was removed.
    pub value: Option<Vec<u8>>,
}

impl fmt::Debug for StoreChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Records hold tokens: print only their size.
        f.debug_struct("StoreChange")
            .field("key", &self.key)
            .field("value_len", &self.value.as_ref().map(Vec::len))
            .finish()
    }
}

/// Why a store operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation failed.
    Io {
        /// What was being done (`"read"`, `"write"`, `"rename"`, …).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another client (in this or another process) holds the store's lock.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The key cannot name a record in this store.
    InvalidKey {
        /// The refused key.
        key: String,
    },
    /// Any other failure of a custom store.
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps the error of a custom store.
    pub fn backend(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Backend(error.into())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { op, path, source } => {
                write!(f, "could not {op} {}: {source}", path.display())
            }
            StoreError::Locked { path } => write!(
                f,
                "store is in use by another client (lock {} is held)",
                path.display()
            ),
            StoreError::InvalidKey { key } => write!(f, "invalid store key {key:?}"),
            StoreError::Backend(e) => write!(f, "store failed: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Backend(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// An in-memory store: the default, for processes that need no persistence.
///
/// Clones share the same map, so a test (or an app) can keep a handle to
/// inspect the records, or hand the same map to a second client to model a
/// restart. It has no watch: like the reference client's memory adapter it
/// has no reach beyond the process.
#[derive(Clone, Default)]
pub struct MemoryStore {
    map: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The record under `key`, synchronously.
    pub fn get_now(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().get(key).cloned()
    }

    /// Writes a record synchronously (to seed a store before building a
    /// client).
    pub fn set_now(&self, key: &str, value: &[u8]) {
        self.lock().insert(key.to_owned(), value.to_vec());
    }

    /// Every key currently stored, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>> {
        // A panic while holding the lock cannot leave a half-written entry.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.keys())
            .finish()
    }
}

impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_now(key))
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.set_now(key, value);
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.lock().remove(key);
        Ok(())
    }
}
