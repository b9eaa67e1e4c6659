//! Every way a command can fail, as data.
//!
//! [`Error::code`] gives the stable slug of docs/protocol.md §4 (`network_error`,
//! `not_authenticated`, a server code such as `anonymous_disabled`, or
//! `http_<status>`), so bindings can rebuild the reference client's
//! `PaywallError { code, message, status }` without a lookup table of their
//! own.

use core::fmt;

use heapless::String;

use crate::limits::{ERROR_CODE_MAX, ERROR_MESSAGE_MAX};
use crate::storage::RecordKey;

/// A bounded field of the core, named in capacity errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Field {
    /// `access_token`
    AccessToken,
    /// `refresh_token`
    RefreshToken,
    /// `user.id`
    UserId,
    /// `user.email`, or the email of an upgrade
    Email,
    /// the password of an upgrade
    Password,
    /// `user.name`
    Name,
    /// `user.avatar`
    Avatar,
    /// `user.country`
    Country,
    /// `captcha_token`
    CaptchaToken,
    /// the number of `user_meta` entries
    UserMeta,
    /// a `user_meta` key
    UserMetaKey,
    /// a `user_meta` value
    UserMetaValue,
    /// `Idempotency-Key`
    IdempotencyKey,
    /// the paywall id
    PaywallId,
    /// the caller-provided buffer a request, header or record is written to
    Buffer,
    /// the queue of outputs between two drains
    OutputQueue,
    /// the table of requests awaiting a response
    RequestsInFlight,
}

impl Field {
    /// The field's name as it appears on the wire or in the docs.
    pub const fn name(self) -> &'static str {
        match self {
            Field::AccessToken => "access_token",
            Field::RefreshToken => "refresh_token",
            Field::UserId => "user.id",
            Field::Email => "email",
            Field::Password => "password",
            Field::Name => "user.name",
            Field::Avatar => "user.avatar",
            Field::Country => "user.country",
            Field::CaptchaToken => "captcha_token",
            Field::UserMeta => "user_meta",
            Field::UserMetaKey => "user_meta key",
            Field::UserMetaValue => "user_meta value",
            Field::IdempotencyKey => "idempotency_key",
            Field::PaywallId => "paywall_id",
            Field::Buffer => "output buffer",
            Field::OutputQueue => "output queue",
            Field::RequestsInFlight => "requests in flight",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value did not fit the capacity reserved for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CapacityError {
    /// What overflowed.
    pub field: Field,
    /// Its capacity (bytes, or entries for collections).
    pub capacity: usize,
    /// The size that was offered (0 when unknown).
    pub len: usize,
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} too long: {} > capacity {} (raise PAYWALL_AUTH_* at build time)",
            self.field, self.len, self.capacity
        )
    }
}

/// Why a response body, a stored record or a token could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// The response did not declare `Content-Type: application/json`.
    NotJson,
    /// The bytes are not valid JSON (or postcard) for the expected shape.
    Malformed {
        /// What was being decoded, e.g. `"token response"`.
        what: &'static str,
    },
    /// A required field is absent or `null`.
    MissingField {
        /// The field's wire name.
        field: &'static str,
    },
    /// A field has a value outside its domain (negative expiry, unknown
    /// `status`, non-UTF-8 token …).
    InvalidValue {
        /// The field's wire name.
        field: &'static str,
    },
    /// A field is longer than the core can hold.
    Capacity(CapacityError),
}

impl From<CapacityError> for DecodeError {
    fn from(e: CapacityError) -> Self {
        DecodeError::Capacity(e)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotJson => f.write_str("response is not application/json"),
            DecodeError::Malformed { what } => write!(f, "malformed {what}"),
            DecodeError::MissingField { field } => write!(f, "missing field `{field}`"),
            DecodeError::InvalidValue { field } => write!(f, "invalid value for `{field}`"),
            DecodeError::Capacity(c) => c.fmt(f),
        }
    }
}

/// A non-2xx answer of the backend, mapped as in docs/protocol.md §1.5.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Body `code`, else a slug-like body `error`, else `http_<status>`.
    pub code: String<ERROR_CODE_MAX>,
    /// Body `message`, else a sentence-like body `error`, else the status
    /// text, else `Request failed`. Cut at [`ERROR_MESSAGE_MAX`] bytes.
    pub message: String<ERROR_MESSAGE_MAX>,
    /// The body was the backend's JSON error envelope (a JSON object with a
    /// `code` or `error`), not a proxy's or captive portal's page.
    pub from_backend: bool,
}

