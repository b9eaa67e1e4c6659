//! [`FileStore`]: one file per record in a private directory, for kiosks
//! and other long-lived devices.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::store::{Store, StoreChange, StoreError, StoreWatch};

/// Name of the lock file inside the store directory.
pub const LOCK_FILE: &str = ".lock";

/// Longest key accepted (the core's keys are far shorter).
const KEY_MAX: usize = 128;

/// Largest record the store reads or writes, 64 KiB. The core's records are
/// a few KiB at most (a session with two tokens); anything bigger is not a
/// record this SDK wrote, and is refused rather than buffered.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// A directory of records, one file per key, that survives crashes.
///
/// # Layout and durability
/// Each record is the file `<dir>/<key>` holding exactly the bytes the core
/// encoded (the reference client's JSON by default). A write goes to a
/// temporary file in the same directory, is `fsync`ed, renamed over the
/// record, and the directory is `fsync`ed: after a crash at any instant the
/// record holds either its old or its new bytes, never a mix. Removal is an
/// `unlink` followed by a directory `fsync`. The directory is created with
/// mode `0700` and every file with `0600` (an existing directory is left as
/// it is, with a warning if others can read it). Temporary files left by a
/// crash are deleted when the store is next opened.
///
/// # Bounded reads
/// A record is at most [`MAX_RECORD_BYTES`]; a bigger file is an error
/// (never buffered whole), and so is anything that is not a regular file
/// (a FIFO, a device, a directory, a socket): its type is checked before
/// it is opened, the open itself never waits (`O_NONBLOCK`, so a FIFO
/// swapped in at the last instant cannot hang the process while it holds
/// the lock), and checked again on the open file. Errors name the path and
/// the OS cause, e.g. `could not create /x/.pw-…-auth-v1.tmp-…: Read-only
/// file system (os error 30)`.
///
/// # One client per directory
/// Opening the store takes an exclusive advisory lock (`flock`) on
/// `<dir>/.lock` and holds it for the store's whole life, i.e. until the
/// client owning it is shut down or the process dies (the kernel releases
/// it even on `SIGKILL`). A second client — in another process or in this
/// one — gets [`StoreError::Locked`] (`store_locked`) instead of sharing the
/// records. That is what makes refresh-token rotation safe: a refresh token
/// is single-use, and two processes that both refreshed from one stored
/// session would spend the same token twice, and the backend revokes the
/// whole family when it sees a spent token again — logging both out and,
/// for a guest, losing the account.
///
/// # Write order
/// With the lock there is exactly one writer, so the order in which the
/// core asks for writes is the whole crash-consistency story, and this
/// store applies them one at a time, each durable before the next starts.
/// The core (see "Write order" on [`Machine`](paywall_auth::Machine))
/// writes a guest's **anonymous record (`pw-{pid}-anon-rt-v1`) before its
/// session record (`pw-{pid}-auth-v1`)**, holds back a batch's later writes
/// while an earlier one fails, and completes a call only after its writes
/// are durable. So after a crash or a failed write the anonymous record is
/// never the older of the two, and restore trusts it when they disagree.
/// At every instant the files hold a token the backend accepts (the current
/// one, or the one just rotated out, which the backend forgives for its
/// reuse interval).
///
/// A kiosk whose previous instance may still be exiting can wait for the
/// lock with [`FileStore::open_wait`].
///
/// # Watching
/// With [`FileStore::watch_every`], the store polls the records it has
/// read or written and reports bytes that changed under it (an operator
/// restoring a backup, a tool that ignores the lock) to the client, which
/// feeds them to the core as external changes. Its own writes are never
/// reported back: reads, writes and polls are serialized and each updates
/// the store's idea of the current bytes.
pub struct FileStore {
    inner: Arc<Inner>,
    watch_interval: Option<Duration>,
}

