//! The one error type of the adapter.

use std::fmt;

use crate::store::StoreError;

/// Why a call on the [`AuthClient`](crate::AuthClient) failed.
///
/// Everything the protocol can report comes from the core as
/// [`Error::Auth`] (with the reference client's stable
/// [`code`](Error::code) and HTTP [`status`](Error::status)); the other
/// variants are the adapter's own: storage that could not be read at start,
/// a bad configuration, a client that was shut down.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The core's verdict: an API error, a network error, an invalid
    /// response, a storage write that was not durable, `not_authenticated` …
    /// (boxed: the core keeps the server's code and message inline).
    Auth(Box<paywall_auth::Error>),
    /// The store could not be opened or read while restoring (an unreadable
    /// store is reported, never taken for "signed out").
    Store(StoreError),
    /// The core's `storage_failed`, with the store's own account of why: the
    /// OS error and the path for a [`FileStore`](crate::FileStore), so an
    /// operator can fix the disk or the permissions.
    StorageFailed {
        /// The core's error (which record).
        core: Box<paywall_auth::Error>,
        /// What the store reported.
        cause: String,
    },
    /// The origin or paywall id given to the builder is unusable, or the
    /// trace file it names cannot be created.
    InvalidConfig(String),
    /// The client was shut down (or its driver task ended) before the call
    /// could complete.
    Closed,
    /// The driver broke one of the core's rules (a bug in this crate).
    Internal(&'static str),
}

impl Error {
    /// The stable error code: the core's slug for [`Error::Auth`]
    /// (`network_error`, `anonymous_disabled`, `http_503`, …), else
    /// `store_locked`, `storage_failed`, `invalid_config`, `client_closed` or
    /// `internal_error`.
    pub fn code(&self) -> &str {
        match self {
            Error::Auth(e) => e.code(),
            Error::StorageFailed { .. } => "storage_failed",
            Error::Store(StoreError::Locked { .. }) => "store_locked",
            Error::Store(_) => "storage_failed",
            Error::InvalidConfig(_) => "invalid_config",
            Error::Closed => "client_closed",
            Error::Internal(_) => "internal_error",
        }
    }

    /// The HTTP status, for errors the backend answered with.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Auth(e) => e.status(),
            _ => None,
        }
    }

    /// The core error, if this is one.
    pub fn as_auth(&self) -> Option<&paywall_auth::Error> {
        match self {
            Error::Auth(e) | Error::StorageFailed { core: e, .. } => Some(e.as_ref()),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Auth(e) => e.fmt(f),
            Error::StorageFailed { core, cause } => write!(f, "{core}: {cause}"),
            Error::Store(e) => write!(f, "{}: {e}", self.code()),
            Error::InvalidConfig(why) => write!(f, "invalid_config: {why}"),
            Error::Closed => f.write_str("client_closed: the auth client was shut down"),
            Error::Internal(why) => write!(f, "internal_error: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(e) => Some(e),
            _ => None,
        }
    }
}

impl From<paywall_auth::Error> for Error {
    fn from(e: paywall_auth::Error) -> Self {
        Error::Auth(Box::new(e))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}