impl ApiError {
    /// Whether the backend said "this refresh token is dead" (§4.3): a 401,
    /// or GoTrue's 400 `invalid_grant` (the fix of §12.11) — and in both
    /// cases only with the backend's JSON error envelope. A captive portal
    /// or proxy answering 401 with an HTML page (`WWW-Authenticate: Basic`)
    /// says nothing about our token; treating it as dead would delete the
    /// guest's only way back (docs/protocol.md §13.5).
    pub fn is_dead_token(&self) -> bool {
        self.from_backend
            && (self.status == 401
                || (self.status == 400
                    && matches!(
                        self.code.as_str(),
                        "invalid_grant" | "invalid_refresh_token" | "refresh_token_not_found"
                    )))
    }

    /// Whether the answer was a redirect, which this client never follows
    /// (it would re-send refresh tokens and passwords to wherever it
    /// points, possibly over plain http).
    pub fn is_redirect(&self) -> bool {
        (300..400).contains(&self.status)
    }
}

/// How a request failed below HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TransportError {
    /// No connection could be made (DNS, refused, TLS handshake).
    Connect,
    /// The adapter's deadline fired before a complete response arrived.
    Timeout,
    /// The connection dropped after the request may have been sent.
    ConnectionLost,
    /// The response could not be framed (bad status line, bad chunking).
    BadFraming,
    /// The response was larger than the adapter accepts; refused unread.
    TooLarge,
}

impl TransportError {
    /// A short description, for messages.
    pub const fn describe(self) -> &'static str {
        match self {
            TransportError::Connect => "could not connect",
            TransportError::Timeout => "request deadline exceeded",
            TransportError::ConnectionLost => "connection lost before the response completed",
            TransportError::BadFraming => "malformed HTTP response",
            TransportError::TooLarge => "response too large",
        }
    }
}

/// The failure of a storage operation, as reported by the adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StorageError {
    /// The record that could not be written or removed.
    pub key: RecordKey,
}

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The backend answered with a non-2xx status.
    Api(ApiError),
    /// The request did not produce a usable HTTP response.
    Network(TransportError),
    /// A 2xx response whose body could not be used.
    InvalidResponse(DecodeError),
    /// A value exceeded a compile-time capacity.
    Capacity(CapacityError),
    /// The command needs a session and there is none.
    NotAuthenticated,
    /// The command needs an anonymous session and the current one is named.
    NotAnonymous,
    /// An upgrade with a different idempotency key is already in flight.
    UpgradeInProgress,
    /// The session this command worked on ended (sign-out, another account)
    /// before its response arrived; the response was not applied.
    Superseded,
    /// A storage write or removal failed; the in-memory state is kept and the
    /// write is retried, but the result was not durable when reported.
    Storage(StorageError),
    /// More commands or requests are pending than the core can track.
    Busy,
}

impl Error {
    /// The stable error code (docs/protocol.md §4).
    pub fn code(&self) -> &str {
        match self {
            Error::Api(e) => e.code.as_str(),
            Error::Network(_) => "network_error",
            Error::InvalidResponse(_) => "invalid_response",
            Error::Capacity(_) => "capacity_exceeded",
            Error::NotAuthenticated => "not_authenticated",
            Error::NotAnonymous => "not_anonymous",
            Error::UpgradeInProgress => "upgrade_in_progress",
            Error::Superseded => "superseded",
            Error::Storage(_) => "storage_failed",
            Error::Busy => "busy",
        }
    }

    /// The HTTP status, for errors that came with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.status),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api(e) => write!(f, "{} (HTTP {}): {}", e.code, e.status, e.message),
            Error::Network(t) => write!(f, "network_error: {}", t.describe()),
            Error::InvalidResponse(d) => write!(f, "invalid_response: {d}"),
            Error::Capacity(c) => write!(f, "capacity_exceeded: {c}"),
            Error::NotAuthenticated => f.write_str("not_authenticated: no session"),
            Error::NotAnonymous => {
                f.write_str("not_anonymous: the current session belongs to a named account")
            }
            Error::UpgradeInProgress => f.write_str(
                "upgrade_in_progress: another upgrade with a different idempotency key is in flight",
            ),
            Error::Superseded => f.write_str(
                "superseded: the session changed while the request was in flight; its result was not applied",
            ),
            Error::Storage(s) => write!(f, "storage_failed: could not persist {}", s.key.name()),
            Error::Busy => f.write_str("busy: too many requests in flight"),
        }
    }
}

impl From<CapacityError> for Error {
    fn from(e: CapacityError) -> Self {
        Error::Capacity(e)
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::InvalidResponse(e)
    }
}

impl core::error::Error for CapacityError {}
impl core::error::Error for DecodeError {}
impl core::error::Error for Error {}