struct Inner {
    dir: PathBuf,
    lock_path: PathBuf,
    /// Holds the advisory lock for as long as the store lives.
    _lock: File,
    /// The bytes each known key had when this store last read or wrote it.
    /// The mutex also serializes every file operation with the poller.
    known: Mutex<HashMap<String, Option<Vec<u8>>>>,
    tmp_counter: AtomicU64,
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir` and takes its lock.
    ///
    /// Fails with [`StoreError::Locked`] if another client holds it, and
    /// with [`StoreError::Io`] if the directory cannot be created or read.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        create_private_dir(&dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = open_no_wait(&lock_path, Access::CreateReadWrite)
            .map_err(io_error("open", &lock_path))?;
        let meta = lock.metadata().map_err(io_error("stat", &lock_path))?;
        if !meta.is_file() {
            return Err(io_error("open", &lock_path)(not_a_file(&meta)));
        }
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked { path: lock_path });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error("lock", &lock_path)(e)),
        }
        remove_stale_temporaries(&dir)?;
        tracing::debug!(dir = %dir.display(), "file store opened and locked");
        Ok(FileStore {
            inner: Arc::new(Inner {
                dir,
                lock_path,
                _lock: lock,
                known: Mutex::new(HashMap::new()),
                tmp_counter: AtomicU64::new(0),
            }),
            watch_interval: None,
        })
    }

    /// Like [`open`](Self::open), but while the lock is held by someone
    /// else, retries for up to `max_wait` before giving up with
    /// [`StoreError::Locked`].
    pub async fn open_wait(dir: impl AsRef<Path>, max_wait: Duration) -> Result<Self, StoreError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            match Self::open(dir.as_ref()) {
                Err(StoreError::Locked { path }) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(StoreError::Locked { path });
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// Polls the records every `interval` for changes made by someone else
    /// (see the type docs). Off by default.
    pub fn watch_every(mut self, interval: Duration) -> Self {
        self.watch_interval = Some(interval);
        self
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The file that holds the record `key`.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.inner.dir.join(key))
    }

    /// Reads the record `key` of the store directory `dir` without opening
    /// the store: no lock, nothing created, `None` when the record (or the
    /// directory) is absent. For observers that must never get in the way of
    /// the client owning the store (a status display, a watcher). The same
    /// checks as the store's own reads apply (see [Bounded
    /// reads](FileStore#bounded-reads)); since writes are atomic renames, the
    /// bytes are a whole old or a whole new record.
    pub fn read_unlocked(dir: impl AsRef<Path>, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        read_record(&dir.as_ref().join(key))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || op(&inner))
            .await
            .map_err(|e| StoreError::backend(format!("file store task failed: {e}")))?
    }
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.inner.dir)
            .field("watch_interval", &self.watch_interval)
            .finish()
    }
}

impl Store for FileStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_key(key)?;
        let key = key.to_owned();
        self.blocking(move |inner| inner.get(&key)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        check_key(key)?;
        let key = key.to_owned();
        let value = value.to_vec();
        self.blocking(move |inner| inner.set(&key, value)).await
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        let key = key.to_owned();
        self.blocking(move |inner| inner.remove(&key)).await
    }

    fn watch(&self) -> Option<StoreWatch> {
        let interval = self.watch_interval?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if tx.is_closed() {
                    return;
                }
                // A weak handle: the poller must not keep the lock alive
                // after the client dropped the store.
                let Some(inner) = weak.upgrade() else { return };
                let changes = tokio::task::spawn_blocking(move || inner.poll_changes()).await;
                for change in changes.unwrap_or_default() {
                    tracing::info!(key = %change.key, removed = change.value.is_none(), "store record changed externally");
                    if tx.send(change).is_err() {
                        return;
                    }
                }
            }
        });
        Some(Box::pin(crate::store::ReceiverStream(rx)))
    }
}

impl Inner {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Vec<u8>>>> {
        // Poisoning only means a panic elsewhere; the map is still coherent
        // (each entry is replaced whole).
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut known = self.known();
        let value = self.read(key)?;
        known.insert(key.to_owned(), value.clone());
        Ok(value)
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        read_record(&self.dir.join(key))
    }

    fn set(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let mut known = self.known();
        let path = self.dir.join(key);
        if value.len() > MAX_RECORD_BYTES {
            // It could be written, but never read back.
            return Err(io_error("write", &path)(too_large(value.len() as u64)));
        }
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{key}.tmp-{}-{n}", std::process::id()));
        let written = write_synced(&tmp, &value).and_then(|()| {
            fs::rename(&tmp, &path).map_err(io_error("rename", &path))?;
            sync_dir(&self.dir)
        });
        if written.is_err() {
            // Best effort: a leftover is also removed at the next open.
            let _ = fs::remove_file(&tmp);
            // What is on disk is now uncertain: the next poll re-reads it.
            known.remove(key);
        } else {
            known.insert(key.to_owned(), Some(value));
        }
        written
    }

    fn remove(&self, key: &str) -> Result<(), StoreError> {
        let mut known = self.known();
        let path = self.dir.join(key);
        let removed = match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("remove", &path)(e)),
        };
        if removed.is_err() {
            known.remove(key);
        } else {
            known.insert(key.to_owned(), None);
        }
        removed
    }

    /// Records whose bytes differ from what this store last saw.
    fn poll_changes(&self) -> Vec<StoreChange> {
        let mut known = self.known();
        let mut changes = Vec::new();
        for (key, seen) in known.iter_mut() {
            match self.read(key) {
                Ok(now) if now != *seen => {
                    *seen = now.clone();
                    changes.push(StoreChange {
                        key: key.clone(),
                        value: now,
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(key = %key, error = %e, "file store poll failed"),
            }
        }
        changes
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        tracing::debug!(lock = %self.lock_path.display(), "file store closed, lock released");
    }
}

/// Keys become file names: only URL-safe bytes, no leading dot (reserved
/// for the lock and temporary files), bounded length.
fn check_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= KEY_MAX
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey {
            key: key.to_owned(),
        })
    }
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

fn private_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    #[allow(unused_mut)]
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io_error("create", dir))?;
    let meta = fs::metadata(dir).map_err(io_error("stat", dir))?;
    if !meta.is_dir() {
        return Err(io_error("open", dir)(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "store directory {} is accessible to other users (mode {mode:04o}); \
                 the records hold refresh tokens: run `chmod 700` on it",
                dir.display()
            );
        }
    }
    Ok(())
}

/// How [`open_no_wait`] opens a file.
#[derive(Clone, Copy)]
enum Access {
    Read,
    CreateReadWrite,
}

/// Opens `path` without ever waiting: `O_NONBLOCK` so that a FIFO (or a
/// device) in the place of a record returns at once instead of blocking
/// the process while it holds the store's lock; `O_NOCTTY` so a terminal
/// never becomes the controlling one. Created files are `0600`.
#[cfg(unix)]
fn open_no_wait(path: &Path, access: Access) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::NONBLOCK
        | OFlags::NOCTTY
        | OFlags::CLOEXEC
        | match access {
            Access::Read => OFlags::RDONLY,
            Access::CreateReadWrite => OFlags::RDWR | OFlags::CREATE,
        };
    let fd = rustix::fs::open(path, flags, Mode::RUSR | Mode::WUSR)?;
    Ok(File::from(fd))
}

#[cfg(not(unix))]
fn open_no_wait(path: &Path, access: Access) -> io::Result<File> {
    match access {
        Access::Read => File::open(path),
        Access::CreateReadWrite => private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path),
    }
}

/// The bytes of the record file `path`, `None` when it is absent: bounded
/// by [`MAX_RECORD_BYTES`], regular files only, never blocking.
fn read_record(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    use std::io::Read as _;
    let fail = |e| io_error("read", path)(e);
    // Checked before opening: opening some devices has side effects.
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(fail(not_a_file(&meta))),
        Ok(meta) if meta.len() > MAX_RECORD_BYTES as u64 => {
            return Err(fail(too_large(meta.len())));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e)),
    }
    let file = match open_no_wait(path, Access::Read) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e)),
    };
    // And again on what was opened: the path may have been replaced since.
    let meta = file.metadata().map_err(fail)?;
    if !meta.is_file() {
        return Err(fail(not_a_file(&meta)));
    }
    let mut bytes = Vec::with_capacity(
        usize::try_from(meta.len())
            .unwrap_or(0)
            .min(MAX_RECORD_BYTES),
    );
    file.take(MAX_RECORD_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(fail(too_large(bytes.len() as u64)));
    }
    Ok(Some(bytes))
}

/// The error for a record file of `len` bytes.
fn too_large(len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("record too large ({len} bytes; at most {MAX_RECORD_BYTES})"),
    )
}

/// The error for something other than a regular file where a record (or
/// the lock) should be.
fn not_a_file(meta: &fs::Metadata) -> io::Error {
    let kind = meta.file_type();
    let what = if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        special_kind(&kind)
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file ({what})"),
    )
}

#[cfg(unix)]
fn special_kind(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &fs::FileType) -> &'static str {
    "a special file"
}

fn write_synced(path: &Path, value: &[u8]) -> Result<(), StoreError> {
    let mut file = private_options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_error("create", path))?;
    file.write_all(value).map_err(io_error("write", path))?;
    file.sync_all().map_err(io_error("fsync", path))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync", dir))
}

fn remove_stale_temporaries(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            tracing::debug!(file = %name, "removing temporary file left by a crash");
            let path = entry.path();
            fs::remove_file(&path).map_err(io_error("remove", &path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(check_key("pw-pw_demo-auth-v1").is_ok());
        assert!(check_key("pw-visitor-id").is_ok());
        for bad in ["", ".lock", "../x", "a/b", "a b", &"k".repeat(KEY_MAX + 1)] {
            assert!(
                matches!(check_key(bad), Err(StoreError::InvalidKey { .. })),
                "{bad:?}"
            );
        }
    }
}
