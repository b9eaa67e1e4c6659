//! The store directory, read without the network and without its lock.
//!
//! `status` and `watch` only look: they restore a private core [`Machine`]
//! from the record files (laid out by `FileStore` as `<dir>/<key>`, written
//! by atomic rename, so a read sees a whole old or a whole new record) and
//! feed later changes to it as external changes. The core decides what the
//! bytes mean and which auth event a change is; nothing is ever written,
//! sent, or locked, so an observer never gets in the way of the client that
//! owns the store.

use std::path::{Path, PathBuf};

use paywall_auth::{Config, Instant, Machine, Notice, Output, RecordKey, StorageError};
use paywall_auth_tokio::FileStore;

use crate::fail::Failure;
use crate::out::{Summary, now_ms};

/// Key of the global visitor id record (docs/protocol.md §6.2).
const VISITOR_ID_KEY: &str = "pw-visitor-id";

/// Name of the default store under `$XDG_STATE_HOME/paywall-auth/`. One
/// store for every paywall would not work: a store is bound to one backend
/// (see [`crate::binding`]), so a second paywall needs its own `--store`.
const DEFAULT_STORE: &str = "default";

/// The store directory: `--store`/`PAYWALL_AUTH_STORE`, else
/// `$XDG_STATE_HOME/paywall-auth/default` (when absolute), else
/// `$HOME/.local/state/paywall-auth/default`. It does not depend on the
/// paywall id, so that a command with no flags finds the store an earlier
/// command bound.
pub fn store_dir(explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    store_dir_from(
        explicit,
        std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn store_dir_from(
    explicit: Option<&Path>,
    xdg_state_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Result<PathBuf, Failure> {
    if let Some(dir) = explicit {
        if dir.as_os_str().is_empty() {
            return Err(Failure::invalid_config("--store is empty"));
        }
        return Ok(dir.to_path_buf());
    }
    // XDG: a relative value is invalid and must be ignored.
    let base = match (xdg_state_home.filter(|p| p.is_absolute()), home) {
        (Some(state), _) => state,
        (None, Some(home)) if home.is_absolute() => home.join(".local").join("state"),
        _ => {
            return Err(Failure::invalid_config(
                "neither XDG_STATE_HOME nor HOME is set; pass --store DIR",
            ));
        }
    };
    Ok(base.join("paywall-auth").join(DEFAULT_STORE))
}

/// Warns when users other than the owner can enter or list the store
/// directory (the records hold refresh tokens). The client's store warns
/// on its own when it opens the directory; readers that never open it
/// (`status`, `watch`) call this.
pub fn warn_if_shared(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(dir) {
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() && mode & 0o077 != 0 {
                tracing::warn!(
                    "store directory {} is accessible to other users (mode {mode:04o}); \
                     the records hold refresh tokens: run `chmod 700` on it",
                    dir.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// The core's config for `paywall_id`, or `invalid_config`.
pub fn config(paywall_id: &str) -> Result<Config, Failure> {
    Config::new(paywall_id).map_err(|e| {
        let text = e.to_string();
        Failure::invalid_config(
            text.strip_prefix("invalid_config: ")
                .unwrap_or(&text)
                .to_owned(),
        )
    })
}

/// One auth event as an observer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Reference name: `INITIAL_SESSION`, `SIGNED_IN`, …
    pub name: &'static str,
    pub session: Option<Summary>,
}

/// A read-only view of a store directory through the core.
#[derive(Debug)]
pub struct Observer {
    dir: PathBuf,
    session_key: String,
    anon_key: String,
    machine: Machine,
    /// Bytes last fed to the machine, per record.
    session_bytes: Option<Vec<u8>>,
    anon_bytes: Option<Vec<u8>>,
    /// Records that could not be decoded, as `key: why` lines.
    warnings: Vec<String>,
}

impl Observer {
    /// Restores a machine from the records in `dir` (an absent directory is
    /// an empty store). The first event is always `INITIAL_SESSION`.
    pub fn open(dir: &Path, paywall_id: &str) -> Result<(Observer, Vec<Event>), Failure> {
        let config = config(paywall_id)?;
        let key = |k: RecordKey| {
            k.storage_key(paywall_id)
                .map(|s| s.as_str().to_owned())
                .map_err(|e| Failure::invalid_config(e.to_string()))
        };
        let session_key = key(RecordKey::Session)?;
        let anon_key = key(RecordKey::AnonRefreshToken)?;
        let session_bytes = read_record(dir, &session_key)?;
        let anon_bytes = read_record(dir, &anon_key)?;
        let visitor = read_record(dir, VISITOR_ID_KEY)?;
        let visitor = visitor
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim);

        let mut observer = Observer {
            dir: dir.to_path_buf(),
            session_key,
            anon_key,
            machine: Machine::new(config),
            session_bytes,
            anon_bytes,
            warnings: Vec::new(),
        };
        let restored = observer.machine.handle_restored(
            now(),
            observer.session_bytes.as_deref(),
            observer.anon_bytes.as_deref(),
            visitor,
        );
        if restored.is_err() {
            return Err(Failure::new(
                "internal_error",
                "fresh machine refused restore",
            ));
        }
        let events = observer.drain();
        Ok((observer, events))
    }

    /// Re-reads the records and reports what changed since the last look.
    pub fn poll(&mut self) -> Result<Vec<Event>, Failure> {
        let mut events = Vec::new();
        // In the order the core writes them (see "Write order" on
        // `Machine`): a guest's anonymous record first, then the session.
        for key in [RecordKey::AnonRefreshToken, RecordKey::Session] {
            let name = match key {
                RecordKey::Session => &self.session_key,
                RecordKey::AnonRefreshToken => &self.anon_key,
            };
            let bytes = read_record(&self.dir, name)?;
            let last = match key {
                RecordKey::Session => &mut self.session_bytes,
                RecordKey::AnonRefreshToken => &mut self.anon_bytes,
            };
            if *last == bytes {
                continue;
            }
            *last = bytes;
            let fed = self
                .machine
                .handle_external_change(now(), key, last.as_deref());
            if fed.is_err() {
                return Err(Failure::new(
                    "internal_error",
                    "observer left outputs queued",
                ));
            }
            events.extend(self.drain());
        }
        Ok(events)
    }

    /// The session the records hold.
    pub fn session(&self) -> Option<Summary> {
        self.machine.session().map(Summary::of)
    }

    /// Whether the next `anon` can resume a stored anonymous account.
    pub fn has_resumable_anonymous(&self) -> bool {
        self.machine.has_resumable_anonymous()
    }

    /// Records that could not be decoded, and why.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn drain(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            let (event, unwritten) = match self.machine.poll_output() {
                None => break,
                Some(Output::AuthChange { change, session }) => (
                    Some(Event {
                        name: change.as_str(),
                        session: session.map(Summary::of),
                    }),
                    None,
                ),
                // An observer never writes: a repair the core asks for
                // (e.g. the resumable copy lagging the session after a
                // crash) is left to the client that owns the store.
                Some(Output::Store(op)) => (None, Some((op.id, op.key))),
                Some(Output::Notice(Notice::CorruptRecord { key, error })) => {
                    self.warnings.push(format!(
                        "the stored {} record is unreadable ({error}); it is left as it is",
                        key.name()
                    ));
                    (None, None)
                }
                Some(_) => (None, None),
            };
            events.extend(event);
            if let Some((id, key)) = unwritten {
                // Not applied, so not acknowledged as durable; the retry
                // it schedules never runs because no timeout is fed.
                let _ = self
                    .machine
                    .handle_stored(now(), id, Err(StorageError { key }));
            }
        }
        events
    }
}

fn now() -> Instant {
    Instant(now_ms())
}

/// The bytes of record `key`, `None` when absent (or the directory is),
/// with the file store's own checks: at most 64 KiB, a regular file, an
/// open that never blocks.
fn read_record(dir: &Path, key: &str) -> Result<Option<Vec<u8>>, Failure> {
    FileStore::read_unlocked(dir, key)
        .map_err(|e| Failure::from(paywall_auth_tokio::Error::from(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_store_follows_xdg_then_home() {
        let xdg = Some(PathBuf::from("/x/state"));
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            store_dir_from(None, xdg.clone(), home.clone()).unwrap(),
            PathBuf::from("/x/state/paywall-auth/default")
        );
        assert_eq!(
            store_dir_from(None, None, home.clone()).unwrap(),
            PathBuf::from("/home/u/.local/state/paywall-auth/default")
        );
        // A relative XDG_STATE_HOME is ignored, as the spec says.
        assert_eq!(
            store_dir_from(None, Some(PathBuf::from("rel")), home.clone()).unwrap(),
            PathBuf::from("/home/u/.local/state/paywall-auth/default")
        );
        assert_eq!(
            store_dir_from(Some(Path::new("/s")), xdg, home).unwrap(),
            PathBuf::from("/s")
        );
        assert_eq!(
            store_dir_from(None, None, None).unwrap_err().code,
            "invalid_config"
        );
        assert!(store_dir_from(Some(Path::new("")), None, None).is_err());
    }

    #[test]
    fn an_absent_store_is_signed_out_and_not_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing-here");
        let (observer, events) = Observer::open(&missing, "pw_demo").unwrap();
        assert_eq!(
            events,
            vec![Event {
                name: "INITIAL_SESSION",
                session: None
            }]
        );
        assert!(observer.session().is_none());
        assert!(!observer.has_resumable_anonymous());
        assert!(!missing.exists(), "an observer creates nothing");
    }

    #[test]
    fn a_corrupt_record_is_a_warning_not_a_session() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw-pw_demo-auth-v1"), b"{not json").unwrap();
        let (mut observer, events) = Observer::open(dir.path(), "pw_demo").unwrap();
        assert_eq!(events[0].session, None);
        let warnings = observer.take_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn invalid_paywall_ids_are_config_errors() {
        assert_eq!(config("a/b").unwrap_err().code, "invalid_config");
        assert_eq!(config("").unwrap_err().code, "invalid_config");
    }
}
